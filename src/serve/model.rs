//! The served model behind the protocol: an infer request's tensors turned into one set of
//! events for the runtime, its answers into output tensors; metadata, Triton's model config
//! and statistics, readiness and repository load/unload.
//!
//! Inputs a request may carry (each tensor's first dimension is the batch, `n`):
//! - `input`, FP32 `[n, width]`: the model's inputs (with a feature stage, its raw fields) in
//!   schema order, row after row; or instead one FP32 tensor `[n]` (or `[n, 1]`) per field,
//!   named by the field, where an absent field is missing (NaN), as in `Schema::event`;
//! - `key`, UINT64 (or non-negative INT64) `[n]`: the event's key (the feature stage's and the
//!   A/B split's key);
//! - `timestamp_ms`, INT64 `[n]`: the event time, ms since the Unix epoch.
//!
//! Outputs: `score`, FP32 `[n, k]`, and `model_version`, UINT64 `[n]` (the version that scored
//! each event; under an A/B split they may differ).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use serde_json::{Value, json};

use super::oip::{self, Data, InferRequest, OutData, OutTensor, ProtocolError};
use crate::error::Error;
use crate::event::{EventBatch, epoch_ms};
use crate::registry::ModelUpdate;
use crate::runtime::{MAX_SET, Runtime};

type Result<T> = std::result::Result<T, ProtocolError>;

/// Where the served model comes from, for repository `load`.
#[derive(Debug, Clone)]
pub(crate) enum Origin {
    /// A model file: `load` reads it again and swaps when it changed.
    File(PathBuf),
    /// A watched model directory: its watcher swaps; `load` only marks the model ready.
    Dir,
}

/// Inference statistics in Triton's terms, kept per served model.
#[derive(Debug, Default)]
struct Stats {
    success: AtomicU64,
    success_ns: AtomicU64,
    fail: AtomicU64,
    fail_ns: AtomicU64,
    /// Events (inferences) scored for successful requests.
    inferences: AtomicU64,
    /// Milliseconds since the epoch of the last request answered.
    last_ms: AtomicU64,
}

/// One model served under a name.
pub(crate) struct Served {
    pub rt: Arc<Runtime>,
    pub name: String,
    origin: Origin,
    /// False after repository `unload` and while shutting down.
    ready: AtomicBool,
    keyed: bool,
    /// The position of the checkpoint the feature stage was restored from.
    restored: Option<u64>,
    stats: Stats,
}

/// Names of the request inputs that are not fields.
const KEY: &str = "key";
const TIME: &str = "timestamp_ms";
const INPUT: &str = "input";
const SCORE: &str = "score";
const VERSION: &str = "model_version";

/// The status a runtime error answers with: the caller's fault (400), overload or shutdown
/// (503, retry later), or ours (500).
pub(crate) fn status_of(e: &Error) -> u16 {
    match e {
        Error::QueueFull | Error::Shed | Error::Closed | Error::Expired { .. } => 503,
        Error::WidthMismatch { .. }
        | Error::NonFinite { .. }
        | Error::Input { .. }
        | Error::UnknownField { .. }
        | Error::MissingColumn { .. }
        | Error::Gate { .. }
        | Error::Stale { .. }
        | Error::Lookup { .. }
        | Error::Late { .. } => 400,
        _ => 500,
    }
}

fn runtime_error(e: &Error) -> ProtocolError {
    ProtocolError::status(status_of(e), e.to_string())
}

impl Served {
    pub(crate) fn new(
        rt: Arc<Runtime>,
        name: String,
        origin: Origin,
        restored: Option<u64>,
    ) -> Self {
        let keyed = rt.feature_counters().is_some();
        let ready = AtomicBool::new(true);
        Served { rt, name, origin, ready, keyed, restored, stats: Stats::default() }
    }

    /// Ready to take infer requests (loaded, not unloaded, not shutting down).
    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub(crate) fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// Checks a version named in a URL: it must be the one answering.
    pub(crate) fn check_version(&self, version: Option<&str>) -> Result<()> {
        let Some(v) = version else { return Ok(()) };
        let live = self.rt.live_version();
        match v.parse::<u64>() {
            Ok(n) if n == live => Ok(()),
            Ok(n) if self.rt.metrics().kept_versions.contains(&n) => {
                Err(ProtocolError::bad(format!(
                    "model `{}` version {n} is kept for rollback but version {live} is serving",
                    self.name
                )))
            }
            _ => Err(ProtocolError::status(
                404,
                format!("model `{}` has no version `{v}` (serving: {live})", self.name),
            )),
        }
    }

