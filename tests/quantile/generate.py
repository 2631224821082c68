"""Golden windowed quantiles from NumPy, for tests/features.rs.

Writes tests/quantile/expected.json: streams of float32 values (one key, one event a second,
some values missing), and for each event and level q the quantile of the non-missing values
of the last `window_s` seconds as NumPy computes it: `np.quantile(values.astype(np.float64), q)`
(the default, method="linear"), rounded to float32; null when the window holds no value.

Run from the repository root with any NumPy >= 1.22 (the `method=` keyword):
    target/py-venv/bin/python tests/quantile/generate.py
"""

import json
import pathlib

import numpy as np

HERE = pathlib.Path(__file__).parent
rng = np.random.default_rng(20261204)
LEVELS = [0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0]
WINDOW_S = 40

streams = []
for name, n in [("uniform", 300), ("ties", 300), ("heavy", 300), ("sparse", 120)]:
    if name == "uniform":
        v = rng.uniform(-50, 50, n)
    elif name == "ties":
        v = rng.integers(0, 5, n).astype(float)
    elif name == "heavy":
        v = rng.standard_cauchy(n) * 10
    else:
        v = rng.normal(0, 1, n)
    v = v.astype(np.float32)
    missing = rng.random(n) < (0.6 if name == "sparse" else 0.05)
    v[missing] = np.nan
    expected = []
    for i in range(n):
        w = v[max(0, i - WINDOW_S + 1): i + 1]
        w = w[~np.isnan(w)].astype(np.float64)
        row = []
        for q in LEVELS:
            if len(w) == 0:
                row.append(None)
            else:
                row.append(float(np.float32(np.quantile(w, q, method="linear"))))
        expected.append(row)
    streams.append({
        "name": name,
        "values": [None if np.isnan(x) else float(x) for x in v],
        "expected": expected,
    })

out = {"numpy": np.__version__, "levels": LEVELS, "window_s": WINDOW_S, "streams": streams}
(HERE / "expected.json").write_text(json.dumps(out) + "\n")
print("wrote", HERE / "expected.json")
