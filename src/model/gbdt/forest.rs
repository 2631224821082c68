//! The validated in-memory forest every tree backend reads, whatever file it came from.
//!
//! Parsers (`lightgbm.rs`, `xgboost.rs`) translate their format into [`RawNode`]s and hand them
//! to [`build_tree`], which checks every index, rejects cycles and shared subtrees, caps the
//! depth and renumbers the reachable nodes in pre-order. After that, a [`Forest`] is trusted:
//! every child index is in range, every feature index is below [`Forest::n_features`], every
//! threshold and leaf value is finite, every category set lies inside [`Forest::cat_words`].
//!
//! Decisions are normalised at load so that one f32 comparison reproduces the training library
//! exactly (see [`Test`]); the reference scorer and every faster path share these semantics.

use crate::error::{ModelFormat, ModelProblem};
use crate::model::transform::Transform;

/// Deepest tree accepted at load. Real boosted trees stay far below this (a 255-leaf chain is
/// 254 deep); the cap bounds the work per row and any per-path buffers a backend allocates.
pub const MAX_DEPTH: usize = 512;

/// Values with `|x| <= ZERO_BAND` count as zero for LightGBM (`kZeroThreshold = 1e-35f`).
pub const ZERO_BAND: f32 = 1e-35;

/// How a categorical split turns an input value into a category number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CategoryRule {
    /// LightGBM: the value is truncated towards zero (`static_cast<int>`), so `-0.5` is category
    /// 0; values that truncate below zero, NaN, and values of 2^31 or more are no category.
    LightGbm,
    /// XGBoost: negative values and values of 2^24 or more are no category; others truncate.
    Xgboost,
}

impl CategoryRule {
    /// The category an input selects, or `None` when it selects none (NaN included).
    #[inline]
    pub fn category(self, x: f32) -> Option<u32> {
        let valid = match self {
            CategoryRule::LightGbm => x > -1.0 && x < 2_147_483_648.0,
            CategoryRule::Xgboost => (0.0..16_777_216.0).contains(&x),
        };
        // The range test is false for NaN, and inside it truncation fits in u32.
        valid.then_some(x as u32)
    }
}

/// The decision at a split node, normalised so that each format's rule is reproduced exactly for
/// every f32 input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Test {
    /// Go left iff `x <= threshold`, after two overrides: NaN goes left iff `nan_left`; when
    /// `zero_left` is `Some(d)`, a value with `|x| <= ZERO_BAND` goes left iff `d`.
    ///
    /// `threshold` is chosen at load: LightGBM's `x <= t` on doubles becomes `x <= t32` with
    /// `t32` the largest f32 not above `t`; XGBoost's `x < t` on f32 becomes `x <= pred(t)`.
    Numeric {
        /// Inclusive upper bound of the left branch.
        threshold: f32,
        /// Where NaN goes.
        nan_left: bool,
        /// Where values in the zero band go, when the split treats zero as missing.
        zero_left: Option<bool>,
    },
    /// Go left iff the input's category is in the set equals `in_set_left`; NaN goes left iff
    /// `nan_left`; an input that selects no category counts as not in the set.
    Categorical {
        /// First word of the set's bitset in [`Forest::cat_words`].
        offset: u32,
        /// Number of 32-bit words in the bitset (bit `c % 32` of word `c / 32` is category `c`).
        words: u32,
        /// Which side the categories in the set take.
        in_set_left: bool,
        /// Where NaN goes.
        nan_left: bool,
        /// How values become categories.
        rule: CategoryRule,
    },
}

impl Test {
    /// The reference decision: `true` to go left. `cat_words` is the owning forest's bitsets.
    #[inline]
    pub fn goes_left(&self, x: f32, cat_words: &[u32]) -> bool {
        match *self {
            Test::Numeric { threshold, nan_left, zero_left } => {
                if x.is_nan() {
                    return nan_left;
                }
                if let Some(zero_left) = zero_left
                    && x.abs() <= ZERO_BAND
                {
                    return zero_left;
                }
                x <= threshold
            }
            Test::Categorical { offset, words, in_set_left, nan_left, rule } => {
                if x.is_nan() {
                    return nan_left;
                }
                // offset..offset+words was checked against cat_words at load.
                let set = &cat_words[offset as usize..(offset + words) as usize];
                let in_set = rule.category(x).is_some_and(|c| {
                    set.get((c / 32) as usize).is_some_and(|w| (w >> (c % 32)) & 1 == 1)
                });
                in_set == in_set_left
            }
        }
    }
}