    /// Answers an infer request. Returns the response's JSON header and binary tail.
    pub(crate) async fn infer(&self, req: InferRequest) -> Result<oip::Encoded> {
        let started = Instant::now();
        let out = self.infer_inner(req).await;
        let ns = started.elapsed().as_nanos() as u64;
        let (count, total) = match &out {
            Ok(_) => (&self.stats.success, &self.stats.success_ns),
            Err(_) => (&self.stats.fail, &self.stats.fail_ns),
        };
        count.fetch_add(1, Ordering::Relaxed);
        total.fetch_add(ns, Ordering::Relaxed);
        self.stats.last_ms.store(epoch_ms(), Ordering::Relaxed);
        out
    }

    async fn infer_inner(&self, req: InferRequest) -> Result<oip::Encoded> {
        if !self.is_ready() {
            return Err(ProtocolError::status(503, format!("model `{}` is not ready", self.name)));
        }
        let events = self.events(&req)?;
        let mut batch = EventBatch::rows(&events.rows);
        if let Some(keys) = &events.keys {
            batch = batch.with_keys(keys);
        }
        if let Some(times) = &events.times {
            batch = batch.with_timestamps_ms(times);
        }
        let scores = self.rt.submit_many(batch).await.map_err(|e| runtime_error(&e))?;
        if let Some((i, e)) = scores.errors().first() {
            let mut p = runtime_error(e);
            p.message = format!("event {i}: {}", p.message);
            return Err(p);
        }
        let n = scores.len();
        self.stats.inferences.fetch_add(n as u64, Ordering::Relaxed);
        let versions: Vec<u64> = (0..n).map(|i| scores.version_of(i)).collect();
        let one_version = versions.iter().all(|&v| v == versions[0]).then_some(versions[0]);
        let k = scores.width();
        let score = OutTensor {
            name: SCORE,
            shape: [n, k],
            rank: 2,
            data: OutData::F32(scores.values()),
            binary: req.binary_all,
        };
        let version = OutTensor {
            name: VERSION,
            shape: [n, 1],
            rank: 1,
            data: OutData::U64(&versions),
            binary: req.binary_all,
        };
        let outputs = if req.outputs.is_empty() {
            vec![score, version]
        } else {
            let mut chosen = Vec::with_capacity(req.outputs.len());
            let (mut score, mut version) = (Some(score), Some(version));
            for w in &req.outputs {
                let t = match w.name.as_str() {
                    SCORE => score.take(),
                    VERSION => version.take(),
                    other => {
                        return Err(ProtocolError::bad(format!(
                            "model `{}` has no output `{other}` (outputs: {SCORE}, {VERSION})",
                            self.name
                        )));
                    }
                };
                let mut t = t.ok_or_else(|| {
                    ProtocolError::bad(format!("output `{}` is asked for twice", w.name))
                })?;
                t.binary = w.binary;
                chosen.push(t);
            }
            chosen
        };
        Ok(oip::encode(&self.name, one_version, req.id.as_deref(), &outputs))
    }

