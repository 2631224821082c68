//! `streamscore._streamscore`: the native half of the Python package (`python/streamscore/`
//! holds the Python half, which turns numpy, pandas and Arrow inputs into the arrays these
//! functions take).
//!
//! Every call that scores or waits releases the GIL. Every error is one of the exceptions
//! below, each carrying the Rust error's message.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2,
    PyUntypedArrayMethods,
};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use streamscore::features::{self as ft, Features as Stage, Spec};
use streamscore::{Backend, BackendChoice, BackendSpec, Columns, Error, EventBatch, Output};

create_exception!(streamscore, StreamscoreError, PyException, "Every streamscore error.");
create_exception!(
    streamscore,
    ModelError,
    StreamscoreError,
    "A model file that cannot be read, parsed or validated."
);
create_exception!(
    streamscore,
    InputError,
    StreamscoreError,
    "Input that does not fit: values, fields, columns, times."
);
create_exception!(
    streamscore,
    WidthError,
    InputError,
    "Rows whose width is not the model's (or output of the wrong length)."
);
create_exception!(
    streamscore,
    ConfigError,
    StreamscoreError,
    "A configuration, spec or schema that is refused."
);
create_exception!(
    streamscore,
    QueueFull,
    StreamscoreError,
    "The runtime's queue is full; `event` holds the event handed back."
);
create_exception!(streamscore, Closed, StreamscoreError, "The runtime is shut down.");
create_exception!(
    streamscore,
    Expired,
    StreamscoreError,
    "The event's deadline passed in the queue."
);
create_exception!(streamscore, Shed, StreamscoreError, "The event was shed from a full queue.");
create_exception!(
    streamscore,
    Unavailable,
    StreamscoreError,
    "A backend that is not available here or failed (GPU, ONNX Runtime)."
);

/// The exception a Rust error becomes.
fn py_err(e: &Error) -> PyErr {
    let m = e.to_string();
    match e {
        Error::Io { .. }
        | Error::TooLarge { .. }
        | Error::UnknownFormat { .. }
        | Error::Parse { .. }
        | Error::InvalidModel { .. }
        | Error::Unsupported { .. } => ModelError::new_err(m),
        Error::WidthMismatch { .. } | Error::OutputLength { .. } => WidthError::new_err(m),
        Error::MissingColumn { .. }
        | Error::Input { .. }
        | Error::UnknownField { .. }
        | Error::NonFinite { .. }
        | Error::Gate { .. }
        | Error::Stale { .. }
        | Error::Lookup { .. }
        | Error::Late { .. } => InputError::new_err(m),
        Error::QueueFull => QueueFull::new_err(m),
        Error::Closed => Closed::new_err(m),
        Error::Expired { .. } => Expired::new_err(m),
        Error::Shed => Shed::new_err(m),
        Error::Unavailable { .. } | Error::DeviceLost { .. } | Error::Backend { .. } => {
            Unavailable::new_err(m)
        }
        Error::Config(_) | Error::SchemaChange { .. } => ConfigError::new_err(m),
        _ => StreamscoreError::new_err(m),
    }
}

trait OrPy<T> {
    fn py(self) -> PyResult<T>;
}

impl<T> OrPy<T> for Result<T, Error> {
    fn py(self) -> PyResult<T> {
        self.map_err(|e| py_err(&e))
    }
}

fn output(raw: bool) -> Output {
    if raw { Output::Raw } else { Output::Transformed }
}

/// `n * k` values, refused when that does not fit in memory's terms.
fn zeros(n: usize, k: usize) -> PyResult<Vec<f32>> {
    let len = n
        .checked_mul(k)
        .filter(|&l| l <= isize::MAX as usize / 4)
        .ok_or_else(|| InputError::new_err(format!("{n} rows x {k} outputs is too large")))?;
    Ok(vec![0.0; len])
}

fn matrix<'py>(
    py: Python<'py>,
    values: Vec<f32>,
    n: usize,
    k: usize,
) -> PyResult<Bound<'py, PyArray2<f32>>> {
    values.into_pyarray(py).reshape([n, k])
}

/// A model loaded once and scored from any thread.
#[pyclass(frozen, module = "streamscore._streamscore")]
struct Model {
    backend: Arc<dyn Backend>,
    model: streamscore::Model,
    version: u64,
    sha256: String,
    /// The address of the last input a batch was scored from in place (0: it was copied).
    last_in_place: AtomicUsize,
}

