#!/usr/bin/env python3
"""Train the committed golden models and record the training library's own predictions.

Every model under models/golden/<name>/ is made here, with fixed seeds, next to:
  input.csv   the rows to score (header = the model's feature names; an empty field is missing)
  input.npy   the same rows as a 2-D float32 C-order array
  raw.csv     the library's raw margins, one line per row (classes comma-separated)
  pred.csv    the library's transformed predictions, same layout
  meta.json   library, version, objective, classes and how many rows are special

Input rows are the held-out synthetic rows plus adversarial ones: exact split thresholds taken
from the trained model, the neighbouring float32 values on both sides, NaN, +-0, values inside
LightGBM's zero band (|x| <= 1e-35), negative, fractional and unseen categories.

Run:  python3 -m pip install -r models/requirements.txt && python3 models/generate.py

XGBoost 1.x wrote its JSON differently (scalar base_score, no categories in old files); the
`xgb17_*` models come from XGBoost 1.7.6 in its own virtual environment:
  python3 -m venv /tmp/xgb17 && /tmp/xgb17/bin/pip install "xgboost==1.7.6" "numpy<2"
  /tmp/xgb17/bin/python models/generate.py --xgboost-legacy
"""
import json
import os
import shutil
import sys

import numpy as np
import xgboost as xgb

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "golden")
F32 = np.float32


def fmt(v):
    """Shortest text that reads back as the same float32 (empty for NaN)."""
    v = F32(v)
    if np.isnan(v):
        return ""
    return repr(float(v)) if np.isinf(v) else str(v)


def write_rows(path, names, X):
    with open(path, "w") as f:
        f.write(",".join(names) + "\n")
        for row in X:
            f.write(",".join(fmt(v) for v in row) + "\n")


def write_preds(path, P):
    P = np.asarray(P, dtype=np.float64)
    if P.ndim == 1:
        P = P[:, None]
    with open(path, "w") as f:
        for row in P:
            f.write(",".join(repr(float(v)) for v in row) + "\n")


def f32_neighbours(t):
    """float32 values at and around a split threshold given as a double."""
    with np.errstate(over="ignore"):
        lo = F32(t)
    if float(lo) > t:
        lo = np.nextafter(lo, F32(-np.inf))
    with np.errstate(over="ignore"):
        hi = np.nextafter(lo, F32(np.inf))
    return [lo, hi, np.nextafter(lo, F32(-np.inf)), np.nextafter(hi, F32(np.inf))]


def adversarial_rows(rng, base, thresholds, cat_features, n):
    """Rows built around the model's own thresholds, plus missing / zero-band / odd categories."""
    rows = []
    d = base.shape[1]
    specials = [np.nan, 0.0, -0.0, 1e-36, -1e-36, 1e-35, -1e-35, 2e-35]
    for _ in range(n):
        row = base[rng.integers(0, len(base))].copy()
        for j in range(d):
            r = rng.random()
            if j in cat_features:
                if r < 0.1:
                    row[j] = np.nan
                elif r < 0.2:
                    row[j] = rng.choice([-1.0, -0.5, 0.5, 2.7, 1000.0, 64.0, 31.0, 32.0])
                continue
            if r < 0.45 and thresholds.get(j):
                row[j] = rng.choice(f32_neighbours(rng.choice(thresholds[j])))
            elif r < 0.55:
                row[j] = rng.choice(specials)
        rows.append(row)
    return np.asarray(rows, dtype=F32)


def lgb():
    """LightGBM, imported only where used (the XGBoost 1.x environment lacks it)."""
    import lightgbm

    return lightgbm


def lgb_thresholds(booster):
    out = {}

    def walk(node):
        if "split_index" not in node:
            return
        if node.get("decision_type") == "<=":
            out.setdefault(node["split_feature"], []).append(float(node["threshold"]))
        walk(node["left_child"])
        walk(node["right_child"])

    for t in booster.dump_model()["tree_info"]:
        walk(t["tree_structure"])
    return out


def xgb_thresholds(booster):
    out = {}
    model = json.loads(booster.save_raw("json"))
    for t in model["learner"]["gradient_booster"]["model"]["trees"]:
        for i, left in enumerate(t["left_children"]):
            if left != -1 and t.get("split_type", [0] * (i + 1))[i] == 0:
                out.setdefault(t["split_indices"][i], []).append(float(t["split_conditions"][i]))
    return out


