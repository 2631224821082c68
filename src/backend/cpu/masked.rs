//! The masked algorithm: a tree is evaluated node by node for a block of 256 rows at once, the
//! rows standing at each node kept as a bit mask ([`Mask`]). A node compares its feature's
//! column (contiguous: the block is feature-major) with its threshold for the rows at it,
//! splits the mask in two, and hands each half to its child; a node no row reaches is never
//! touched.
//!
//! No gathers on the way down: with AVX-512 a node costs sixteen 16-row compares, branch-free
//! (a mispredicted branch costs more than the work it would skip), whatever the depth; each
//! column's NaN rows are found once per block, so a node's default direction costs no branch
//! either. A leaf costs four masked byte moves in registers: each row keeps its leaf's ordinal
//! within the tree (one byte), and once the tree is done one lookup per 8 or 16 rows turns
//! the ordinals into leaf values (a permute for trees of at most 32 leaves, a gather beyond)
//! and adds them to the rows' sums, in tree order. It wins when the block's rows share paths
//! (few distinct nodes visited per block: shallow paths, skewed data) and loses to traversal
//! when the rows scatter over hundreds of nodes. The portable form decides row by row over the
//! mask's bits.
//!
//! Every node decides exactly as `layout::goes_right` states (the AVX-512 form reuses the
//! traversal kernel's vector decision), so leaves, and sums, equal the reference scorer's.

use crate::backend::cpu::kernel::Kernel;
use crate::backend::cpu::layout::{
    CATEGORICAL, FastForest, LEFT_LEAF, NAN_RIGHT, Node, RIGHT_LEAF, ZERO, goes_right,
};

/// A block's 128-row halves.
const HALVES: usize = 2;

/// Rows per block: 256, a bit each in a [`Mask`]. Taller blocks share each node's fixed
/// cost (its load, its branches) among more rows; 256 rather than 128 made deep trees 15-40%
/// faster (rows spread over many nodes) and shallow ones no slower.
pub(crate) const ROWS: usize = 128 * HALVES;

/// A set of a block's rows.
pub(crate) type Mask = crate::backend::cpu::mask::Mask<HALVES>;

/// Most leaves a tree may have for the AVX-512 form (a leaf's ordinal is one byte); forests
/// with larger trees take the portable form.
pub(crate) const MAX_LEAVES: usize = 256;

/// What the masked algorithm needs beyond the compact layout, built once at load: each leaf's
/// ordinal within its tree, each tree's leaf values in ordinal order (in both precisions,
/// padded so that vector loads of a table stay inside it), and the deepest tree's depth (the
/// walk's stack never holds more entries than that).
#[derive(Debug, Clone)]
pub(crate) struct Leaves {
    /// Parallel to the layout's nodes: a leaf's ordinal within its tree (0 for splits).
    ordinal: Vec<u8>,
    /// Per tree: where its table starts in `f64s` / `f32s`, and its number of leaves.
    tables: Vec<(u32, u32)>,
    f64s: Vec<f64>,
    f32s: Vec<f32>,
    /// Whether every tree has at most [`MAX_LEAVES`] leaves (the AVX-512 form applies).
    pub fits: bool,
    /// Entries the walk's stack needs (the deepest tree's depth, plus one).
    pub stack: usize,
}

impl Leaves {
    /// Numbers the leaves of each of `forest`'s real trees, in node order.
    pub fn new(forest: &FastForest) -> Leaves {
        let mut ordinal = vec![0u8; forest.nodes.len()];
        let (mut tables, mut f64s, mut f32s) = (Vec::new(), Vec::new(), Vec::new());
        let (mut fits, mut deepest) = (true, 0usize);
        let mut todo = Vec::new();
        for &root in &forest.roots[..forest.n_trees] {
            let start = f64s.len();
            todo.push((root as usize, 0usize));
            while let Some((i, depth)) = todo.pop() {
                deepest = deepest.max(depth);
                let node = forest.nodes[i];
                if node.offset() == 0 {
                    let n = f64s.len() - start;
                    fits &= n < MAX_LEAVES;
                    ordinal[i] = n as u8;
                    f64s.push(forest.values[i]);
                    f32s.push(forest.values[i] as f32);
                } else {
                    let child = i + node.offset() as usize;
                    todo.extend([(child + 1, depth + 1), (child, depth + 1)]);
                }
            }
            let n = f64s.len() - start;
            let padded = n.next_multiple_of(16).max(32);
            f64s.resize(start + padded, 0.0);
            f32s.resize(start + padded, 0.0);
            tables.push((start as u32, n as u32));
        }
        Leaves { ordinal, tables, f64s, f32s, fits, stack: deepest + 1 }
    }
}

