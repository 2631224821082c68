//! The embedded scoring runtime: producers -> bounded queue -> micro-batcher -> backend ->
//! one answer per accepted event.
//!
//! ```text
//!  producers ──try_submit/submit/score──▶ [bounded MPMC queue] ──▶ batcher ──▶ [hand-off] ──▶ workers
//!       ▲                                                          (size / delay /     (backend,
//!       └──────────────── Ticket ◀── one-shot reply slot ◀───────── deadline flush)     replies)
//! ```
//!
//! Guarantees: every accepted event is answered exactly once (a score, [`Error::Expired`],
//! [`Error::Shed`] or a backend error); a refused event is handed back with the reason;
//! [`Runtime::shutdown`] returns only after every accepted event is answered.

pub mod config;
mod pipeline;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::TrySendError;
use crossbeam_queue::{ArrayQueue, SegQueue};

use crate::backend::Backend;
use crate::batch::Batch;
use crate::error::{Error, Result};
use crate::event::{Event, Schema, copy_checked};
use crate::ingest::reply::{Score, SlotPool, Ticket};
use crate::ingest::{Job, Rejected};
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::model::{Forest, Model};
use config::{Overload, RuntimeConfig};
use pipeline::{Scorer, Shared, Sink};

/// The embedded scorer. Share it across threads by reference or in an `Arc`; every method
/// takes `&self`.
///
/// # Examples
///
/// ```
/// use streamscore::{Event, Runtime, RuntimeConfig};
///
/// let rt = Runtime::from_path("models/golden/lgb_binary/model.txt", RuntimeConfig::default())?;
/// let score = rt.score(Event::new(vec![0.5, -1.0, 2.0, 0.0, f32::NAN, 1.0, 3.0, -2.0]))?;
/// assert!((0.0..=1.0).contains(&score.value()));
/// rt.shutdown();
/// assert_eq!(rt.metrics().scored, 1);
/// # Ok::<(), streamscore::Error>(())
/// ```
pub struct Runtime {
    shared: Arc<Shared>,
    backend: Arc<dyn Backend>,
    schema: Schema,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("backend", &self.backend.name())
            .field("config", &self.shared.config)
            .finish()
    }
}

/// FNV-1a, 64 bits: a stable content hash for the default model version.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3))
}

