//! Synthetic rows drawn within a model's own feature ranges, for benchmarks without a data
//! file: every split sees values on both of its sides.

use crate::batch::Batch;
use crate::model::Forest;
use crate::model::gbdt::{Node, Test};

/// What the forest's splits say about one feature.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Range {
    lo: f32,
    hi: f32,
    /// Largest category any categorical split on this feature names, if any does.
    max_category: Option<u32>,
}

fn ranges(forest: &Forest) -> Vec<Range> {
    let mut r = vec![
        Range { lo: f32::INFINITY, hi: f32::NEG_INFINITY, max_category: None };
        forest.n_features
    ];
    for node in forest.trees.iter().flat_map(|t| &t.nodes) {
        let Node::Split { feature, test, .. } = node else { continue };
        let range = &mut r[*feature as usize];
        match *test {
            Test::Numeric { threshold, .. } if threshold.is_finite() => {
                range.lo = range.lo.min(threshold);
                range.hi = range.hi.max(threshold);
            }
            Test::Numeric { .. } => {}
            Test::Categorical { offset, words, .. } => {
                let bits = &forest.cat_words[offset as usize..(offset + words) as usize];
                let top = bits.iter().enumerate().rev().find(|(_, w)| **w != 0);
                if let Some((i, w)) = top {
                    let c = i as u32 * 32 + 31 - w.leading_zeros();
                    range.max_category = Some(range.max_category.map_or(c, |m| m.max(c)));
                }
            }
        }
    }
    r
}

/// `n` rows for `forest`, deterministic in `seed`: numeric features uniform over the span of
/// their thresholds widened by 10% each side, categorical ones uniform over 0 to one past the
/// largest category split on, 2% of values missing (NaN). Features no split uses are 0.
pub fn synthetic_rows(forest: &Forest, n: usize, seed: u64) -> Batch {
    let ranges = ranges(forest);
    let mut state = seed | 1;
    let mut next = move || {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    };
    let mut values = Vec::with_capacity(n * forest.n_features);
    for range in &ranges {
        for _ in 0..n {
            let u = next();
            let unit = (u >> 40) as f32 / (1u64 << 24) as f32;
            let v = if u % 50 == 0 {
                f32::NAN
            } else if let Some(m) = range.max_category {
                (u >> 8) as u32 as f32 % (m as f32 + 2.0)
            } else if range.lo <= range.hi {
                let pad = ((range.hi - range.lo) * 0.1).max(1e-3);
                (range.lo - pad) + unit * (range.hi - range.lo + 2.0 * pad)
            } else {
                0.0
            };
            values.push(v);
        }
    }
    Batch::from_columns(values, n, forest.n_features).expect("n * n_features values")
}

/// `n` rows of `width` standard-normal values, deterministic in `seed`: inputs for a dense
/// net, whose features are usually standardized.
pub fn normal_rows(width: usize, n: usize, seed: u64) -> Batch {
    let mut state = seed | 1;
    let mut uniform = move || {
        // xorshift64*, top 24 bits: a uniform in (0, 1].
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        ((state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40) as f32 + 1.0) / (1u32 << 24) as f32
    };
    let mut values = vec![0.0f32; width * n];
    for v in values.iter_mut() {
        // Box-Muller: one normal per pair of uniforms.
        let (u1, u2) = (uniform(), uniform());
        *v = (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos();
    }
    Batch::from_columns(values, n, width).expect("width x n values")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_fall_on_both_sides_of_splits() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/models/golden/lgb_categorical/model.txt");
        let forest = crate::load_forest(dir).unwrap();
        let batch = synthetic_rows(&forest, 2000, 7);
        let bits = |b: &Batch| b.as_slice().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert!(bits(&batch) == bits(&synthetic_rows(&forest, 2000, 7)), "deterministic");
        let mut left = 0;
        let mut total = 0;
        for node in forest.trees.iter().flat_map(|t| &t.nodes) {
            if let Node::Split { feature, test, .. } = node {
                total += 1;
                let l = (0..2000)
                    .filter(|&r| {
                        test.goes_left(batch.value(r, *feature as usize), &forest.cat_words)
                    })
                    .count();
                if l > 0 && l < 2000 {
                    left += 1;
                }
            }
        }
        assert!(left * 10 >= total * 9, "{left} of {total} splits see both sides");
    }
}
