//! x86-64 SIMD kernels: AVX-512 (16 lanes, mask registers) and AVX2 (8 lanes).
//!
//! Each step of a vector of lanes is three gathers (the node's threshold and packed word, then
//! the row's value of the node's feature), a compare, and an add: `i += offset + go_right`. Up to
//! four vectors are walked together so that their gathers overlap. A vector stops when all its
//! lanes stand on leaves (offset 0); lanes that finished early step onto themselves meanwhile.
//!
//! The decision is the one `layout::goes_right` states, lane-parallel: NaN goes by `NAN_RIGHT`;
//! a categorical node looks the value's category up in its set; a zero-band node sends
//! `|x| <= 1e-35` by `ZERO_RIGHT`; otherwise `x > threshold` goes right.

use std::arch::x86_64::*;

use crate::backend::cpu::layout::{
    CATEGORICAL, FEATURE_MASK, FastForest, IN_SET_LEFT, LANES, LEFT_LEAF, MAX_OFFSET, NAN_RIGHT,
    OFFSET_SHIFT, RIGHT_LEAF, ZERO, ZERO_RIGHT,
};
use crate::model::gbdt::{CategoryRule, ZERO_BAND};

/// The lower bound of a category's value (exclusive for LightGBM, inclusive for XGBoost) and its
/// exclusive upper bound, as `CategoryRule::category` states them.
pub(crate) fn category_range(rule: CategoryRule) -> (f32, f32, bool) {
    match rule {
        CategoryRule::LightGbm => (-1.0, 2_147_483_648.0, false),
        CategoryRule::Xgboost => (0.0, 16_777_216.0, true),
    }
}

/// AVX-512 walk. Safety: AVX-512F is available and the bounds of [`Kernel::walk`] hold.
///
/// [`Kernel::walk`]: crate::backend::cpu::Kernel
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn walk_avx512(
    forest: &FastForest,
    tile: &[f32],
    roots: &[u32],
    bases: &[u32],
    leaves: &mut [u32],
) {
    // Up to four vectors of 16 lanes at once; the remainder in a second call.
    let mut done = 0;
    while done < roots.len() {
        let n = ((roots.len() - done) / LANES).min(4);
        let r = done..done + n * LANES;
        let (ro, ba, le) = (&roots[r.clone()], &bases[r.clone()], &mut leaves[r]);
        // SAFETY: forwarded from the caller.
        unsafe {
            match (n, forest.has_special) {
                (4, false) => avx512::<4, false>(forest, tile, ro, ba, le),
                (4, true) => avx512::<4, true>(forest, tile, ro, ba, le),
                (2 | 3, false) => {
                    avx512::<2, false>(forest, tile, &ro[..32], &ba[..32], &mut le[..32])
                }
                (2 | 3, true) => {
                    avx512::<2, true>(forest, tile, &ro[..32], &ba[..32], &mut le[..32])
                }
                (_, false) => avx512::<1, false>(forest, tile, &ro[..16], &ba[..16], &mut le[..16]),
                (_, true) => avx512::<1, true>(forest, tile, &ro[..16], &ba[..16], &mut le[..16]),
            }
        }
        done += if n == 3 { 2 } else { n } * LANES;
    }
}

