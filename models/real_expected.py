#!/usr/bin/env python3
"""Expected outputs for the real LightGBM models in ../shared/data/lleaves-models/.

The models themselves stay in ../shared (not copied here). For each one this script writes,
under models/real/<name>/, rows built from the model's own feature ranges, split thresholds
(and the float32 values right around them), categories (seen, unseen, negative, fractional)
and missing values, plus LightGBM's own raw and transformed predictions for them:
  input.csv, input.npy, raw.csv, pred.csv, meta.json   (same layout as models/golden/)

Run:  python3 -m pip install -r models/requirements.txt && python3 models/real_expected.py
"""
import json
import os
import shutil
import sys

import lightgbm as lgb
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from generate import F32, f32_neighbours, lgb_thresholds, write_preds, write_rows  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "data", "lleaves-models"))
OUT = os.path.join(HERE, "real")
MODELS = {"airline": "airline.model.txt", "NYC_taxi": "NYC_taxi.model.txt"}
ROWS = 3000


def feature_infos(path):
    with open(path) as f:
        for line in f:
            if line.startswith("feature_infos="):
                return line.strip().split("=", 1)[1].split(" ")
    raise ValueError(f"{path}: no feature_infos line")


def rows_for(booster, infos, rng):
    thresholds = lgb_thresholds(booster)
    d = len(infos)
    X = np.empty((ROWS, d), dtype=F32)
    for j, info in enumerate(infos):
        if info.startswith("["):  # numerical: [min:max]
            lo, hi = (float(v) for v in info[1:-1].split(":"))
            col = rng.uniform(lo, hi, ROWS).astype(F32)
            picks = rng.random(ROWS)
            if thresholds.get(j):
                near = [rng.choice(f32_neighbours(rng.choice(thresholds[j]))) for _ in range(ROWS)]
                col = np.where(picks < 0.45, np.asarray(near, dtype=F32), col)
            specials = rng.choice(np.array([0.0, -0.0, 1e-36, -1e-36, lo, hi], dtype=F32), ROWS)
            col = np.where((picks >= 0.45) & (picks < 0.55), specials, col)
        elif info == "none":  # a feature never split on
            col = rng.normal(size=ROWS).astype(F32)
        else:  # categorical: the categories seen in training, colon-separated
            cats = np.array([int(c) for c in info.split(":")], dtype=np.int64)
            col = rng.choice(cats, ROWS).astype(F32)
            odd = rng.choice(np.array([-1.0, -0.5, 0.5, 3.7, cats.max() + 1, 1000.0, 31, 32, 33], dtype=F32), ROWS)
            col = np.where(rng.random(ROWS) < 0.15, odd, col)
        col[rng.random(ROWS) < 0.08] = np.nan
        X[:, j] = col
    return X


def main():
    if not os.path.isdir(SHARED):
        print(f"skip: {SHARED} not found", file=sys.stderr)
        return 1
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    for name, file in MODELS.items():
        path = os.path.join(SHARED, file)
        booster = lgb.Booster(model_file=path)
        rng = np.random.default_rng(sum(map(ord, name)))
        X = rows_for(booster, feature_infos(path), rng)
        d = os.path.join(OUT, name)
        os.makedirs(d)
        write_rows(os.path.join(d, "input.csv"), booster.feature_name(), X)
        np.save(os.path.join(d, "input.npy"), X)
        write_preds(os.path.join(d, "raw.csv"), booster.predict(X, raw_score=True))
        write_preds(os.path.join(d, "pred.csv"), booster.predict(X))
        meta = {"format": "lightgbm", "library": f"lightgbm {lgb.__version__}",
                "model": f"../shared/data/lleaves-models/{file}", "rows": ROWS}
        with open(os.path.join(d, "meta.json"), "w") as f:
            json.dump(meta, f, indent=1, sort_keys=True)
            f.write("\n")
    print(f"wrote expected outputs for {len(MODELS)} real models to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