/// One node of a validated tree.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Node {
    /// A leaf and its value (as written by the training library).
    Leaf(f64),
    /// A split: `left` and `right` index the same tree's node array and are greater than the
    /// split's own index (pre-order), so a walk from the root always ends.
    Split {
        /// Feature tested (below the forest's `n_features`).
        feature: u32,
        /// The decision.
        test: Test,
        /// Index of the left child.
        left: u32,
        /// Index of the right child.
        right: u32,
    },
}

/// One validated tree; the root is `nodes[0]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Tree {
    /// Nodes in pre-order.
    pub nodes: Vec<Node>,
    /// The output group (class) the tree adds to.
    pub group: u32,
}

impl Tree {
    /// The leaf value a row reaches. `value(f)` gives the row's feature `f`.
    #[inline]
    pub fn leaf_value(&self, cat_words: &[u32], value: impl Fn(usize) -> f32) -> f64 {
        let mut i = 0usize;
        loop {
            // Children were bounds-checked and made to point forward at load.
            match self.nodes[i] {
                Node::Leaf(v) => return v,
                Node::Split { feature, test, left, right } => {
                    let go_left = test.goes_left(value(feature as usize), cat_words);
                    i = if go_left { left } else { right } as usize;
                }
            }
        }
    }

    /// Depth of the deepest leaf (a single leaf has depth 0).
    pub fn depth(&self) -> usize {
        // Pre-order with forward children: one pass computes every node's depth.
        let mut depth = vec![0usize; self.nodes.len()];
        let mut max = 0;
        for (i, node) in self.nodes.iter().enumerate() {
            max = max.max(depth[i]);
            if let Node::Split { left, right, .. } = *node {
                depth[left as usize] = depth[i] + 1;
                depth[right as usize] = depth[i] + 1;
            }
        }
        max
    }

    /// Number of leaves.
    pub fn leaves(&self) -> usize {
        self.nodes.iter().filter(|n| matches!(n, Node::Leaf(_))).count()
    }
}

/// How leaf values are summed, so that raw scores match the training library's arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accumulation {
    /// In f64, starting from the base margin, trees in file order (LightGBM).
    F64,
    /// In f32, starting from the f32 base margin, trees in file order (XGBoost).
    F32,
}

/// Refuses a list of feature names that repeats one (one pass, hashed).
pub(crate) fn check_unique_names(names: &[String]) -> Result<(), crate::ModelProblem> {
    let mut seen = std::collections::HashMap::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        if let Some(&first) = seen.get(name.as_str()) {
            return Err(crate::ModelProblem::DuplicateName {
                name: name.clone(),
                first,
                second: i,
            });
        }
        seen.insert(name.as_str(), i);
    }
    Ok(())
}

/// A validated tree ensemble. Its fields are private, so a `Forest` is always one its parser
/// checked (every child, feature, category set and root in range): read it through the
/// accessors.
#[derive(Debug, Clone, PartialEq)]
pub struct Forest {
    /// The format the forest was read from.
    pub(crate) format: ModelFormat,
    /// The objective as named in the file.
    pub(crate) objective: String,
    /// The output transform the objective implies.
    pub(crate) transform: Transform,
    /// Width of an input row.
    pub(crate) n_features: usize,
    /// Feature names in input order (the format's defaults when the file has none).
    pub(crate) feature_names: Vec<String>,
    /// Raw outputs per row (classes for multiclass, else 1).
    pub(crate) n_groups: usize,
    /// The trees, in the order the library sums them.
    pub(crate) trees: Vec<Tree>,
    /// Bitsets of every categorical split.
    pub(crate) cat_words: Vec<u32>,
    /// Per-group starting value of the sum (0 for LightGBM, whose first trees hold it).
    pub(crate) base_margin: Vec<f64>,
    /// Divide each group's sum of trees by the number of iterations before the transform
    /// (LightGBM random forest); raw margins stay plain sums, as LightGBM reports them.
    pub(crate) average_trees: bool,
    /// How sums are formed.
    pub(crate) accumulation: Accumulation,
}

impl Forest {
    /// The format the forest was read from.
    pub fn format(&self) -> ModelFormat {
        self.format
    }

    /// The objective as named in the file.
    pub fn objective(&self) -> &str {
        &self.objective
    }

    /// The output transform the objective implies.
    pub fn transform(&self) -> Transform {
        self.transform
    }

    /// Width of an input row.
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// Feature names in input order (the format's defaults when the file has none).
    pub fn feature_names(&self) -> &[String] {
        &self.feature_names
    }

    /// Raw outputs per row (classes for multiclass, else 1).
    pub fn n_groups(&self) -> usize {
        self.n_groups
    }

    /// The trees, in the order the library sums them.
    pub fn trees(&self) -> &[Tree] {
        &self.trees
    }