#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn avx512<const V: usize, const FULL: bool>(
    forest: &FastForest,
    tile: &[f32],
    roots: &[u32],
    bases: &[u32],
    leaves: &mut [u32],
) {
    let nodes = forest.nodes.as_ptr() as *const f32;
    // SAFETY: the node array is never empty (`FastForest::new` always appends the padding
    // leaf that spare roots point at), so one i32 past its start is inside it: the second
    // word of the first 8-byte node.
    let metas = unsafe { (forest.nodes.as_ptr() as *const i32).add(1) };
    let tile = tile.as_ptr();
    let feature_mask = _mm512_set1_epi32(FEATURE_MASK as i32);
    let offset_mask = _mm512_set1_epi32(MAX_OFFSET as i32);
    let one = _mm512_set1_epi32(1);
    let mut idx = [_mm512_setzero_si512(); V];
    let mut base = [_mm512_setzero_si512(); V];
    for v in 0..V {
        // SAFETY: the slices hold V * 16 lanes (checked by the dispatcher).
        unsafe {
            idx[v] = _mm512_loadu_si512(roots.as_ptr().add(v * LANES) as *const _);
            base[v] = _mm512_loadu_si512(bases.as_ptr().add(v * LANES) as *const _);
        }
    }
    loop {
        let mut moving: u32 = 0;
        for v in 0..V {
            // SAFETY: indices are nodes of `forest` and `base + feature` lies inside the tile
            // (`FastForest::check` and the caller's bounds).
            let (threshold, meta, x) = unsafe {
                let threshold = _mm512_i32gather_ps::<8>(idx[v], nodes);
                let meta = _mm512_i32gather_epi32::<8>(idx[v], metas);
                let at = _mm512_add_epi32(base[v], _mm512_and_si512(meta, feature_mask));
                (threshold, meta, _mm512_i32gather_ps::<4>(at, tile))
            };
            let offset = _mm512_and_si512(_mm512_srli_epi32::<OFFSET_SHIFT>(meta), offset_mask);
            moving |= u32::from(_mm512_test_epi32_mask(offset, offset));
            let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x, x);
            let nan_right = nan & flag(meta, NAN_RIGHT);
            let mut right = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(x, threshold) | nan_right;
            if FULL {
                right = full_decision(forest, right, nan, nan_right, threshold, meta, x);
            }
            let stepped = _mm512_add_epi32(idx[v], offset);
            idx[v] = _mm512_mask_add_epi32(stepped, right, stepped, one);
        }
        if moving == 0 {
            break;
        }
    }
    for (v, idx) in idx.iter().enumerate() {
        // SAFETY: `leaves` holds V * 16 lanes.
        unsafe { _mm512_storeu_si512(leaves.as_mut_ptr().add(v * LANES) as *mut _, *idx) };
    }
}

/// Lanes whose packed word has `bit` set.
#[target_feature(enable = "avx512f")]
#[inline]
fn flag(meta: __m512i, bit: u32) -> __mmask16 {
    _mm512_test_epi32_mask(meta, _mm512_set1_epi32(bit as i32))
}

/// AVX2 walk (8 lanes per vector, vector masks). Safety: AVX2 is available and the bounds of
/// `Kernel::walk` hold.
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn walk_avx2(
    forest: &FastForest,
    tile: &[f32],
    roots: &[u32],
    bases: &[u32],
    leaves: &mut [u32],
) {
    for ((ro, ba), le) in roots.chunks(32).zip(bases.chunks(32)).zip(leaves.chunks_mut(32)) {
        // SAFETY: forwarded from the caller; chunks hold 16 or 32 lanes.
        unsafe {
            match (ro.len(), forest.has_special) {
                (32, false) => avx2::<4, false>(forest, tile, ro, ba, le),
                (32, true) => avx2::<4, true>(forest, tile, ro, ba, le),
                (_, false) => avx2::<2, false>(forest, tile, ro, ba, le),
                (_, true) => avx2::<2, true>(forest, tile, ro, ba, le),
            }
        }
    }
}

