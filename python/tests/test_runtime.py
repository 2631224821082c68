"""The runtime from Python: blocking, ticketed and asyncio submission, sets, overload,
metrics, shutdown; and the feature stage offline (`Features.transform`) equal to the runtime's
online answers bit for bit on the fraud stream."""

import asyncio

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import streamscore as ss

from conftest import ROOT

BINARY = ROOT / "models/golden/lgb_binary"


def rows():
    return np.load(BINARY / "input.npy").astype(np.float32)


def test_score_submit_and_sets_agree_with_predict():
    x = rows()
    want = ss.Model(BINARY / "model.txt").predict(x)
    with ss.Runtime(BINARY / "model.txt") as rt:
        assert rt.fields == [f"f{i}" for i in range(8)] and rt.n_outputs == 1
        assert rt.score(x[0])[0] == want[0]
        assert np.array_equal(rt.score_many(x)[:, 0], want)
        t = rt.try_submit(x[1])
        assert t.wait()[0] == want[1]

        async def many():
            return await asyncio.gather(*[rt.submit(x[i], key=i) for i in range(100)])

        got = asyncio.run(many())
        assert np.array_equal(np.array([g[0] for g in got]), want[:100])
        m = rt.metrics()
        assert m["scored"] >= 2 + len(x) + 100 and m["latency"]["end_to_end"]["count"] > 0
        assert "streamscore_events_total" in rt.prometheus()
    with pytest.raises(ss.Closed):
        rt.score(x[0])


def test_overload_hands_the_event_back():
    x = rows()
    # One event per batch, a queue of one place: submitting is far cheaper than a batch, so
    # the queue fills within a few events.
    rt = ss.Runtime(BINARY / "model.txt", queue_capacity=1, max_batch=1, max_delay_us=0, overload="reject")
    tickets, refused = [], None
    for i in range(200_000):
        try:
            tickets.append(rt.try_submit(x[i % len(x)], key=i))
        except ss.QueueFull as e:
            refused = e
            break
    assert refused is not None and refused.event[1] == len(tickets)
    rt.shutdown()  # drains: every accepted event answered
    assert all(t.wait().shape == (1,) for t in tickets)


def test_bad_events_raise():
    with ss.Runtime(BINARY / "model.txt") as rt:
        with pytest.raises(ss.WidthError):
            rt.score([1.0, 2.0])
        with pytest.raises(ss.InputError):
            rt.score(None)
        with pytest.raises(ss.InputError):
            rt.score(["a"] * 8)
        with pytest.raises(ss.ConfigError):
            ss.Runtime(BINARY / "model.txt", overload="drop")
        with pytest.raises(ss.StreamscoreError):
            ss.Runtime(BINARY / "model.txt", max_batch=0)


FRAUD = ROOT / "examples/fraud"


def test_features_offline_equal_online_bit_for_bit():
    stream = pd.read_csv(FRAUD / "stream.csv")
    f = ss.Features(FRAUD / "spec.toml")
    assert f.key == "card" and f.time == "ts" and f.fields == ["amount", "mcc"]
    offline = f.transform(stream)
    assert offline.shape == (len(stream), len(f.names))
    # The same from the CSV file, from Arrow and from a dict of columns, each from a fresh state.
    for events in [FRAUD / "stream.csv", pa.Table.from_pandas(stream), {c: stream[c].to_numpy() for c in stream}]:
        f.reset()
        assert np.array_equal(f.transform(events), offline, equal_nan=True)
    # Two calls keep each key's state: the same as one.
    f.reset()
    half = len(stream) // 2
    parts = np.vstack([f.transform(stream.iloc[:half]), f.transform(stream.iloc[half:])])
    assert np.array_equal(parts, offline, equal_nan=True)
    # Online: the runtime with the same spec and model, event by event; offline: the model
    # over Features.transform's rows. Same bits.
    model = ss.Model(FRAUD / "model.txt")
    offline_scores = model.predict(offline)
    f.reset()
    raw, keys, times = f._arrays(stream)
    with ss.Runtime(FRAUD / "model.txt", features=FRAUD / "spec.toml", max_delay_us=0) as rt:
        online = np.array([rt.score(raw[i], key=keys[i], timestamp_ms=times[i])[0] for i in range(len(stream))])
    assert np.array_equal(online, offline_scores)
    # And LightGBM's predictions on the features its training script computed.
    expected = pd.read_csv(FRAUD / "expected.csv")
    got = offline_scores[expected["index"].to_numpy()]
    want = expected["prediction"].to_numpy()
    assert (np.abs(got - want) / np.maximum(np.abs(want), 1e-6)).max() <= 1e-5


