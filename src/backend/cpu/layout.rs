//! The compact forest layout every fast CPU kernel walks, built once at load from a [`Forest`].
//!
//! Each node is 8 bytes ([`Node`]): a threshold and a packed word holding the feature, the
//! distance to the node's children and four flags. A node's two children sit side by side
//! (left at `i + offset`, right at `i + offset + 1`), so a step is `i += offset + go_right` with
//! no branch. Trees are laid out breadth first, so the top levels that every row visits share
//! cache lines.
//!
//! A leaf is a node whose offset is 0 (it steps onto itself) and whose feature is the row
//! tile's padding column, which always holds NaN: NaN goes left at a leaf, so a walk that has
//! reached its leaf stays there while the other lanes of a SIMD group finish theirs.
//!
//! Leaf values stay in f64 in a parallel array, so sums are formed exactly as the reference
//! scorer forms them.

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, ModelFormat, Result};
use crate::model::Forest;
use crate::model::gbdt::{Accumulation, CategoryRule, Node as TreeNode, Test, ZERO_BAND};

/// Bits of [`Node::meta`] holding the feature index.
pub(crate) const FEATURE_MASK: u32 = 0x3fff;
/// Shift of the child offset in [`Node::meta`].
pub(crate) const OFFSET_SHIFT: u32 = 14;
/// Largest distance from a node to its children that the layout can hold.
pub(crate) const MAX_OFFSET: u32 = 0xfff;
/// The left child is a leaf (so a walk that goes left is done without loading the leaf).
pub(crate) const LEFT_LEAF: u32 = 1 << 26;
/// The right child is a leaf.
pub(crate) const RIGHT_LEAF: u32 = 1 << 27;
/// NaN goes right.
pub(crate) const NAN_RIGHT: u32 = 1 << 28;
/// The node is categorical: its threshold bits are an offset into [`FastForest::cat`].
pub(crate) const CATEGORICAL: u32 = 1 << 29;
/// Values within the zero band go the way [`ZERO_RIGHT`] says (LightGBM's zero-as-missing).
pub(crate) const ZERO: u32 = 1 << 30;
/// With [`ZERO`]: values within the zero band go right.
pub(crate) const ZERO_RIGHT: u32 = 1 << 31;
/// Set in a categorical set's header word when the categories in the set go left.
pub(crate) const IN_SET_LEFT: u32 = 1 << 31;

/// Lanes a kernel advances together; lane counts passed to `Kernel::walk` are multiples of it.
pub(crate) const LANES: usize = 16;

/// Rows a kernel scores per block (the row tile's height).
pub(crate) const BLOCK: usize = 64;
/// Tree roots are padded to a multiple of this, so kernels that walk many trees of one row at
/// once never read past the end.
pub(crate) const ROOT_PAD: usize = 64;

/// One node of the compact layout (feature in bits 0-13, child offset in bits 14-25, then the
/// flags `LEFT_LEAF`, `RIGHT_LEAF`, `NAN_RIGHT`, `CATEGORICAL`, `ZERO`, `ZERO_RIGHT`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub(crate) struct Node {
    /// Numeric split: go right iff `x > threshold` (NaN and the zero band by the flags).
    /// Categorical split: the bits are the set's offset in [`FastForest::cat`].
    pub threshold: f32,
    /// Feature, child offset and flags, packed.
    pub meta: u32,
}

impl Node {
    /// The feature the node reads (the padding column for a leaf).
    #[inline]
    pub fn feature(self) -> usize {
        (self.meta & FEATURE_MASK) as usize
    }

    /// Distance to the left child; 0 for a leaf.
    #[inline]
    pub fn offset(self) -> u32 {
        (self.meta >> OFFSET_SHIFT) & MAX_OFFSET
    }
}

/// A forest in the compact layout, with what a kernel needs to sum its leaves.
#[derive(Debug, Clone)]
pub(crate) struct FastForest {
    /// Every tree's nodes, tree after tree.
    pub nodes: Vec<Node>,
    /// Leaf values, parallel to `nodes` (0 for splits).
    pub values: Vec<f64>,
    /// Root of each tree, padded with a leaf of value 0 to a multiple of [`ROOT_PAD`].
    pub roots: Vec<u32>,
    /// Number of real trees (`roots` past it is padding).
    pub n_trees: usize,
    /// Output group of each real tree.
    pub groups: Vec<u32>,
    /// Categorical sets: a header word (`IN_SET_LEFT` | number of words), then the words.
    pub cat: Vec<u32>,
    /// How categorical splits read a value.
    pub rule: CategoryRule,
    /// Width of a row; the tile's padding column is at this index.
    pub n_features: usize,
    /// Whether any split is categorical or uses the zero band (kernels skip that work
    /// otherwise).
    pub has_special: bool,
    /// How sums are formed.
    pub accumulation: Accumulation,
    /// The format the forest came from (for error messages).
    pub format: ModelFormat,
    /// Per-group starting value of the sum.
    pub base_margin: Vec<f64>,
}

