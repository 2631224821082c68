"""Golden streams and River's detections on them, for tests/drift.rs.

Writes tests/drift/streams/NAME.csv (one value per line) and tests/drift/expected.json: for
each stream, detector and parameter set, the 0-based indices where River 0.26 detected drift
and, for the binary detectors, raised a warning. Streams have known change points: abrupt,
gradual, several, none; Gaussian (ADWIN, Page-Hinkley, KSWIN) and Bernoulli (every detector).

Run with River 0.26.0 (a venv: python3 -m venv target/river-venv &&
target/river-venv/bin/pip install river==0.26.0), from the repository root:
    target/river-venv/bin/python tests/drift/generate.py
"""

import csv
import json
import pathlib

import numpy as np

# River 0.26 subscripts csv.DictReader, which Python 3.12 allows and 3.11 (this machine's)
# does not; the drift detectors do not use it.
if not hasattr(csv.DictReader, "__class_getitem__"):
    csv.DictReader.__class_getitem__ = classmethod(lambda cls, item: cls)

import river  # noqa: E402
from river import drift  # noqa: E402

assert river.__version__ == "0.26.0", river.__version__

HERE = pathlib.Path(__file__).parent
rng = np.random.default_rng(20261203)


def gauss(means, sigmas=None):
    sigmas = sigmas if sigmas is not None else np.ones_like(means)
    return [round(float(x), 6) for x in rng.normal(means, sigmas)]


def bern(ps):
    return [int(x) for x in rng.random(len(ps)) < ps]


ramp = np.concatenate([np.zeros(1000), np.linspace(0, 2, 1000), np.full(1000, 2.0)])
STREAMS = {
    "gauss_abrupt": gauss(np.repeat([0.0, 1.0], 1500)),
    "gauss_gradual": gauss(ramp),
    "gauss_multi": gauss(np.repeat([0.0, 3.0, -1.0, 2.0], 1000)),
    "gauss_variance": gauss(np.zeros(3000), np.repeat([1.0, 3.0], 1500)),
    "gauss_none": gauss(np.zeros(3000)),
    "bern_abrupt": bern(np.repeat([0.1, 0.4], 2500)),
    "bern_gradual": bern(np.concatenate([np.full(2000, 0.1), np.linspace(0.1, 0.5, 1000), np.full(2000, 0.5)])),
    "bern_multi": bern(np.repeat([0.05, 0.3, 0.1, 0.5], 1500)),
    "bern_decrease": bern(np.repeat([0.4, 0.1], 2500)),
    "bern_none": bern(np.full(5000, 0.2)),
}

# Parameter sets by River's names; values as `streamscore drift --set` takes them.
CONFIGS = {
    "adwin": (drift.ADWIN, [{}, {"delta": "0.01", "clock": "1"},
                            {"max_buckets": "3", "min_window_length": "10", "grace_period": "50"}]),
    "page-hinkley": (drift.PageHinkley, [{}, {"threshold": "20", "mode": "up"},
                                         {"threshold": "10", "delta": "0.05", "mode": "down",
                                          "alpha": "0.999", "min_instances": "10"}]),
    "kswin": (drift.KSWIN, [{"seed": "42"}, {"seed": "7", "alpha": "0.01", "window_size": "200", "stat_size": "50"},
                            {"seed": "3", "window_size": "400", "stat_size": "30"}]),
    "ddm": (drift.binary.DDM, [{}, {"warm_start": "100", "warning_threshold": "1.5", "drift_threshold": "2.5"}]),
    "eddm": (drift.binary.EDDM, [{}, {"warm_start": "50", "alpha": "0.9", "beta": "0.8"}]),
    "hddm-a": (drift.binary.HDDMA, [{}, {"two_sided_test": "true"},
                                    {"drift_confidence": "0.01", "warning_confidence": "0.05"}]),
    "hddm-w": (drift.binary.HDDMW, [{}, {"two_sided_test": "true"}, {"lambda_val": "0.1"}]),
}
BINARY = {"ddm", "eddm", "hddm-a", "hddm-w"}
INTS = {"clock", "max_buckets", "min_window_length", "grace_period", "min_instances", "window_size",
        "stat_size", "seed", "warm_start"}


def python_value(name, text):
    if text in ("true", "false"):
        return text == "true"
    if name in INTS:
        return int(text)
    try:
        return float(text)
    except ValueError:
        return text


def detections(cls, params, values):
    d = cls(**{k: python_value(k, v) for k, v in params.items()})
    drifts, warnings = [], []
    for i, x in enumerate(values):
        d.update(x)
        if d.drift_detected:
            drifts.append(i)
        if getattr(d, "warning_detected", False):
            warnings.append(i)
    return drifts, warnings


cases = []
for name, values in STREAMS.items():
    path = HERE / "streams" / f"{name}.csv"
    path.write_text("".join(f"{v}\n" for v in values))
    # The values as the Rust side reads them back from the file.
    values = [float(line) for line in path.read_text().split()]
    for detector, (cls, param_sets) in CONFIGS.items():
        if detector in BINARY and not name.startswith("bern"):
            continue
        for params in param_sets:
            drifts, warnings = detections(cls, params, values)
            cases.append({"stream": name, "detector": detector, "params": params,
                          "drift": drifts, "warning": warnings})

# One case per line, so that a change to River's decisions reads as a diff of the cases it hit.
body = ",\n".join(json.dumps(c) for c in cases)
(HERE / "expected.json").write_text(f'{{"river": "{river.__version__}", "cases": [\n{body}\n]}}\n')
print(f"{len(STREAMS)} streams, {len(cases)} cases, {sum(len(c['drift']) for c in cases)} detections")