#[target_feature(enable = "avx2")]
#[inline]
unsafe fn avx2<const V: usize, const FULL: bool>(
    forest: &FastForest,
    tile: &[f32],
    roots: &[u32],
    bases: &[u32],
    leaves: &mut [u32],
) {
    const W: usize = 8;
    let nodes = forest.nodes.as_ptr() as *const f32;
    // SAFETY: the node array is never empty (`FastForest::new` always appends the padding
    // leaf that spare roots point at), so one i32 past its start is inside it: the second
    // word of the first 8-byte node.
    let metas = unsafe { (forest.nodes.as_ptr() as *const i32).add(1) };
    let tile = tile.as_ptr();
    let cat = forest.cat.as_ptr() as *const i32;
    let (cat_lo, cat_hi, lo_inclusive) = category_range(forest.rule);
    let feature_mask = _mm256_set1_epi32(FEATURE_MASK as i32);
    let offset_mask = _mm256_set1_epi32(MAX_OFFSET as i32);
    let one = _mm256_set1_epi32(1);
    let zero_v = _mm256_setzero_si256();
    let has = |meta: __m256i, bit: u32| {
        let b = _mm256_set1_epi32(bit as i32);
        _mm256_cmpeq_epi32(_mm256_and_si256(meta, b), b)
    };
    let mut idx = [zero_v; V];
    let mut base = [zero_v; V];
    for v in 0..V {
        // SAFETY: the slices hold V * 8 lanes.
        unsafe {
            idx[v] = _mm256_loadu_si256(roots.as_ptr().add(v * W) as *const _);
            base[v] = _mm256_loadu_si256(bases.as_ptr().add(v * W) as *const _);
        }
    }
    loop {
        let mut moving = zero_v;
        for v in 0..V {
            // SAFETY: as in the AVX-512 kernel.
            let (threshold, meta, x) = unsafe {
                let threshold = _mm256_i32gather_ps::<8>(nodes, idx[v]);
                let meta = _mm256_i32gather_epi32::<8>(metas, idx[v]);
                let at = _mm256_add_epi32(base[v], _mm256_and_si256(meta, feature_mask));
                (threshold, meta, _mm256_i32gather_ps::<4>(tile, at))
            };
            let offset =
                _mm256_and_si256(_mm256_srli_epi32::<{ OFFSET_SHIFT as i32 }>(meta), offset_mask);
            moving = _mm256_or_si256(moving, offset);
            let nan = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_UNORD_Q>(x, x));
            let nan_right = _mm256_and_si256(nan, has(meta, NAN_RIGHT));
            let gt = _mm256_castps_si256(_mm256_cmp_ps::<_CMP_GT_OQ>(x, threshold));
            let mut right = _mm256_or_si256(gt, nan_right);
            if FULL {
                let zero = _mm256_andnot_si256(nan, has(meta, ZERO));
                let abs = _mm256_and_ps(x, _mm256_castsi256_ps(_mm256_set1_epi32(i32::MAX)));
                let band = _mm256_and_si256(
                    zero,
                    _mm256_castps_si256(_mm256_cmp_ps::<_CMP_LE_OQ>(
                        abs,
                        _mm256_set1_ps(ZERO_BAND),
                    )),
                );
                right = _mm256_blendv_epi8(right, has(meta, ZERO_RIGHT), band);
                let categorical = has(meta, CATEGORICAL);
                if _mm256_testz_si256(categorical, categorical) == 0 {
                    // SAFETY: as in the AVX-512 kernel: gathers are masked to valid lanes.
                    let in_set_right = unsafe {
                        let at = _mm256_castps_si256(threshold);
                        let header = _mm256_mask_i32gather_epi32::<4>(zero_v, cat, at, categorical);
                        let words =
                            _mm256_andnot_si256(_mm256_set1_epi32(IN_SET_LEFT as i32), header);
                        let lo = if lo_inclusive {
                            _mm256_cmp_ps::<_CMP_GE_OQ>(x, _mm256_set1_ps(cat_lo))
                        } else {
                            _mm256_cmp_ps::<_CMP_GT_OQ>(x, _mm256_set1_ps(cat_lo))
                        };
                        let hi = _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_set1_ps(cat_hi));
                        let c = _mm256_cvttps_epi32(x);
                        let word = _mm256_srli_epi32::<5>(c);
                        // Unsigned word < words: both are below 2^27 here when in range.
                        let below = _mm256_cmpgt_epi32(words, word);
                        let valid = _mm256_and_si256(
                            _mm256_and_si256(categorical, below),
                            _mm256_castps_si256(_mm256_and_ps(lo, hi)),
                        );
                        let at_word = _mm256_add_epi32(_mm256_add_epi32(at, one), word);
                        let bits = _mm256_mask_i32gather_epi32::<4>(zero_v, cat, at_word, valid);
                        let bit =
                            _mm256_srlv_epi32(bits, _mm256_and_si256(c, _mm256_set1_epi32(31)));
                        let in_set = _mm256_and_si256(
                            valid,
                            _mm256_cmpeq_epi32(_mm256_and_si256(bit, one), one),
                        );
                        let in_set_left = has(header, IN_SET_LEFT);
                        _mm256_andnot_si256(nan, _mm256_xor_si256(in_set, in_set_left))
                    };
                    let cat_right = _mm256_or_si256(in_set_right, nan_right);
                    right = _mm256_blendv_epi8(right, cat_right, categorical);
                }
            }
            // `right` lanes are all ones (-1): subtracting adds one.
            idx[v] = _mm256_sub_epi32(_mm256_add_epi32(idx[v], offset), right);
        }
        if _mm256_testz_si256(moving, moving) != 0 {
            break;
        }
    }
    for (v, idx) in idx.iter().enumerate() {
        // SAFETY: `leaves` holds V * 8 lanes.
        unsafe { _mm256_storeu_si256(leaves.as_mut_ptr().add(v * W) as *mut _, *idx) };
    }
}

