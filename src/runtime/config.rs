//! The runtime's configuration: defaults, `with_*` setters, validated once when a runtime is
//! built.

use std::num::NonZeroUsize;
use std::time::Duration;

use crate::backend::{BackendSpec, Output};
use crate::error::{Error, Result};
use crate::event::NonFinitePolicy;

/// What a submission does when the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overload {
    /// Backpressure: [`score`](crate::Runtime::score) blocks and
    /// [`submit`](crate::Runtime::submit) awaits until there is room. `try_submit` hands the
    /// event back with [`Error::QueueFull`].
    #[default]
    Block,
    /// Every submission fails at once with [`Error::QueueFull`].
    Reject,
    /// The oldest queued event is answered with [`Error::Shed`] and the new one takes its place
    /// (fresh data beats stale data).
    ShedOldest,
}

/// Runtime settings. `RuntimeConfig::default()` suits a CPU backend at moderate load.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use streamscore::{Overload, RuntimeConfig};
///
/// let config = RuntimeConfig::default()
///     .with_max_batch(128)
///     .with_max_delay(Duration::from_micros(200))
///     .with_overload(Overload::Reject);
/// assert!(config.validate().is_ok());
/// assert!(RuntimeConfig::default().with_max_delay(Duration::from_secs(3600)).validate().is_err());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeConfig {
    /// Which backends may score the model, in order, with their options (default: auto).
    pub backend: BackendSpec,
    /// A batch is flushed when it holds this many events (default 256).
    pub max_batch: NonZeroUsize,
    /// ... or when its oldest event has waited this long since acceptance (default 500 µs).
    pub max_delay: Duration,
    /// Capacity of the ingestion queue, in events (default 65,536).
    pub queue_capacity: NonZeroUsize,
    /// Scoring threads (default 1). With one, the batcher thread scores each batch itself (no
    /// hand-off; events keep queueing meanwhile). With more, the batcher hands batches to
    /// that many worker threads and fills the next batch while they score.
    pub workers: NonZeroUsize,
    /// What happens when the queue is full (default: block).
    pub overload: Overload,
    /// NaN and infinity handling (default: missing).
    pub non_finite: NonFinitePolicy,
    /// Transformed predictions (default) or raw margins.
    pub output: Output,
    /// Version stamped on every score of the first model; by default a hash of the model
    /// file (a model directory's version number when serving from one).
    pub model_version: Option<u64>,
    /// Model versions kept for [`Runtime::rollback`](crate::Runtime::rollback), the live one
    /// included (default 3).
    pub keep_versions: NonZeroUsize,
}

const MAX_BATCH: usize = 1 << 20;
const MAX_QUEUE: usize = 1 << 26;
const MAX_DELAY: Duration = Duration::from_secs(60);
const MAX_WORKERS: usize = 1024;
/// Each kept version holds its model and backend in memory.
const MAX_KEPT: usize = 64;

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            backend: BackendSpec::auto(),
            max_batch: NonZeroUsize::new(256).expect("nonzero"),
            max_delay: Duration::from_micros(500),
            queue_capacity: NonZeroUsize::new(65_536).expect("nonzero"),
            workers: NonZeroUsize::MIN,
            overload: Overload::Block,
            non_finite: NonFinitePolicy::Missing,
            output: Output::Transformed,
            model_version: None,
            keep_versions: NonZeroUsize::new(3).expect("nonzero"),
        }
    }
}

/// Zero is meaningless for every count here, but setters cannot fail: `NonZeroUsize::MAX`
/// stands in for it and fails `validate`, which every runtime runs once.
fn nonzero(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MAX)
}

impl RuntimeConfig {
    /// Sets the backend spec (a [`BackendChoice`](crate::backend::BackendChoice) converts).
    pub fn with_backend(mut self, backend: impl Into<BackendSpec>) -> Self {
        self.backend = backend.into();
        self
    }

    /// Sets the batch size that triggers a flush (0 fails validation).
    pub fn with_max_batch(mut self, n: usize) -> Self {
        self.max_batch = nonzero(n);
        self
    }

    /// Sets the longest an event waits for its batch to fill.
    pub fn with_max_delay(mut self, d: Duration) -> Self {
        self.max_delay = d;
        self
    }

    /// Sets the queue capacity (0 fails validation).
    pub fn with_queue_capacity(mut self, n: usize) -> Self {
        self.queue_capacity = nonzero(n);
        self
    }

    /// Sets the number of scoring threads (0 fails validation).
    pub fn with_workers(mut self, n: usize) -> Self {
        self.workers = nonzero(n);
        self
    }

    /// Sets the overload policy.
    pub fn with_overload(mut self, overload: Overload) -> Self {
        self.overload = overload;
        self
    }

    /// Sets the NaN/infinity policy.
    pub fn with_non_finite(mut self, policy: NonFinitePolicy) -> Self {
        self.non_finite = policy;
        self
    }

    /// Sets the output kind.
    pub fn with_output(mut self, output: Output) -> Self {
        self.output = output;
        self
    }

    /// Sets the version stamped on every score.
    pub fn with_model_version(mut self, version: u64) -> Self {
        self.model_version = Some(version);
        self
    }

    /// Sets how many model versions are kept for rollback, the live one included (0 fails
    /// validation).
    pub fn with_keep_versions(mut self, n: usize) -> Self {
        self.keep_versions = nonzero(n);
        self
    }

    /// Checks every value; the runtime calls this once when it is built.
    pub fn validate(&self) -> Result<()> {
        let check = |ok: bool, msg: String| if ok { Ok(()) } else { Err(Error::Config(msg)) };
        check(self.max_batch.get() <= MAX_BATCH, format!("max_batch must be 1..={MAX_BATCH}"))?;
        check(
            self.queue_capacity.get() <= MAX_QUEUE,
            format!("queue_capacity must be 1..={MAX_QUEUE}"),
        )?;
        check(self.workers.get() <= MAX_WORKERS, format!("workers must be 1..={MAX_WORKERS}"))?;
        check(
            self.keep_versions.get() <= MAX_KEPT,
            format!("keep_versions must be 1..={MAX_KEPT}"),
        )?;
        check(self.max_delay <= MAX_DELAY, format!("max_delay must be at most {MAX_DELAY:?}"))
    }
}
