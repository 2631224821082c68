"""Models and rows for the peer comparison (benches/peers/run.py). Deterministic.

Writes into OUT (default target/peers):
  lgb_500x255.txt   LightGBM, 500 trees x 255 leaves, binary objective, on binary.train
  lgb_100x31.txt    LightGBM, 100 trees x 31 leaves, same data
  lgb_1000x15.txt   LightGBM, 1,000 trees x 15 leaves, same data (many small trees)
  lgb_300x63_d6.txt LightGBM, 300 trees x up to 63 leaves, depth at most 6, same data
  lgb_cat_200x63.txt LightGBM, 200 trees x 63 leaves, same data with 8 of its 28 features
                    cut into 64 quantile bins each and declared categorical (heavy
                    categorical use)
  xgb_500_d8.json   XGBoost, 500 trees of depth 8, binary:logistic, same data
  <model>.npy       100,000 float32 rows per model (C order, one column per feature)

Rows for the binary.train models are real rows of LightGBM's example data (binary.train and
binary.test), drawn with replacement. The two real models of ../shared/data/lleaves-models
(airline, NYC_taxi) come without their data: their rows are drawn uniformly within each
feature's range as the model file states it (`feature_infos`: [min:max] for numeric features,
the category list for categorical ones), which is how lleaves' own benchmarks feed them.

Usage: python benches/peers/models.py [OUT]
"""

import os
import re
import shutil
import sys

import lightgbm as lgb
import numpy as np
import xgboost as xgb

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data")
ROWS = 100_000


def binary_data():
    def read(name):
        a = np.loadtxt(os.path.join(SHARED, "lightgbm-examples", name), dtype=np.float64)
        return a[:, 1:], a[:, 0]

    return read("binary.train"), read("binary.test")


def uniform_rows(model_path, rng):
    """Rows uniform within the ranges a LightGBM model file states for its features."""
    infos = None
    with open(model_path) as f:
        for line in f:
            if line.startswith("feature_infos="):
                infos = line.strip().split("=", 1)[1].split(" ")
                break
    cols = []
    for info in infos:
        m = re.fullmatch(r"\[(.*):(.*)\]", info)
        if m:
            lo, hi = float(m.group(1)), float(m.group(2))
            cols.append(rng.uniform(lo, hi, ROWS))
        elif info == "none":
            cols.append(np.zeros(ROWS))
        else:
            cats = np.array([float(c) for c in info.split(":")])
            cols.append(rng.choice(cats, ROWS))
    return np.ascontiguousarray(np.stack(cols, axis=1), dtype=np.float32)


def lgb_params(**shape):
    """LightGBM's binary training settings for every model here, with `shape`'s own."""
    return {
        "objective": "binary",
        "min_data_in_leaf": 5,
        "learning_rate": 0.05,
        "verbose": -1,
        "num_threads": 2,
        "seed": 1,
        "deterministic": True,
        **shape,
    }


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "peers")
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(20261121)
    (x, y), (xt, _) = binary_data()
    pool = np.concatenate([x, xt])
    rows = np.ascontiguousarray(pool[rng.integers(0, len(pool), ROWS)], dtype=np.float32)

    shapes = [
        ("lgb_500x255", 255, 500, -1),
        ("lgb_100x31", 31, 100, -1),
        ("lgb_1000x15", 15, 1000, -1),
        ("lgb_300x63_d6", 63, 300, 6),
    ]
    for name, leaves, trees, depth in shapes:
        path = os.path.join(out, name + ".txt")
        if not os.path.exists(path):
            params = lgb_params(num_leaves=leaves, max_depth=depth)
            booster = lgb.train(params, lgb.Dataset(x, y), num_boost_round=trees)
            booster.save_model(path)
        np.save(os.path.join(out, name + ".npy"), rows)

    # Heavy categorical use: 8 features cut into 64 quantile bins (edges from the training
    # rows), the bin number as a category.
    cat_cols = list(range(0, 28, 4)) + [27]
    edges = {c: np.quantile(x[:, c], np.linspace(0, 1, 65)[1:-1]) for c in cat_cols}

    def categorised(a):
        a = a.copy()
        for c in cat_cols:
            a[:, c] = np.searchsorted(edges[c], a[:, c])
        return a

    path = os.path.join(out, "lgb_cat_200x63.txt")
    if not os.path.exists(path):
        params = lgb_params(num_leaves=63, max_cat_to_onehot=4, cat_smooth=1.0)
        data = lgb.Dataset(categorised(x), y, categorical_feature=cat_cols)
        booster = lgb.train(params, data, num_boost_round=200)
        booster.save_model(path)
    np.save(os.path.join(out, "lgb_cat_200x63.npy"),
            np.ascontiguousarray(categorised(rows.astype(np.float64)), dtype=np.float32))

    path = os.path.join(out, "xgb_500_d8.json")
    if not os.path.exists(path):
        params = {
            "objective": "binary:logistic",
            "max_depth": 8,
            "eta": 0.05,
            "nthread": 2,
            "seed": 1,
            "tree_method": "hist",
        }
        booster = xgb.train(params, xgb.DMatrix(x, y), num_boost_round=500)
        booster.save_model(path)
    np.save(os.path.join(out, "xgb_500_d8.npy"), rows)

    for name in ["airline", "NYC_taxi"]:
        src = os.path.join(SHARED, "lleaves-models", name + ".model.txt")
        shutil.copyfile(src, os.path.join(out, name + ".txt"))
        np.save(os.path.join(out, name + ".npy"), uniform_rows(src, rng))
    print(f"models and rows in {out}")


if __name__ == "__main__":
    main()
