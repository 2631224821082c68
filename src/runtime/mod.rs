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

#[cfg(feature = "audit")]
mod audited;
mod builder;
pub mod config;
mod lifecycle;
mod pipeline;
mod rows;

use crate::batch::Batch;
use crate::error::{Error, Result};
use crate::event::{Event, EventBatch, Schema, Values, check_row, copy_checked};
use crate::ingest::Rejected;
use crate::ingest::reply::{Score, Scores, Ticket};
use crate::metrics::MetricsSnapshot;
use crate::registry::Version;
use crate::sink::Audit;
pub use builder::RuntimeBuilder;
use config::RuntimeConfig;
pub(crate) use pipeline::{Flow, Job, Pipeline, Shared};
use rows::{INLINE_ROW, Row, RowFlow, RowValues, Rows, Set};

/// The embedded scorer. Share it across threads by reference or in an `Arc`; every method
/// takes `&self`.
///
/// # Examples
///
/// ```
/// use streamscore::{Event, Runtime, RuntimeConfig};
///
/// let rt = Runtime::builder()
///     .model_path("models/golden/lgb_binary/model.txt")
///     .config(RuntimeConfig::default())
///     .build()?;
/// let score = rt.score(Event::new(vec![0.5, -1.0, 2.0, 0.0, f32::NAN, 1.0, 3.0, -2.0]))?;
/// assert!((0.0..=1.0).contains(&score.value()));
/// rt.shutdown();
/// assert_eq!(rt.metrics().scored, 1);
/// # Ok::<(), streamscore::Error>(())
/// ```
pub struct Runtime {
    /// Dropped (stopped) before the pipeline: its thread holds the pipeline's state.
    watcher: std::sync::Mutex<Option<lifecycle::Watcher>>,
    /// The last shadow's report, once it has stopped.
    last_shadow: std::sync::Mutex<Option<crate::metrics::ShadowSnapshot>>,
    pipeline: Pipeline<RowFlow>,
    schema: Schema,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("backend", &self.backend_name())
            .field("config", self.config())
            .finish()
    }
}

