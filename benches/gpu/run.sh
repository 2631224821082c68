#!/usr/bin/env bash
# GPU against our own CPU path on the same machine: the 500x255 Higgs-style model
# (benches/peers/models.py, trained on LightGBM's binary.train), NYC_taxi and airline (lleaves'
# real models), at batch 1,000, 65,536 and 1,048,576 rows, direct mode. Prints a markdown table
# with the GPU/CPU ratio and the GPU's upload / compute / readback split, to paste into
# benches/gpu/results.md with the machine's name.
#
#   benches/gpu/run.sh [STREAMSCORE_BINARY] [MODELS_DIR] [SECONDS]
#
# Defaults: target/release/streamscore, target/peers (made by benches/peers/models.py), 3 s.
# On a machine without a toolchain (the lent GPU machine), carry a release binary built
# elsewhere and the model files. Needs a hardware adapter: without one `--backend gpu` fails
# (pass GPU_FLAGS=--gpu-software to try it on lavapipe; those timings mean nothing).
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${1:-target/release/streamscore}
models=${2:-target/peers}
seconds=${3:-3}
shared=../shared/data/lleaves-models
cpu_threads=${CPU_THREADS:-$(nproc)}
export NODEVICE_SELECT=1
out=$(mktemp)
for spec in "lgb_500x255:$models/lgb_500x255.txt" "NYC_taxi:$shared/NYC_taxi.model.txt" \
            "airline:$shared/airline.model.txt"; do
  name=${spec%%:*}
  path=${spec#*:}
  [ -f "$path" ] || { echo "missing $path" >&2; continue; }
  for batch in 1000 65536 1048576; do
    rows=$(( batch > 100000 ? batch : 100000 ))
    common=(bench --model "$path" --mode direct --batch "$batch" --rows "$rows" --duration "$seconds" --json)
    # shellcheck disable=SC2086
    "$bin" "${common[@]}" --backend gpu ${GPU_FLAGS:-} | sed "s/^/$name gpu /" >>"$out"
    "$bin" "${common[@]}" --backend cpu --cpu-threads "$cpu_threads" | sed "s/^/$name cpu /" >>"$out"
  done
done
python3 - "$out" "$cpu_threads" <<'PY'
import json, sys
rows, stages = {}, {}
for line in open(sys.argv[1]):
    name, backend, text = line.split(" ", 2)
    v = json.loads(text)
    if "gpu_stages_us" in v:
        s = v["gpu_stages_us"]
        stages[(name, s["batch"])] = s
    else:
        rows[(name, v["batch"], backend)] = v["rows_per_sec"]
print(f"| model | batch | GPU rows/s | CPU rows/s ({sys.argv[2]} threads) | GPU/CPU | strategy | upload / compute / readback |")
print("|---|---|---|---|---|---|---|")
for (name, batch, backend), gpu in rows.items():
    if backend != "gpu":
        continue
    cpu = rows.get((name, batch, "cpu"), float("nan"))
    s = stages.get((name, batch), {})
    total = sum(s.get(k, 0) for k in ("upload", "compute", "readback")) or float("nan")
    split = " / ".join(f"{100 * s.get(k, 0) / total:.0f}%" for k in ("upload", "compute", "readback"))
    print(f"| {name} | {batch} | {gpu:,.0f} | {cpu:,.0f} | {gpu / cpu:.2f}x | {s.get('strategy', '-')} | {split} |")
PY
rm -f "$out"