/// A row's running sum as the training library forms it: f64 (LightGBM) or f32 (XGBoost).
pub(crate) trait Lane: Copy + Default + std::ops::Add<Output = Self> {
    /// A leaf value in this precision (`sum + leaf` in it is the library's step).
    fn from_leaf(leaf: f64) -> Self;
    /// Tree `t`'s leaf values in ordinal order, padded, and its number of leaves.
    fn table(leaves: &Leaves, t: usize) -> (&[Self], usize);
    /// `sums[i] += table[ordinals[i]]` for every row `i` (both slices hold a whole number of
    /// 128-row halves). Inlined into the caller, whose target features its intrinsics use.
    /// Safety: AVX-512F is available, and every ordinal is below `count`, which `table`
    /// covers (padded to a multiple of 16, and to at least 32).
    #[cfg(target_arch = "x86_64")]
    unsafe fn add_avx512(sums: &mut [Self], ordinals: &[u8], table: &[Self], count: usize);
}

impl Lane for f64 {
    #[inline(always)]
    fn from_leaf(leaf: f64) -> f64 {
        leaf
    }
    #[inline(always)]
    fn table(leaves: &Leaves, t: usize) -> (&[f64], usize) {
        let (start, n) = leaves.tables[t];
        (&leaves.f64s[start as usize..], n as usize)
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn add_avx512(sums: &mut [f64], ordinals: &[u8], table: &[f64], n: usize) {
        // SAFETY: forwarded.
        unsafe { avx512::add_f64(sums, ordinals, table, n) }
    }
}

impl Lane for f32 {
    #[inline(always)]
    fn from_leaf(leaf: f64) -> f32 {
        leaf as f32
    }
    #[inline(always)]
    fn table(leaves: &Leaves, t: usize) -> (&[f32], usize) {
        let (start, n) = leaves.tables[t];
        (&leaves.f32s[start as usize..], n as usize)
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn add_avx512(sums: &mut [f32], ordinals: &[u8], table: &[f32], n: usize) {
        // SAFETY: forwarded.
        unsafe { avx512::add_f32(sums, ordinals, table, n) }
    }
}

/// Adds, for each row of `live` in the feature-major `block` (`ROWS` values per column, the
/// padding column included), the value of its leaf in tree `t` to `sums`. `nans` holds each
/// column's NaN rows ([`nan_rows`]); `stack` (at least `leaves.stack` entries) and `values`
/// are scratch.
#[allow(clippy::too_many_arguments)]
pub(crate) fn add_tree<L: Lane>(
    kernel: Kernel,
    forest: &FastForest,
    leaves: &Leaves,
    block: &[f32],
    nans: &[Mask],
    t: usize,
    live: Mask,
    stack: &mut [(u32, Mask)],
    values: &mut [L],
    sums: &mut [L],
) {
    let rows = ROWS;
    assert!(block.len() > forest.n_features * rows, "the block holds every column");
    assert!(values.len() == rows && sums.len() == rows, "a value and a sum per row");
    assert!(stack.len() >= leaves.stack, "the stack holds the deepest path");
    assert!(nans.len() > forest.n_features, "a NaN mask per column");
    let root = forest.roots[t];
    match kernel {
        // SAFETY: a kernel is checked available (`Kernel::check`) before it is used; the
        // tables were built from this forest.
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 if leaves.fits => unsafe {
            avx512::tree(forest, leaves, block, nans, t, live, stack, sums)
        },
        _ => {
            walk(
                forest,
                block,
                root,
                live,
                stack,
                |node, column, mask| {
                    mask.rows().fold(Mask::EMPTY, |right, i| {
                        right.with(i, goes_right(node, column[i], &forest.cat, forest.rule))
                    })
                },
                |mask, leaf| {
                    let value = L::from_leaf(forest.values[leaf as usize]);
                    for i in mask.rows() {
                        values[i] = value;
                    }
                },
            );
            for (sum, &value) in sums.iter_mut().zip(values.iter()) {
                *sum = *sum + value;
            }
        }
    }
}

/// Each column's NaN rows in the feature-major `block` (`ROWS` values per column).
pub(crate) fn nan_rows(kernel: Kernel, block: &[f32], nans: &mut [Mask]) {
    for (column, nan) in block.chunks_exact(ROWS).zip(nans.iter_mut()) {
        *nan = match kernel {
            // SAFETY: the kernel was checked available; `column` holds ROWS values.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => unsafe { avx512::nan_rows(column) },
            _ => column.iter().enumerate().fold(Mask::EMPTY, |m, (i, x)| m.with(i, x.is_nan())),
        };
    }
}

/// Depth-first over the nodes the rows reach, following one child and stacking the other;
/// `right` gives, of a mask's rows (it may answer for others too), those a node sends right;
/// `leaf` takes each leaf reached with its rows (an empty mask included: a no-op, cheaper
/// than a mispredicted branch).
#[inline(always)]
fn walk(
    forest: &FastForest,
    block: &[f32],
    root: u32,
    live: Mask,
    stack: &mut [(u32, Mask)],
    right: impl Fn(Node, &[f32], Mask) -> Mask,
    mut leaf: impl FnMut(Mask, u32),
) {
    let rows = ROWS;
    if forest.nodes[root as usize].offset() == 0 {
        // A single-leaf tree.
        leaf(live, root);
        return;
    }
    let (mut i, mut mask, mut top) = (root, live, 0);
    loop {
        let node = forest.nodes[i as usize];
        let f = node.feature() * rows;
        let column = &block[f..f + rows];
        let goes = right(node, column, mask) & mask;
        let (l, r) = (mask & !goes, goes);
        let child = i + node.offset();
        let (left_leaf, right_leaf) = (node.meta & LEFT_LEAF != 0, node.meta & RIGHT_LEAF != 0);
        if left_leaf {
            leaf(l, child);
        }
        if right_leaf {
            leaf(r, child + 1);
        }
        let (go_left, go_right) = (!left_leaf && !l.is_empty(), !right_leaf && !r.is_empty());
        if go_left {
            if go_right {
                stack[top] = (child + 1, r);
                top += 1;
            }
            (i, mask) = (child, l);
        } else if go_right {
            (i, mask) = (child + 1, r);
        } else if top > 0 {
            top -= 1;
            (i, mask) = stack[top];
        } else {
            return;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{CATEGORICAL, FastForest, HALVES, Lane, Leaves, Mask, NAN_RIGHT, Node, ROWS, ZERO};
    use crate::backend::cpu::layout::IN_SET_LEFT;
    use crate::backend::cpu::x86_64::category_range;

    /// [`super::walk`] with the AVX-512 decision inlined; each leaf writes its ordinal into
    /// its rows' bytes (two masked moves between registers), and the ordinals are turned into
    /// values and added to `sums` once the tree is done. Safety: AVX-512F and AVX-512BW are
    /// available, `leaves` was built from `forest` and fits.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn tree<L: Lane>(
        forest: &FastForest,
        leaves: &Leaves,
        block: &[f32],
        nans: &[Mask],
        t: usize,
        live: Mask,
        stack: &mut [(u32, Mask)],
        sums: &mut [L],
    ) {
        // Rows outside `live` keep ordinal 0, which every table holds.
        let mut bytes = [[_mm512_setzero_si512(); 2]; HALVES];
        super::walk(
            forest,
            block,
            forest.roots[t],
            live,
            stack,
            // SAFETY: AVX-512F is available (this function's contract).
            |node, column, _| unsafe { right(forest, node, column, nans[node.feature()]) },
            |mask, leaf| {
                let ordinal = _mm512_set1_epi8(leaves.ordinal[leaf as usize] as i8);
                for (w, bytes) in bytes.as_flattened_mut().iter_mut().enumerate() {
                    *bytes = _mm512_mask_mov_epi8(*bytes, mask.word(w), ordinal);
                }
            },
        );
        let mut ordinals = [[[0u8; 64]; 2]; HALVES];
        let (table, count) = L::table(leaves, t);
        // SAFETY: each store writes one 64-byte word of `ordinals`; each ordinal is below its
        // tree's leaf count, which its table covers (padded as `Lane::add_avx512` requires).
        unsafe {
            for (word, &bytes) in ordinals.as_flattened_mut().iter_mut().zip(bytes.as_flattened()) {
                _mm512_storeu_si512(word.as_mut_ptr() as *mut _, bytes);
            }
            L::add_avx512(sums, ordinals.as_flattened().as_flattened(), table, count);
        }
    }

    /// The NaN rows of a column of `ROWS` values. Safety: AVX-512F and AVX-512BW are
    /// available.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn nan_rows(column: &[f32]) -> Mask {
        assert_eq!(column.len(), ROWS);
        let mut parts = [[0u16; 8]; HALVES];
        for (g, part) in parts.as_flattened_mut().iter_mut().enumerate() {
            // SAFETY: 16 values at 16 * g, inside the column.
            let x = unsafe { _mm512_loadu_ps(column.as_ptr().add(16 * g)) };
            *part = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x, x);
        }
        join(&parts)
    }

