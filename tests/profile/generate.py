"""Golden training and live columns, and NumPy's and SciPy's view of them, for tests/profile.rs.

Writes tests/profile/train.csv and tests/profile/live.csv (columns: a normal, a skewed and
tied one, a binary one, a column with missing values; the live rows drift in the first two)
and tests/profile/expected.json: per column, the reference grid (np.percentile at 0, 5, ..., 100,
distinct values), the bin counts of both (np.searchsorted(edges, x, side="right")), and
between them the PSI (shares floored at 1e-4), scipy.spatial.distance.jensenshannon and the
largest gap of the cumulative shares.

    target/river-venv/bin/python tests/profile/generate.py
"""

import json
import pathlib

import numpy as np
import scipy
from scipy.spatial.distance import jensenshannon

HERE = pathlib.Path(__file__).parent
rng = np.random.default_rng(20261203)


def columns(n, shift):
    normal = rng.normal(shift, 1.0, n)
    skewed = np.round(rng.lognormal(0.0 + shift / 2, 0.8, n), 1)
    binary = (rng.random(n) < 0.3).astype(float)
    gappy = rng.normal(5.0, 2.0, n)
    gappy[rng.random(n) < 0.1] = np.nan
    return np.column_stack([normal, skewed, binary, gappy]).astype(np.float32)


names = ["normal", "skewed", "binary", "gappy"]
train, live = columns(2000, 0.0), columns(800, 0.8)
for name, data in (("train", train), ("live", live)):
    with open(HERE / f"{name}.csv", "w") as f:
        f.write(",".join(names) + "\n")
        for row in data:
            f.write(",".join("" if np.isnan(v) else repr(float(v)) for v in row) + "\n")

expected = []
for j, name in enumerate(names):
    t = train[:, j].astype(np.float64)
    t = t[~np.isnan(t)]
    l = live[:, j].astype(np.float64)
    l = l[~np.isnan(l)]
    edges = np.unique(np.percentile(t, np.arange(0, 101, 5)))
    ref = np.bincount(np.searchsorted(edges, t, side="right"), minlength=len(edges) + 1)
    win = np.bincount(np.searchsorted(edges, l, side="right"), minlength=len(edges) + 1)
    e, a = ref / ref.sum(), win / win.sum()
    ef, af = np.maximum(e, 1e-4), np.maximum(a, 1e-4)
    expected.append({
        "name": name, "edges": edges.tolist(), "reference": ref.tolist(), "live": win.tolist(),
        "psi": float(np.sum((af - ef) * np.log(af / ef))),
        "js": float(jensenshannon(e, a)),
        "ks": float(np.max(np.abs(np.cumsum(e) - np.cumsum(a)))),
        "mean": float(np.mean(l)), "variance": float(np.var(l, ddof=1)),
        "missing": int(np.isnan(live[:, j]).sum()),
    })
(HERE / "expected.json").write_text(json.dumps({"scipy": scipy.__version__, "columns": expected}, indent=1) + "\n")
print({c["name"]: round(c["psi"], 3) for c in expected})
