#!/usr/bin/env bash
# HTTP throughput and latency of `streamscore serve` on loopback: batch 1 per request, JSON
# tensors, wrk (Debian's) as the load generator, C concurrent connections for D seconds each,
# runs alternating 1 and 8 connections. Prints wrk's latency distribution and the runtime's own
# stage split (/metrics) after each run.
#   benches/serve/run.sh [MODEL] [SECONDS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
MODEL=${1:-models/golden/lgb_binary/model.txt}
SECS=${2:-10}
ROUNDS=${3:-3}
command -v wrk >/dev/null || { apt-get update -q && apt-get install -y -q wrk; }
BIN=target/release/streamscore
[ -x "$BIN" ] || cargo build --release
WIDTH=$("$BIN" inspect --model "$MODEL" | sed -n 's/^features: //p')
export WIDTH
for round in $(seq "$ROUNDS"); do
  for conns in 1 8; do
    out=$(mktemp)
    "$BIN" serve --model "$MODEL" --http 127.0.0.1:0 >"$out" 2>/dev/null &
    pid=$!
    for _ in $(seq 100); do grep -q listening "$out" && break; sleep 0.05; done
    addr=$(sed -n 's/listening on //p' "$out")
    echo "== round $round, $conns connections, batch 1, $MODEL"
    wrk -t 1 -c "$conns" -d "${SECS}s" --latency -s benches/serve/infer.lua \
      "$addr/v2/models/model/infer" | grep -E "Requests/sec|Latency|50%|75%|90%|99%|requests in|Non-2xx"
    curl -s "$addr/metrics" | grep -E '^streamscore_(latency_seconds|batch_rows)' | grep -E 'quantile="0.(5|99)"|_sum|_count' | head -24 || true
    kill -TERM "$pid"; wait "$pid" || true
    rm -f "$out"
  done
done
