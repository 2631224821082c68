"""Model.predict from Python: every golden model against its training library's predictions
(LightGBM, XGBoost), bit-identical to the Rust command line; numpy in both orders (Fortran
order scored in place), pandas, Arrow; bad input as exceptions."""

import csv
import subprocess

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import streamscore as ss

from conftest import ROOT

GOLDEN = sorted(p for p in (ROOT / "models/golden").iterdir() if (p / "pred.csv").exists())
REL_TOL = 1e-6


def model_file(d):
    return next(d / n for n in ("model.txt", "model.json") if (d / n).exists())


def library(d, name):
    return np.loadtxt(d / name, delimiter=",", dtype=np.float64, ndmin=2)


def close(got, want, what):
    got = np.asarray(got, dtype=np.float64).reshape(want.shape)
    err = np.abs(got - want) / np.where(want == 0, 1.0, np.abs(want))
    assert err.max() <= REL_TOL, f"{what}: max relative error {err.max():.3g}"


@pytest.mark.parametrize("d", GOLDEN, ids=[d.name for d in GOLDEN])
def test_golden_models_match_the_library_and_rust(d, cli):
    m = ss.Model(model_file(d))
    x = np.load(d / "input.npy").astype(np.float32)
    assert m.n_features == x.shape[1] and len(m.feature_names) == x.shape[1]
    pred, raw = library(d, "pred.csv"), library(d, "raw.csv")
    got = m.predict(x)
    assert got.dtype == np.float32
    assert got.shape == ((len(x),) if pred.shape[1] == 1 else (len(x), pred.shape[1]))
    close(got, pred, f"{d.name} predict")
    close(m.predict(x, raw=True), raw, f"{d.name} raw")
    # Fortran order (in place) and C order (copied) give the same bits.
    assert np.array_equal(m.predict(np.asfortranarray(x)), got, equal_nan=True)
    # The Rust command line's answers, bit for bit (it prints each f32's shortest round trip).
    out = subprocess.run([cli, "score", "--model", str(model_file(d)), "--input", str(d / "input.npy")],
                         check=True, capture_output=True, text=True).stdout
    rust = np.array([[np.float32(v) for v in line.split(",")] for line in out.splitlines()], dtype=np.float32)
    assert np.array_equal(got.reshape(rust.shape), rust, equal_nan=True), d.name


def lgb():
    d = ROOT / "models/golden/lgb_binary"
    x = np.load(d / "input.npy").astype(np.float32)
    return ss.Model(d / "model.txt"), x


def test_fortran_order_is_scored_in_place_and_c_order_is_not():
    m, x = lgb()
    f = np.asfortranarray(x)
    m.predict(f)
    assert m._m._last_in_place == f.ctypes.data
    c = np.ascontiguousarray(x)
    m.predict(c)
    assert m._m._last_in_place == 0
    # float64 is cast (a copy) keeping its order: still scored in place after the cast.
    assert np.array_equal(m.predict(f.astype(np.float64)), m.predict(f))


def test_properties():
    m, _ = lgb()
    assert m.objective.startswith("binary")
    assert m.n_outputs == 1 and m.n_classes == 1
    assert isinstance(m.version, int) and len(m.sha256) == 64
    assert m.backend.startswith("cpu")
    mc = ss.Model(ROOT / "models/golden/lgb_multiclass/model.txt")
    assert mc.n_classes == 3
    assert ss.version()


def test_pandas_and_arrow_inputs():
    m, x = lgb()
    want = m.predict(x)
    df = pd.DataFrame(x, columns=m.feature_names)
    assert np.array_equal(m.predict(df), want)
    # Columns are matched by name, not position; extra columns are ignored.
    shuffled = df[m.feature_names[::-1]].assign(extra="x")
    assert np.array_equal(m.predict(shuffled), want)
    t = pa.Table.from_pandas(df)
    assert np.array_equal(m.predict(t), want)
    assert np.array_equal(m.predict(t.to_batches()[0]), want)
    # Missing values: NaN in numpy and pandas, null in Arrow, the same answer.
    xm = x.copy()
    xm[::3, 2] = np.nan
    dm = pd.DataFrame(xm, columns=m.feature_names)
    tm = pa.Table.from_pandas(dm)
    assert np.array_equal(m.predict(tm), m.predict(xm), equal_nan=True)


def test_bad_input_raises():
    m, x = lgb()
    with pytest.raises(ss.WidthError, match="8"):
        m.predict(np.ascontiguousarray(x[:, :3]))
    for bad in [x.astype(np.float16), x.astype(object), np.array([["a"] * 8])]:
        with pytest.raises(ss.InputError, match="dtype"):
            m.predict(bad)
    with pytest.raises(ss.InputError, match="non-contiguous"):
        m.predict(x[::2])
    with pytest.raises(ss.InputError, match="None"):
        m.predict(None)
    with pytest.raises(ss.InputError, match="f3"):
        m.predict(pd.DataFrame(x, columns=m.feature_names).drop(columns=["f3"]))
    with pytest.raises(ss.InputError, match="dimensions"):
        m.predict(np.zeros((2, 2, 8), dtype=np.float32))
    with pytest.raises(ss.ModelError):
        ss.Model(ROOT / "no/such/model.txt")
    with pytest.raises(ss.ModelError):
        ss.Model(ROOT / "README.md")
    with pytest.raises(ss.StreamscoreError):
        ss.Model(ROOT / "models/golden/lgb_binary/model.txt", backend="warp-drive")
    assert issubclass(ss.WidthError, ss.InputError) and issubclass(ss.InputError, ss.StreamscoreError)
    # An empty batch is an empty answer.
    assert m.predict(np.zeros((0, 8), dtype=np.float32)).shape == (0,)


def test_the_readme_example_runs(monkeypatch):
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Python"):]
    code = section[section.index("```python") + len("```python"):]
    code = code[:code.index("```")]
    monkeypatch.chdir(ROOT)
    scope = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["p"].shape == (500,) and scope["s"].shape == (1,)
    assert scope["train"].shape[0] == 15_902


def test_threads_split_large_batches_with_the_same_bits():
    d = ROOT / "models/golden/lgb_multiclass"
    x = np.load(d / "input.npy").astype(np.float32)
    big = np.ascontiguousarray(np.tile(x, (40, 1)))
    one, two = ss.Model(d / "model.txt"), ss.Model(d / "model.txt", threads=2)
    assert np.array_equal(one.predict(big), two.predict(big))
