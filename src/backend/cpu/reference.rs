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
        check_width(self.forest.n_features, batch)?;
        let width = self.output_width(output);
        let mut out = vec![0.0; batch.n_rows() * width];
        self.each_row(batch, output, |r, values| {
            out[r * width..(r + 1) * width].copy_from_slice(values)
        });
        Ok(out)
    }

    /// Calls `emit(row, values)` with each row's raw margins or transformed outputs, in f64.
    /// Scratch lives on the stack for up to `STACK_GROUPS` groups, so scoring allocates nothing
    /// for those models. The batch width has been checked by the caller.
    fn each_row(&self, batch: &Batch, output: Output, mut emit: impl FnMut(usize, &[f64])) {
        let forest = &*self.forest;
        let (groups, width) = (forest.n_groups, self.output_width(output));
        let mut stack = [0.0f64; 2 * STACK_GROUPS];
        let mut heap = Vec::new();
        let scratch = if groups <= STACK_GROUPS {
            &mut stack[..2 * groups]
        } else {
            heap.resize(2 * groups, 0.0);
            &mut heap[..]
        };
        let (raw, transformed) = scratch.split_at_mut(groups);
        for r in 0..batch.n_rows() {
            forest.raw_row(|f| batch.value(r, f), raw);
            match output {
                Output::Raw => emit(r, raw),
                Output::Transformed => {
                    forest.transform_row(raw, &mut transformed[..width]);
                    emit(r, &transformed[..width]);
                }
            }
        }
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
        self.each_row(batch, output, |r, values| {
            for (o, &v) in out[r * width..(r + 1) * width].iter_mut().zip(values) {
                *o = v as f32;
            }
        });
        Ok(())
    }
}
