#!/usr/bin/env python3
"""The fraud example's data and model, reproducibly (seeded):

1. generates a transaction stream (examples/fraud/stream.csv, about 16,000 events): 300 cards
   with their own spending habits over 30 days; 20% of the cards are compromised mid-stream and
   then see a burst of large travel/online/atm transactions (label 1);
2. builds the point-in-time training set with `streamscore features --spec
   examples/fraud/spec.toml --labels`: each label (card, time, label; written to
   target/fraud/labels.csv, as a team's label store would hand them over) gets the features
   the online stage computed for the card's latest transaction at or before the label's time
   (the same code the runtime runs online; the labelled transaction itself here);
3. trains LightGBM on the first 22 days' labels, and writes examples/fraud/model.txt;
4. writes LightGBM's own predictions for the last 8 days (held out), computed on the offline
   features, as examples/fraud/expected.csv: examples/fraud.rs replays the whole stream
   online and checks its scores for those days equal them.

  cargo build --release
  target/peers-venv/bin/python examples/fraud/train.py     # numpy, lightgbm (benches/peers)
"""
import csv
import os
import random
import subprocess

import lightgbm as lgb
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.join(ROOT, "examples", "fraud")
OUT = os.path.join(ROOT, "target", "fraud")
MCC = ["grocery", "fuel", "restaurant", "travel", "online", "atm"]
DAY = 86_400_000
START = 1_700_000_000_000


def generate(rng):
    events = []
    for card in range(300):
        habit = rng.lognormvariate(3.0, 0.6)
        rate = rng.uniform(0.5, 3.0)  # transactions per day
        favourite = rng.choices(MCC[:3], k=2)
        t = START + rng.randrange(DAY)
        compromised = START + rng.randrange(5 * DAY, 29 * DAY) if rng.random() < 0.2 else None
        while t < START + 30 * DAY:
            if compromised is not None and compromised <= t < compromised + DAY // 4:
                for _ in range(rng.randrange(3, 9)):
                    t += rng.randrange(60_000, 20 * 60_000)
                    events.append((card, t, round(habit * rng.uniform(3, 12), 2), rng.choice(MCC[3:]), 1))
                compromised = None
            t += int(rng.expovariate(rate) * DAY) + 1
            mcc = rng.choice(favourite) if rng.random() < 0.8 else rng.choice(MCC)
            events.append((card, t, round(habit * rng.lognormvariate(0, 0.5), 2), mcc, 0))
    events.sort(key=lambda e: e[1])
    return events


def main():
    rng = random.Random(2026)
    os.makedirs(OUT, exist_ok=True)
    events = generate(rng)
    raw = os.path.join(HERE, "stream.csv")
    with open(raw, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["card", "ts", "amount", "mcc", "label"])
        w.writerows(events)
    labels = os.path.join(OUT, "labels.csv")
    with open(labels, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["card", "ts", "label"])
        w.writerows((e[0], e[1], e[4]) for e in events)
    feats = os.path.join(OUT, "training_set.csv")
    subprocess.run([os.path.join(ROOT, "target/release/streamscore"), "features",
                    "--spec", os.path.join(HERE, "spec.toml"), "--input", raw,
                    "--labels", labels, "--output", feats], check=True)
    with open(feats) as f:
        reader = csv.reader(f)
        header = next(reader)
        names = header[3:-2]
        rows = list(reader)
    # Every label found its own transaction (no two of a card share a millisecond).
    assert all(r[-1] == "" and r[-2] == r[1] for r in rows)
    x = np.array([[float(v) if v else np.nan for v in r[3:-2]] for r in rows], dtype=np.float64)
    y = np.array([int(r[2]) for r in rows])
    times = np.array([int(r[1]) for r in rows])
    train = times < START + 22 * DAY
    model = lgb.train(
        {"objective": "binary", "num_leaves": 15, "learning_rate": 0.1, "min_data_in_leaf": 20,
         "verbose": -1, "seed": 1, "deterministic": True, "num_threads": 1},
        lgb.Dataset(x[train], y[train], feature_name=names),
        num_boost_round=60,
    )
    model.save_model(os.path.join(HERE, "model.txt"))
    test = ~train
    pred = model.predict(x[test])
    with open(os.path.join(HERE, "expected.csv"), "w") as f:
        f.write("index,prediction\n")
        f.write("".join(f"{i},{float(p)!r}\n" for i, p in zip(np.flatnonzero(test), pred)))
    print(f"{len(events)} events ({int(y.sum())} fraudulent), {int(train.sum())} for training; "
          f"held out {int(test.sum())}, of which {int(y[test].sum())} fraudulent")


if __name__ == "__main__":
    main()
