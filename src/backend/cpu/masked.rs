//! The masked algorithm: a tree is evaluated node by node for a block of 128 rows at once, the
//! rows standing at each node kept as a 128-bit mask. A node compares its feature's column
//! (contiguous: the block is feature-major) with its threshold for the rows at it, splits the
//! mask in two, and hands each half to its child; a node no row reaches is never touched.
//!
//! No gathers: with AVX-512 a node costs eight 16-row compares and a leaf sixteen masked stores,
//! both branch-free (a mispredicted branch costs more than the work it would skip), whatever
//! the depth. It wins when the block's rows share paths (few distinct nodes visited per block:
//! shallow paths, skewed data) and loses to traversal when the rows scatter over hundreds of
//! nodes. The portable form decides row by row over the mask's bits.
//!
//! Every node decides exactly as `layout::goes_right` states (the AVX-512 form reuses the
//! traversal kernel's vector decision), so leaves, and sums, equal the reference scorer's.

use crate::backend::cpu::kernel::Kernel;
use crate::backend::cpu::layout::{
    CATEGORICAL, FastForest, LEFT_LEAF, NAN_RIGHT, Node, RIGHT_LEAF, ZERO, goes_right,
};

/// Rows per block: one bit each in a [`Mask`].
pub(crate) const ROWS: usize = 128;

/// A set of a block's rows, one bit per row.
pub(crate) type Mask = u128;

/// A row's running sum as the training library forms it: f64 (LightGBM) or f32 (XGBoost).
pub(crate) trait Lane: Copy + Default + std::ops::Add<Output = Self> {
    /// A leaf value in this precision (`sum + leaf` in it is the library's step).
    fn from_leaf(leaf: f64) -> Self;
    /// `values[i] = leaf` for the rows `i` in `mask`, with AVX-512 masked stores. Safety:
    /// AVX-512F is available.
    #[cfg(target_arch = "x86_64")]
    unsafe fn put_avx512(values: &mut [Self; ROWS], mask: Mask, leaf: Self);
}

impl Lane for f64 {
    #[inline(always)]
    fn from_leaf(leaf: f64) -> f64 {
        leaf
    }
    #[cfg(target_arch = "x86_64")]
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn put_avx512(values: &mut [f64; ROWS], mask: Mask, leaf: f64) {
        avx512::put_f64(values, mask, leaf)
    }
}

impl Lane for f32 {
    #[inline(always)]
    fn from_leaf(leaf: f64) -> f32 {
        leaf as f32
    }
    #[cfg(target_arch = "x86_64")]
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn put_avx512(values: &mut [f32; ROWS], mask: Mask, leaf: f32) {
        avx512::put_f32(values, mask, leaf)
    }
}

/// Adds, for each row of `live` in the feature-major `block` (`ROWS` values per column, the
/// padding column included), the value of its leaf in the tree at `root` to `sums`. `stack`
/// and `values` are scratch.
#[allow(clippy::too_many_arguments)]
pub(crate) fn add_tree<L: Lane>(
    kernel: Kernel,
    forest: &FastForest,
    block: &[f32],
    root: u32,
    live: Mask,
    stack: &mut Vec<(u32, Mask)>,
    values: &mut [L; ROWS],
    sums: &mut [L; ROWS],
) {
    assert!(block.len() > forest.n_features * ROWS, "the block holds every column");
    match kernel {
        // SAFETY: a kernel is checked available (`Kernel::check`) before it is used.
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => unsafe { avx512::tree(forest, block, root, live, stack, values, sums) },
        _ => {
            walk(
                forest,
                block,
                root,
                live,
                stack,
                |node, column, mask| {
                    let mut right = 0;
                    let mut m = mask;
                    while m != 0 {
                        let i = m.trailing_zeros() as usize;
                        right |=
                            Mask::from(goes_right(node, column[i], &forest.cat, forest.rule)) << i;
                        m &= m - 1;
                    }
                    right
                },
                |mask, leaf| {
                    let value = L::from_leaf(forest.values[leaf as usize]);
                    let mut m = mask;
                    while m != 0 {
                        values[m.trailing_zeros() as usize] = value;
                        m &= m - 1;
                    }
                },
            );
            step(sums, values);
        }
    }
}

