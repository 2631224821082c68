#!/usr/bin/env bash
# Where stream mode's time goes, two ways, for one configuration:
#   1. the runtime's own accounting: `bench --mode stream` prints the busy time of the runtime's
#      threads per event by kind (intake, layout, prepare, backend, reply) and the producers'
#      CPU time per event (Busy in src/metrics.rs; also `streamscore_busy_seconds_total`);
#   2. a sampling profile of the same run (perf, release build with debug info): the hottest
#      symbols per thread (`streamscore-bat` is the batcher, which scores inline with one
#      worker; `streamscore` the producers), kernel time included (futex wake-ups show as
#      `_raw_spin_unlock_irqrestore`, parking as `finish_task_switch`).
# Usage: benches/runtime_profile.sh [MODEL] [BENCH FLAGS...]
#   e.g. benches/runtime_profile.sh models/golden/lgb_binary/model.txt --batch 256 --submit-batch 1
# Needs perf (Debian: linux-perf) and kernel.perf_event_paranoid <= 1 (or root).
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-models/golden/lgb_binary/model.txt}
shift || true
flags=("$@")
[ ${#flags[@]} -eq 0 ] && flags=(--batch 256 --max-delay-us 500)
cargo build --release --quiet
bin=./target/release/streamscore
$bin bench --model "$model" --mode stream --duration 3 "${flags[@]}"
out=$(mktemp -d)
perf record -q -F 4999 -o "$out/perf.data" -- $bin bench --model "$model" --mode stream --duration 4 --json "${flags[@]}" > /dev/null
perf report -i "$out/perf.data" --no-children --sort comm,symbol --percent-limit 0.5 --stdio 2>/dev/null \
  | grep -v '^#' | grep -v '^$' | head -40
rm -rf "$out"