    /// `sums[i] += table[ordinals[i]]`, 8 rows at a time. Safety: as `Lane::add_avx512`.
    #[inline(always)]
    pub(super) unsafe fn add_f64(sums: &mut [f64], ordinals: &[u8], table: &[f64], count: usize) {
        debug_assert!(table.len() >= count.next_multiple_of(16).max(32));
        let t = table.as_ptr();
        // SAFETY: the table holds at least 32 values (padded), every ordinal is below
        // `count`; the loops stay inside `sums` and `ordinals`.
        unsafe {
            let (t0, t1, t2, t3) = (
                _mm512_loadu_pd(t),
                _mm512_loadu_pd(t.add(8)),
                _mm512_loadu_pd(t.add(16)),
                _mm512_loadu_pd(t.add(24)),
            );
            let sixteen = _mm512_set1_epi64(16);
            match count {
                0..=8 => each_f64(sums, ordinals, |i| _mm512_permutexvar_pd(i, t0)),
                9..=16 => each_f64(sums, ordinals, |i| _mm512_permutex2var_pd(t0, i, t1)),
                17..=32 => each_f64(sums, ordinals, |i| {
                    let high = _mm512_test_epi64_mask(i, sixteen);
                    _mm512_mask_blend_pd(
                        high,
                        _mm512_permutex2var_pd(t0, i, t1),
                        _mm512_permutex2var_pd(t2, i, t3),
                    )
                }),
                _ => each_f64(sums, ordinals, |i| _mm512_i64gather_pd::<8>(i, t)),
            }
        }
    }

