//! QuickScorer-style scoring for forests of small trees (at most 64 leaves each), vectorised
//! across 16 rows (Lucchese et al., SIGIR 2015; V-QuickScorer, SIGIR 2016).
//!
//! Each tree's leaves are numbered left to right and a row's state per tree is a 64-bit mask
//! of leaves still reachable. A split that sends the row right removes its left subtree's
//! leaves (one AND); the row's leaf is then the lowest bit left. Splits are grouped by
//! feature and sorted by threshold, so for a value `x` the splits it sends right (`x > t`) are
//! a prefix of the feature's list: the scan stops at the first threshold not below `x`. No
//! tree is walked and no pointer is chased; the work is a stream of compares and ANDs that the
//! compiler vectorises over 16 rows (one lane per row).
//!
//! NaN goes by each split's default: a NaN value stops the scan at once (`t < NaN` is false)
//! and the feature's NaN-goes-right splits are applied instead. Categorical and zero-band
//! splits are evaluated one by one with the shared scalar rule (`layout::goes_right`); the
//! scorer is only chosen when they are rare.

use crate::backend::cpu::kernel::Kernel;
use crate::backend::cpu::layout::{FastForest, Node, goes_right, pack_split};
use crate::model::Forest;
use crate::model::gbdt::{CategoryRule, Node as TreeNode, Test};

/// Rows scored together, one per lane.
pub(crate) const ROWS: usize = 16;

/// A forest in QuickScorer form.
#[derive(Debug, Clone)]
pub(crate) struct Bitvector {
    /// Per feature `f`, its numeric splits are `starts[f]..starts[f + 1]` of the arrays below,
    /// by ascending threshold.
    starts: Vec<u32>,
    thresholds: Vec<f32>,
    trees: Vec<u32>,
    masks: Vec<u64>,
    /// Per feature, the splits that send NaN right: `nan_starts[f]..nan_starts[f + 1]`.
    nan_starts: Vec<u32>,
    nan_trees: Vec<u32>,
    nan_masks: Vec<u64>,
    /// Categorical and zero-band splits: (tree, the node in compact form, mask).
    special: Vec<(u32, Node, u64)>,
    /// Leaf values, 64 slots per tree, by left-to-right leaf number.
    pub leaf_values: Vec<f64>,
    cat: Vec<u32>,
    rule: CategoryRule,
    pub n_trees: usize,
    /// Trees of each output group, in tree order (summing group by group then costs one pass
    /// over the trees, not one per group: 65,536 classes made it 2^32 steps per 16 rows).
    pub group_trees: Vec<Vec<u32>>,
}

impl Bitvector {
    /// The QuickScorer form of `forest`, or `None` when a tree has more than 64 leaves.
    /// `fast` supplies the compact form of special splits (shared decision code).
    pub fn new(forest: &Forest, fast: &FastForest) -> Option<Bitvector> {
        if forest.trees.iter().any(|t| t.leaves() > 64) {
            return None;
        }
        let nf = forest.n_features;
        let mut numeric: Vec<Vec<(f32, u32, u64)>> = vec![Vec::new(); nf];
        let mut nan: Vec<Vec<(u32, u64)>> = vec![Vec::new(); nf];
        let mut special = Vec::new();
        // Special splits in compact form, with a category table of their own.
        let mut cat = Vec::new();
        let mut leaf_values = vec![0.0; forest.trees.len() * 64];
        for (t, tree) in forest.trees.iter().enumerate() {
            // Left-to-right leaf numbers and each split's left-subtree leaf range, by an
            // explicit in-order walk (trees may be 512 deep).
            let mut first_leaf = vec![0u32; tree.nodes.len()];
            let mut end_leaf = vec![0u32; tree.nodes.len()];
            let mut next = 0u32;
            // (node, children done?)
            let mut stack = vec![(0usize, false)];
            while let Some((i, done)) = stack.pop() {
                match tree.nodes[i] {
                    TreeNode::Leaf(v) => {
                        leaf_values[t * 64 + next as usize] = v;
                        first_leaf[i] = next;
                        next += 1;
                        end_leaf[i] = next;
                    }
                    TreeNode::Split { left, right, .. } => {
                        if done {
                            first_leaf[i] = first_leaf[left as usize];
                            end_leaf[i] = end_leaf[right as usize];
                        } else {
                            stack.push((i, true));
                            stack.push((right as usize, false));
                            stack.push((left as usize, false));
                        }
                    }
                }
            }
            for node in &tree.nodes {
                let TreeNode::Split { feature, test, left, .. } = *node else { continue };
                let (lo, hi) = (first_leaf[left as usize], end_leaf[left as usize]);
                let left_bits =
                    if hi - lo == 64 { u64::MAX } else { ((1u64 << (hi - lo)) - 1) << lo };
                let mask = !left_bits;
                match test {
                    Test::Numeric { threshold, nan_left, zero_left: None } => {
                        numeric[feature as usize].push((threshold, t as u32, mask));
                        if !nan_left {
                            nan[feature as usize].push((t as u32, mask));
                        }
                    }
                    _ => {
                        // Offset 0: only the decision is used. The layout was built from this
                        // forest, so packing cannot fail here.
                        let compact = pack_split(
                            &mut cat,
                            fast.format,
                            feature,
                            test,
                            0,
                            &forest.cat_words,
                            fast.rule,
                        )
                        .ok()?;
                        special.push((t as u32, compact, mask));
                    }
                }
            }
        }
        let mut bv = Bitvector {
            starts: vec![0],
            thresholds: Vec::new(),
            trees: Vec::new(),
            masks: Vec::new(),
            nan_starts: vec![0],
            nan_trees: Vec::new(),
            nan_masks: Vec::new(),
            special,
            leaf_values,
            cat,
            rule: fast.rule,
            n_trees: forest.trees.len(),
            group_trees: {
                let mut by_group = vec![Vec::new(); forest.n_groups];
                for (t, &g) in fast.groups.iter().enumerate().take(forest.trees.len()) {
                    by_group[g as usize].push(t as u32);
                }
                by_group
            },
        };
        for (mut splits, nans) in numeric.into_iter().zip(nan) {
            // Stable: equal thresholds keep tree order (any order gives the same ANDs).
            splits.sort_by(|a, b| a.0.total_cmp(&b.0));
            for (threshold, tree, mask) in splits {
                bv.thresholds.push(threshold);
                bv.trees.push(tree);
                bv.masks.push(mask);
            }
            bv.starts.push(bv.thresholds.len() as u32);
            for (tree, mask) in nans {
                bv.nan_trees.push(tree);
                bv.nan_masks.push(mask);
            }
            bv.nan_starts.push(bv.nan_trees.len() as u32);
        }
        Some(bv)
    }

