#!/usr/bin/env bash
# Builds the fuzz targets (libFuzzer + ASan, on the stable toolchain through RUSTC_BOOTSTRAP)
# and runs each for SECONDS (default 60), from fuzz/corpus/TARGET: the committed corpus (the
# smallest files of a minimized corpus, up to 1 MiB per target) plus the repository's own
# golden files and specs as seeds (copied in when missing). What libFuzzer adds stays there;
# `git status` shows it (commit only a minimized, size-capped set: see README).
#   fuzz/run.sh [SECONDS] [TARGET ...]
# Needs `cargo install cargo-fuzz`. An ASan build takes about 11 minutes on one core. A crash
# leaves its input in fuzz/artifacts/TARGET/: make it a regression test in tests/.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(model_text onnx rows features frames_config)
seed() {
  local dir=corpus/$1; shift
  mkdir -p "$dir"
  for f in "$@"; do
    local to
    to="$dir/$(echo "$f" | tr '/' '_')"
    [ -e "$to" ] || cp "$f" "$to"
  done
}
seed model_text ../models/golden/*/model.txt ../models/golden/*/model.json
seed onnx ../models/onnx/*/model.onnx
seed rows ../models/golden/lgb_binary/input.csv ../models/golden/lgb_binary/input.npy ../models/golden/xgb_binary/input.npy
seed features ../examples/fraud/spec.toml
seed frames_config ../models/frames/config.toml
export RUSTC_BOOTSTRAP=1
cargo fuzz build
for t in "${targets[@]}"; do
  dict=()
  [ -f "dict/$t.dict" ] && dict=("-dict=dict/$t.dict")
  echo "== $t for ${secs}s"
  cargo fuzz run "$t" "corpus/$t" -- -max_total_time="$secs" -max_len=1048576 -rss_limit_mb=4096 -timeout=10 "${dict[@]}"
done