    /// The request's tensors as rows, keys and times, every shape checked.
    fn events(&self, req: &InferRequest) -> Result<Events> {
        let schema = self.rt.schema();
        let width = schema.len();
        let mut n: Option<usize> = None;
        let mut batch = |t: &oip::Tensor, rank_ok: bool| -> Result<usize> {
            if !rank_ok || t.shape.is_empty() {
                return Err(ProtocolError::bad(format!(
                    "input `{}` has shape {:?}: {}",
                    t.name,
                    t.shape,
                    if t.name == INPUT {
                        format!("expected [n, {width}]")
                    } else {
                        "expected [n] or [n, 1]".to_string()
                    }
                )));
            }
            let rows = t.shape[0];
            match n {
                Some(m) if m != rows => Err(ProtocolError::bad(format!(
                    "input `{}` holds {rows} events, an earlier input {m}",
                    t.name
                ))),
                _ => {
                    n = Some(rows);
                    Ok(rows)
                }
            }
        };
        let column = |s: &[usize]| s.len() == 1 || (s.len() == 2 && s[1] == 1);
        let (mut rows, mut keys, mut times) = (None, None, None);
        let mut fields: Vec<(usize, &[f32])> = Vec::new();
        for t in &req.inputs {
            match (t.name.as_str(), &t.data) {
                (INPUT, Data::F32(v)) => {
                    batch(t, t.shape.len() == 2 && t.shape[1] == width)?;
                    rows = Some(v.as_slice());
                }
                (KEY, Data::U64(v)) => {
                    batch(t, column(&t.shape))?;
                    keys = Some(v.clone());
                }
                (KEY, Data::I64(v)) => {
                    batch(t, column(&t.shape))?;
                    let k = v
                        .iter()
                        .map(|&x| u64::try_from(x))
                        .collect::<std::result::Result<Vec<_>, _>>();
                    keys = Some(
                        k.map_err(|_| ProtocolError::bad("input `key` holds a negative key"))?,
                    );
                }
                (TIME, Data::I64(v)) => {
                    batch(t, column(&t.shape))?;
                    times = Some(v.clone());
                }
                (name, Data::F32(v)) if schema.position(name).is_some() => {
                    batch(t, column(&t.shape))?;
                    fields.push((schema.position(name).expect("checked"), v.as_slice()));
                }
                (INPUT | KEY | TIME, _) => {
                    let want = match t.name.as_str() {
                        INPUT => "FP32",
                        KEY => "UINT64 or INT64",
                        _ => "INT64",
                    };
                    return Err(ProtocolError::bad(format!("input `{}` must be {want}", t.name)));
                }
                (name, _) if schema.position(name).is_some() => {
                    return Err(ProtocolError::bad(format!("input `{name}` must be FP32")));
                }
                (name, _) => {
                    return Err(ProtocolError::bad(format!(
                        "model `{}` has no input `{name}`: give `{INPUT}` [n, {width}] or one \
                         tensor per field, and `{KEY}`, `{TIME}`",
                        self.name
                    )));
                }
            }
        }
        let n = n.unwrap_or(0);
        if n == 0 {
            return Err(ProtocolError::bad("the request holds no events"));
        }
        if n > MAX_SET {
            return Err(ProtocolError::bad(format!(
                "the request holds {n} events; at most {MAX_SET} per request"
            )));
        }
        let rows = match (rows, fields.is_empty()) {
            (Some(_), false) => {
                return Err(ProtocolError::bad(format!(
                    "give `{INPUT}` or one tensor per field, not both"
                )));
            }
            (Some(r), true) => r.to_vec(),
            (None, true) => {
                return Err(ProtocolError::bad(format!("no `{INPUT}` and no field tensors")));
            }
            (None, false) => {
                let mut r = vec![f32::NAN; n * width];
                for (f, col) in fields {
                    for (i, &x) in col.iter().enumerate() {
                        r[i * width + f] = x;
                    }
                }
                r
            }
        };
        if self.keyed && (keys.is_none() || times.is_none()) {
            return Err(ProtocolError::bad(format!(
                "model `{}` runs a feature stage: give `{KEY}` (UINT64) and `{TIME}` (INT64) \
                 beside its fields",
                self.name
            )));
        }
        Ok(Events { rows, keys, times })
    }

    /// `GET /v2/models/{m}`: name, versions, platform, inputs and outputs.
    pub(crate) fn metadata(&self) -> Value {
        let m = self.rt.metrics();
        let mut versions: Vec<String> = vec![m.model_version.to_string()];
        versions
            .extend(m.kept_versions.iter().filter(|&&v| v != m.model_version).map(u64::to_string));
        let width = self.rt.schema().len() as i64;
        let mut inputs = vec![json!({"name": INPUT, "datatype": "FP32", "shape": [-1, width]})];
        if self.keyed {
            inputs.push(json!({"name": KEY, "datatype": "UINT64", "shape": [-1]}));
            inputs.push(json!({"name": TIME, "datatype": "INT64", "shape": [-1]}));
        }
        json!({
            "name": self.name,
            "versions": versions,
            "platform": "streamscore",
            "inputs": inputs,
            "outputs": [
                {"name": SCORE, "datatype": "FP32", "shape": [-1, self.rt.output_width() as i64]},
                {"name": VERSION, "datatype": "UINT64", "shape": [-1]},
            ],
            "parameters": {
                "fields": self.rt.schema().names(),
                "backend": self.rt.backend_name(),
                // With a feature stage: events it has computed (a checkpoint's position
                // counts the same), and the position of the checkpoint it started from.
                "feature_position": self.rt.feature_counters().map(|c| c.events),
                "restored_position": self.restored,
            },
        })
    }

