#!/usr/bin/env python3
"""Our dense CPU path against ONNX Runtime on the same .onnx file, side by side in one run.

Runs `streamscore bench --mode direct --json` with `--backend cpu` and `--backend onnx`
(ONNX Runtime 1.31 through `ort`, 1 intra-op thread) on the same rows, interleaved per
batch size and repeated, and prints medians of rows/s and of the per-call p50, the ratio
ours/ONNX Runtime, and our GFLOP/s (2 flops per multiply-add).

  cargo build --release && scripts/onnxruntime.sh
  python3 benches/onnx/compare.py [--model models/onnx/mlp_32_256_256_1/model.onnx]
      [--batches 1,64,1024,65536] [--repeats 3] [--seconds 2] [--peak-gflops N]

`--peak-gflops` is the core's FMA peak, to print our share of it (on Zen 5 with two 512-bit
FMA pipes: 64 flops/cycle x the clock).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, "target/release/streamscore")


def bench(model, backend, batch, seconds, rows):
    cmd = [BIN, "bench", "--model", model, "--backend", backend, "--mode", "direct", "--json",
           "--batch", str(batch), "--duration", str(seconds), "--rows", str(rows)]
    env = dict(os.environ)
    env.setdefault("ORT_DYLIB_PATH", os.path.join(ROOT, "target/onnxruntime/libonnxruntime.so.1.31.1"))
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(ROOT, "models/onnx/mlp_32_256_256_1/model.onnx"))
    ap.add_argument("--batches", default="1,64,1024,65536")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--macs", type=int, default=None, help="multiply-adds per row (default: from the bench header)")
    ap.add_argument("--peak-gflops", type=float, default=None)
    args = ap.parse_args()
    header = subprocess.run([BIN, "bench", "--model", args.model, "--backend", "cpu", "--mode", "direct",
                             "--duration", "0.01", "--rows", "16"], capture_output=True, text=True).stderr
    macs = args.macs
    if macs is None and "multiply-adds per row" in header:
        macs = int(header.split(" multiply-adds per row")[0].split(", ")[-1])
    print(f"model {os.path.relpath(args.model, ROOT)}; {macs} multiply-adds per row; medians of {args.repeats} runs")
    print(f"{'batch':>6} {'ours rows/s':>12} {'ORT rows/s':>12} {'ratio':>6} {'ours p50 us':>11} {'ORT p50 us':>10} {'ours GFLOP/s':>12} {'ORT GFLOP/s':>11}")
    for batch in [int(b) for b in args.batches.split(",")]:
        rows = max(batch, 65536)
        runs = {"cpu": [], "onnx": []}
        for _ in range(args.repeats):
            for backend in ("cpu", "onnx"):
                runs[backend].append(bench(args.model, backend, batch, args.seconds, rows))
        med = {b: (statistics.median(r["rows_per_sec"] for r in v), statistics.median(r["latency_us"]["p50"] for r in v))
               for b, v in runs.items()}
        ours, ort = med["cpu"], med["onnx"]
        gf = lambda r: 2 * macs * r / 1e9 if macs else float("nan")
        line = (f"{batch:>6} {ours[0]:>12.0f} {ort[0]:>12.0f} {ours[0] / ort[0]:>5.2f}x {ours[1]:>11.1f} {ort[1]:>10.1f}"
                f" {gf(ours[0]):>12.1f} {gf(ort[0]):>11.1f}")
        if args.peak_gflops:
            line += f"  ({100 * gf(ours[0]) / args.peak_gflops:.0f}% / {100 * gf(ort[0]) / args.peak_gflops:.0f}% of peak)"
        print(line, flush=True)


if __name__ == "__main__":
    sys.exit(main())
