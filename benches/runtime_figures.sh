#!/usr/bin/env bash
# The runtime figures quoted in README.md, from `streamscore bench`, each configuration 3 times
# (this machine is shared and noisy: quote the median of the 3).
#   1. stream-mode throughput / direct-mode throughput, one producer, same run (lgb_binary);
#   2. runtime overhead per event with a trivial model (a single leaf): 1e9 / stream rows/s;
#   3. p99 end-to-end latency in open loop at half of the stream peak measured in 1.
# Usage: benches/runtime_figures.sh [seconds per configuration, default 5]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
cargo build --release --quiet
bin=./target/release/streamscore
model=models/golden/lgb_binary/model.txt
trivial=models/golden/lgb_single_leaf/model.txt
for i in 1 2 3; do
  $bin bench --model "$model" --mode both --batch 256 --max-delay-us 500 --duration "$secs" --json
done | tee /tmp/streamscore_ratio.jsonl
for i in 1 2 3; do
  $bin bench --model "$trivial" --mode stream --batch 1024 --max-delay-us 500 --duration "$secs" --json
done | tee /tmp/streamscore_overhead.jsonl
peak=$(python3 -c "
import json,statistics
rows=[json.loads(l) for l in open('/tmp/streamscore_ratio.jsonl')]
print(statistics.median(r['rows_per_sec'] for r in rows if r['mode']=='stream'))")
half=$(python3 -c "print(int($peak/2))")
for i in 1 2 3; do
  $bin bench --model "$model" --mode stream --batch 256 --max-delay-us 500 --rate "$half" --duration "$secs" --json
done | tee /tmp/streamscore_p99.jsonl
python3 - <<'PY'
import json, statistics as st
load = lambda p: [json.loads(l) for l in open(p)]
ratio = load('/tmp/streamscore_ratio.jsonl')
s = [r for r in ratio if r['mode'] == 'stream']
d = [r for r in ratio if r['mode'] == 'direct']
print(f"direct rows/s median {st.median(r['rows_per_sec'] for r in d):,.0f}; stream {st.median(r['rows_per_sec'] for r in s):,.0f}; "
      f"ratio per run {[round(r['ratio_to_direct'], 3) for r in s]}, median {st.median(r['ratio_to_direct'] for r in s):.3f}")
o = load('/tmp/streamscore_overhead.jsonl')
print(f"trivial model: stream rows/s per run {[round(r['rows_per_sec']) for r in o]}; median overhead {1e9 / st.median(r['rows_per_sec'] for r in o):.0f} ns/event")
p = load('/tmp/streamscore_p99.jsonl')
print(f"open loop at {p[0]['rate']:,.0f}/s: p99 us per run {[r['latency_us']['p99'] for r in p]}, median {st.median(r['latency_us']['p99'] for r in p):.0f}; "
      f"scoring p50 of a batch {st.median(r['stages_p50_us']['scoring'] for r in p):.0f} us at mean batch {st.median(r['mean_batch'] for r in p):.0f}; lost {sum(r['lost'] for r in p)}")
PY