    /// Bitsets of every categorical split.
    pub fn cat_words(&self) -> &[u32] {
        &self.cat_words
    }

    /// Per-group starting value of the sum (0 for LightGBM, whose first trees hold it).
    pub fn base_margin(&self) -> &[f64] {
        &self.base_margin
    }

    /// Whether each group's sum is divided by the number of iterations before the transform
    /// (LightGBM random forest).
    pub fn average_trees(&self) -> bool {
        self.average_trees
    }

    /// How sums are formed.
    pub fn accumulation(&self) -> Accumulation {
        self.accumulation
    }

    /// Number of output values per row for raw margins (`raw = true`) or transformed output.
    pub fn output_width(&self, raw: bool) -> usize {
        if raw { self.n_groups } else { self.transform.output_width(self.n_groups) }
    }

    /// Raw margins of one row into `out` (length `n_groups`); the scalar truth for every backend.
    ///
    /// `value(f)` gives the row's feature `f`, for any `f < n_features`.
    pub fn raw_row(&self, value: impl Fn(usize) -> f32 + Copy, out: &mut [f64]) {
        match self.accumulation {
            Accumulation::F64 => {
                out.copy_from_slice(&self.base_margin);
                for tree in &self.trees {
                    out[tree.group as usize] += tree.leaf_value(&self.cat_words, value);
                }
            }
            Accumulation::F32 => {
                // `out` only ever holds f32 values, so each step is one f32 addition.
                for (o, &b) in out.iter_mut().zip(&self.base_margin) {
                    *o = f64::from(b as f32);
                }
                for tree in &self.trees {
                    let o = &mut out[tree.group as usize];
                    let leaf = tree.leaf_value(&self.cat_words, value) as f32;
                    *o = f64::from(*o as f32 + leaf);
                }
            }
        }
    }

    /// Transformed prediction of one row from its raw margins (as [`Forest::raw_row`] gives
    /// them): averages over iterations for random forests, then applies the transform.
    pub fn transform_row(&self, raw: &[f64], out: &mut [f64]) {
        if self.average_trees {
            // LightGBM reports the plain sum as the raw score and averages only for the
            // transformed prediction.
            let iterations = (self.trees.len() / self.n_groups.max(1)).max(1) as f64;
            let averaged: Vec<f64> = raw.iter().map(|r| r / iterations).collect();
            self.transform.apply(&averaged, out);
        } else {
            self.transform.apply(raw, out);
        }
    }

    /// Depth of the deepest tree.
    pub fn max_depth(&self) -> usize {
        self.trees.iter().map(Tree::depth).max().unwrap_or(0)
    }
}

/// A node as a parser reads it, with children in the file's own numbering (already mapped into
/// one index space for formats that number leaves separately).
#[derive(Debug, Clone, Copy)]
pub(crate) enum RawNode {
    /// A leaf value.
    Leaf(f64),
    /// A split with unchecked child indices.
    Split { feature: u32, test: Test, left: i64, right: i64 },
}

/// Which child pointer of an already placed split a pending node fills.
#[derive(Debug, Clone, Copy)]
struct ChildSlot {
    parent: usize,
    is_left: bool,
}

/// Validates one tree given in file numbering and returns it in pre-order.
///
/// Errors carry the offending node's index in file numbering.
pub(crate) fn build_tree(raw: &[RawNode], group: u32) -> Result<Tree, (usize, ModelProblem)> {
    if raw.is_empty() {
        return Err((0, ModelProblem::Empty));
    }
    let n = raw.len();
    let mut seen = vec![false; n];
    let mut nodes: Vec<Node> = Vec::with_capacity(n);
    // (file index, depth, the parent's child pointer to patch once the node has its new index)
    let mut stack: Vec<(usize, usize, Option<ChildSlot>)> = vec![(0, 0, None)];
    while let Some((idx, depth, parent)) = stack.pop() {
        if depth > MAX_DEPTH {
            return Err((idx, ModelProblem::TooDeep { max: MAX_DEPTH }));
        }
        if std::mem::replace(&mut seen[idx], true) {
            return Err((idx, ModelProblem::Cycle { node: idx }));
        }
        let me = nodes.len() as u32;
        if let Some(ChildSlot { parent, is_left }) = parent
            && let Node::Split { left, right, .. } = &mut nodes[parent]
        {
            *(if is_left { left } else { right }) = me;
        }
        match raw[idx] {
            RawNode::Leaf(v) => {
                if !v.is_finite() {
                    return Err((idx, ModelProblem::NonFiniteLeaf { value: v }));
                }
                nodes.push(Node::Leaf(v));
            }
            RawNode::Split { feature, test, left, right } => {
                for child in [left, right] {
                    if child < 0 || child as u64 >= n as u64 {
                        return Err((idx, ModelProblem::ChildOutOfRange { child, len: n }));
                    }
                }
                nodes.push(Node::Split { feature, test, left: 0, right: 0 });
                let slot = nodes.len() - 1;
                // Right pushed first so the left subtree is laid out right after its parent.
                stack.push((
                    right as usize,
                    depth + 1,
                    Some(ChildSlot { parent: slot, is_left: false }),
                ));
                stack.push((
                    left as usize,
                    depth + 1,
                    Some(ChildSlot { parent: slot, is_left: true }),
                ));
            }
        }
    }
    Ok(Tree { nodes, group })
}

