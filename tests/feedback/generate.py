"""Golden delayed-label stream and scikit-learn's metrics on it, for tests/feedback.rs.

Writes tests/feedback/calls.csv, the calls to make in order (kind,id,version,value,at_ms:
`p` a prediction with its probability, `l` a label), and tests/feedback/expected.json: which
labels join (arrived within the TTL, first for their prediction), the counters, and per model
version and hourly window of prediction time, scikit-learn's log_loss, brier_score_loss,
accuracy_score (threshold 0.5), roc_auc_score and calibration_curve (10 uniform bins) over the
joined pairs.

    target/river-venv/bin/pip install scikit-learn==1.9.1   # the drift goldens' venv
    target/river-venv/bin/python tests/feedback/generate.py
"""

import json
import math
import pathlib

import numpy as np
import sklearn
from sklearn.calibration import calibration_curve
from sklearn.metrics import accuracy_score, brier_score_loss, log_loss, roc_auc_score

HERE = pathlib.Path(__file__).parent
rng = np.random.default_rng(20261203)
TTL = 6 * 3_600_000  # 6 hours
WINDOW = 3_600_000
N = 4000

calls = []
# Predictions over 12 hours by two versions; probabilities with ties (rounded to 2 places),
# exact 0 and 1 (log loss clipping), and a signal the labels follow.
times = np.sort(rng.integers(0, 12 * 3_600_000, N))
z = rng.normal(0, 1.5, N)
scores = 1 / (1 + np.exp(-(z + rng.normal(0, 1, N))))
scores = np.where(rng.random(N) < 0.3, np.round(scores, 2), np.round(scores, 5))
scores[rng.choice(N, 20, replace=False)] = 0.0
scores[rng.choice(N, 20, replace=False)] = 1.0
labels = (rng.random(N) < 1 / (1 + np.exp(-z))).astype(int)
versions = np.where(rng.random(N) < 0.7, 1, 2)
# Labels arrive hours later (exponential, mean 2 h): some past the TTL; 5% never.
delays = rng.exponential(2 * 3_600_000, N).astype(int)
for i in range(N):
    calls.append((int(times[i]), 0, "p", i, int(versions[i]), repr(float(scores[i]))))
    if rng.random() < 0.95:
        calls.append((int(times[i] + delays[i]), 1, "l", i, 0, str(labels[i])))
        if rng.random() < 0.02:  # a duplicate, later
            calls.append((int(times[i] + delays[i] + 1000), 1, "l", i, 0, str(labels[i])))
for j in range(50):  # labels for events never predicted
    calls.append((int(rng.integers(0, 18 * 3_600_000)), 1, "l", 10_000_000 + j, 0, "1"))
calls.append((5 * 3_600_000, 1, "l", 3, 0, "nan"))  # refused
calls.sort()

# Which labels join, by the rules the Rust side must follow.
pred = {}
joined = {}
counts = {"predictions": 0, "matched": 0, "unmatched": 0, "duplicates": 0, "invalid": 0}
for at, _, kind, i, version, value in calls:
    if kind == "p":
        pred[i] = (at, version, float(value))
        counts["predictions"] += 1
        continue
    if value == "nan":
        counts["invalid"] += 1
        continue
    if i not in pred or at > pred[i][0] + TTL:
        counts["unmatched"] += 1
    elif i in joined:
        counts["duplicates"] += 1
    else:
        joined[i] = int(value)
        counts["matched"] += 1

windows = []
for version in (1, 2):
    for w in range(12):
        ids = [i for i in joined if pred[i][1] == version and pred[i][0] // WINDOW == w]
        if not ids:
            continue
        y = np.array([joined[i] for i in ids])
        p = np.array([pred[i][2] for i in ids])
        prob_true, prob_pred = calibration_curve(y, p, n_bins=10, strategy="uniform")
        windows.append({
            "version": version, "start_ms": w * WINDOW, "n": len(ids), "positives": int(y.sum()),
            "log_loss": log_loss(y, y_proba=p, labels=[0, 1]),
            "brier": brier_score_loss(y, p, labels=[0, 1]),
            "accuracy": accuracy_score(y, (p >= 0.5).astype(int)),
            "auc": roc_auc_score(y, p) if 0 < y.sum() < len(y) else None,
            "calibration_pred": prob_pred.tolist(), "calibration_true": prob_true.tolist(),
        })

with open(HERE / "calls.csv", "w") as f:
    f.write("kind,id,version,value,at_ms\n")
    for at, _, kind, i, version, value in calls:
        f.write(f"{kind},{i},{version},{value},{at}\n")
(HERE / "expected.json").write_text(json.dumps({
    "sklearn": sklearn.__version__, "ttl_ms": TTL, "window_ms": WINDOW, "counts": counts,
    "windows": windows}, indent=1) + "\n")
print(f"{len(calls)} calls, {counts}, {len(windows)} windows")