def synthetic(seed, n, d, task, n_classes=3, nan_rate=0.05, cat_features=(), n_cats=40):
    """A nonlinear synthetic problem with missing values and optional categorical columns."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(F32)
    for j in cat_features:
        X[:, j] = rng.integers(0, n_cats, size=n).astype(F32)
    signal = np.sin(X[:, 0]) + X[:, 1] * X[:, 2] + 0.5 * np.abs(X[:, 3 % d])
    for j in cat_features:
        signal += ((X[:, j] % 7) - 3) * 0.4
    mask = rng.random(X.shape) < nan_rate
    X[mask] = np.nan
    noise = rng.normal(scale=0.3, size=n)
    if task == "binary":
        y = (signal + noise > np.median(signal)).astype(np.float64)
    elif task == "multiclass":
        q = np.quantile(signal, np.linspace(0, 1, n_classes + 1)[1:-1])
        y = np.digitize(signal + noise, q).astype(np.float64)
    elif task == "positive":
        y = np.exp(0.5 * signal + 0.2 * noise)
    elif task == "count":
        y = rng.poisson(np.exp(0.4 * signal)).astype(np.float64)
    elif task == "unit":
        y = 1.0 / (1.0 + np.exp(-(signal + noise)))
    elif task == "rank":
        y = np.clip(np.round(signal + noise + 1), 0, 4)
    else:
        y = signal + noise
    return X, y


def save(name, fmt_name, library, objective, booster_file, names, X, raw, pred, n_special, extra=None):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    shutil.move(booster_file, os.path.join(d, "model.txt" if fmt_name == "lightgbm" else "model.json"))
    write_rows(os.path.join(d, "input.csv"), names, X)
    np.save(os.path.join(d, "input.npy"), np.ascontiguousarray(X, dtype=F32))
    write_preds(os.path.join(d, "raw.csv"), raw)
    write_preds(os.path.join(d, "pred.csv"), pred)
    meta = {"format": fmt_name, "library": library, "objective": objective,
            "rows": int(len(X)), "adversarial_rows": int(n_special)}
    meta.update(extra or {})
    with open(os.path.join(d, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
        f.write("\n")


def lightgbm_case(name, params, task, rounds=40, d=8, cat_features=(), n=3000, seed=None, group=False):
    seed = seed if seed is not None else sum(map(ord, name))
    X, y = synthetic(seed, n, d, task, cat_features=cat_features,
                     n_classes=params.get("num_class", 3))
    names = [f"f{j}" for j in range(d)]
    n_train = int(n * 0.8)
    p = {"verbose": -1, "seed": seed, "deterministic": True, "num_threads": 1}
    p.update(params)
    lgb_ = lgb()
    ds = lgb_.Dataset(X[:n_train], y[:n_train], feature_name=names,
                     categorical_feature=list(cat_features) or "auto", free_raw_data=False)
    if group:
        ds.set_group([20] * (n_train // 20))
    booster = lgb_.train(p, ds, num_boost_round=rounds)
    rng = np.random.default_rng(seed + 1)
    adv = adversarial_rows(rng, X[n_train:], lgb_thresholds(booster), set(cat_features), 200)
    Xt = np.vstack([X[n_train:n_train + 300], adv]).astype(F32)
    path = os.path.join(OUT, f"{name}.tmp")
    booster.save_model(path)
    raw = booster.predict(Xt, raw_score=True)
    pred = booster.predict(Xt)
    save(name, "lightgbm", f"lightgbm {lgb_.__version__}", p.get("objective"), path, names, Xt,
         raw, pred, len(adv), {"params": {k: v for k, v in p.items() if k != "verbose"}})


def xgboost_case(name, params, task, rounds=40, d=8, cat_features=(), n=3000, group=False):
    seed = sum(map(ord, name))
    X, y = synthetic(seed, n, d, task, cat_features=cat_features,
                     n_classes=params.get("num_class", 3))
    names = [f"f{j}" for j in range(d)]
    types = ["c" if j in cat_features else "q" for j in range(d)]
    n_train = int(n * 0.8)
    p = {"seed": seed, "nthread": 1, "tree_method": "hist"}
    p.update(params)
    dtrain = xgb.DMatrix(X[:n_train], y[:n_train], feature_names=names, feature_types=types,
                         enable_categorical=bool(cat_features))
    if group:
        dtrain.set_group([20] * (n_train // 20))
    booster = xgb.train(p, dtrain, num_boost_round=rounds)
    rng = np.random.default_rng(seed + 1)
    adv = adversarial_rows(rng, X[n_train:], xgb_thresholds(booster), set(cat_features), 200)
    Xt = np.vstack([X[n_train:n_train + 300], adv]).astype(F32)
    dtest = xgb.DMatrix(Xt, feature_names=names, feature_types=types,
                        enable_categorical=bool(cat_features))
    path = os.path.join(OUT, f"{name}.tmp")
    booster.save_model(path + ".json")
    os.rename(path + ".json", path)
    raw = booster.predict(dtest, output_margin=True)
    pred = booster.predict(dtest)
    save(name, "xgboost", f"xgboost {xgb.__version__}", p.get("objective"), path, names, Xt,
         raw, pred, len(adv), {"params": p})


def legacy_main():
    """Models written by XGBoost 1.x (run under XGBoost 1.7.6, see the module docs)."""
    assert xgb.__version__.startswith("1."), f"needs XGBoost 1.x, found {xgb.__version__}"
    for name in os.listdir(OUT):
        if name.startswith("xgb17_"):
            shutil.rmtree(os.path.join(OUT, name))
    xgboost_case("xgb17_binary", {"objective": "binary:logistic", "max_depth": 5}, "binary",
                 rounds=20)
    xgboost_case("xgb17_multiclass", {"objective": "multi:softprob", "num_class": 3,
                                      "max_depth": 4}, "multiclass", rounds=10)
    xgboost_case("xgb17_categorical", {"objective": "reg:squarederror", "max_depth": 4,
                                       "max_cat_to_onehot": 1}, "regression", rounds=15,
                 cat_features=(2,))
    xgboost_case("xgb17_poisson", {"objective": "count:poisson", "max_depth": 4}, "count",
                 rounds=15)
    print(f"wrote the XGBoost {xgb.__version__} models to {OUT}")


def main():
    if "--xgboost-legacy" in sys.argv:
        return legacy_main()
    os.makedirs(OUT, exist_ok=True)
    for name in os.listdir(OUT):
        if not name.startswith("xgb17_"):
            shutil.rmtree(os.path.join(OUT, name))
    # LightGBM: every objective family, missing types, categorical bitsets, deep and 1-leaf trees.
    lightgbm_case("lgb_binary", {"objective": "binary", "num_leaves": 31}, "binary")
    lightgbm_case("lgb_binary_sigmoid", {"objective": "binary", "sigmoid": 0.7}, "binary", rounds=25)
    lightgbm_case("lgb_regression", {"objective": "regression"}, "regression")
    lightgbm_case("lgb_regression_zero_missing",
                  {"objective": "regression", "zero_as_missing": True}, "regression")
    lightgbm_case("lgb_regression_no_missing",
                  {"objective": "regression_l1", "use_missing": False}, "regression", rounds=20)
    lightgbm_case("lgb_regression_sqrt", {"objective": "regression", "reg_sqrt": True}, "positive",
                  rounds=20)
    lightgbm_case("lgb_multiclass", {"objective": "multiclass", "num_class": 3}, "multiclass",
                  rounds=25)
    lightgbm_case("lgb_multiclassova",
                  {"objective": "multiclassova", "num_class": 4, "sigmoid": 1.3}, "multiclass",
                  rounds=20)
    lightgbm_case("lgb_categorical",
                  {"objective": "binary", "max_cat_to_onehot": 4, "cat_smooth": 1,
                   "min_data_per_group": 5, "max_cat_threshold": 64},
                  "binary", cat_features=(2, 5))
    lightgbm_case("lgb_multiclass_categorical",
                  {"objective": "multiclass", "num_class": 3, "min_data_per_group": 5},
                  "multiclass", rounds=15, cat_features=(4,))
    lightgbm_case("lgb_deep", {"objective": "regression", "num_leaves": 400, "max_depth": -1,
                               "min_data_in_leaf": 1, "min_sum_hessian_in_leaf": 0,
                               "max_bin": 1023}, "regression", rounds=5, d=3, n=6000)
    # Trees of 33-256 leaves: the masked algorithm's table lookup by gather.
    lightgbm_case("lgb_wide", {"objective": "binary", "num_leaves": 120, "min_data_in_leaf": 3},
                  "binary", rounds=12, n=6000)
    lightgbm_case("lgb_single_leaf", {"objective": "regression", "min_data_in_leaf": 5000},
                  "regression", rounds=3)
    lightgbm_case("lgb_poisson", {"objective": "poisson"}, "count", rounds=30)
    lightgbm_case("lgb_gamma", {"objective": "gamma"}, "positive", rounds=30)
    lightgbm_case("lgb_tweedie", {"objective": "tweedie", "tweedie_variance_power": 1.4},
                  "positive", rounds=30)
    lightgbm_case("lgb_cross_entropy", {"objective": "cross_entropy"}, "unit", rounds=20)
    lightgbm_case("lgb_cross_entropy_lambda", {"objective": "cross_entropy_lambda"}, "unit",
                  rounds=20)
    lightgbm_case("lgb_lambdarank", {"objective": "lambdarank"}, "rank", rounds=20, group=True)
    lightgbm_case("lgb_rf", {"objective": "binary", "boosting": "rf", "bagging_freq": 1,
                             "bagging_fraction": 0.7, "feature_fraction": 0.8}, "binary",
                  rounds=20)
    # XGBoost: objectives, base_score (3.x array form), categorical partitions and one-hot.
    xgboost_case("xgb_binary", {"objective": "binary:logistic", "max_depth": 6}, "binary")
    xgboost_case("xgb_logitraw", {"objective": "binary:logitraw", "max_depth": 4}, "binary",
                 rounds=20)
    xgboost_case("xgb_hinge", {"objective": "binary:hinge", "max_depth": 4}, "binary", rounds=20)
    xgboost_case("xgb_regression", {"objective": "reg:squarederror", "max_depth": 6},
                 "regression")
    xgboost_case("xgb_reg_logistic", {"objective": "reg:logistic", "max_depth": 4}, "unit",
                 rounds=20)
    xgboost_case("xgb_multiclass", {"objective": "multi:softprob", "num_class": 3,
                                    "max_depth": 5}, "multiclass", rounds=20)
    xgboost_case("xgb_multi_softmax", {"objective": "multi:softmax", "num_class": 3,
                                       "max_depth": 4}, "multiclass", rounds=15)
    xgboost_case("xgb_categorical", {"objective": "binary:logistic", "max_depth": 5,
                                     "max_cat_to_onehot": 1}, "binary", cat_features=(2, 5))
    xgboost_case("xgb_categorical_onehot", {"objective": "reg:squarederror", "max_depth": 4,
                                            "max_cat_to_onehot": 64}, "regression",
                 rounds=20, cat_features=(1,))
    xgboost_case("xgb_deep", {"objective": "reg:squarederror", "max_depth": 0,
                              "grow_policy": "lossguide", "max_leaves": 400,
                              "min_child_weight": 0, "max_bin": 1024}, "regression",
                 rounds=5, d=3, n=6000)
    xgboost_case("xgb_pruned", {"objective": "reg:squarederror", "max_depth": 6, "gamma": 40.0},
                 "regression", rounds=10)
    xgboost_case("xgb_single_leaf", {"objective": "reg:squarederror", "gamma": 1e9},
                 "regression", rounds=3)
    xgboost_case("xgb_poisson", {"objective": "count:poisson", "max_depth": 4}, "count",
                 rounds=30)
    xgboost_case("xgb_gamma", {"objective": "reg:gamma", "max_depth": 4}, "positive", rounds=30)
    xgboost_case("xgb_tweedie", {"objective": "reg:tweedie", "tweedie_variance_power": 1.3,
                                 "max_depth": 4}, "positive", rounds=30)
    xgboost_case("xgb_rank", {"objective": "rank:ndcg", "max_depth": 4}, "rank", rounds=20,
                 group=True)
    xgboost_case("xgb_forest", {"objective": "binary:logistic", "num_parallel_tree": 4,
                                "subsample": 0.7, "colsample_bynode": 0.7, "max_depth": 4},
                 "binary", rounds=5)
    print(f"wrote {len(os.listdir(OUT))} golden models to {OUT}")


if __name__ == "__main__":
    sys.exit(main())
