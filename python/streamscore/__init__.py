"""streamscore from Python: gradient-boosted trees scored by the Rust library, a micro-batching
runtime with streaming features, and the same features offline for training sets.

    import numpy as np, streamscore
    model = streamscore.Model("model.txt")                 # LightGBM text, XGBoost JSON
    p = model.predict(np.asfortranarray(X, np.float32))    # Fortran order: scored in place
    rt = streamscore.Runtime("model.txt", features="spec.toml")
    s = rt.score([12.5, 3.0], key=42, timestamp_ms=1_700_000_000_000)
    train = streamscore.Features("spec.toml").transform(df)  # what the runtime computes online

Every call that scores or waits releases the GIL; every error is a `StreamscoreError`.
"""

import asyncio
import os

import numpy as np

from . import _streamscore as _native
from ._streamscore import (
    Closed,
    ConfigError,
    Expired,
    InputError,
    ModelError,
    QueueFull,
    Shed,
    StreamscoreError,
    Unavailable,
    WidthError,
    version,
)

__all__ = [
    "Detector",
    "Model",
    "Runtime",
    "Ticket",
    "Features",
    "StreamscoreError",
    "ModelError",
    "InputError",
    "WidthError",
    "ConfigError",
    "QueueFull",
    "Closed",
    "Expired",
    "Shed",
    "Unavailable",
    "version",
]

Ticket = _native.Ticket
Detector = _native.Detector


def _is_dataframe(x):
    return type(x).__module__.startswith("pandas") and hasattr(x, "columns")


def _is_arrow(x):
    return hasattr(x, "__arrow_c_stream__") or hasattr(x, "__arrow_c_array__")


def _arrow_table(x):
    """An Arrow table from any object with the Arrow PyCapsule interface."""
    try:
        import pyarrow as pa
    except ImportError as e:  # pragma: no cover - the tests install pyarrow
        raise InputError("Arrow input needs pyarrow installed") from e
    if isinstance(x, pa.Table):
        return x
    if isinstance(x, pa.RecordBatch):
        return pa.Table.from_batches([x])
    if hasattr(x, "__arrow_c_stream__"):
        return pa.table(x)
    return pa.Table.from_batches([pa.record_batch(x)])


def _float_matrix(x, what):
    """A 2-D float32 numpy array from a numpy array (float32 kept as it is, float64 cast)."""
    if x is None:
        raise InputError(f"{what}: None, not an array")
    if not isinstance(x, np.ndarray):
        x = np.asarray(x)
    if x.dtype == np.float32:
        pass
    elif x.dtype == np.float64:
        order = "F" if x.flags.f_contiguous and not x.flags.c_contiguous else "C"
        x = x.astype(np.float32, order=order)
    else:
        raise InputError(f"{what}: dtype {x.dtype}; expected float32 or float64")
    if x.ndim == 1:
        x = x.reshape(1, -1)
    if x.ndim != 2:
        raise InputError(f"{what}: {x.ndim} dimensions; expected (rows, features)")
    if not (x.flags.c_contiguous or x.flags.f_contiguous):
        raise InputError(f"{what}: a non-contiguous view; pass numpy.ascontiguousarray(x)")
    return x


def _columns_by_name(table_columns, get, names, what):
    missing = [n for n in names if n not in table_columns]
    if missing:
        raise InputError(f"{what}: no column {', '.join(repr(m) for m in missing)} (the model needs {len(names)}: {', '.join(names[:8])}{'...' if len(names) > 8 else ''})")
    out = np.empty((len(get(names[0])) if names else 0, len(names)), dtype=np.float32, order="F")
    for i, n in enumerate(names):
        col = np.asarray(get(n))
        if col.dtype.kind not in "fiub":
            raise InputError(f"{what}: column {n!r} has dtype {col.dtype}; expected numbers")
        out[:, i] = col
    return out


class Model:
    """A model file (LightGBM text, XGBoost JSON, ONNX) loaded once, scored from any thread.

    `backend` is a backend spec: "auto", "cpu", "reference", or a fallback list such as
    "cpu,reference" (this package is built without the GPU and ONNX Runtime backends).
    `threads` splits large batches across that many threads (the fast CPU scorer).
    """

    def __init__(self, path, backend="auto", threads=1):
        self._m = _native.Model(os.fspath(path), backend, int(threads))

    feature_names = property(lambda self: self._m.feature_names, doc="Input columns, in order.")
    n_features = property(lambda self: self._m.n_features, doc="Values per input row.")
    n_outputs = property(lambda self: self._m.n_outputs, doc="Values per answer (1, or classes).")
    n_classes = property(lambda self: self._m.n_outputs, doc="Classes (1 for a binary or regression model).")
    objective = property(lambda self: self._m.objective, doc="The training library's objective.")
    version = property(lambda self: self._m.version, doc="The version a runtime names its answers with.")
    sha256 = property(lambda self: self._m.sha256, doc="The model file's SHA-256.")
    backend = property(lambda self: self._m.backend, doc="The backend that scores.")

    def predict(self, X, raw=False):
        """Scores rows: a numpy array (float32 or float64, C or Fortran order), a pandas
        DataFrame (columns matched by feature name) or an Arrow table / record batch (any
        object with `__arrow_c_stream__` or `__arrow_c_array__`). Returns float32, `(n,)` for
        one output, `(n, k)` for k classes; `raw=True` gives margins before the objective's
        transform. A float32 Fortran-order array is scored in place (the CPU forest's own
        layout); other layouts are copied once. The GIL is released while scoring.
        """
        if _is_dataframe(X):
            X = _columns_by_name(set(X.columns), lambda n: X[n].to_numpy(), self.feature_names, "DataFrame")
        elif _is_arrow(X) and not isinstance(X, np.ndarray):
            t = _arrow_table(X)
            X = _columns_by_name(set(t.column_names), lambda n: t.column(n).to_numpy(), self.feature_names, "Arrow table")
        X = _float_matrix(X, "predict")
        out = self._m._predict(X, bool(raw))
        return out[:, 0] if out.shape[1] == 1 else out

    def __repr__(self):
        return repr(self._m)


