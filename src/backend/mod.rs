//! Scoring backends. A backend is a handful of methods; everything else lives outside it.
//!
//! Every backend is tested against [`cpu::Reference`], the scalar truth.

pub mod cpu;
#[cfg(not(all(feature = "gpu", feature = "onnx")))]
mod disabled;
mod failover;
#[cfg(feature = "gpu")]
pub mod gpu;
#[cfg(not(feature = "gpu"))]
pub use disabled::gpu;
#[cfg(feature = "onnx")]
pub mod onnx;
#[cfg(not(feature = "onnx"))]
pub use disabled::onnx;
mod options;
mod select;

pub use failover::Failover;
pub use options::{AdapterChoice, CpuOptions, GpuOptions, OnnxOptions, Optimization, Strategy};
pub use select::{BackendChoice, BackendSpec};

use crate::batch::{Batch, Columns};
use crate::error::Result;

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

    /// Scores row-major input (`n_features` values per row) into `out`. The default builds a
    /// [`Batch`]; a backend whose own input is row-major (ONNX Runtime's tensors, frames'
    /// NCHW images) takes the rows as they are.
    fn score_rows(&self, rows: &[f32], output: Output, out: &mut [f32]) -> Result<()> {
        self.score_batch(&Batch::from_rows(rows, self.n_features())?, output, out)
    }

    /// Scores a borrowed feature-major batch into `out`, as [`score_batch`](Backend::score_batch)
    /// does. The default copies it into a [`Batch`]; the fast CPU forest scores it in place.
    fn score_columns(&self, columns: Columns<'_>, output: Output, out: &mut [f32]) -> Result<()> {
        self.score_batch(&columns.to_batch(), output, out)
    }
}
