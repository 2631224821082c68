#!/usr/bin/env bash
# Triton's own load tool against `streamscore serve`: perf_analyzer from tritonclient 2.48's
# wheel (the test venv, scripts/python.sh), which needs libb64 (Debian's libb64-0d) and
# libcudart.so.12 (PyPI's nvidia-cuda-runtime-cu12, only loaded; no GPU is used) on this
# glibc 2.36 machine. Batch 1, HTTP, concurrency 1 and 8.
#   benches/serve/perf_analyzer.sh [MODEL]
set -euo pipefail
cd "$(dirname "$0")/../.."
MODEL=${1:-models/golden/lgb_binary/model.txt}
scripts/python.sh
[ -e /usr/lib/x86_64-linux-gnu/libb64.so.0d ] || { apt-get update -q && apt-get install -y -q libb64-0d; }
[ -d target/pa-venv ] || { python3 -m venv target/pa-venv && target/pa-venv/bin/pip install -q nvidia-cuda-runtime-cu12; }
export LD_LIBRARY_PATH=$(echo target/pa-venv/lib/python3*/site-packages/nvidia/cuda_runtime/lib)
BIN=target/release/streamscore
[ -x "$BIN" ] || cargo build --release
out=$(mktemp)
"$BIN" serve --model "$MODEL" --http 127.0.0.1:0 >"$out" 2>/dev/null &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; rm -f "$out"' EXIT
for _ in $(seq 100); do grep -q listening "$out" && break; sleep 0.05; done
addr=$(sed -n 's#listening on http://##p' "$out")
target/py-venv/bin/perf_analyzer -m model -u "$addr" -i http --concurrency-range 1:8:7 \
  --measurement-interval 4000 -s 20