/// AVX-512 walk of one tree by rows `0..n` of the tile, rows fed to lanes as lanes free up:
/// a lane whose step lands on a leaf (known from its parent's `LEFT_LEAF`/`RIGHT_LEAF` flags)
/// writes `leaves[row]` and takes the next row at once, so no lane idles while the deepest
/// path of its vector finishes. Safety: AVX-512F is available, `root` is a split node of
/// `forest`, `n * stride <= tile.len()`, `leaves.len() >= n`.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn walk_rows_avx512(
    forest: &FastForest,
    tile: &[f32],
    root: u32,
    n: usize,
    leaves: &mut [u32],
) {
    // SAFETY: forwarded from the caller.
    unsafe {
        if forest.has_special {
            rows_avx512::<true>(forest, tile, root, n, leaves)
        } else {
            rows_avx512::<false>(forest, tile, root, n, leaves)
        }
    }
}

#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn rows_avx512<const FULL: bool>(
    forest: &FastForest,
    tile: &[f32],
    root: u32,
    n: usize,
    leaves: &mut [u32],
) {
    const V: usize = 4;
    debug_assert!(n * forest.stride() <= tile.len() && leaves.len() >= n);
    let nodes = forest.nodes.as_ptr() as *const f32;
    // SAFETY: the node array is never empty (`FastForest::new` always appends the padding
    // leaf that spare roots point at), so one i32 past its start is inside it: the second
    // word of the first 8-byte node.
    let metas = unsafe { (forest.nodes.as_ptr() as *const i32).add(1) };
    let tile = tile.as_ptr();
    let out = leaves.as_mut_ptr() as *mut i32;
    let feature_mask = _mm512_set1_epi32(FEATURE_MASK as i32);
    let offset_mask = _mm512_set1_epi32(MAX_OFFSET as i32);
    let one = _mm512_set1_epi32(1);
    let iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let stride = _mm512_set1_epi32(forest.stride() as i32);
    let limit = _mm512_set1_epi32(n as i32);
    let root_v = _mm512_set1_epi32(root as i32);
    let (left_leaf, right_leaf) =
        (_mm512_set1_epi32(LEFT_LEAF as i32), _mm512_set1_epi32(RIGHT_LEAF as i32));
    let mut next = 0i32;
    let mut idx = [root_v; V];
    let mut row = [_mm512_setzero_si512(); V];
    let mut base = [_mm512_setzero_si512(); V];
    let mut active = [0 as __mmask16; V];
    for v in 0..V {
        row[v] = _mm512_add_epi32(iota, _mm512_set1_epi32(next));
        active[v] = _mm512_cmplt_epu32_mask(row[v], limit);
        base[v] = _mm512_mullo_epi32(row[v], stride);
        next += LANES as i32;
    }
    while active.iter().any(|&a| a != 0) {
        for v in 0..V {
            let live = active[v];
            if live == 0 {
                continue;
            }
            // SAFETY: live lanes hold node indices of `forest` and rows below `n`; gathers
            // and the scatter are masked to them.
            let (threshold, meta, x) = unsafe {
                let zero = _mm512_setzero_si512();
                let threshold =
                    _mm512_mask_i32gather_ps::<8>(_mm512_setzero_ps(), live, idx[v], nodes);
                let meta = _mm512_mask_i32gather_epi32::<8>(zero, live, idx[v], metas);
                let at = _mm512_add_epi32(base[v], _mm512_and_si512(meta, feature_mask));
                (
                    threshold,
                    meta,
                    _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), live, at, tile),
                )
            };
            let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x, x);
            let nan_right = nan & flag(meta, NAN_RIGHT);
            let mut right = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(x, threshold) | nan_right;
            if FULL {
                right = full_decision(forest, right, nan, nan_right, threshold, meta, x);
            }
            let offset = _mm512_and_si512(_mm512_srli_epi32::<OFFSET_SHIFT>(meta), offset_mask);
            let stepped = _mm512_add_epi32(idx[v], offset);
            idx[v] = _mm512_mask_add_epi32(stepped, right, stepped, one);
            let leaf_flag = _mm512_mask_blend_epi32(right, left_leaf, right_leaf);
            let done = live & _mm512_test_epi32_mask(meta, leaf_flag);
            if done != 0 {
                // SAFETY: done lanes hold rows below `n`.
                unsafe { _mm512_mask_i32scatter_epi32::<4>(out, done, row[v], idx[v]) };
                let fresh = _mm512_add_epi32(iota, _mm512_set1_epi32(next));
                row[v] = _mm512_mask_expand_epi32(row[v], done, fresh);
                next += done.count_ones() as i32;
                active[v] = (live & !done) | (done & _mm512_cmplt_epu32_mask(row[v], limit));
                idx[v] = _mm512_mask_mov_epi32(idx[v], done, root_v);
                base[v] = _mm512_mask_mullo_epi32(base[v], done, row[v], stride);
            }
        }
    }
}