impl FastForest {
    /// Lays `forest` out. Fails with `Unsupported` for forests the packed node cannot hold
    /// (65,535 features or more, or a tree whose breadth-first layout puts children more than
    /// 4,095 nodes away); those keep the reference scorer.
    pub fn new(forest: &Forest) -> Result<Self> {
        let n_features = forest.n_features;
        if n_features >= FEATURE_MASK as usize {
            return Err(unsupported(
                forest.format,
                format!(
                    "the fast CPU layout holds at most {} features, the model has {n_features}",
                    FEATURE_MASK - 1
                ),
            ));
        }
        let rule = forest
            .trees
            .iter()
            .flat_map(|t| &t.nodes)
            .find_map(|n| match n {
                TreeNode::Split { test: Test::Categorical { rule, .. }, .. } => Some(*rule),
                _ => None,
            })
            .unwrap_or(CategoryRule::LightGbm);
        let mut out = FastForest {
            nodes: Vec::new(),
            values: Vec::new(),
            roots: Vec::with_capacity(forest.trees.len().next_multiple_of(ROOT_PAD)),
            n_trees: forest.trees.len(),
            groups: forest.trees.iter().map(|t| t.group).collect(),
            cat: Vec::new(),
            rule,
            n_features,
            has_special: false,
            accumulation: forest.accumulation,
            format: forest.format,
            base_margin: forest.base_margin.clone(),
        };
        let mut queue = std::collections::VecDeque::new();
        for (t, tree) in forest.trees.iter().enumerate() {
            let root = out.push_leaf(0.0);
            out.roots.push(root as u32);
            queue.push_back((0usize, root));
            while let Some((orig, at)) = queue.pop_front() {
                match tree.nodes[orig] {
                    TreeNode::Leaf(v) => out.values[at] = v,
                    TreeNode::Split { feature, test, left, right } => {
                        let children = out.push_leaf(0.0);
                        out.push_leaf(0.0);
                        let offset = (children - at) as u32;
                        if offset > MAX_OFFSET {
                            return Err(unsupported(
                                forest.format,
                                format!(
                                    "tree {t} is too wide for the fast CPU layout \
                                     (children {offset} nodes away, at most {MAX_OFFSET})"
                                ),
                            ));
                        }
                        let mut node = pack_split(
                            &mut out.cat,
                            forest.format,
                            feature,
                            test,
                            offset,
                            &forest.cat_words,
                            rule,
                        )?;
                        out.has_special |= node.meta & (CATEGORICAL | ZERO) != 0;
                        for (child, flag) in [(left, LEFT_LEAF), (right, RIGHT_LEAF)] {
                            if matches!(tree.nodes[child as usize], TreeNode::Leaf(_)) {
                                node.meta |= flag;
                            }
                        }
                        out.nodes[at] = node;
                        queue.push_back((left as usize, children));
                        queue.push_back((right as usize, children + 1));
                    }
                }
            }
        }
        let pad = out.push_leaf(0.0) as u32;
        out.roots.resize(out.n_trees.next_multiple_of(ROOT_PAD).max(ROOT_PAD), pad);
        out.check()?;
        Ok(out)
    }

    /// Checks every index the kernels load without bounds checks: each split's children are
    /// inside `nodes`, each feature is at most the padding column, each categorical set lies
    /// inside `cat`, each root is a node. Construction guarantees all of it; this makes the
    /// guarantee explicit, once, at load.
    fn check(&self) -> Result<()> {
        let bad = |what: String| Err(unsupported(self.format, format!("fast CPU layout: {what}")));
        if self.nodes.len() >= u32::MAX as usize / 2 {
            return bad(format!("{} nodes do not fit 32-bit indices", self.nodes.len()));
        }
        for (i, node) in self.nodes.iter().enumerate() {
            if node.feature() > self.n_features {
                return bad(format!("node {i} reads feature {}", node.feature()));
            }
            if node.offset() != 0 && i + node.offset() as usize + 1 >= self.nodes.len() {
                return bad(format!("node {i} has children past the end"));
            }
            for (child, flag) in [(0, LEFT_LEAF), (1, RIGHT_LEAF)] {
                let c = i + node.offset() as usize + child;
                if node.offset() != 0 && (node.meta & flag != 0) != (self.nodes[c].offset() == 0) {
                    return bad(format!("node {i} has a wrong leaf flag"));
                }
            }
            if node.meta & CATEGORICAL != 0 {
                let at = node.threshold.to_bits() as usize;
                let words = self.cat.get(at).map(|h| (h & !IN_SET_LEFT) as usize);
                if words.is_none_or(|w| at + 1 + w > self.cat.len()) {
                    return bad(format!("node {i} has a category set past the end"));
                }
            }
        }
        if self.roots.iter().any(|&r| r as usize >= self.nodes.len()) {
            return bad("a root past the end".into());
        }
        Ok(())
    }