    /// `sums[i] += table[ordinals[i]]`, 16 rows at a time. Safety: as `Lane::add_avx512`.
    #[inline(always)]
    pub(super) unsafe fn add_f32(sums: &mut [f32], ordinals: &[u8], table: &[f32], count: usize) {
        debug_assert!(table.len() >= count.next_multiple_of(16).max(32));
        let t = table.as_ptr();
        // SAFETY: as in `add_f64`.
        unsafe {
            let (t0, t1) = (_mm512_loadu_ps(t), _mm512_loadu_ps(t.add(16)));
            match count {
                0..=16 => each_f32(sums, ordinals, |i| _mm512_permutexvar_ps(i, t0)),
                17..=32 => each_f32(sums, ordinals, |i| _mm512_permutex2var_ps(t0, i, t1)),
                _ => each_f32(sums, ordinals, |i| _mm512_i32gather_ps::<4>(i, t)),
            }
        }
    }

    /// `sums[i] += lookup(ordinals[i])`, 8 rows at a time. Safety: AVX-512F is available.
    #[inline(always)]
    unsafe fn each_f64(sums: &mut [f64], ordinals: &[u8], lookup: impl Fn(__m512i) -> __m512d) {
        assert!(ordinals.len() == sums.len() && sums.len().is_multiple_of(128));
        for (sums, ordinals) in sums.chunks_exact_mut(128).zip(ordinals.chunks_exact(128)) {
            for g in 0..128 / 8 {
                // SAFETY: both chunks hold 128 entries; this reads and writes 8 at 8 * g.
                unsafe {
                    let i = _mm512_cvtepu8_epi64(_mm_loadl_epi64(
                        ordinals.as_ptr().add(8 * g) as *const __m128i
                    ));
                    let s = sums.as_mut_ptr().add(8 * g);
                    _mm512_storeu_pd(s, _mm512_add_pd(_mm512_loadu_pd(s), lookup(i)));
                }
            }
        }
    }

    /// `sums[i] += lookup(ordinals[i])`, 16 rows at a time. Safety: AVX-512F is available.
    #[inline(always)]
    unsafe fn each_f32(sums: &mut [f32], ordinals: &[u8], lookup: impl Fn(__m512i) -> __m512) {
        assert!(ordinals.len() == sums.len() && sums.len().is_multiple_of(128));
        for (sums, ordinals) in sums.chunks_exact_mut(128).zip(ordinals.chunks_exact(128)) {
            for g in 0..128 / 16 {
                // SAFETY: both chunks hold 128 entries; this reads and writes 16 at 16 * g.
                unsafe {
                    let i = _mm512_cvtepu8_epi32(_mm_loadu_si128(
                        ordinals.as_ptr().add(16 * g) as *const __m128i
                    ));
                    let s = sums.as_mut_ptr().add(16 * g);
                    _mm512_storeu_ps(s, _mm512_add_ps(_mm512_loadu_ps(s), lookup(i)));
                }
            }
        }
    }