/// The categorical and zero-band parts of the AVX-512 decision, applied over `right` (the
/// plain `x > threshold` / NaN decision) for the lanes they concern.
#[target_feature(enable = "avx512f")]
#[inline]
pub(crate) fn full_decision(
    forest: &FastForest,
    mut right: __mmask16,
    nan: __mmask16,
    nan_right: __mmask16,
    threshold: __m512,
    meta: __m512i,
    x: __m512,
) -> __mmask16 {
    let one = _mm512_set1_epi32(1);
    let zero = flag(meta, ZERO) & !nan;
    if zero != 0 {
        let band =
            _mm512_cmp_ps_mask::<_CMP_LE_OQ>(_mm512_abs_ps(x), _mm512_set1_ps(ZERO_BAND)) & zero;
        right = (right & !band) | (band & flag(meta, ZERO_RIGHT));
    }
    let categorical = flag(meta, CATEGORICAL);
    if categorical != 0 {
        let (cat_lo, cat_hi, lo_inclusive) = category_range(forest.rule);
        let cat = forest.cat.as_ptr() as *const i32;
        // SAFETY: set offsets and word counts were checked at load; words are read only for
        // categories below the set's word count.
        let in_set_right = unsafe {
            let at = _mm512_castps_si512(threshold);
            let header = _mm512_mask_i32gather_epi32::<4>(one, categorical, at, cat);
            let words = _mm512_andnot_si512(_mm512_set1_epi32(IN_SET_LEFT as i32), header);
            let lo = if lo_inclusive {
                _mm512_cmp_ps_mask::<_CMP_GE_OQ>(x, _mm512_set1_ps(cat_lo))
            } else {
                _mm512_cmp_ps_mask::<_CMP_GT_OQ>(x, _mm512_set1_ps(cat_lo))
            };
            let hi = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, _mm512_set1_ps(cat_hi));
            let c = _mm512_cvttps_epi32(x);
            let word = _mm512_srli_epi32::<5>(c);
            let valid = categorical & lo & hi & _mm512_cmplt_epu32_mask(word, words);
            let at_word = _mm512_add_epi32(_mm512_add_epi32(at, one), word);
            let bits =
                _mm512_mask_i32gather_epi32::<4>(_mm512_setzero_si512(), valid, at_word, cat);
            let bit = _mm512_srlv_epi32(bits, _mm512_and_si512(c, _mm512_set1_epi32(31)));
            let in_set = valid & _mm512_test_epi32_mask(bit, one);
            (in_set ^ flag(header, IN_SET_LEFT)) & !nan
        };
        right = (right & !categorical) | (categorical & (in_set_right | nan_right));
    }
    right
}