/// Every live row got exactly one leaf value: one step of its sum, in tree order.
#[inline(always)]
fn step<L: Lane>(sums: &mut [L; ROWS], values: &[L; ROWS]) {
    for (sum, &value) in sums.iter_mut().zip(values.iter()) {
        *sum = *sum + value;
    }
}

/// Depth-first over the nodes the rows reach; `right` gives, of a mask's rows (it may answer
/// for others too), those a node sends right; `leaf` takes each leaf reached with its rows
/// (an empty mask included).
#[inline(always)]
fn walk(
    forest: &FastForest,
    block: &[f32],
    root: u32,
    live: Mask,
    stack: &mut Vec<(u32, Mask)>,
    right: impl Fn(Node, &[f32; ROWS], Mask) -> Mask,
    mut leaf: impl FnMut(Mask, u32),
) {
    if forest.nodes[root as usize].offset() == 0 {
        // A single-leaf tree.
        leaf(live, root);
        return;
    }
    stack.clear();
    stack.push((root, live));
    while let Some((i, mask)) = stack.pop() {
        let node = forest.nodes[i as usize];
        let f = node.feature() * ROWS;
        let column: &[f32; ROWS] = block[f..f + ROWS].try_into().expect("a whole column");
        let goes = right(node, column, mask) & mask;
        let child = i + node.offset();
        for (c, m, is_leaf) in [(child, mask & !goes, LEFT_LEAF), (child + 1, goes, RIGHT_LEAF)] {
            // A leaf takes an empty mask as a no-op (cheaper than a mispredicted branch).
            if node.meta & is_leaf != 0 {
                leaf(m, c);
            } else if m != 0 {
                stack.push((c, m));
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{CATEGORICAL, FastForest, Lane, Mask, NAN_RIGHT, Node, ROWS, ZERO};
    use crate::backend::cpu::layout::IN_SET_LEFT;
    use crate::backend::cpu::x86_64::category_range;

    /// [`super::walk`] with the AVX-512 decision and leaf stores inlined. Safety: AVX-512F
    /// is available.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn tree<L: Lane>(
        forest: &FastForest,
        block: &[f32],
        root: u32,
        live: Mask,
        stack: &mut Vec<(u32, Mask)>,
        values: &mut [L; ROWS],
        sums: &mut [L; ROWS],
    ) {
        super::walk(
            forest,
            block,
            root,
            live,
            stack,
            // SAFETY: AVX-512F is available (this function's contract).
            |node, column, _| unsafe { right(forest, node, column) },
            // SAFETY: AVX-512F is available (this function's contract).
            |mask, leaf| unsafe {
                L::put_avx512(values, mask, L::from_leaf(forest.values[leaf as usize]))
            },
        );
        super::step(sums, values);
    }

    /// `values[i] = leaf` for the rows `i` in `mask`: masked stores of 8, none reading back.
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(super) fn put_f64(values: &mut [f64; ROWS], mask: Mask, leaf: f64) {
        let leaf = _mm512_set1_pd(leaf);
        for g in 0..ROWS / 8 {
            // No branch: a store with an empty mask writes nothing.
            // SAFETY: `values` holds ROWS values; this writes lanes of 8 at 8 * g.
            unsafe {
                _mm512_mask_storeu_pd(values.as_mut_ptr().add(8 * g), (mask >> (8 * g)) as u8, leaf)
            };
        }
    }

    /// `values[i] = leaf` for the rows `i` in `mask`: masked stores of 16, none reading back.
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(super) fn put_f32(values: &mut [f32; ROWS], mask: Mask, leaf: f32) {
        let leaf = _mm512_set1_ps(leaf);
        for g in 0..ROWS / 16 {
            // No branch, as for f64: a store with an empty mask writes nothing.
            // SAFETY: `values` holds ROWS values; this writes lanes of 16 at 16 * g.
            unsafe {
                _mm512_mask_storeu_ps(
                    values.as_mut_ptr().add(16 * g),
                    (mask >> (16 * g)) as u16,
                    leaf,
                )
            };
        }
    }

    /// Of all the block's rows, those `node` sends right (the caller keeps its mask's): 16-row
    /// compares, no branch on the mask. Not itself a `target_feature` function, so that it can
    /// be forced inline into [`tree`] (whose features its intrinsics then use). Safety:
    /// AVX-512F is available.
    #[inline(always)]
    unsafe fn right(forest: &FastForest, node: Node, column: &[f32; ROWS]) -> Mask {
        if node.meta & CATEGORICAL != 0 {
            let at = node.threshold.to_bits() as usize;
            if forest.cat[at] & !IN_SET_LEFT <= 16 {
                // SAFETY: forwarded.
                return unsafe { categorical(forest, node, at, column) };
            }
        }
        // SAFETY: AVX-512F is available (this function's contract); loads stay in `column`.
        unsafe {
            let threshold = _mm512_set1_ps(node.threshold);
            let meta = _mm512_set1_epi32(node.meta as i32);
            let special = node.meta & (CATEGORICAL | ZERO) != 0;
            let nan_goes_right = node.meta & NAN_RIGHT != 0;
            let mut right: Mask = 0;
            for g in 0..ROWS / 16 {
                let x = _mm512_loadu_ps(column.as_ptr().add(16 * g));
                let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x, x);
                let nan_right = if nan_goes_right { nan } else { 0 };
                let mut r = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(x, threshold) | nan_right;
                if special {
                    r = crate::backend::cpu::x86_64::full_decision(
                        forest, r, nan, nan_right, threshold, meta, x,
                    );
                }
                right |= Mask::from(r) << (16 * g);
            }
            right
        }
    }

    /// [`right`] for a categorical node whose set has at most 16 words: the set sits in one
    /// register and each row's word is picked by a permute, not gathered. The decision is
    /// `full_decision`'s (and `goes_right`'s): NaN by `NAN_RIGHT`; a value outside the
    /// library's category range, or past the set, is not in the set; in-set rows go left
    /// when the set's header says so. Safety: AVX-512F is available, `at` is the node's set.
    #[inline(always)]
    unsafe fn categorical(
        forest: &FastForest,
        node: Node,
        at: usize,
        column: &[f32; ROWS],
    ) -> Mask {
        let header = forest.cat[at];
        let words = header & !IN_SET_LEFT;
        let flip: u16 = if header & IN_SET_LEFT != 0 { u16::MAX } else { 0 };
        let nan_goes_right = node.meta & NAN_RIGHT != 0;
        let (cat_lo, cat_hi, lo_inclusive) = category_range(forest.rule);
        // SAFETY: the set's words lie inside `cat` (`FastForest::check`); the masked load
        // reads only those; loads of rows stay in `column`.
        unsafe {
            let set = _mm512_maskz_loadu_epi32(
                ((1u32 << words) - 1) as u16,
                forest.cat.as_ptr().add(at + 1) as *const i32,
            );
            let (lo, hi) = (_mm512_set1_ps(cat_lo), _mm512_set1_ps(cat_hi));
            let words = _mm512_set1_epi32(words as i32);
            let (one, low5) = (_mm512_set1_epi32(1), _mm512_set1_epi32(31));
            let mut right: Mask = 0;
            for g in 0..ROWS / 16 {
                let x = _mm512_loadu_ps(column.as_ptr().add(16 * g));
                let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x, x);
                let above = if lo_inclusive {
                    _mm512_cmp_ps_mask::<_CMP_GE_OQ>(x, lo)
                } else {
                    _mm512_cmp_ps_mask::<_CMP_GT_OQ>(x, lo)
                };
                let c = _mm512_cvttps_epi32(x);
                let word = _mm512_srli_epi32::<5>(c);
                let valid = above
                    & _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, hi)
                    & _mm512_cmplt_epu32_mask(word, words);
                let bits = _mm512_permutexvar_epi32(word, set);
                let bit = _mm512_srlv_epi32(bits, _mm512_and_si512(c, low5));
                let in_set = valid & _mm512_test_epi32_mask(bit, one);
                let nan_right = if nan_goes_right { nan } else { 0 };
                let r = ((in_set ^ flip) & !nan) | nan_right;
                right |= Mask::from(r) << (16 * g);
            }
            right
        }
    }
}