def test_features_bad_input():
    f = ss.Features(FRAUD / "spec.toml")
    stream = pd.read_csv(FRAUD / "stream.csv").head(10)
    with pytest.raises(ss.InputError, match="mcc"):
        f.transform(stream.drop(columns=["mcc"]))
    with pytest.raises(ss.InputError):
        f.transform(42)
    with pytest.raises(ss.InputError, match="amount"):
        f.transform(stream.assign(amount=[object()] * 10))
    with pytest.raises(ss.ModelError):
        f.transform(ROOT / "no/such.csv")
    with pytest.raises(ss.ConfigError):
        ss.Features(toml="[events]\n")
    # String keys are hashed as the runtime hashes them.
    named = stream.assign(card=stream["card"].astype(str) + "-x")
    assert f.transform(named).shape == (10, len(f.names))


def test_features_event_matches_the_batch_arrays():
    f = ss.Features(FRAUD / "spec.toml")
    stream = pd.read_csv(FRAUD / "stream.csv", dtype=str).head(50)
    raw, keys, times = f._arrays(pd.read_csv(FRAUD / "stream.csv").head(50))
    for i, row in enumerate(stream.to_dict("records")):
        values, key, t = f.event(row)
        assert np.array_equal(values, raw[i], equal_nan=True) and key == keys[i] and t == times[i]
    with pytest.raises(ss.InputError, match="amount"):
        f.event({**stream.iloc[0].to_dict(), "amount": "lots"})
    with pytest.raises(ss.InputError, match="ts"):
        f.event({"card": "1", "amount": "1", "mcc": "fuel"})


def test_the_bytewax_example_scores_what_offline_scores():
    import importlib.util
    spec = importlib.util.spec_from_file_location("fraud_bytewax", ROOT / "examples/python/fraud_bytewax.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    scored = example.score_stream()
    stream = pd.read_csv(FRAUD / "stream.csv")
    assert [i for i, _ in scored] == list(range(len(stream)))
    offline = ss.Model(FRAUD / "model.txt").predict(ss.Features(FRAUD / "spec.toml").transform(stream))
    assert np.array_equal(np.array([s for _, s in scored], dtype=np.float32), offline)


def test_swap_and_rollback_while_serving(tmp_path):
    x = rows()
    with ss.Runtime(BINARY / "model.txt") as rt:
        first = rt.model_version
        before = rt.score(x[0])
        other = next(d for d in sorted((ROOT / "models/golden").iterdir())
                     if d.name.startswith("lgb_") and d != BINARY and (d / "model.txt").exists()
                     and ss.Model(d / "model.txt").n_features == 8 and ss.Model(d / "model.txt").n_outputs == 1)
        new = rt.swap(other / "model.txt")
        assert new != first and rt.model_version == new
        assert rt.score(x[0])[0] == ss.Model(other / "model.txt").predict(x[:1])[0]
        assert [v["version"] for v in rt.versions()][-1] == new
        rt.rollback(first)
        assert rt.model_version == first and rt.score(x[0])[0] == before[0]
        # A half-written file never goes live.
        torn = tmp_path / "torn.txt"
        torn.write_bytes((BINARY / "model.txt").read_bytes()[:2000])
        with pytest.raises(ss.StreamscoreError):
            rt.swap(torn)
        assert rt.model_version == first