#[pymethods]
impl Model {
    #[new]
    #[pyo3(signature = (path, backend = "auto", threads = 1))]
    fn new(py: Python<'_>, path: PathBuf, backend: &str, threads: usize) -> PyResult<Self> {
        let mut spec: BackendSpec = backend.parse().py()?;
        if threads > 1 {
            // The fast CPU scorer splits large batches across `threads`.
            let cpu = streamscore::backend::CpuOptions::default().with_threads(threads);
            spec = spec.map(|c| match c {
                BackendChoice::Auto => BackendChoice::Cpu(cpu.clone()),
                BackendChoice::Cpu(o) => BackendChoice::Cpu(o.with_threads(threads)),
                other => other,
            });
        }
        py.detach(|| {
            let bytes = streamscore::io::read_input(&path)?;
            let version = streamscore::Lineage::default_version(&bytes);
            let sha256 = streamscore::Lineage::sha256_of(&bytes);
            let model = streamscore::Model::from_bytes(bytes, &path)?;
            let backend = spec.select(model.clone())?;
            Ok(Model { backend, model, version, sha256, last_in_place: AtomicUsize::new(0) })
        })
        .py()
    }

    /// Input column names, in the model's order.
    #[getter]
    fn feature_names(&self) -> Vec<String> {
        self.model.feature_names()
    }

    /// Values per input row.
    #[getter]
    fn n_features(&self) -> usize {
        self.backend.n_features()
    }

    /// Values per answer (1, or the number of classes).
    #[getter]
    fn n_outputs(&self) -> usize {
        self.backend.output_width(Output::Transformed)
    }

    /// The training library's objective (`binary sigmoid:1`, `multi:softprob`, ...); empty
    /// for ONNX.
    #[getter]
    fn objective(&self) -> String {
        match &self.model {
            streamscore::Model::Forest(f) => f.objective().to_string(),
            _ => String::new(),
        }
    }

    /// The version a runtime serving this file names in its answers (from its SHA-256).
    #[getter]
    fn version(&self) -> u64 {
        self.version
    }

    /// The file's SHA-256, hex.
    #[getter]
    fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The backend that scores (`cpu-avx2-traverse`, `onnx`, ...).
    #[getter]
    fn backend(&self) -> &'static str {
        self.backend.name()
    }

    /// The address of the last input scored in place, without a copy (0 when it was copied).
    #[getter]
    fn _last_in_place(&self) -> usize {
        self.last_in_place.load(Ordering::Relaxed)
    }

    /// Scores a float32 matrix, C or Fortran order (contiguous either way), GIL released.
    /// Fortran order is the CPU forest's own layout and is scored in place.
    fn _predict<'py>(
        &self,
        py: Python<'py>,
        x: PyReadonlyArray2<'py, f32>,
        raw: bool,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let (n, w) = (x.shape()[0], x.shape()[1]);
        let expected = self.backend.n_features();
        if w != expected {
            return Err(py_err(&Error::WidthMismatch { expected, got: w }));
        }
        let out = output(raw);
        let k = self.backend.output_width(out);
        let mut scores = zeros(n, k)?;
        if n == 0 {
            return matrix(py, scores, 0, k);
        }
        let columns = x.is_fortran_contiguous() && !x.is_c_contiguous();
        let values = x.as_slice().map_err(|_| {
            InputError::new_err("a non-contiguous array: pass numpy.ascontiguousarray(x)")
        })?;
        let backend = &self.backend;
        py.detach(|| {
            if columns {
                backend.score_columns(Columns::new(values, n, w)?, out, &mut scores)
            } else {
                backend.score_rows(values, out, &mut scores)
            }
        })
        .py()?;
        let address = if columns { values.as_ptr() as usize } else { 0 };
        self.last_in_place.store(address, Ordering::Relaxed);
        matrix(py, scores, n, k)
    }

    fn __repr__(&self) -> String {
        format!(
            "Model(features={}, outputs={}, backend={:?}, version={})",
            self.backend.n_features(),
            self.backend.output_width(Output::Transformed),
            self.backend.name(),
            self.version
        )
    }
}

