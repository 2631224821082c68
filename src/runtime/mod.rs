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

mod builder;
pub mod config;
mod pipeline;
mod rows;

use std::sync::Arc;

use crate::backend::Backend;
use crate::batch::Batch;
use crate::error::{Error, Result};
use crate::event::{Event, Schema, copy_checked};
use crate::ingest::Rejected;
use crate::ingest::reply::{Score, Ticket};
use crate::metrics::MetricsSnapshot;
pub use builder::RuntimeBuilder;
use config::RuntimeConfig;
pub(crate) use pipeline::{Flow, Job, Pipeline, Shared};
use rows::{Row, RowFlow};

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

    pub(crate) fn start(
        backend: Arc<dyn Backend>,
        schema: Schema,
        config: RuntimeConfig,
        features: Option<crate::features::Features>,
    ) -> Result<Self> {
        config.validate()?;
        if features.is_none() && schema.len() != backend.n_features() {
            return Err(Error::WidthMismatch { expected: backend.n_features(), got: schema.len() });
        }
        let flow = RowFlow::new(backend, schema.len(), &config, features);
        Ok(Runtime { pipeline: Pipeline::start(flow, config)?, schema })
    }

    fn flow(&self) -> &RowFlow {
        &self.pipeline.shared.flow
    }

    /// The model's input schema (feature names in order).
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Name of the backend scoring the batches.
    pub fn backend_name(&self) -> &'static str {
        self.flow().backend.name()
    }

    /// The validated configuration.
    pub fn config(&self) -> &RuntimeConfig {
        &self.pipeline.shared.config
    }

    /// Values per score (1, or the number of classes).
    pub fn output_width(&self) -> usize {
        self.flow().out_width
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
            self.pipeline.offer(row, event.deadline).map_err(|(error, row)| {
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
        let ticket = self.pipeline.offer_waiting(row, event.deadline).map_err(|(error, row)| {
            self.flow().recycle(row);
            self.pipeline.rejected(error)
        })?;
        ticket.wait()
    }

    /// Scores one event asynchronously: waits (without blocking the executor) for room in the
    /// queue under the `block` policy, then for the answer. Works with any async runtime.
    pub async fn submit<R: AsRef<[f32]>>(&self, event: Event<R>) -> Result<Score> {
        let row = self.admit(&event).map_err(|e| self.pipeline.rejected(e))?;
        self.pipeline.submit(row, event.deadline).await
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
        let mut out = vec![0.0; batch.n_rows() * flow.out_width];
        flow.backend.score_batch(batch, flow.output, &mut out)?;
        Ok(out)
    }

    /// A snapshot of every counter and histogram.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.pipeline.metrics()
    }

    /// Stops accepting events and returns once every accepted event has been answered and the
    /// runtime's threads have exited. Idempotent; concurrent callers all wait for the drain.
    pub fn shutdown(&self) {
        self.pipeline.shutdown();
    }

    /// Validates an event and copies its row into a pooled buffer.
    fn admit<R: AsRef<[f32]>>(&self, event: &Event<R>) -> Result<Row> {
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
        let mut values = flow.rows.pop().unwrap_or_default();
        if let Err(e) =
            copy_checked(event.values(), flow.width, self.config().non_finite, &mut values)
        {
            flow.recycle_row(values);
            return Err(e);
        }
        Ok(Row { values, key: event.key.unwrap_or(0), time_ms: event.timestamp_ms.unwrap_or(0) })
    }
}
