//! A backend that hands its work to another when its device is gone.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::backend::{Backend, Output};
use crate::batch::{Batch, Columns};
use crate::error::{Error, Result};

/// Scores on `primary` until it reports its device lost or unavailable, then on `fallback`
/// for good. The batch that met the loss is rescored on `fallback` in the same call, so the
/// caller (the runtime) still answers each of its events exactly once. Other errors (a wrong
/// width, say) are the caller's and pass through.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use streamscore::backend::{Backend, Failover, Output};
/// use streamscore::{Batch, Reference, load_forest};
///
/// let forest = Arc::new(load_forest("models/golden/lgb_binary/model.txt")?);
/// let both = Failover::new(Arc::new(Reference::new(forest.clone())), Arc::new(Reference::new(forest)));
/// let mut out = vec![0.0; 1];
/// let row = vec![0.0; both.n_features()];
/// both.score_batch(&Batch::from_rows(&row, row.len())?, Output::Raw, &mut out)?;
/// assert_eq!(both.rescored_batches(), 0);
/// # Ok::<(), streamscore::Error>(())
/// ```
pub struct Failover {
    primary: Arc<dyn Backend>,
    fallback: Arc<dyn Backend>,
    failed: AtomicBool,
    rescored: AtomicU64,
}

impl std::fmt::Debug for Failover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Failover")
            .field("primary", &self.primary.name())
            .field("fallback", &self.fallback.name())
            .field("failed", &self.has_failed())
            .finish()
    }
}

impl Failover {
    /// `primary` first, `fallback` once `primary` has lost its device. Both must take rows of
    /// the same width and write the same outputs.
    pub fn new(primary: Arc<dyn Backend>, fallback: Arc<dyn Backend>) -> Self {
        Failover { primary, fallback, failed: AtomicBool::new(false), rescored: AtomicU64::new(0) }
    }

    /// Whether scoring has moved to the fallback.
    pub fn has_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// Batches the primary failed on that the fallback scored.
    pub fn rescored_batches(&self) -> u64 {
        self.rescored.load(Ordering::Relaxed)
    }
}

impl Failover {
    /// Scores with the primary until it is lost or unavailable, then with the fallback (this
    /// call's batch included).
    fn score_with(&self, mut score: impl FnMut(&dyn Backend) -> Result<()>) -> Result<()> {
        if !self.has_failed() {
            match score(&*self.primary) {
                Err(e @ (Error::DeviceLost { .. } | Error::Unavailable { .. })) => {
                    if !self.failed.swap(true, Ordering::AcqRel) {
                        log::warn!("{}; scoring moves to the {} backend", e, self.fallback.name());
                    }
                    self.rescored.fetch_add(1, Ordering::Relaxed);
                }
                done => return done,
            }
        }
        score(&*self.fallback)
    }
}

impl Backend for Failover {
    fn name(&self) -> &'static str {
        if self.has_failed() { self.fallback.name() } else { self.primary.name() }
    }

    fn n_features(&self) -> usize {
        self.primary.n_features()
    }

    fn output_width(&self, output: Output) -> usize {
        self.primary.output_width(output)
    }

    fn score_batch(&self, batch: &Batch, output: Output, out: &mut [f32]) -> Result<()> {
        self.score_with(|b| b.score_batch(batch, output, &mut *out))
    }

    fn score_columns(&self, columns: Columns<'_>, output: Output, out: &mut [f32]) -> Result<()> {
        self.score_with(|b| b.score_columns(columns, output, &mut *out))
    }
}