/// A ticket waited on by the dispatcher thread for an asyncio future.
struct Waiting {
    ticket: streamscore::Ticket,
    /// Called with (scores, None) or (None, exception) on the dispatcher thread; it hands the
    /// answer to the event loop (`call_soon_threadsafe`).
    done: Py<PyAny>,
}

/// The answer of one event: its values.
fn score_values(s: &streamscore::Score) -> Vec<f32> {
    s.values().to_vec()
}

/// A runtime: a queue, a micro-batcher, worker threads, an optional feature stage.
#[pyclass(frozen, module = "streamscore._streamscore")]
struct Runtime {
    rt: Arc<streamscore::Runtime>,
    width: usize,
    outputs: usize,
    dispatch: crossbeam_channel::Sender<Waiting>,
}

/// A pending answer from `Runtime.try_submit`.
#[pyclass(module = "streamscore._streamscore")]
struct Ticket {
    ticket: Option<streamscore::Ticket>,
}

#[pymethods]
impl Ticket {
    /// True once the answer is there.
    fn ready(&self) -> bool {
        self.ticket.as_ref().is_some_and(streamscore::Ticket::is_ready)
    }

    /// Waits (GIL released) for the answer: the event's values, or raises its error.
    fn wait<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyArray1<f32>>> {
        let t =
            self.ticket.take().ok_or_else(|| StreamscoreError::new_err("the answer was taken"))?;
        let score = py.detach(|| t.wait()).py()?;
        Ok(score_values(&score).into_pyarray(py))
    }
}

