#!/usr/bin/env bash
# The runtime figures quoted in README.md, from `streamscore bench` on BACKEND (default `auto`,
# the fast CPU scorer; the bench names the kernel it picked), each configuration 3 times (this
# machine is shared and noisy: quote the median of the 3), the configurations alternating:
#   1. stream-mode throughput / direct-mode throughput, one producer, same run: lgb_binary
#      and lgb_100x31, single events and sets of 256 (`--submit-batch 256`);
#   2. runtime overhead per event with a trivial model (a single leaf): 1e9 / stream rows/s,
#      single events and sets of 256;
#   3. 4 producers against 1 on 2 cores (no collapse: at least 1 producer's throughput);
#   4. p99 end-to-end latency in open loop at half of the stream peak measured in 1.
# Usage: benches/runtime_figures.sh [seconds per configuration, default 5] [BACKEND]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
backend=${2:-auto}
cargo build --release --quiet
bin=./target/release/streamscore
binary=models/golden/lgb_binary/model.txt
# Made by the peer comparison's models.py (benches/peers/run.sh sets up its venv).
wide=target/peers/lgb_100x31.txt
if [ ! -f "$wide" ]; then
  echo "$wide is missing: run benches/peers/run.sh once (or its models.py in its venv)" >&2
  exit 1
fi
trivial=models/golden/lgb_single_leaf/model.txt
out=$(mktemp -d)
run() { # FILE ARGS...: one JSON line appended to $out/FILE
  local file=$1; shift
  $bin bench --backend "$backend" --duration "$secs" --json "$@" >>"$out/$file"
}
for i in 1 2 3; do
  for set in 1 256; do
    run ratio_binary_$set.jsonl --model $binary --mode both --batch 256 --max-delay-us 500 --submit-batch $set
    run ratio_wide_$set.jsonl --model $wide --mode both --batch 256 --max-delay-us 500 --submit-batch $set
    run overhead_$set.jsonl --model $trivial --mode stream --batch 1024 --max-delay-us 500 --submit-batch $set
  done
  for p in 1 4; do
    run producers_$p.jsonl --model $binary --mode stream --batch 256 --max-delay-us 500 --producers $p
  done
done
peak=$(python3 -c "
import json,statistics
rows=[json.loads(l) for l in open('$out/ratio_binary_1.jsonl')]
print(statistics.median(r['rows_per_sec'] for r in rows if r['mode']=='stream'))")
half=$(python3 -c "print(int($peak/2))")
for i in 1 2 3; do
  run p99.jsonl --model $binary --mode stream --batch 256 --max-delay-us 500 --rate "$half"
done
OUT=$out python3 - <<'PY'
import json, os, statistics as st
out = os.environ['OUT']
load = lambda f: [json.loads(l) for l in open(f'{out}/{f}')]
med = st.median
for name, f in [('lgb_binary', 'ratio_binary'), ('lgb_100x31', 'ratio_wide')]:
    for s in (1, 256):
        rows = load(f'{f}_{s}.jsonl')
        d = [r for r in rows if r['mode'] == 'direct']
        m = [r for r in rows if r['mode'] == 'stream']
        per = m[0]['ns_per_event']
        print(f"{name}, sets of {s}: backend {d[0]['backend']}; direct {med(r['rows_per_sec'] for r in d):,.0f} rows/s, "
              f"stream {med(r['rows_per_sec'] for r in m):,.0f}; ratio per run {[round(r['ratio_to_direct'], 3) for r in m]}, "
              f"median {med(r['ratio_to_direct'] for r in m):.3f}; ns/event (first run) {per}")
for s in (1, 256):
    o = load(f'overhead_{s}.jsonl')
    print(f"single-leaf model, sets of {s}: stream rows/s per run {[round(r['rows_per_sec']) for r in o]}; "
          f"median overhead {1e9 / med(r['rows_per_sec'] for r in o):.1f} ns/event; lost {sum(r['lost'] for r in o)}")
p1, p4 = load('producers_1.jsonl'), load('producers_4.jsonl')
print(f"producers 1 vs 4 (lgb_binary): {med(r['rows_per_sec'] for r in p1):,.0f} vs {med(r['rows_per_sec'] for r in p4):,.0f} rows/s "
      f"(runs {[round(r['rows_per_sec']) for r in p4]}); lost {sum(r['lost'] for r in p1 + p4)}")
p = load('p99.jsonl')
print(f"open loop at {p[0]['rate']:,.0f}/s: p99 us per run {[r['latency_us']['p99'] for r in p]}, median {med(r['latency_us']['p99'] for r in p):.0f}; "
      f"scoring p50 of a batch {med(r['stages_p50_us']['scoring'] for r in p):.0f} us at mean batch {med(r['mean_batch'] for r in p):.0f}; lost {sum(r['lost'] for r in p)}")
PY
echo "raw JSON lines: $out"
