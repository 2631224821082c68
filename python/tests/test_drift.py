"""streamscore.Detector against River's golden detections (tests/drift/expected.json, made by
tests/drift/generate.py with River 0.26): every case, value by value and in one call."""

import json
import pathlib

import numpy as np
import pytest

import streamscore

ROOT = pathlib.Path(__file__).resolve().parents[2] / "tests" / "drift"
GOLDEN = json.loads((ROOT / "expected.json").read_text())
STREAMS = {p.stem: [float(x) for x in p.read_text().split()] for p in (ROOT / "streams").glob("*.csv")}
INTS = {"clock", "max_buckets", "min_window_length", "grace_period", "min_instances",
        "window_size", "stat_size", "seed", "warm_start"}


def python_params(params):
    """The golden's parameters as a River user writes them (ints, floats, bools, strings)."""
    out = {}
    for k, v in params.items():
        if v in ("true", "false"):
            out[k] = v == "true"
        elif k in INTS:
            out[k] = int(v)
        else:
            try:
                out[k] = float(v)
            except ValueError:
                out[k] = v
    return out


@pytest.mark.parametrize("case", GOLDEN["cases"], ids=lambda c: f"{c['stream']}-{c['detector']}-{len(c['params'])}")
def test_river_parity(case):
    values = STREAMS[case["stream"]]
    d = streamscore.Detector(case["detector"], **python_params(case["params"]))
    drift, warning = [], []
    for i, x in enumerate(values):
        if d.update(x):
            drift.append(i)
        if d.warning_detected:
            warning.append(i)
    assert (drift, warning) == (case["drift"], case["warning"])
    batched = streamscore.Detector(case["detector"], **python_params(case["params"]))
    got = batched.update_many(np.asarray(values, dtype=np.float64))
    assert got == (case["drift"], case["warning"])
    assert batched.n == len(values)


def test_bad_input_raises_typed_errors():
    with pytest.raises(streamscore.ConfigError):
        streamscore.Detector("adwinn")
    with pytest.raises(streamscore.ConfigError):
        streamscore.Detector("adwin", deltaa=0.1)
    with pytest.raises(streamscore.ConfigError):
        streamscore.Detector("page-hinkley", mode="sideways")
    ddm = streamscore.Detector("ddm")
    with pytest.raises(streamscore.InputError):
        ddm.update(0.5)
    with pytest.raises(streamscore.InputError):
        ddm.update_many([0.0, 1.0, float("nan")])
    assert ddm.n == 2
    assert streamscore.Detector("adwin").update_many([1.0, 2.0]) == ([], [])
