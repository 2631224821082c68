"""Our 2-thread throughput over our 1-thread throughput, at 100,000-row batches, measured as
pairs that alternate (1 thread, then 2) so that a slow spell of a shared machine falls on
both sides of a pair; prints every pair's ratio and the median, by mean rows/s and by the
median batch time (p50), per model. Same models and rows as run.py (benches/peers/run.sh
makes them; build first: cargo build --release).

Usage: python benches/peers/threads.py [--pairs 5] [--seconds 3] [--models NYC_taxi,...]
"""

import argparse
import os
import statistics
import subprocess

from run import BIN, DATA, MODELS


def measure(model, rows, threads, seconds):
    """(rows/s, p50 batch time in us) of one `streamscore bench` run."""
    out = subprocess.run(
        [BIN, "bench", "--model", model, "--input", rows, "--mode", "direct", "--batch",
         "100000", "--backend", "cpu", "--duration", str(seconds), "--cpu-threads",
         str(threads)],
        check=True, capture_output=True, text=True)
    line = next(x for x in (out.stdout + out.stderr).splitlines() if x.startswith("direct"))
    fields = line.split()
    return float(fields[5]), float(fields[6])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--models", default=",".join(MODELS))
    args = ap.parse_args()
    for name in args.models.split(","):
        model = os.path.join(DATA, MODELS[name])
        rows = os.path.join(DATA, name + ".npy")
        by_rate, by_p50 = [], []
        for _ in range(args.pairs):
            one = measure(model, rows, 1, args.seconds)
            two = measure(model, rows, 2, args.seconds)
            by_rate.append(two[0] / one[0])
            by_p50.append(one[1] / two[1])
        show = " ".join(f"{r:.2f}" for r in by_rate)
        show_p50 = " ".join(f"{r:.2f}" for r in by_p50)
        print(f"{name:12} rows/s {show}  median {statistics.median(by_rate):.2f}x | "
              f"p50 {show_p50}  median {statistics.median(by_p50):.2f}x", flush=True)


if __name__ == "__main__":
    main()