class Runtime:
    """A runtime: a bounded queue, deadline-aware micro-batches, worker threads, and an
    optional feature stage (`features`: a spec file). Events are a row of the runtime's
    `fields` (the model's inputs, or the feature stage's raw fields), a key and an event time.

    `overload` is "block" (the default: `submit` waits for room), "reject" or "shed_oldest".
    """

    def __init__(self, model, features=None, backend="auto", max_batch=None, max_delay_us=None,
                 queue_capacity=None, workers=None, overload=None):
        self._overload = overload or "block"
        self._rt = _native.Runtime(
            os.fspath(model), None if features is None else os.fspath(features), backend,
            max_batch, max_delay_us, queue_capacity, workers, overload)

    fields = property(lambda self: self._rt.fields, doc="Input fields per event, in order.")
    n_outputs = property(lambda self: self._rt.n_outputs, doc="Values per answer.")
    model_version = property(lambda self: self._rt.model_version, doc="The live model version.")
    backend = property(lambda self: self._rt.backend, doc="The backend that scores.")

    def _row(self, values):
        if values is None:
            raise InputError("an event: None, not values")
        v = np.asarray(values)
        if v.dtype.kind not in "fiu":
            raise InputError(f"an event: dtype {v.dtype}; expected numbers")
        return np.ascontiguousarray(v, dtype=np.float32).reshape(-1)

    def score(self, values, key=0, timestamp_ms=0):
        """Scores one event, blocking (GIL released) until its answer: float32 `(k,)`."""
        return self._rt._score(self._row(values), int(key), int(timestamp_ms))

    def try_submit(self, values, key=0, timestamp_ms=0):
        """Queues one event without blocking and returns its `Ticket` (`wait()`, `ready()`).
        Raises `QueueFull` at once when there is no room, with the event handed back as
        `exc.event` (values, key, timestamp_ms)."""
        row = self._row(values)
        try:
            return self._rt._try_submit(row, int(key), int(timestamp_ms))
        except QueueFull as e:
            e.event = (values, key, timestamp_ms)
            raise

    async def submit(self, values, key=0, timestamp_ms=0):
        """Scores one event from asyncio: waits for room without blocking the loop (under
        "block"; else raises `QueueFull`), then for the answer."""
        loop = asyncio.get_running_loop()
        row = self._row(values)
        while True:
            try:
                ticket = self._rt._try_submit(row, int(key), int(timestamp_ms))
                break
            except QueueFull as e:
                if self._overload != "block":
                    e.event = (values, key, timestamp_ms)
                    raise
                await asyncio.sleep(0.0002)
        fut = loop.create_future()

        def done(value, exc):
            loop.call_soon_threadsafe(_resolve, fut, value, exc)

        self._rt._notify(ticket, done)
        return await fut

    def score_many(self, rows, keys=None, timestamps_ms=None):
        """Scores many events as one set (one queue place), blocking until all are answered:
        float32 `(n, k)`. Raises the first refused event's error (with its index)."""
        rows = np.ascontiguousarray(_float_matrix(rows, "score_many"))
        k = None if keys is None else np.ascontiguousarray(keys, dtype=np.uint64)
        t = None if timestamps_ms is None else np.ascontiguousarray(timestamps_ms, dtype=np.int64)
        out, refused = self._rt._score_many(rows, k, t)
        if refused:
            i, e = refused[0]
            raise type(e)(f"event {i}: {e}")
        return out

    def swap(self, path, version=None, allow_schema_change=False):
        """Puts a new model file live while events flow: built and warmed off the hot path,
        switched at a batch boundary (every event is scored by exactly one version). Returns
        the new version. A file that does not load or validate raises and leaves the serving
        version in place; a different input schema is refused unless `allow_schema_change`."""
        return self._rt._swap(os.fspath(path), version, bool(allow_schema_change))

    def rollback(self, version):
        """Goes back to a kept version at once."""
        self._rt.rollback(int(version))

    def versions(self):
        """The kept versions, oldest first: dicts of version, source, sha256, format,
        objective, backend, load_s."""
        return self._rt.versions()

    def metrics(self):
        """Counters and per-stage latency (nanoseconds) as a dict."""
        return self._rt.metrics()

    def prometheus(self):
        """The metrics in Prometheus' text format."""
        return self._rt.prometheus()

    def shutdown(self):
        """Stops intake and answers every accepted event."""
        self._rt.shutdown()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.shutdown()


