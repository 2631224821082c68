//! Rows into and out of the fast scorers' blocks: feature-major copies of a batch's rows, and
//! each row's sums written out raw or transformed.

use crate::backend::Output;
use crate::batch::Columns;
use crate::model::Forest;

/// Copies rows `r0..r0 + n` of `batch` into `block`, one column of `rows` values per
/// feature, NaN past `n`.
pub(crate) fn feature_major(
    batch: Columns<'_>,
    r0: usize,
    n: usize,
    rows: usize,
    block: &mut [f32],
) {
    for (f, column) in block.chunks_exact_mut(rows).enumerate() {
        column[..n].copy_from_slice(&batch.column(f)[r0..r0 + n]);
        column[n..].fill(f32::NAN);
    }
}

/// Writes each row's raw sums (`acc`, `groups` per row) or their transform into `out`.
pub(crate) fn emit(
    forest: &Forest,
    output: Output,
    groups: usize,
    acc: &[f64],
    raw: &mut [f64],
    transformed: &mut [f64],
    out: &mut [f32],
) {
    let width = forest.output_width(output == Output::Raw);
    if output == Output::Transformed
        && groups == 1
        && width == 1
        && !forest.average_trees
        && forest.transform.is_elementwise()
    {
        // One value per row, transformed on its own: whole runs of rows at once, no per-row
        // copies.
        let mut buf = [0.0f64; 64];
        for (o, a) in out.chunks_mut(buf.len()).zip(acc.chunks(buf.len())) {
            let b = &mut buf[..o.len()];
            forest.transform.apply(&a[..o.len()], b);
            for (o, &v) in o.iter_mut().zip(b.iter()) {
                *o = v as f32;
            }
        }
        return;
    }
    for (i, o) in out.chunks_exact_mut(width).enumerate() {
        let sums = &acc[i * groups..(i + 1) * groups];
        match output {
            Output::Raw => {
                for (o, &v) in o.iter_mut().zip(sums) {
                    *o = v as f32;
                }
            }
            Output::Transformed => {
                raw.copy_from_slice(sums);
                forest.transform_row(raw, transformed);
                for (o, &v) in o.iter_mut().zip(transformed.iter()) {
                    *o = v as f32;
                }
            }
        }
    }
}