#[pymethods]
impl Runtime {
    #[new]
    #[pyo3(signature = (model, features = None, backend = "auto", max_batch = None, max_delay_us = None, queue_capacity = None, workers = None, overload = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        model: PathBuf,
        features: Option<PathBuf>,
        backend: &str,
        max_batch: Option<usize>,
        max_delay_us: Option<u64>,
        queue_capacity: Option<usize>,
        workers: Option<usize>,
        overload: Option<&str>,
    ) -> PyResult<Self> {
        let spec: BackendSpec = backend.parse().py()?;
        let mut c = streamscore::RuntimeConfig::default();
        if let Some(n) = max_batch {
            c = c.with_max_batch(n);
        }
        if let Some(us) = max_delay_us {
            c = c.with_max_delay(std::time::Duration::from_micros(us));
        }
        if let Some(n) = queue_capacity {
            c = c.with_queue_capacity(n);
        }
        if let Some(n) = workers {
            c = c.with_workers(n);
        }
        if let Some(o) = overload {
            c = c.with_overload(match o {
                "block" => streamscore::Overload::Block,
                "reject" => streamscore::Overload::Reject,
                "shed_oldest" => streamscore::Overload::ShedOldest,
                other => {
                    return Err(ConfigError::new_err(format!(
                        "overload {other:?}: expected 'block', 'reject' or 'shed_oldest'"
                    )));
                }
            });
        }
        let rt = py
            .detach(|| {
                let mut b =
                    streamscore::Runtime::builder().backend_spec(spec).config(c).model_path(&model);
                if let Some(f) = &features {
                    b = b.features(Stage::new(Spec::from_path(f)?));
                }
                b.build()
            })
            .py()?;
        let rt = Arc::new(rt);
        let (dispatch, waiting) = crossbeam_channel::unbounded::<Waiting>();
        std::thread::Builder::new()
            .name("streamscore-py-dispatch".into())
            .spawn(move || {
                for w in waiting {
                    let answer = w.ticket.wait();
                    Python::attach(|py| {
                        let called = match answer {
                            Ok(s) => {
                                let v = score_values(&s).into_pyarray(py).into_any().unbind();
                                w.done.call1(py, (v, py.None()))
                            }
                            Err(e) => w.done.call1(py, (py.None(), py_err(&e).into_value(py))),
                        };
                        if let Err(e) = called {
                            e.print(py);
                        }
                    });
                }
            })
            .map_err(|e| StreamscoreError::new_err(format!("cannot start a thread: {e}")))?;
        let width = rt.schema().len();
        let outputs = rt.output_width();
        Ok(Runtime { rt, width, outputs, dispatch })
    }

    /// Input fields per event (the model's inputs, or the feature stage's raw fields).
    #[getter]
    fn fields(&self) -> Vec<String> {
        self.rt.schema().names().to_vec()
    }

    /// Values per answer.
    #[getter]
    fn n_outputs(&self) -> usize {
        self.outputs
    }

    /// The live model version.
    #[getter]
    fn model_version(&self) -> u64 {
        self.rt.live_version()
    }

    /// The backend that scores.
    #[getter]
    fn backend(&self) -> &'static str {
        self.rt.backend_name()
    }

    /// Scores one event, blocking (GIL released) until its answer.
    fn _score<'py>(
        &self,
        py: Python<'py>,
        values: PyReadonlyArray1<'py, f32>,
        key: u64,
        timestamp_ms: i64,
    ) -> PyResult<Bound<'py, PyArray1<f32>>> {
        let v = self.row(&values)?;
        let e = streamscore::Event::new(v).with_key(key).with_timestamp_ms(timestamp_ms);
        let score = py.detach(|| self.rt.score(e)).py()?;
        Ok(score_values(&score).into_pyarray(py))
    }

    /// Queues one event without blocking; raises QueueFull (or Closed, an input error) at once.
    fn _try_submit(
        &self,
        values: PyReadonlyArray1<'_, f32>,
        key: u64,
        timestamp_ms: i64,
    ) -> PyResult<Ticket> {
        let v = self.row(&values)?;
        let e = streamscore::Event::new(v).with_key(key).with_timestamp_ms(timestamp_ms);
        match self.rt.try_submit(e) {
            Ok(t) => Ok(Ticket { ticket: Some(t) }),
            Err(r) => Err(py_err(&r.error)),
        }
    }

    /// Hands a ticket to the dispatcher thread, which calls `done(values, exc)` when answered.
    fn _notify(&self, ticket: &mut Ticket, done: Py<PyAny>) -> PyResult<()> {
        let t = ticket
            .ticket
            .take()
            .ok_or_else(|| StreamscoreError::new_err("the answer was taken"))?;
        self.dispatch
            .send(Waiting { ticket: t, done })
            .map_err(|_| Closed::new_err("the runtime is shut down"))
    }

    /// Scores a set of events (rows row-major, C order) as one set, GIL released; returns the
    /// answers `(n, k)` and the refused events `[(index, exception)]`.
    #[pyo3(signature = (rows, keys = None, timestamps_ms = None))]
    fn _score_many<'py>(
        &self,
        py: Python<'py>,
        rows: PyReadonlyArray2<'py, f32>,
        keys: Option<PyReadonlyArray1<'py, u64>>,
        timestamps_ms: Option<PyReadonlyArray1<'py, i64>>,
    ) -> PyResult<(Bound<'py, PyArray2<f32>>, Bound<'py, PyList>)> {
        let (n, w) = (rows.shape()[0], rows.shape()[1]);
        if w != self.width {
            return Err(py_err(&Error::WidthMismatch { expected: self.width, got: w }));
        }
        let contiguous =
            |what: &str| InputError::new_err(format!("{what}: a non-contiguous array"));
        let r = rows.as_slice().map_err(|_| contiguous("rows"))?;
        let k = keys.as_ref().map(|k| k.as_slice()).transpose().map_err(|_| contiguous("keys"))?;
        let t = timestamps_ms
            .as_ref()
            .map(|t| t.as_slice())
            .transpose()
            .map_err(|_| contiguous("timestamps_ms"))?;
        let scores = py
            .detach(|| {
                let mut set = EventBatch::rows(r);
                if let Some(k) = k {
                    set = set.with_keys(k);
                }
                if let Some(t) = t {
                    set = set.with_timestamps_ms(t);
                }
                self.rt.score_many(set)
            })
            .py()?;
        let refused = PyList::empty(py);
        for (i, e) in scores.errors() {
            let e = py_err(e);
            refused.append((*i, e.into_value(py)))?;
        }
        let values = scores.values().to_vec();
        Ok((matrix(py, values, n, self.outputs)?, refused))
    }

    /// Builds a new model version off the hot path (parse, validate, warm up) and switches to
    /// it at a batch boundary; returns its version. A file that fails leaves the serving
    /// version in place (raises); a changed input schema is refused unless
    /// `allow_schema_change`.
    #[pyo3(signature = (path, version = None, allow_schema_change = false))]
    fn _swap(
        &self,
        py: Python<'_>,
        path: PathBuf,
        version: Option<u64>,
        allow_schema_change: bool,
    ) -> PyResult<u64> {
        let mut update = streamscore::ModelUpdate::path(path);
        if let Some(v) = version {
            update = update.with_version(v);
        }
        if allow_schema_change {
            update = update.allow_schema_change();
        }
        py.detach(|| self.rt.swap(update)).py()
    }

    /// Goes back to a kept version at once.
    fn rollback(&self, py: Python<'_>, version: u64) -> PyResult<()> {
        py.detach(|| self.rt.rollback(version)).py()
    }

    /// The kept versions, oldest first, with their lineage.
    fn versions<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let out = PyList::empty(py);
        for l in self.rt.versions() {
            let d = PyDict::new(py);
            d.set_item("version", l.version)?;
            d.set_item("source", l.source)?;
            d.set_item("sha256", l.sha256)?;
            d.set_item("format", l.format)?;
            d.set_item("objective", l.objective)?;
            d.set_item("backend", l.backend)?;
            d.set_item("load_s", l.load_time.as_secs_f64())?;
            out.append(d)?;
        }
        Ok(out)
    }

    /// The runtime's counters and latency summaries.
    fn metrics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let m = self.rt.metrics();
        let d = PyDict::new(py);
        d.set_item("accepted", m.accepted)?;
        d.set_item("rejected", m.rejected)?;
        d.set_item("scored", m.scored)?;
        d.set_item("expired", m.expired)?;
        d.set_item("shed", m.shed)?;
        d.set_item("errors", m.errors)?;
        d.set_item("batches", m.batches)?;
        d.set_item("swaps", m.swaps)?;
        d.set_item("model_version", m.model_version)?;
        let stages = PyDict::new(py);
        for stage in streamscore::Stage::ALL {
            let s = m.stage(stage);
            let one = PyDict::new(py);
            one.set_item("count", s.count)?;
            one.set_item("p50_ns", s.p50)?;
            one.set_item("p99_ns", s.p99)?;
            one.set_item("max_ns", s.max)?;
            stages.set_item(stage.label(), one)?;
        }
        d.set_item("latency", stages)?;
        Ok(d)
    }

    /// The runtime's metrics in Prometheus' text format.
    fn prometheus(&self) -> String {
        self.rt.metrics().prometheus()
    }

    /// Stops intake and answers every accepted event (GIL released).
    fn shutdown(&self, py: Python<'_>) {
        py.detach(|| self.rt.shutdown());
    }
}

