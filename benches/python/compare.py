"""streamscore's Python package against the peers, in one process, on the same numpy rows:
lleaves, Treelite/TL2cgen, LightGBM's and XGBoost's predict, ONNX Runtime (the peers and their
cached builds are benches/peers/run.py's), at batch 1, 1,000 and 100,000 rows, 1 thread.
Prints rows/s, the median time per call, and our ratio to each peer. Ours is measured twice:
on the rows as they are (float32, C order: copied once into our layout) and in Fortran order
(scored in place). Runs alternate: every tool once per round, `--rounds` rounds, medians.

A second table is the per-call overhead at batch 1: Model.predict from Python against the
same backend called from Rust (`streamscore bench --mode direct --batch 1`).

Usage (from benches/python/run.sh, which sets up the venv):
  python benches/python/compare.py [--models lgb_100x31,airline] [--seconds 1] [--rounds 3]
"""

import argparse
import json
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "benches", "peers"))

import run as peers_run  # noqa: E402  (benches/peers/run.py: the peers and their builds)

import streamscore  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="lgb_100x31,airline")
    ap.add_argument("--batches", default="1,1000,100000")
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--skip", default="tl2cgen,onnxruntime",
                    help="peers to leave out (TL2cgen's gcc build and the ONNX conversion of large models take long on 2 cores)")
    args = ap.parse_args()
    os.makedirs(peers_run.CACHE, exist_ok=True)
    skip = set(filter(None, args.skip.split(",")))
    head = f"{'model':<11} {'batch':>6}  {'tool':<26} {'rows/s':>13} {'per call':>10}  {'ours (C) / this':>15}"
    print(head)
    print("-" * len(head))
    overheads = []
    for name in args.models.split(","):
        path = os.path.join(peers_run.DATA, peers_run.MODELS[name])
        x32 = np.load(os.path.join(peers_run.DATA, name + ".npy"))
        x64 = x32.astype(np.float64)
        xf = np.asfortranarray(x32)
        tools = peers_run.peers(name, path, not path.endswith(".json"), 1, skip)
        model = streamscore.Model(path, threads=1)
        ours = [("streamscore (f32, C order)", lambda x: model.predict(x), x32),
                ("streamscore (f32, F order)", lambda x: model.predict(x), xf)]
        every = [(t, p, x32 if t in ("onnxruntime", "xgboost") else x64) for t, _, p in tools] + ours
        for batch in [int(b) for b in args.batches.split(",")]:
            runs = {t: [] for t, _, _ in every}
            for _ in range(args.rounds):
                for tool, predict, x in every:
                    if tool.endswith("F order)"):
                        # Fortran-order slices of the Fortran array stay Fortran-contiguous
                        # only as whole-row blocks: take them from a per-batch copy.
                        xs = [np.asfortranarray(x32[i:i + batch]) for i in range(0, max(len(x32) - batch, 0) + 1, batch)][:64]
                        runs[tool].append(peers_run.measure_slices(predict, xs, args.seconds))
                    else:
                        runs[tool].append(peers_run.measure(predict, x, batch, args.seconds))
            med = {t: (float(np.median([r[0] for r in v])), float(np.median([r[1] for r in v]))) for t, v in runs.items()}
            mine = med["streamscore (f32, C order)"][0]
            for tool, (rps, lat) in med.items():
                ratio = "" if tool.startswith("streamscore (f32, C") else f"{mine / rps:.2f}x"
                print(f"{name:<11} {batch:>6}  {tool:<26} {rps:>13,.0f} {lat * 1e6:>8.2f}us  {ratio:>15}")
            print(flush=True)
        # Batch 1 per-call overhead: Python against Rust, same backend, same rows.
        rust = rust_direct(path, os.path.join(peers_run.DATA, name + ".npy"), args.seconds)
        py = float(np.median([peers_run.measure(lambda x: model.predict(x), x32, 1, args.seconds)[1] for _ in range(args.rounds)]))
        overheads.append((name, py, rust))
    print(f"{'model':<11} {'Python predict, batch 1':>24} {'Rust direct, batch 1':>21} {'overhead':>9}")
    for name, py, rust in overheads:
        print(f"{name:<11} {py * 1e6:>22.2f}us {rust * 1e6:>19.2f}us {(py - rust) * 1e6:>7.2f}us")


def rust_direct(model, rows, seconds):
    """The median time of one batch-1 call of the same backend from Rust."""
    cmd = [os.path.join(ROOT, "target/release/streamscore"), "bench", "--model", model, "--input", rows,
           "--mode", "direct", "--batch", "1", "--cpu-threads", "1", "--duration", str(seconds), "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    d = [json.loads(line) for line in out.splitlines() if line.startswith("{")][-1]
    return d["latency_us"]["p50"] * 1e-6


if __name__ == "__main__":
    main()