    /// Appends a leaf (value `v`) and returns its index.
    fn push_leaf(&mut self, v: f64) -> usize {
        self.nodes.push(Node { threshold: 0.0, meta: self.n_features as u32 });
        self.values.push(v);
        self.nodes.len() - 1
    }

    /// Row-tile stride: the features plus the NaN padding column leaves read.
    pub fn stride(&self) -> usize {
        self.n_features + 1
    }
}

/// The packed form of a split whose children are `offset` nodes away. A categorical split's
/// set is appended to `cat` (header word, then the words) and its threshold bits point there.
pub(crate) fn pack_split(
    cat: &mut Vec<u32>,
    format: ModelFormat,
    feature: u32,
    test: Test,
    offset: u32,
    cat_words: &[u32],
    rule: CategoryRule,
) -> Result<Node> {
    let mut meta = feature | (offset << OFFSET_SHIFT);
    let threshold = match test {
        Test::Numeric { threshold, nan_left, zero_left } => {
            meta |= if nan_left { 0 } else { NAN_RIGHT };
            if let Some(zero_left) = zero_left {
                meta |= ZERO | if zero_left { 0 } else { ZERO_RIGHT };
            }
            threshold
        }
        Test::Categorical { offset: set, words, in_set_left, nan_left, rule: node_rule } => {
            if node_rule != rule {
                return Err(unsupported(
                    format,
                    "a forest mixing category rules has no fast CPU layout".into(),
                ));
            }
            meta |= CATEGORICAL | if nan_left { 0 } else { NAN_RIGHT };
            let at = cat.len() as u32;
            cat.push(words | if in_set_left { IN_SET_LEFT } else { 0 });
            // The range was checked against cat_words when the forest was validated.
            cat.extend_from_slice(&cat_words[set as usize..(set + words) as usize]);
            f32::from_bits(at)
        }
    };
    Ok(Node { threshold, meta })
}

fn unsupported(format: ModelFormat, what: String) -> Error {
    Error::Unsupported { format, what }
}

/// The scalar decision of one split node for value `x`: `true` to go right. Every kernel's
/// vector form computes exactly this.
#[inline(always)]
pub(crate) fn goes_right(node: Node, x: f32, cat: &[u32], rule: CategoryRule) -> bool {
    if x.is_nan() {
        return node.meta & NAN_RIGHT != 0;
    }
    if node.meta & CATEGORICAL != 0 {
        let at = node.threshold.to_bits() as usize;
        // Offsets and word counts were written by `FastForest::split` from validated sets.
        let header = cat[at];
        let words = header & !IN_SET_LEFT;
        let in_set = rule.category(x).is_some_and(|c| {
            c / 32 < words && (cat[at + 1 + (c / 32) as usize] >> (c % 32)) & 1 == 1
        });
        return in_set != (header & IN_SET_LEFT != 0);
    }
    if node.meta & ZERO != 0 && x.abs() <= ZERO_BAND {
        return node.meta & ZERO_RIGHT != 0;
    }
    x > node.threshold
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::load_forest;

    /// Walks the compact layout one row at a time with `goes_right`; must give the reference
    /// scorer's leaf for every tree.
    #[test]
    fn layout_reaches_the_same_leaves_as_the_forest() {
        for name in
            ["lgb_categorical", "lgb_regression_zero_missing", "xgb_categorical", "lgb_deep"]
        {
            let dir = format!("{}/models/golden/{name}", env!("CARGO_MANIFEST_DIR"));
            let path = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|p| p.file_stem().is_some_and(|s| s == "model"))
                .unwrap();
            let forest = load_forest(&path).unwrap();
            let fast = FastForest::new(&forest).unwrap();
            let mut rng = 0x2545_f491_4f6c_dd1du64;
            for _ in 0..200 {
                let mut row = vec![f32::NAN; fast.stride()];
                for v in &mut row[..forest.n_features] {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    *v = match rng % 7 {
                        0 => f32::NAN,
                        1 => 0.0,
                        2 => (rng >> 40) as f32 % 40.0,
                        _ => ((rng >> 20) as f32 / (1u64 << 44) as f32 - 0.5) * 8.0,
                    };
                }
                for (t, tree) in forest.trees.iter().enumerate() {
                    let want = tree.leaf_value(&forest.cat_words, |f| row[f]);
                    let mut i = fast.roots[t] as usize;
                    while fast.nodes[i].offset() != 0 {
                        let n = fast.nodes[i];
                        let right = goes_right(n, row[n.feature()], &fast.cat, fast.rule);
                        i += (n.offset() + right as u32) as usize;
                    }
                    assert_eq!(fast.values[i].to_bits(), want.to_bits(), "{name} tree {t}");
                }
            }
        }
    }
}
