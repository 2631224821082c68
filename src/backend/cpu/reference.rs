//! The reference scorer: plain scalar Rust, one row and one tree at a time.
//!
//! It is the truth every faster path is tested against, so it favours the obvious over the
//! fast: it walks [`Forest`] nodes exactly as validated, sums leaves in the training library's
//! precision (f64 for LightGBM, f32 for XGBoost) and applies the transform in f64.

use std::sync::Arc;

use crate::backend::{Backend, Output};
use crate::batch::Batch;
use crate::error::{Error, Result};
use crate::model::Forest;

/// Models with at most this many output groups are scored without allocating.
const STACK_GROUPS: usize = 16;

/// Scalar reference scorer for tree ensembles.
#[derive(Debug, Clone)]
pub struct Reference {
    forest: Arc<Forest>,
}

impl Reference {
    /// A reference scorer for `forest`.
    pub fn new(forest: impl Into<Arc<Forest>>) -> Self {
        Reference { forest: forest.into() }
    }

    /// The model.
    pub fn forest(&self) -> &Forest {
        &self.forest
    }

    /// Scores `batch` in f64 (raw margins, or transformed), row-major.
    pub fn score_f64(&self, batch: &Batch, output: Output) -> Result<Vec<f64>> {
        let forest = &*self.forest;
        check_width(forest.n_features, batch)?;
        let width = self.output_width(output);
        let mut out = vec![0.0; batch.n_rows() * width];
        let mut raw = vec![0.0; forest.n_groups];
        for (r, row_out) in out.chunks_exact_mut(width).enumerate() {
            forest.raw_row(|f| batch.value(r, f), &mut raw);
            match output {
                Output::Raw => row_out.copy_from_slice(&raw),
                Output::Transformed => forest.transform_row(&raw, row_out),
            }
        }
        Ok(out)
    }
}

fn check_width(n_features: usize, batch: &Batch) -> Result<()> {
    if batch.n_features() != n_features {
        return Err(Error::WidthMismatch { expected: n_features, got: batch.n_features() });
    }
    Ok(())
}

impl Backend for Reference {
    fn name(&self) -> &'static str {
        "reference"
    }

    fn n_features(&self) -> usize {
        self.forest.n_features
    }

    fn output_width(&self, output: Output) -> usize {
        self.forest.output_width(output == Output::Raw)
    }

    fn score_batch(&self, batch: &Batch, output: Output, out: &mut [f32]) -> Result<()> {
        check_width(self.forest.n_features, batch)?;
        let expected = batch.n_rows() * self.output_width(output);
        if out.len() != expected {
            return Err(Error::OutputLength { expected, got: out.len() });
        }
        let width = self.output_width(output);
        let groups = self.forest.n_groups;
        if groups > STACK_GROUPS {
            for (o, v) in out.iter_mut().zip(self.score_f64(batch, output)?) {
                *o = v as f32;
            }
            return Ok(());
        }
        // Up to STACK_GROUPS outputs per row: scratch on the stack, so scoring allocates nothing.
        let mut raw = [0.0f64; STACK_GROUPS];
        let mut transformed = [0.0f64; STACK_GROUPS];
        for (r, row_out) in out.chunks_exact_mut(width).enumerate() {
            self.forest.raw_row(|f| batch.value(r, f), &mut raw[..groups]);
            let values = match output {
                Output::Raw => &raw[..groups],
                Output::Transformed => {
                    self.forest.transform_row(&raw[..groups], &mut transformed[..width]);
                    &transformed[..width]
                }
            };
            for (o, &v) in row_out.iter_mut().zip(values) {
                *o = v as f32;
            }
        }
        Ok(())
    }
}