    /// `GET /v2/models/{m}/config`, Triton's model configuration (what `perf_analyzer` reads).
    pub(crate) fn triton_config(&self) -> Value {
        let c = self.rt.config();
        let mut inputs = vec![
            json!({"name": INPUT, "data_type": "TYPE_FP32", "dims": [self.rt.schema().len()]}),
        ];
        if self.keyed {
            inputs.push(json!({"name": KEY, "data_type": "TYPE_UINT64", "dims": [1]}));
            inputs.push(json!({"name": TIME, "data_type": "TYPE_INT64", "dims": [1]}));
        }
        json!({
            "name": self.name,
            "platform": "streamscore",
            "backend": "streamscore",
            "max_batch_size": MAX_SET,
            "input": inputs,
            "output": [
                {"name": SCORE, "data_type": "TYPE_FP32", "dims": [self.rt.output_width()]},
                {"name": VERSION, "data_type": "TYPE_UINT64", "dims": [1]},
            ],
            "dynamic_batching": {
                "max_queue_delay_microseconds": c.max_delay.as_micros() as u64,
                "preferred_batch_size": [c.max_batch.get()],
            },
            "instance_group": [{"count": c.workers.get(), "kind": "KIND_CPU"}],
        })
    }

    /// `GET /v2/models/{m}/stats`, in Triton's statistics extension's layout.
    pub(crate) fn statistics(&self) -> Value {
        use crate::metrics::Stage;
        let m = self.rt.metrics();
        let s = &self.stats;
        let pair = |count: u64, ns: u64| json!({"count": count, "ns": ns});
        // Triton counts every successful request once in each phase (perf_analyzer refuses
        // stats whose phase counts differ); the durations are the runtime's stage totals.
        let ok = s.success.load(Ordering::Relaxed);
        let ns = |st: Stage| m.stage(st).sum as u64;
        json!({"model_stats": [{
            "name": self.name,
            "version": m.model_version.to_string(),
            "last_inference": s.last_ms.load(Ordering::Relaxed),
            "inference_count": s.inferences.load(Ordering::Relaxed),
            "execution_count": m.batches,
            "inference_stats": {
                "success": pair(ok, s.success_ns.load(Ordering::Relaxed)),
                "fail": pair(s.fail.load(Ordering::Relaxed), s.fail_ns.load(Ordering::Relaxed)),
                "queue": pair(ok, ns(Stage::Queue) + ns(Stage::Batching)),
                "compute_input": pair(ok, ns(Stage::Prepare)),
                "compute_infer": pair(ok, ns(Stage::Scoring)),
                "compute_output": pair(ok, 0),
                "cache_hit": pair(0, 0),
                "cache_miss": pair(0, 0),
            },
            "batch_stats": [],
        }]})
    }

    /// One entry of `POST /v2/repository/index`.
    pub(crate) fn index_entry(&self) -> Value {
        let state = if self.is_ready() { "READY" } else { "UNAVAILABLE" };
        json!({"name": self.name, "version": self.rt.live_version().to_string(), "state": state, "reason": ""})
    }

    /// `POST /v2/repository/models/{m}/load`: a model file is read again and goes live when it
    /// changed (validated off the hot path, as any swap); then the model is ready.
    pub(crate) fn load(&self) -> Result<()> {
        if let Origin::File(path) = &self.origin {
            let bytes = crate::files::read_model(path).map_err(|e| runtime_error(&e))?;
            let sha = crate::registry::Lineage::sha256_of(&bytes);
            let live = self.rt.live_version();
            let same = self
                .rt
                .versions()
                .iter()
                .any(|l| l.version == live && l.sha256.as_deref() == Some(&sha));
            if !same {
                self.rt.swap(ModelUpdate::bytes(bytes)).map_err(|e| {
                    ProtocolError::bad(format!("model `{}` did not load: {e}", self.name))
                })?;
            }
        }
        self.set_ready(true);
        Ok(())
    }
}

struct Events {
    rows: Vec<f32>,
    keys: Option<Vec<u64>>,
    times: Option<Vec<i64>>,
}