    /// Share of splits evaluated one by one (categorical or zero-band).
    pub fn special_share(&self) -> f64 {
        let all = self.thresholds.len() + self.special.len();
        self.special.len() as f64 / all.max(1) as f64
    }

    /// Leaves of 16 rows for every tree with `kernel`'s instruction set: `state[t * ROWS + l]`
    /// ends as the mask of tree `t` for lane `l`, whose lowest set bit is the leaf. `block`
    /// holds the 16 rows feature-major (`block[f * ROWS + l]`, NaN in unused lanes); `state`
    /// holds `n_trees * ROWS` entries.
    pub fn leaves(&self, kernel: Kernel, block: &[f32], state: &mut [u64]) {
        assert!(
            block.len() >= (self.starts.len() - 1) * ROWS && state.len() >= self.n_trees * ROWS
        );
        match kernel {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the kernel was checked available when chosen.
            Kernel::Avx512 => unsafe { leaves_avx512(self, block, state) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            Kernel::Avx2 => unsafe { leaves_avx2(self, block, state) },
            _ => self.leaves_portable(block, state),
        }
    }

    #[inline(always)]
    fn leaves_portable(&self, block: &[f32], state: &mut [u64]) {
        let column =
            |f: usize| -> [f32; ROWS] { block[f * ROWS..(f + 1) * ROWS].try_into().expect("ROWS") };
        state.fill(u64::MAX);
        for f in 0..self.starts.len() - 1 {
            let xs = column(f);
            let mut top = f32::NEG_INFINITY;
            let mut any_nan = false;
            for &x in &xs {
                top = top.max(x);
                any_nan |= x.is_nan();
            }
            let (s, e) = (self.starts[f] as usize, self.starts[f + 1] as usize);
            for k in s..e {
                let t = self.thresholds[k];
                // Ascending thresholds: once no lane exceeds t, none exceeds the rest. Neither
                // is NaN (thresholds are validated; `max` skips NaN lanes).
                if t >= top {
                    break;
                }
                let at = self.trees[k] as usize * ROWS;
                let lanes: &mut [u64; ROWS] = (&mut state[at..at + ROWS]).try_into().expect("ROWS");
                let mask = self.masks[k];
                for l in 0..ROWS {
                    lanes[l] &= if xs[l] > t { mask } else { u64::MAX };
                }
            }
            if any_nan {
                let (s, e) = (self.nan_starts[f] as usize, self.nan_starts[f + 1] as usize);
                for k in s..e {
                    let at = self.nan_trees[k] as usize * ROWS;
                    let mask = self.nan_masks[k];
                    for l in 0..ROWS {
                        state[at + l] &= if xs[l].is_nan() { mask } else { u64::MAX };
                    }
                }
            }
        }
        for &(tree, node, mask) in &self.special {
            let xs = column(node.feature());
            let at = tree as usize * ROWS;
            for l in 0..ROWS {
                if goes_right(node, xs[l], &self.cat, self.rule) {
                    state[at + l] &= mask;
                }
            }
        }
    }
}

/// The same code compiled for AVX-512: the 16-lane compare-and-AND becomes a mask compare and
/// two masked 64-bit ANDs.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl")]
unsafe fn leaves_avx512(bv: &Bitvector, block: &[f32], state: &mut [u64]) {
    bv.leaves_portable(block, state)
}

/// The same code compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn leaves_avx2(bv: &Bitvector, block: &[f32], state: &mut [u64]) {
    bv.leaves_portable(block, state)
}