impl Runtime {
    /// Loads a model file (LightGBM text, XGBoost JSON or ONNX) and starts a runtime for it.
    /// The default model version is a hash of the file's bytes.
    pub fn from_path(path: impl AsRef<Path>, config: RuntimeConfig) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let version = fnv1a(&bytes);
        let model = Model::from_bytes(bytes, path)?;
        let config =
            RuntimeConfig { model_version: config.model_version.or(Some(version)), ..config };
        Self::from_model(model, config)
    }

    /// Starts a runtime for a loaded forest, on the configured backend.
    pub fn from_forest(forest: Forest, config: RuntimeConfig) -> Result<Self> {
        Self::from_model(forest.into(), config)
    }

    /// Starts a runtime for a loaded model of any format, on the configured backend.
    pub fn from_model(model: Model, config: RuntimeConfig) -> Result<Self> {
        let schema = Schema::new(model.feature_names());
        Self::with_backend(crate::backend::select(config.backend, model)?, schema, config)
    }

    /// Starts a runtime around any backend; `schema` names its input columns.
    pub fn with_backend(
        backend: Arc<dyn Backend>,
        schema: Schema,
        config: RuntimeConfig,
    ) -> Result<Self> {
        Self::start(backend, schema, config, None)
    }

    /// Starts a runtime that computes `features` from raw events before `backend` scores
    /// them. Events carry the spec's raw fields (numeric values, then categorical codes from
    /// [`Spec::encode`](crate::features::Spec::encode)), a key and a timestamp; the feature
    /// stage runs in the batcher thread, in acceptance order, so its state sees events in the
    /// order they were accepted whatever the batching. An event the stage refuses (a late
    /// event under [`LatePolicy::Reject`](crate::features::LatePolicy)) is answered with the
    /// error. Expired and shed events never reach the stage.
    pub fn with_features(
        features: crate::features::Features,
        backend: Arc<dyn Backend>,
        config: RuntimeConfig,
    ) -> Result<Self> {
        let spec = features.spec().clone();
        if backend.n_features() != spec.names.len() {
            return Err(Error::WidthMismatch {
                expected: backend.n_features(),
                got: spec.names.len(),
            });
        }
        Self::start(backend, Schema::new(spec.fields.iter().cloned()), config, Some(features))
    }

    /// The feature stage's counters (`None` without one).
    pub fn feature_counters(&self) -> Option<crate::features::FeatureCounters> {
        let stage = self.shared.features.as_ref()?;
        Some(stage.lock().unwrap_or_else(|p| p.into_inner()).counters())
    }

    fn start(
        backend: Arc<dyn Backend>,
        schema: Schema,
        config: RuntimeConfig,
        features: Option<crate::features::Features>,
    ) -> Result<Self> {
        config.validate()?;
        if features.is_none() && schema.len() != backend.n_features() {
            return Err(Error::WidthMismatch { expected: backend.n_features(), got: schema.len() });
        }
        let (tx, rx) = crossbeam_channel::bounded(config.queue_capacity.get());
        let workers = config.workers.get();
        let max_batch = config.max_batch.get();
        // Enough idle buffers for a full queue plus the batches in flight.
        let in_flight = config.queue_capacity.get().min(1 << 20) + max_batch * (workers + 2);
        let shared = Arc::new(Shared {
            tx,
            rx,
            slots: SlotPool::new(in_flight),
            rows: ArrayQueue::new(in_flight),
            spare_columns: ArrayQueue::new(workers + 2),
            spare_jobs: ArrayQueue::new(workers + 2),
            room: SegQueue::new(),
            closed: AtomicBool::new(false),
            in_submit: Default::default(),
            scoring_estimate_ns: AtomicU64::new(0),
            metrics: Metrics::new(workers + 1),
            width: schema.len(),
            features: features.map(Mutex::new),
            out_width: backend.output_width(config.output),
            model_version: config.model_version.unwrap_or(0),
            config,
        });
        let mut threads = Vec::with_capacity(workers + 1);
        let spawned = (|| {
            let sink = if workers == 1 {
                Sink::Inline(Scorer::new(backend.clone(), 0))
            } else {
                // One batch waits per worker while the next one fills in the batcher.
                let (work_tx, work_rx) = crossbeam_channel::bounded(workers);
                for i in 0..workers {
                    threads.push(pipeline::spawn_worker(
                        shared.clone(),
                        backend.clone(),
                        work_rx.clone(),
                        i,
                    )?);
                }
                Sink::Workers(work_tx)
            };
            threads.push(pipeline::spawn_batcher(shared.clone(), sink)?);
            std::io::Result::Ok(())
        })();
        let runtime = Runtime { shared, backend, schema, threads: Mutex::new(threads) };
        spawned.map_err(|e| Error::Config(format!("cannot start runtime threads: {e}")))?;
        Ok(runtime)
    }

    /// The model's input schema (feature names in order).
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Name of the backend scoring the batches.
    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    /// The validated configuration.
    pub fn config(&self) -> &RuntimeConfig {
        &self.shared.config
    }

    /// Values per score (1, or the number of classes).
    pub fn output_width(&self) -> usize {
        self.shared.out_width
    }

    /// Queues an event without blocking. A full queue (under the `block` and `reject`
    /// policies), a closed runtime or an invalid row hands the event back with the reason.
    // The event comes back by value, as crossbeam's `TrySendError` does: boxing it would
    // allocate on exactly the overload path that must stay cheap.
    #[allow(clippy::result_large_err)]
    pub fn try_submit<R: AsRef<[f32]>>(
        &self,
        event: Event<R>,
    ) -> Result<Ticket, Rejected<Event<R>>> {
        self.offer(event).map_err(|r| Rejected { event: r.event, error: self.rejected(r.error) })
    }

    /// `try_submit` without counting a refusal (a blocked `submit` retries).
    #[allow(clippy::result_large_err)]
    fn offer<R: AsRef<[f32]>>(&self, event: Event<R>) -> Result<Ticket, Rejected<Event<R>>> {
        let _entered = Entered::new(&self.shared);
        match self.admit(&event).and_then(|pair| self.push(pair)) {
            Ok(ticket) => Ok(ticket),
            Err(error) => Err(Rejected { event, error }),
        }
    }

    /// Scores one event, blocking the calling thread until the answer (and, under the `block`
    /// policy, until there is room in the queue).
    pub fn score<R: AsRef<[f32]>>(&self, event: Event<R>) -> Result<Score> {
        if self.shared.config.overload != Overload::Block {
            return self.try_submit(event).map_err(|r| r.error)?.wait();
        }
        let entered = Entered::new(&self.shared);
        let (ticket, job) = self.admit(&event).map_err(|e| self.rejected(e))?;
        // Blocking send: `entered` keeps the batcher draining, so this cannot wait forever.
        if self.shared.tx.send(Some(job)).is_err() {
            unreachable!("Shared holds a receiver");
        }
        self.shared.metrics.counters.accepted.fetch_add(1, Ordering::Relaxed);
        drop(entered);
        ticket.wait()
    }

    /// Scores one event asynchronously: waits (without blocking the executor) for room in the
    /// queue under the `block` policy, then for the answer. Works with any async runtime.
    pub async fn submit<R: AsRef<[f32]>>(&self, event: Event<R>) -> Result<Score> {
        let mut event = event;
        loop {
            match self.offer(event) {
                Ok(ticket) => return ticket.await,
                Err(Rejected { event: back, error: Error::QueueFull })
                    if self.shared.config.overload == Overload::Block =>
                {
                    event = back;
                    RoomWait { shared: &self.shared, registered: false }.await;
                }
                Err(r) => return Err(self.rejected(r.error)),
            }
        }
    }

    /// Scores a batch the caller already holds, straight through the backend (no queue, no
    /// batching). Returns `output_width()` values per row, row-major.
    pub fn score_batch(&self, batch: &Batch) -> Result<Vec<f32>> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        let (values, policy) = (batch.as_slice(), self.shared.config.non_finite);
        if let Some(i) = policy.refused(values) {
            // Feature-major: value `i` belongs to feature `i / n_rows`.
            return Err(Error::NonFinite { feature: i / batch.n_rows(), value: values[i] });
        }
        let cleaned;
        let batch = if policy.rewrites(values) {
            let v = values.iter().map(|&v| policy.clean(v)).collect();
            cleaned = Batch::from_columns(v, batch.n_rows(), batch.n_features())?;
            &cleaned
        } else {
            batch
        };
        let mut out = vec![0.0; batch.n_rows() * self.shared.out_width];
        self.backend.score_batch(batch, self.shared.config.output, &mut out)?;
        Ok(out)
    }

    /// A snapshot of every counter and histogram.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.shared.metrics.snapshot()
    }

    /// Stops accepting events and returns once every accepted event has been answered and the
    /// runtime's threads have exited. Idempotent; concurrent callers all wait for the drain.
    pub fn shutdown(&self) {
        let mut threads = self.threads.lock().unwrap_or_else(PoisonError::into_inner);
        if !self.shared.closed.swap(true, Ordering::SeqCst) {
            // Wakes a batcher blocked on an empty queue; it then drains and exits.
            let _ = self.shared.tx.send(None);
        }
        for t in threads.drain(..) {
            // A panicked thread's jobs were answered by their responders' drop.
            let _ = t.join();
        }
        self.shared.wake_room();
    }

    fn admit<R: AsRef<[f32]>>(&self, event: &Event<R>) -> Result<(Ticket, Job)> {
        let sh = &*self.shared;
        if sh.closed.load(Ordering::SeqCst) {
            return Err(Error::Closed);
        }
        if sh.features.is_some() && (event.key.is_none() || event.timestamp_ms.is_none()) {
            return Err(Error::Input {
                at: "event".into(),
                message: "the feature stage needs a key and a timestamp on every event".into(),
            });
        }
        let mut row = sh.rows.pop().unwrap_or_default();
        if let Err(e) = copy_checked(event.values(), sh.width, sh.config.non_finite, &mut row) {
            sh.recycle_row(row);
            return Err(e);
        }
        let (ticket, reply) = sh.slots.pair();
        let accepted = Instant::now();
        let (key, time_ms) = (event.key.unwrap_or(0), event.timestamp_ms.unwrap_or(0));
        Ok((
            ticket,
            Job { row, key, time_ms, deadline: event.deadline, accepted, popped: accepted, reply },
        ))
    }

    /// Queues a job; on a full queue applies the overload policy, undoing the job if refused.
    fn push(&self, (ticket, job): (Ticket, Job)) -> Result<Ticket> {
        let sh = &*self.shared;
        let mut job = job;
        loop {
            match sh.tx.try_send(Some(job)) {
                Ok(()) => {
                    sh.metrics.counters.accepted.fetch_add(1, Ordering::Relaxed);
                    return Ok(ticket);
                }
                Err(TrySendError::Full(back)) => {
                    job = back.expect("we sent Some");
                    if sh.config.overload == Overload::ShedOldest
                        && let Ok(Some(old)) = sh.rx.try_recv()
                    {
                        sh.fail(old, Error::Shed, &sh.metrics.counters.shed);
                        continue;
                    }
                    sh.recycle_row(job.row);
                    job.reply.cancel();
                    return Err(Error::QueueFull);
                }
                Err(TrySendError::Disconnected(_)) => unreachable!("Shared holds a receiver"),
            }
        }
    }

    fn rejected(&self, error: Error) -> Error {
        self.shared.metrics.counters.rejected.fetch_add(1, Ordering::Relaxed);
        error
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.shutdown();
        self.shared.slots.close();
    }
}

/// Marks a producer as inside a submission (see `Shared::in_submit`).
struct Entered<'a>(&'a Shared);

impl<'a> Entered<'a> {
    fn new(shared: &'a Shared) -> Self {
        shared.in_submit.fetch_add(1, Ordering::SeqCst);
        Entered(shared)
    }
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        self.0.in_submit.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Resolves once the queue may have room (or the runtime closed); the caller retries.
struct RoomWait<'a> {
    shared: &'a Shared,
    registered: bool,
}

impl Future for RoomWait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.registered {
            return Poll::Ready(());
        }
        self.shared.room.push(cx.waker().clone());
        self.registered = true;
        // Pairs with the fence in `Shared::wake_room`.
        fence(Ordering::SeqCst);
        if !self.shared.tx.is_full() || self.shared.closed.load(Ordering::SeqCst) {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}