def _resolve(fut, value, exc):
    if fut.cancelled():
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(value)


class Features:
    """A feature spec's stage: exactly what a `Runtime` with `features=` computes online, over
    events offline, to build training sets that cannot drift from serving. The stage keeps
    each key's state across calls (transform a stream in order, in one call or several);
    `reset()` forgets it.
    """

    def __init__(self, spec=None, toml=None):
        self._f = _native.Features(None if spec is None else os.fspath(spec), toml)

    names = property(lambda self: self._f.names, doc="The features computed, in order.")
    fields = property(lambda self: self._f.fields, doc="The raw fields an event carries.")
    key = property(lambda self: self._f.key, doc="The key column's name.")
    time = property(lambda self: self._f.time, doc="The event-time column's name (ms since the epoch).")

    def reset(self):
        """Forgets every key's state."""
        self._f.reset()

    def event(self, event):
        """One event (a dict: the key, the time and the fields, strings or numbers, as a CSV
        reader or a broker message gives them) as `Runtime.score`'s arguments:
        `(values, key, timestamp_ms)`."""
        missing = [n for n in [self.key, self.time] + self.fields if n not in event]
        if missing:
            raise InputError(f"event: no {', '.join(repr(m) for m in missing)}")
        cat = set(self._f.categorical)
        values = np.empty(len(self.fields), dtype=np.float32)
        for i, f in enumerate(self.fields):
            v = event[f]
            if f in cat:
                values[i] = self._f._codes(f, [None if v is None or v == "" else str(v)])[0]
            else:
                try:
                    values[i] = np.nan if v is None or v == "" else float(v)
                except (TypeError, ValueError) as e:
                    raise InputError(f"event: field {f!r} is {v!r}, not a number") from e
        key = int(_native._keys([str(event[self.key])])[0])
        try:
            t = int(event[self.time])
        except (TypeError, ValueError) as e:
            raise InputError(f"event: time {event[self.time]!r} is not integer ms") from e
        return values, key, t

    def _arrays(self, events):
        cat = set(self._f.categorical)
        if isinstance(events, (str, os.PathLike)):
            rows, keys, times, refused = self._f._read_csv(os.fspath(events))
            if refused:
                line, e = refused[0]
                raise type(e)(f"line {line}: {e}")
            return rows, keys, times
        if _is_dataframe(events):
            cols, get = set(events.columns), lambda n: events[n]
        elif _is_arrow(events):
            t = _arrow_table(events)
            cols, get = set(t.column_names), lambda n: t.column(n).to_pandas()
        elif isinstance(events, dict):
            cols, get = set(events), lambda n: events[n]
        else:
            raise InputError(f"events: a CSV path, a DataFrame, an Arrow table or a dict of columns, not {type(events).__name__}")
        need = [self.key, self.time] + self.fields
        missing = [n for n in need if n not in cols]
        if missing:
            raise InputError(f"events: no column {', '.join(repr(m) for m in missing)} (the spec needs {', '.join(need)})")
        key = np.asarray(get(self.key))
        if key.dtype.kind in "iu":
            if key.dtype.kind == "i" and (key < 0).any():
                raise InputError("events: a negative key")
            keys = key.astype(np.uint64)
        else:
            keys = _native._keys([str(k) for k in key])
        time = np.asarray(get(self.time))
        if time.dtype.kind == "M":
            time = time.astype("datetime64[ms]").astype(np.int64)
        if time.dtype.kind not in "iu":
            raise InputError(f"events: the time column {self.time!r} has dtype {time.dtype}; expected integer ms or datetime64")
        times = time.astype(np.int64)
        rows = np.empty((len(keys), len(self.fields)), dtype=np.float32)
        for i, f in enumerate(self.fields):
            col = get(f)
            if f in cat:
                values = [None if v is None or (isinstance(v, float) and v != v) else str(v) for v in list(col)]
                rows[:, i] = self._f._codes(f, values)
            else:
                c = np.asarray(col)
                if c.dtype.kind not in "fiub":
                    raise InputError(f"events: field {f!r} has dtype {c.dtype}; expected numbers")
                rows[:, i] = c
        return rows, np.ascontiguousarray(keys), np.ascontiguousarray(times)

    def transform(self, events, errors="raise"):
        """The features of `events` in order: a CSV path (header naming the key, time and
        fields), a pandas DataFrame, an Arrow table, or a dict of columns. Categorical fields
        may hold strings; keys may be integers or strings (hashed as the runtime does). Returns
        float32 `(n, len(names))`. A refused event (a late one under the spec's `reject`)
        raises, or with `errors="nan"` leaves its row NaN.
        """
        rows, keys, times = self._arrays(events)
        out, refused = self._f._transform(rows, keys, times)
        if refused and errors == "raise":
            i, e = refused[0]
            raise type(e)(f"event {i}: {e}")
        return out