    /// Of all the block's rows, those `node` sends right (the caller keeps its mask's): 16-row
    /// compares, no branch on the mask. Not itself a `target_feature` function, so that it can
    /// be forced inline into [`tree`] (whose features its intrinsics then use). `nans` is the
    /// column's NaN rows. Safety: AVX-512F and AVX-512BW are available.
    #[inline(always)]
    unsafe fn right(forest: &FastForest, node: Node, column: &[f32], nans: Mask) -> Mask {
        debug_assert_eq!(column.len(), ROWS);
        if node.meta & CATEGORICAL != 0 {
            let at = node.threshold.to_bits() as usize;
            if forest.cat[at] & !IN_SET_LEFT <= 16 {
                // SAFETY: forwarded.
                return unsafe { categorical(forest, node, at, column) };
            }
        }
        let nan_goes_right = node.meta & NAN_RIGHT != 0;
        // SAFETY: AVX-512F and AVX-512BW are available (this function's contract); loads
        // stay in `column`.
        unsafe {
            let threshold = _mm512_set1_ps(node.threshold);
            let load = |g: usize| _mm512_loadu_ps(column.as_ptr().add(16 * g));
            if node.meta & (CATEGORICAL | ZERO) == 0 {
                // One compare per 16 rows (`x > t` sends NaN left), and the column's NaN rows
                // added when NaN goes right: no branch on the node's default direction, which
                // XGBoost learns node by node.
                let mut k = [[0u32; 8]; HALVES];
                for (g, k) in k.as_flattened_mut().iter_mut().enumerate() {
                    let x = _mm512_loadu_ps(column.as_ptr().add(16 * g));
                    *k = u32::from(_mm512_cmp_ps_mask::<_CMP_GT_OQ>(x, threshold));
                }
                let mut right = Mask::EMPTY;
                for (part, k) in right.0.iter_mut().zip(&k) {
                    let word = |k: &[u32]| {
                        _mm512_kunpackd(
                            u64::from(_mm512_kunpackw(k[3], k[2])),
                            u64::from(_mm512_kunpackw(k[1], k[0])),
                        )
                    };
                    *part = u128::from(word(&k[..4])) | u128::from(word(&k[4..])) << 64;
                }
                return right | (nans & Mask::all_if(nan_goes_right));
            }
            let meta = _mm512_set1_epi32(node.meta as i32);
            let mut parts = [[0u16; 8]; HALVES];
            for (g, part) in parts.as_flattened_mut().iter_mut().enumerate() {
                let x = load(g);
                let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x, x);
                let nan_right = if nan_goes_right { nan } else { 0 };
                let r = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(x, threshold) | nan_right;
                *part = crate::backend::cpu::x86_64::full_decision(
                    forest, r, nan, nan_right, threshold, meta, x,
                );
            }
            join(&parts)
        }
    }

    /// [`right`] for a categorical node whose set has at most 16 words: the set sits in one
    /// register and each row's word is picked by a permute, not gathered. The decision is
    /// `full_decision`'s (and `goes_right`'s): NaN by `NAN_RIGHT`; a value outside the
    /// library's category range, or past the set, is not in the set; in-set rows go left
    /// when the set's header says so. Safety: AVX-512F is available, `at` is the node's set.
    #[inline(always)]
    unsafe fn categorical(forest: &FastForest, node: Node, at: usize, column: &[f32]) -> Mask {
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
            let mut parts = [[0u16; 8]; HALVES];
            for (g, part) in parts.as_flattened_mut().iter_mut().enumerate() {
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
                *part = ((in_set ^ flip) & !nan) | nan_right;
            }
            join(&parts)
        }
    }

    /// The mask whose rows `128 * h + 16 * j..` are `parts[h][j]`.
    #[inline(always)]
    fn join(parts: &[[u16; 8]; HALVES]) -> Mask {
        let mut mask = Mask::EMPTY;
        for (part, p) in mask.0.iter_mut().zip(parts) {
            *part = (0..8).fold(0, |m, j| m | u128::from(p[j]) << (16 * j));
        }
        mask
    }
}