impl Runtime {
    fn row(&self, values: &PyReadonlyArray1<'_, f32>) -> PyResult<Vec<f32>> {
        let v = values.as_slice().map_err(|_| InputError::new_err("a non-contiguous array"))?;
        if v.len() != self.width {
            return Err(py_err(&Error::WidthMismatch { expected: self.width, got: v.len() }));
        }
        Ok(v.to_vec())
    }
}

/// A feature stage: the same code the runtime runs online, over events offline.
#[pyclass(module = "streamscore._streamscore")]
struct Features {
    stage: Stage,
}

#[pymethods]
impl Features {
    #[new]
    #[pyo3(signature = (spec = None, toml = None))]
    fn new(spec: Option<PathBuf>, toml: Option<&str>) -> PyResult<Self> {
        let spec = match (spec, toml) {
            (Some(p), None) => Spec::from_path(p).py()?,
            (None, Some(t)) => Spec::from_toml(t).py()?,
            _ => return Err(ConfigError::new_err("give a spec file or toml=TEXT, one of them")),
        };
        Ok(Features { stage: Stage::new(spec) })
    }

    /// The features computed, in order.
    #[getter]
    fn names(&self) -> Vec<String> {
        self.stage.spec().names.clone()
    }

    /// The raw fields an event carries, in order.
    #[getter]
    fn fields(&self) -> Vec<String> {
        self.stage.spec().fields.clone()
    }

    /// The spec's key column.
    #[getter]
    fn key(&self) -> String {
        self.stage.spec().key.clone()
    }

    /// The spec's event-time column.
    #[getter]
    fn time(&self) -> String {
        self.stage.spec().time.clone()
    }

