#!/usr/bin/env python3
"""Our offline feature mode against River on the same events, in one run: outputs compared,
speed side by side.

River (https://riverml.xyz) computes per-key windowed aggregates with
`feature_extraction.Agg(on, by, how=utils.TimeRolling(stats.X, period))`: for each event,
`learn_one` then `transform_one`, one `Agg` per feature. Its windows are (t - period, t], the
current event included, as ours are. The spec here has the 10 windowed aggregates both can
compute (River's time-rolling needs `revert`, which its Min/Max do not have): count, sum,
mean and std over 1 h, 24 h and 7 d.

Ours is timed end to end: `streamscore features` reading the CSV, computing, writing the CSV.

  cargo build --release
  target/peers-venv/bin/pip install river==0.26.1     # or any venv with river
  target/peers-venv/bin/python benches/features/river_compare.py [--events 200000] [--keys 20000]
"""
import argparse
import csv
import datetime as dt
import math
import os
import random
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, "target/release/streamscore")

# (name, op, window) in the model's feature order; River stat and transform per op.
FEATURES = [
    ("n_1h", "count", "1h"), ("sum_1h", "sum", "1h"), ("mean_1h", "mean", "1h"), ("std_1h", "std", "1h"),
    ("n_24h", "count", "24h"), ("sum_24h", "sum", "24h"), ("mean_24h", "mean", "24h"), ("std_24h", "std", "24h"),
    ("n_7d", "count", "7d"), ("mean_7d", "mean", "7d"),
]
PERIOD = {"1h": dt.timedelta(hours=1), "24h": dt.timedelta(hours=24), "7d": dt.timedelta(days=7)}


def spec_text():
    out = ['[events]\nkey = "card"\ntime = "ts"\nnumeric = ["amount"]\n']
    for name, op, window in FEATURES:
        field = "" if op == "count" else 'field = "amount"\n'
        out.append(f'[[feature]]\nname = "{name}"\nop = "{op}"\n{field}window = "{window}"\n')
    return "\n".join(out)


def make_events(path, n, keys, seed):
    rng = random.Random(seed)
    t = 1_700_000_000_000
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["card", "ts", "amount"])
        for _ in range(n):
            t += rng.randrange(0, 2 * 86_400_000 * keys // n + 1)  # ~ keys / 2 events per day per key on average
            w.writerow([rng.randrange(keys), t, round(rng.lognormvariate(3, 1), 2)])


def run_river(path):
    from river import feature_extraction, stats, utils

    class Count(stats.Count):
        def revert(self, x):
            self.n -= 1

    def how(op, window):
        cls = {"count": Count, "sum": stats.Sum, "mean": stats.Mean, "std": stats.Var}[op]
        return utils.TimeRolling(cls, period=PERIOD[window])

    aggs = [feature_extraction.Agg(on="amount", by="card", how=how(op, w)) for _, op, w in FEATURES]
    rows = []
    with open(path) as f:
        events = [(r["card"], int(r["ts"]), float(r["amount"])) for r in csv.DictReader(f)]
    start = time.perf_counter()
    for card, ts, amount in events:
        x = {"card": card, "amount": amount}
        # Naive UTC datetimes: River compares with its own naive initial timestamp.
        t = dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=ts)
        out = []
        for agg, (_, op, _) in zip(aggs, FEATURES):
            agg.learn_one(x, t=t)
            v = next(iter(agg.transform_one(x).values()))
            out.append(math.sqrt(max(v, 0.0)) if op == "std" else v)
        rows.append(out)
    return rows, time.perf_counter() - start


def run_ours(spec_path, path, out_path):
    start = time.perf_counter()
    subprocess.run([BIN, "features", "--spec", spec_path, "--input", path, "--output", out_path],
                   check=True, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    with open(out_path) as f:
        reader = csv.reader(f)
        next(reader)
        rows = [[float(v) if v else math.nan for v in r[2:-1]] for r in reader]
    return rows, seconds


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--keys", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        events, spec, out = (os.path.join(d, n) for n in ("events.csv", "spec.toml", "ours.csv"))
        make_events(events, args.events, args.keys, args.seed)
        with open(spec, "w") as f:
            f.write(spec_text())
        ours, t_ours = run_ours(spec, events, out)
        river, t_river = run_river(events)
    print(f"{args.events} events, {args.keys} keys, {len(FEATURES)} windowed features")
    print(f"{'feature':<10} {'max rel diff':>13}")
    worst = 0.0
    for c, (name, _, _) in enumerate(FEATURES):
        m = 0.0
        for a, b in zip(ours, river):
            x, y = a[c], b[c]
            # River's rolling sums subtract reverted values, so they drift by rounding: the
            # difference is relative to the window's magnitude.
            m = max(m, abs(x - y) / max(abs(y), 1e-9 if y != 0 else 1.0))
        worst = max(worst, m)
        print(f"{name:<10} {m:>13.2e}")
    print(f"ours (streamscore features, CSV in and out): {t_ours:.2f} s = {args.events / t_ours:,.0f} events/s")
    print(f"River {__import__('river').__version__} (Agg + TimeRolling):      {t_river:.2f} s = {args.events / t_river:,.0f} events/s")
    print(f"ratio: {t_river / t_ours:.0f}x; worst relative difference {worst:.1e}")
    # Ours are f32 (6e-8 rounding); River forms rolling sums and variances by adding and
    # reverting in f64, so its std drifts by cancellation: 1e-5 relative bounds both.
    return 0 if worst < 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())