/// The largest f32 that is not above `t`: `x <= t` in f64 equals `x <= f32_floor(t)` in f32 for
/// every f32 `x`. Saturates to `-inf` below `-f32::MAX` and to `f32::MAX` above it.
pub fn f32_floor(t: f64) -> f32 {
    let f = t as f32;
    if f64::from(f) > t { f.next_down() } else { f }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f32_floor_matches_f64_comparison_around_thresholds() {
        let ts = [0.1, -0.1, 1.0 / 3.0, 1e-40, -1e-40, 1e300, -1e300, 0.0, 2.5, 16777217.0];
        for &t in &ts {
            let t32 = f32_floor(t);
            let mut x = (t as f32).next_down().next_down();
            for _ in 0..5 {
                assert_eq!(f64::from(x) <= t, x <= t32, "t={t} x={x}");
                x = x.next_up();
            }
            for x in [f32::MAX, -f32::MAX, f32::INFINITY, f32::NEG_INFINITY, 0.0] {
                assert_eq!(f64::from(x) <= t, x <= t32, "t={t} x={x}");
            }
        }
    }

    #[test]
    fn categories_follow_each_library() {
        assert_eq!(CategoryRule::LightGbm.category(-0.5), Some(0));
        assert_eq!(CategoryRule::Xgboost.category(-0.5), None);
        assert_eq!(CategoryRule::LightGbm.category(-1.0), None);
        assert_eq!(CategoryRule::LightGbm.category(f32::NAN), None);
        assert_eq!(CategoryRule::Xgboost.category(3.9), Some(3));
        assert_eq!(CategoryRule::Xgboost.category(16_777_216.0), None);
        assert_eq!(CategoryRule::LightGbm.category(f32::INFINITY), None);
    }

    #[test]
    fn build_tree_rejects_cycles_and_bad_children() {
        let t = Test::Numeric { threshold: 0.0, nan_left: true, zero_left: None };
        let split = |l, r| RawNode::Split { feature: 0, test: t, left: l, right: r };
        let cyc = [split(1, 2), RawNode::Leaf(1.0), split(0, 1)];
        assert!(matches!(build_tree(&cyc, 0), Err((_, ModelProblem::Cycle { .. }))));
        let oob = [split(1, 7), RawNode::Leaf(1.0)];
        assert!(matches!(build_tree(&oob, 0), Err((0, ModelProblem::ChildOutOfRange { .. }))));
        let neg = [split(-3, 1), RawNode::Leaf(1.0)];
        assert!(matches!(build_tree(&neg, 0), Err((0, ModelProblem::ChildOutOfRange { .. }))));
        let ok = [split(2, 1), RawNode::Leaf(1.0), RawNode::Leaf(2.0)];
        let tree = build_tree(&ok, 0).unwrap();
        assert_eq!(tree.nodes[1], Node::Leaf(2.0), "left subtree follows its parent");
        assert_eq!(tree.depth(), 1);
    }

    /// A chain of `k` splits (each with a leaf on the left) is `k` deep.
    fn chain(k: usize) -> Vec<RawNode> {
        let t = Test::Numeric { threshold: 0.0, nan_left: true, zero_left: None };
        let mut nodes = Vec::new();
        for i in 0..k as i64 {
            nodes.push(RawNode::Split { feature: 0, test: t, left: 2 * i + 1, right: 2 * i + 2 });
            nodes.push(RawNode::Leaf(i as f64));
        }
        nodes.push(RawNode::Leaf(-1.0));
        nodes
    }

    #[test]
    fn build_tree_caps_depth() {
        assert_eq!(build_tree(&chain(MAX_DEPTH), 0).unwrap().depth(), MAX_DEPTH);
        let err = build_tree(&chain(MAX_DEPTH + 1), 0).unwrap_err();
        assert!(matches!(err.1, ModelProblem::TooDeep { max: MAX_DEPTH }), "{err:?}");
    }
}