    /// The categorical fields, in order.
    #[getter]
    fn categorical(&self) -> Vec<String> {
        self.stage.spec().categorical.iter().map(|c| c.name.clone()).collect()
    }

    /// Forgets every key's state.
    fn reset(&mut self) {
        self.stage = Stage::new(self.stage.spec().clone());
    }

    /// The codes a categorical field's values travel as.
    fn _codes<'py>(
        &self,
        py: Python<'py>,
        field: &str,
        values: Vec<Option<String>>,
    ) -> PyResult<Bound<'py, PyArray1<f32>>> {
        let spec = self.stage.spec();
        let codes: Vec<f32> = values
            .iter()
            .map(|v| match v {
                Some(v) => spec.encode(field, v),
                None => Ok(f32::NAN),
            })
            .collect::<Result<_, _>>()
            .py()?;
        Ok(codes.into_pyarray(py))
    }

    /// Computes the features of events in order (rows row-major, the spec's fields), keeping
    /// each key's state for the next call; returns `(n, len(names))` and the refused
    /// `[(index, exception)]`.
    fn _transform<'py>(
        &mut self,
        py: Python<'py>,
        rows: PyReadonlyArray2<'py, f32>,
        keys: PyReadonlyArray1<'py, u64>,
        times: PyReadonlyArray1<'py, i64>,
    ) -> PyResult<(Bound<'py, PyArray2<f32>>, Bound<'py, PyList>)> {
        let (n, w) = (rows.shape()[0], rows.shape()[1]);
        let width = self.stage.spec().fields.len();
        if w != width || keys.len() != n || times.len() != n {
            return Err(py_err(&Error::WidthMismatch { expected: width, got: w }));
        }
        let not = |_| InputError::new_err("a non-contiguous array");
        let (r, k, t) = (
            rows.as_slice().map_err(not)?,
            keys.as_slice().map_err(not)?,
            times.as_slice().map_err(not)?,
        );
        let events = ft::offline::Events {
            rows: r.to_vec(),
            keys: k.to_vec(),
            times: t.to_vec(),
            lines: Vec::new(),
            refused: Vec::new(),
        };
        let stage = &mut self.stage;
        let (values, refused) = py.detach(|| ft::offline::run(stage, &events, 4096)).py()?;
        let list = PyList::empty(py);
        for (i, e) in refused {
            list.append((i, py_err(&e).into_value(py)))?;
        }
        let k = self.stage.spec().names.len();
        Ok((matrix(py, values, n, k)?, list))
    }

    /// Reads a CSV (header naming the key, time and fields) into the arrays `_transform`
    /// takes: `(rows, keys, times, refused [(line, exception)])`.
    #[allow(clippy::type_complexity)]
    fn _read_csv<'py>(
        &self,
        py: Python<'py>,
        path: PathBuf,
    ) -> PyResult<(
        Bound<'py, PyArray2<f32>>,
        Bound<'py, PyArray1<u64>>,
        Bound<'py, PyArray1<i64>>,
        Bound<'py, PyList>,
    )> {
        let spec = self.stage.spec().clone();
        let at = path.display().to_string();
        let events = py
            .detach(|| {
                let bytes = streamscore::io::read_input(&path)?;
                ft::offline::read_csv(&spec, &bytes, &at)
            })
            .py()?;
        let n = events.len();
        let refused = PyList::empty(py);
        for (line, e) in events.refused {
            refused.append((line, py_err(&e).into_value(py)))?;
        }
        Ok((
            matrix(py, events.rows, n, spec.fields.len())?,
            events.keys.into_pyarray(py),
            events.times.into_pyarray(py),
            refused,
        ))
    }
}

/// The key a key value travels as: the number itself for an unsigned integer, else its
/// 64-bit FNV-1a hash (as the CSV reader and the runtime do).
#[pyfunction]
fn _keys<'py>(py: Python<'py>, values: Vec<String>) -> Bound<'py, PyArray1<u64>> {
    values.iter().map(|v| Spec::key_of(v)).collect::<Vec<u64>>().into_pyarray(py)
}

/// The library's version.
/// A drift detector: River 0.26's algorithm and parameters, River's decisions.
#[pyclass(module = "streamscore._streamscore")]
struct Detector {
    inner: streamscore::monitor::drift::Detector,
}