impl Runtime {
    /// A [`RuntimeBuilder`]: the one way to start a runtime.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::new()
    }

    /// The feature stage's counters (`None` without one).
    pub fn feature_counters(&self) -> Option<crate::features::FeatureCounters> {
        let stage = self.flow().features.as_ref()?;
        Some(stage.lock().unwrap_or_else(|p| p.into_inner()).counters())
    }

    /// The feature stage's whole state as a snapshot ([`Features::snapshot`](crate::features::Features::snapshot)),
    /// stamped with the events it has computed so far as its position, and how long scoring
    /// paused for it (`None` without a feature stage). The stage's state is copied into memory
    /// under its lock (batches wait that long); the checksum is computed after, and writing
    /// the bytes anywhere is the caller's, off the hot path.
    pub fn snapshot_features(&self) -> Option<crate::features::Snapshot> {
        self.snapshot_features_with(None)
    }

    /// [`snapshot_features`](Runtime::snapshot_features) stamped with a source's own position
    /// instead (`serve`'s line-delimited JSON input stamps the lines it has answered), for a
    /// caller that knows no event past that position has reached the feature stage.
    pub fn snapshot_features_at(&self, position: u64) -> Option<crate::features::Snapshot> {
        self.snapshot_features_with(Some(position))
    }

    fn snapshot_features_with(&self, at: Option<u64>) -> Option<crate::features::Snapshot> {
        self.snapshot_features_where(at, |_| true)
    }

    /// [`snapshot_features_at`](Runtime::snapshot_features_at) of the keys `keep` says yes
    /// to (one partition's, for a connector whose partitions move between instances).
    pub(crate) fn snapshot_features_where(
        &self,
        at: Option<u64>,
        keep: impl Fn(u64) -> bool,
    ) -> Option<crate::features::Snapshot> {
        let stage = self.flow().features.as_ref()?;
        let lock = || stage.lock().unwrap_or_else(|p| p.into_inner());
        // The buffer is sized and its pages touched before the real lock, so the pause is
        // a copy, not page faults (state_bytes bounds the snapshot: it counts capacities).
        let size = lock().state_bytes() + 4096;
        let mut bytes = Vec::with_capacity(size);
        // Not zeros: `vec![0; n]` gets lazily mapped pages, which is what this avoids.
        bytes.resize(size, 0xff);
        bytes.clear();
        let start = std::time::Instant::now();
        let stage = lock();
        let position = at.unwrap_or(stage.counters().events);
        stage.snapshot_body_where(position, &mut bytes, keep);
        drop(stage);
        let pause = start.elapsed();
        crate::features::seal(&mut bytes);
        Some(crate::features::Snapshot { bytes, position, pause })
    }

    /// Takes a snapshot's keys into the running feature stage beside its own
    /// ([`Features::merge`](crate::features::Features::merge)): the position it covers and
    /// its keys, `None` without a feature stage.
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    pub(crate) fn merge_features(&self, bytes: &[u8]) -> Option<Result<(u64, Vec<u64>)>> {
        let stage = self.flow().features.as_ref()?;
        Some(stage.lock().unwrap_or_else(|p| p.into_inner()).merge(bytes))
    }

    /// Removes the keys `drop` says yes to from the feature stage; how many.
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    pub(crate) fn forget_features(&self, drop: impl Fn(u64) -> bool) -> usize {
        let Some(stage) = self.flow().features.as_ref() else { return 0 };
        stage.lock().unwrap_or_else(|p| p.into_inner()).forget(drop)
    }

    pub(crate) fn start(
        first: Version,
        schema: Schema,
        config: RuntimeConfig,
        features: Option<crate::features::Features>,
        audit: Option<std::sync::Arc<Audit>>,
    ) -> Result<Self> {
        config.validate()?;
        let width = first.backend.n_features();
        if features.is_none() && schema.len() != width {
            return Err(Error::WidthMismatch { expected: width, got: schema.len() });
        }
        let mut flow = RowFlow::new(first, schema.len(), &config, features);
        flow.audit = audit;
        let pipeline = Pipeline::start(flow, config)?;
        let (watcher, last_shadow) = Default::default();
        Ok(Runtime { watcher, last_shadow, pipeline, schema })
    }

    fn flow(&self) -> &RowFlow {
        &self.pipeline.shared.flow
    }

    /// The model's input schema (feature names in order).
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Name of the backend scoring the live version's batches.
    pub fn backend_name(&self) -> &'static str {
        self.flow().registry.live().backend.name()
    }

    /// The validated configuration.
    pub fn config(&self) -> &RuntimeConfig {
        &self.pipeline.shared.config
    }

    /// Values per score of the live version (1, or the number of classes).
    pub fn output_width(&self) -> usize {
        self.flow().registry.live().out_width
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
        let offered = self.admit(&event).and_then(|row| {
            self.pipeline.offer(row, event.deadline, RowFlow::pair_one).map_err(|(error, row)| {
                self.flow().recycle(row);
                error
            })
        });
        offered.map_err(|error| Rejected { event, error: self.pipeline.rejected(error) })
    }

    /// Scores one event, blocking the calling thread until the answer (and, under the `block`
    /// policy, until there is room in the queue).
    pub fn score<R: AsRef<[f32]>>(&self, event: Event<R>) -> Result<Score> {
        let row = self.admit(&event).map_err(|e| self.pipeline.rejected(e))?;
        let ticket = self.pipeline.offer_waiting(row, event.deadline, RowFlow::pair_one).map_err(
            |(error, row)| {
                self.flow().recycle(row);
                self.pipeline.rejected(error)
            },
        )?;
        ticket.wait()
    }

    /// Scores one event asynchronously: waits (without blocking the executor) for room in the
    /// queue under the `block` policy, then for the answer. Works with any async runtime.
    pub async fn submit<R: AsRef<[f32]>>(&self, event: Event<R>) -> Result<Score> {
        let row = self.admit(&event).map_err(|e| self.pipeline.rejected(e))?;
        self.pipeline.submit(row, event.deadline, RowFlow::pair_one).await
    }

    /// Queues a set of events without blocking: one queue place and one ticket for all of
    /// them, answered with one [`Scores`] (an answer per event, in order). The set is laid
    /// out, validated and copied here, on the caller's thread, so the runtime's threads pay
    /// nothing per event for the hand-off.
    ///
    /// An event refused on its own (a non-finite value under the `reject` policy, an event
    /// time out of range) is answered in the [`Scores`] with its error and not scored; the
    /// rest are. The whole set is refused (nothing queued) when the queue is full under the
    /// `block` and `reject` policies, the runtime is closed, its width or lengths do not fit,
    /// or it holds more than [`MAX_SET`] events. A set is never split across batches, so a
    /// batch may pass `max_batch` by up to one set; it shares one deadline
    /// ([`EventBatch::with_deadline`]) and expires or is shed as a whole.
    pub fn try_submit_many(&self, events: EventBatch<'_>) -> Result<Ticket<Scores>> {
        let set = self.admit_many(&events).map_err(|e| self.pipeline.rejected(e))?;
        self.offer_set(set, events.deadline, false)
    }

    /// Scores a set of events, blocking the calling thread until the answers (and, under the
    /// `block` policy, until there is room in the queue). See
    /// [`try_submit_many`](Runtime::try_submit_many).
    pub fn score_many(&self, events: EventBatch<'_>) -> Result<Scores> {
        let set = self.admit_many(&events).map_err(|e| self.pipeline.rejected(e))?;
        self.offer_set(set, events.deadline, true)?.wait()
    }

    /// Scores a set of events asynchronously: waits (without blocking the executor) for room
    /// under the `block` policy, then for the answers. See
    /// [`try_submit_many`](Runtime::try_submit_many).
    pub async fn submit_many(&self, events: EventBatch<'_>) -> Result<Scores> {
        let set = self.admit_many(&events).map_err(|e| self.pipeline.rejected(e))?;
        if set.live() == 0 {
            return self.offer_set(set, events.deadline, false)?.await;
        }
        self.pipeline.submit(Rows::Many(set), events.deadline, RowFlow::pair_many).await
    }

    /// Scores a batch the caller already holds, straight through the backend (no queue, no
    /// batching). Returns `output_width()` values per row, row-major.
    pub fn score_batch(&self, batch: &Batch) -> Result<Vec<f32>> {
        if self.pipeline.shared.is_closed() {
            return Err(Error::Closed);
        }
        let (values, policy) = (batch.as_slice(), self.config().non_finite);
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
        let flow = self.flow();
        let version = flow.registry.live();
        let mut out = vec![0.0; batch.n_rows() * version.out_width];
        version.backend.score_batch(batch, flow.output, &mut out)?;
        Ok(out)
    }

    /// The data-quality gates' names, by flag bit ([`Score::gate_flags`]); empty without
    /// gates ([`RuntimeBuilder::gates`]).
    pub fn gate_names(&self) -> Vec<String> {
        self.flow()
            .gates
            .get()
            .map(|g| g.names().into_iter().map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// The drift monitor's profiles, windows and alerts, if the runtime has one
    /// ([`RuntimeBuilder::monitor`]). Closes windows that ended, so an idle stream's last
    /// window is reported as closed. A batch is profiled just after its answers are out, so
    /// a report taken the moment an answer arrives may not hold its batch yet; after
    /// [`shutdown`](Runtime::shutdown) it holds every batch.
    pub fn monitor_report(&self) -> Option<crate::monitor::profile::MonitorReport> {
        let monitor = self.flow().monitor.get()?;
        let mut m = monitor.lock().unwrap_or_else(|e| e.into_inner());
        m.flush(crate::event::epoch_ms());
        Some(m.report())
    }

    /// Joins a label (0 or 1) that arrives now (the wall clock, ms since the epoch) to the
    /// prediction kept under event `id` ([`RuntimeBuilder::feedback`]). Unknown, expired and
    /// already labelled ids are answered and counted; a label that is not 0 or 1 is an
    /// [`Error::Input`]; a runtime without a feedback join answers [`Error::Config`].
    pub fn feedback(&self, id: u64, label: f64) -> Result<crate::monitor::feedback::Joined> {
        self.feedback_at(id, label, crate::event::epoch_ms())
    }

    /// [`feedback`](Self::feedback) for a label that arrived at `at_ms` (event time, for a
    /// runtime whose predictions are kept at event time: one with a feature stage).
    pub fn feedback_at(
        &self,
        id: u64,
        label: f64,
        at_ms: u64,
    ) -> Result<crate::monitor::feedback::Joined> {
        let Some(feedback) = self.flow().feedback.get() else {
            return Err(Error::Config(
                "no feedback join: give the builder one (RuntimeBuilder::feedback)".into(),
            ));
        };
        feedback.lock().unwrap_or_else(|e| e.into_inner()).label(id, label, at_ms)
    }

    /// The feedback join's counters and metrics, if the runtime has one. A prediction is kept
    /// once its answer is out: read after [`shutdown`](Self::shutdown) to see every one.
    pub fn feedback_report(&self) -> Option<crate::monitor::feedback::FeedbackReport> {
        let feedback = self.flow().feedback.get()?;
        Some(feedback.lock().unwrap_or_else(|e| e.into_inner()).report())
    }

    /// A snapshot of every counter and histogram, and the model versions.
    pub fn metrics(&self) -> MetricsSnapshot {
        let mut m = self.pipeline.metrics();
        m.model_version = self.live_version();
        m.kept_versions = self.flow().registry.kept_ids();
        m.shadow = self.shadow_report();
        if let Some(active) = &*self.flow().split.get() {
            m.variants = active.snapshot();
        }
        m.audit = self.flow().audit.as_ref().map(|a| a.snapshot());
        m.drift = self.monitor_report().map(|r| crate::metrics::DriftSnapshot::of(&r));
        m.gates = self.flow().gates.get().map(|g| g.counts()).unwrap_or_default();
        m.feedback = self.feedback_report().map(|r| crate::metrics::FeedbackSnapshot::of(&r));
        m.features = self.flow().features.as_ref().map(|stage| {
            let stage = stage.lock().unwrap_or_else(|p| p.into_inner());
            crate::metrics::FeaturesSnapshot {
                counters: stage.counters(),
                live_keys: stage.live_keys() as u64,
                lookups: stage.lookup_counters(),
            }
        });
        m
    }

    /// Stops accepting events (and watching a model directory) and returns once every
    /// accepted event has been answered and the runtime's threads have exited. Idempotent;
    /// concurrent callers all wait for the drain.
    pub fn shutdown(&self) {
        self.stop_watching();
        self.pipeline.shutdown();
        // Every answer is out, so the shadow has been handed all it will get, and the audit
        // log every record: it writes them and closes its file.
        self.clear_shadow();
        if let Some(log) = &self.flow().audit {
            log.close();
        }
    }

    /// Queues a validated set (answering at once when none of its events is left to score).
    fn offer_set(
        &self,
        set: Box<Set>,
        deadline: Option<std::time::Instant>,
        wait: bool,
    ) -> Result<Ticket<Scores>> {
        let flow = self.flow();
        if set.live() == 0 {
            return Ok(flow.answered(set));
        }
        let n = set.live() as u64;
        let payload = Rows::Many(set);
        let offered = if wait {
            self.pipeline.offer_waiting(payload, deadline, RowFlow::pair_many)
        } else {
            self.pipeline.offer(payload, deadline, RowFlow::pair_many)
        };
        offered.map_err(|(error, set)| {
            flow.recycle(set);
            self.pipeline.rejected_n(error, n)
        })
    }

    /// Validates a set: its shape as a whole, then each event (refused ones are recorded in
    /// the set and counted as rejected); copies the values into a pooled buffer, row after row.
    fn admit_many(&self, events: &EventBatch<'_>) -> Result<Box<Set>> {
        let flow = self.flow();
        if self.pipeline.shared.is_closed() {
            return Err(Error::Closed);
        }
        let width = flow.width;
        let n = match events.values {
            Values::Rows(v) => {
                if width == 0 || v.len() % width != 0 {
                    return Err(set_error(format!(
                        "{} values are not a whole number of events of {width}",
                        v.len()
                    )));
                }
                v.len() / width
            }
            Values::Columns(b) => {
                if b.n_features() != width {
                    return Err(Error::WidthMismatch { expected: width, got: b.n_features() });
                }
                b.n_rows()
            }
        };
        if n > MAX_SET {
            return Err(set_error(format!("{n} events; a set holds at most {MAX_SET}")));
        }
        for (what, len) in [
            ("keys", events.keys.map(<[u64]>::len)),
            ("times", events.times.map(<[i64]>::len)),
            ("ids", events.ids.map(<[u64]>::len)),
        ] {
            if let Some(len) = len.filter(|&l| l != n) {
                return Err(set_error(format!("{len} {what} for {n} events")));
            }
        }
        let featured = flow.features.is_some();
        if featured && (events.keys.is_none() || events.times.is_none()) {
            return Err(set_error(
                "the feature stage needs a key and a timestamp on every event".into(),
            ));
        }
        let policy = self.config().non_finite;
        let mut set = flow.spare_set();
        set.n = n;
        set.values.clear();
        match events.values {
            Values::Rows(v) => set.values.extend(v.iter().map(|&x| policy.clean(x))),
            Values::Columns(b) => {
                set.values.resize(n * width, 0.0);
                for f in 0..width {
                    for (r, &x) in b.column(f).iter().enumerate() {
                        set.values[r * width + f] = policy.clean(x);
                    }
                }
            }
        }
        set.keys.clear();
        set.times.clear();
        // Keys also choose shadowed events; times only the feature stage reads.
        set.keys.extend_from_slice(events.keys.unwrap_or_default());
        if featured {
            set.times.extend_from_slice(events.times.unwrap_or_default());
        }
        set.ids.clear();
        if flow.feedback.get().is_some() {
            set.ids.extend_from_slice(events.ids.unwrap_or_default());
        }
        let gates = flow.gates.get();
        if gates.is_some() {
            set.flags.resize(n, 0);
        }
        for r in 0..n {
            let row = &mut set.values[r * width..(r + 1) * width];
            let refused = match policy.refused(row) {
                Some(feature) => Some(Error::NonFinite { feature, value: row[feature] }),
                None if featured => crate::features::check_time(set.times[r]).err(),
                None => None,
            };
            let refused = match (refused, gates) {
                (None, Some(g)) => match g.apply(row) {
                    Ok(flags) => {
                        set.flags[r] = flags;
                        None
                    }
                    Err(e) => Some(e),
                },
                (refused, _) => refused,
            };
            if let Some(e) = refused {
                set.errors.push((r, e));
            }
        }
        self.pipeline.count_rejected(set.errors.len() as u64);
        Ok(set)
    }

    /// Logs an event a gate refused at submission, when the runtime writes an audit log.
    fn gate_refused<R: AsRef<[f32]>>(&self, event: &Event<R>, error: &Error) {
        #[cfg(feature = "audit")]
        if let Some(log) = &self.flow().audit {
            let at = (event.key.unwrap_or(0), event.timestamp_ms.unwrap_or(0));
            self.flow().audit_gate_refusal(log, at, event.values(), error);
        }
        #[cfg(not(feature = "audit"))]
        let _ = (event, error);
    }

    /// Validates an event and copies its row into a pooled buffer.
    fn admit<R: AsRef<[f32]>>(&self, event: &Event<R>) -> Result<Rows> {
        let flow = self.flow();
        if self.pipeline.shared.is_closed() {
            return Err(Error::Closed);
        }
        if flow.features.is_some() {
            match (event.key, event.timestamp_ms) {
                (Some(_), Some(t)) => crate::features::check_time(t)?,
                _ => {
                    return Err(Error::Input {
                        at: "event".into(),
                        message: "the feature stage needs a key and a timestamp on every event"
                            .into(),
                    });
                }
            }
        }
        let policy = self.config().non_finite;
        let gates = flow.gates.get();
        let mut flags = 0;
        let values = if flow.width <= INLINE_ROW {
            let src = event.values();
            let mut row = [0.0; INLINE_ROW];
            check_row(src, flow.width, policy)?;
            for (d, &v) in row.iter_mut().zip(src) {
                *d = policy.clean(v);
            }
            if let Some(g) = gates {
                flags =
                    g.apply(&mut row[..flow.width]).inspect_err(|e| self.gate_refused(event, e))?;
            }
            RowValues::Inline(row)
        } else {
            let mut values = flow.rows.pop().unwrap_or_default();
            let checked =
                copy_checked(event.values(), flow.width, policy, &mut values).and_then(|()| {
                    gates.map_or(Ok(0), |g| {
                        g.apply(&mut values).inspect_err(|e| self.gate_refused(event, e))
                    })
                });
            match checked {
                Ok(f) => flags = f,
                Err(e) => {
                    flow.recycle_row(values);
                    return Err(e);
                }
            }
            RowValues::Pooled(values)
        };
        let (key, time_ms) = (event.key.unwrap_or(0), event.timestamp_ms.unwrap_or(0));
        Ok(Rows::One(Row { values, key, time_ms, id: event.id, flags }))
    }
}

/// The most events one set may hold ([`Runtime::try_submit_many`]).
pub const MAX_SET: usize = 1 << 16;

fn set_error(message: String) -> Error {
    Error::Input { at: "event set".into(), message }
}
