//! Scoring backends. A backend is a handful of methods; everything else lives outside it.
//!
//! Every backend is tested against [`cpu::Reference`], the scalar truth.

pub mod cpu;

use std::sync::Arc;

use crate::batch::Batch;
use crate::error::Result;
use crate::model::Forest;
use crate::runtime::config::BackendChoice;

/// Which values a backend writes per row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Output {
    /// The model's prediction after its objective's transform (probabilities, class, exp...).
    #[default]
    Transformed,
    /// Raw margins, one per output group, before any transform.
    Raw,
}

/// A way of scoring batches with one loaded model.
pub trait Backend: Send + Sync {
    /// Short name for logs and benchmarks.
    fn name(&self) -> &'static str;

    /// Width of a row the backend accepts.
    fn n_features(&self) -> usize;

    /// Values written per row for `output`.
    fn output_width(&self, output: Output) -> usize;

    /// Scores every row of `batch` into `out`, row-major (`output_width` values per row).
    ///
    /// Errors when the batch width or `out`'s length does not fit; writes nothing then.
    fn score_batch(&self, batch: &Batch, output: Output, out: &mut [f32]) -> Result<()>;
}

/// The backend for `choice` and `forest`. `Auto` picks the fastest one this machine supports:
/// the fast CPU scorer, or the reference scorer for a forest the fast layout cannot hold (said
/// once, in the log).
pub fn select(choice: BackendChoice, forest: Forest) -> Result<Arc<dyn Backend>> {
    Ok(match choice {
        BackendChoice::Reference => Arc::new(cpu::Reference::new(forest)),
        BackendChoice::Cpu => Arc::new(cpu::Cpu::new(forest)?),
        BackendChoice::Auto => {
            let forest = Arc::new(forest);
            match cpu::Cpu::new(forest.clone()) {
                Ok(fast) => Arc::new(fast),
                Err(e) => {
                    log::warn!("fast CPU scorer unavailable ({e}); using the reference scorer");
                    Arc::new(cpu::Reference::new(forest))
                }
            }
        }
    })
}
