#!/usr/bin/env bash
# Runtime figures of two builds, alternating on the same machine in one run (a shared machine
# drifts: only ratios taken side by side mean anything): stream/direct ratio on lgb_binary and
# the per-event overhead with a single-leaf model, ROUNDS times each, medians.
#   benches/runtime_ab.sh BASE_BINARY NEW_BINARY [ROUNDS, default 5] [SECONDS, default 3]
# Build the base from an older commit in a worktree, e.g.
#   git worktree add /tmp/base OLD && (cd /tmp/base && cargo build --release)
set -euo pipefail
cd "$(dirname "$0")/.."
base=$1 new=$2 rounds=${3:-5} secs=${4:-3}
model=models/golden/lgb_binary/model.txt
trivial=models/golden/lgb_single_leaf/model.txt
out=$(mktemp)
for i in $(seq "$rounds"); do
  for which in base new; do
    bin=$base; [ "$which" = new ] && bin=$new
    "$bin" bench --model "$model" --mode both --duration "$secs" --json | sed "s/^/$which ratio /" >>"$out"
    "$bin" bench --model "$trivial" --mode stream --batch 1024 --duration "$secs" --json | sed "s/^/$which overhead /" >>"$out"
  done
done
python3 - "$out" <<'PY'
import json, statistics as st, sys
runs = {}
for line in open(sys.argv[1]):
    which, kind, text = line.split(" ", 2)
    runs.setdefault((which, kind), []).append(json.loads(text))
for which in ("base", "new"):
    ratio = [r for r in runs[(which, "ratio")] if r["mode"] == "stream"]
    direct = [r["rows_per_sec"] for r in runs[(which, "ratio")] if r["mode"] == "direct"]
    over = [1e9 / r["rows_per_sec"] for r in runs[(which, "overhead")]]
    print(f"{which}: direct {st.median(direct):,.0f} rows/s, stream {st.median(r['rows_per_sec'] for r in ratio):,.0f}; "
          f"stream/direct per run {[round(r['ratio_to_direct'], 3) for r in ratio]}, median {st.median(r['ratio_to_direct'] for r in ratio):.3f}; "
          f"overhead per run {[round(o) for o in over]} ns/event, median {st.median(over):.0f}")
PY