/// A Python parameter value as `streamscore drift --set` writes it.
fn param_text(v: &Bound<'_, PyAny>) -> PyResult<String> {
    if v.is_none() {
        return Ok("None".into());
    }
    if let Ok(b) = v.cast::<pyo3::types::PyBool>() {
        return Ok(if b.is_true() { "true" } else { "false" }.into());
    }
    Ok(v.str()?.to_string())
}

#[pymethods]
impl Detector {
    #[new]
    #[pyo3(signature = (kind, **params))]
    fn new(kind: &str, params: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        use streamscore::monitor::drift::{Detector as Inner, Kind, Param};
        let kind: Kind = kind.parse().py()?;
        let mut list = Vec::new();
        if let Some(params) = params {
            for (k, v) in params.iter() {
                list.push(Param { name: k.extract()?, value: param_text(&v)? });
            }
        }
        Ok(Detector { inner: Inner::new(kind, &list).py()? })
    }

    /// Feeds one value; True when it detected drift (also `drift_detected`).
    fn update(&mut self, x: f64) -> PyResult<bool> {
        self.inner.update(x).py()?;
        Ok(self.inner.drift_detected())
    }

    /// Feeds many values (a sequence or a float64 array) with the GIL released; returns the
    /// 0-based indices (over everything fed so far) of drifts and of warnings. At a refused
    /// value it raises, the values before it taken.
    fn update_many<'py>(
        &mut self,
        py: Python<'py>,
        values: &Bound<'py, PyAny>,
    ) -> PyResult<(Vec<u64>, Vec<u64>)> {
        let owned: Vec<f64>;
        let array = values.extract::<PyReadonlyArray1<'py, f64>>();
        let slice: &[f64] = match &array {
            Ok(a) => a.as_slice().map_err(|e| InputError::new_err(e.to_string()))?,
            Err(_) => {
                owned = values.extract()?;
                &owned
            }
        };
        let inner = &mut self.inner;
        let mut found = Vec::new();
        let fed = py.detach(|| inner.update_many(slice, &mut found));
        fed.py()?;
        let drifts = found.iter().filter(|f| f.drift).map(|f| f.index).collect();
        let warnings = found.iter().filter(|f| f.warning).map(|f| f.index).collect();
        Ok((drifts, warnings))
    }

    /// River's `drift_detected` after the last value.
    #[getter]
    fn drift_detected(&self) -> bool {
        self.inner.drift_detected()
    }

    /// River's `warning_detected` after the last value.
    #[getter]
    fn warning_detected(&self) -> bool {
        self.inner.warning_detected()
    }

    /// Values taken so far.
    #[getter]
    fn n(&self) -> u64 {
        self.inner.seen()
    }

    /// The detector's name (`adwin`, `page-hinkley`, ...).
    #[getter]
    fn kind(&self) -> &'static str {
        self.inner.kind().name()
    }

    /// Forgets everything seen (the parameters stay).
    fn reset(&mut self) {
        self.inner.reset();
    }

    fn __repr__(&self) -> String {
        format!("Detector({}, n={})", self.inner.kind().name(), self.inner.seen())
    }
}

#[pyfunction]
fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

#[pymodule]
fn _streamscore(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Model>()?;
    m.add_class::<Runtime>()?;
    m.add_class::<Ticket>()?;
    m.add_class::<Features>()?;
    m.add_class::<Detector>()?;
    m.add_function(wrap_pyfunction!(_keys, m)?)?;
    m.add_function(wrap_pyfunction!(version, m)?)?;
    for (name, t) in [
        ("StreamscoreError", py.get_type::<StreamscoreError>()),
        ("ModelError", py.get_type::<ModelError>()),
        ("InputError", py.get_type::<InputError>()),
        ("WidthError", py.get_type::<WidthError>()),
        ("ConfigError", py.get_type::<ConfigError>()),
        ("QueueFull", py.get_type::<QueueFull>()),
        ("Closed", py.get_type::<Closed>()),
        ("Expired", py.get_type::<Expired>()),
        ("Shed", py.get_type::<Shed>()),
        ("Unavailable", py.get_type::<Unavailable>()),
    ] {
        m.add(name, t)?;
    }
    Ok(())
}
