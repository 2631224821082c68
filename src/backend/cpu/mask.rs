//! [`Mask`]: a set of a masked block's rows (`128 * H` of them), one bit per row, held as `H`
//! 128-bit integers (which the compiler keeps in pairs of general registers: a form that
//! stays out of vector registers, where moving masks back and forth would cost more).

use std::ops::{BitAnd, BitOr, Not};

/// A set of a block's rows: bit `i % 128` of part `i / 128` is row `i`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mask<const H: usize>(pub [u128; H]);

impl<const H: usize> Mask<H> {
    /// Rows in a block.
    pub const ROWS: usize = 128 * H;
    /// No row.
    pub const EMPTY: Mask<H> = Mask([0; H]);

    /// Rows `0..n` (`n <= ROWS`).
    pub fn first(n: usize) -> Mask<H> {
        debug_assert!(n <= Self::ROWS);
        let mut m = Self::EMPTY;
        for (h, part) in m.0.iter_mut().enumerate() {
            let bits = n.saturating_sub(128 * h).min(128);
            *part = if bits == 128 { u128::MAX } else { (1u128 << bits) - 1 };
        }
        m
    }

    /// Whether no row is in the set.
    #[inline(always)]
    pub fn is_empty(self) -> bool {
        self.0.iter().fold(0, |a, &p| a | p) == 0
    }

    /// Rows `64 * w..64 * w + 64`, as a word.
    #[inline(always)]
    pub fn word(self, w: usize) -> u64 {
        (self.0[w / 2] >> (64 * (w % 2))) as u64
    }

    /// The set with row `i` added when `on`.
    #[inline(always)]
    pub fn with(mut self, i: usize, on: bool) -> Mask<H> {
        self.0[i / 128] |= u128::from(on) << (i % 128);
        self
    }

    /// The rows in the set, in order.
    #[inline(always)]
    pub fn rows(self) -> impl Iterator<Item = usize> {
        self.0.into_iter().enumerate().flat_map(|(h, part)| {
            let mut m = part;
            std::iter::from_fn(move || {
                (m != 0).then(|| {
                    let i = m.trailing_zeros() as usize;
                    m &= m - 1;
                    128 * h + i
                })
            })
        })
    }

    /// All rows when `on`, else none.
    #[inline(always)]
    pub fn all_if(on: bool) -> Mask<H> {
        Mask([u128::from(on).wrapping_neg(); H])
    }
}

impl<const H: usize> BitAnd for Mask<H> {
    type Output = Mask<H>;
    #[inline(always)]
    fn bitand(mut self, o: Mask<H>) -> Mask<H> {
        for (a, b) in self.0.iter_mut().zip(o.0) {
            *a &= b;
        }
        self
    }
}

impl<const H: usize> BitOr for Mask<H> {
    type Output = Mask<H>;
    #[inline(always)]
    fn bitor(mut self, o: Mask<H>) -> Mask<H> {
        for (a, b) in self.0.iter_mut().zip(o.0) {
            *a |= b;
        }
        self
    }
}

impl<const H: usize> Not for Mask<H> {
    type Output = Mask<H>;
    #[inline(always)]
    fn not(mut self) -> Mask<H> {
        for a in &mut self.0 {
            *a = !*a;
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check<const H: usize>() {
        let rows = Mask::<H>::ROWS;
        for n in [0, 1, 63, 64, 65, 127, 128, 129, 255, 256].into_iter().filter(|&n| n <= rows) {
            let m = Mask::<H>::first(n);
            assert_eq!(m.rows().collect::<Vec<_>>(), (0..n).collect::<Vec<_>>());
            assert_eq!(m.is_empty(), n == 0);
            assert_eq!((!m & Mask::first(rows)).rows().count(), rows - n);
            for w in 0..2 * H {
                let want = (0..64).filter(|i| 64 * w + i < n).fold(0u64, |a, i| a | 1 << i);
                assert_eq!(m.word(w), want);
            }
        }
        let m = Mask::<H>::EMPTY.with(3, true).with(70, true).with(71, false);
        assert_eq!(m.rows().collect::<Vec<_>>(), vec![3, 70]);
        assert_eq!((m | Mask::all_if(false)), m);
        assert_eq!((m & Mask::all_if(true)), m);
    }

    #[test]
    fn first_rows_words_and_iteration_agree() {
        check::<1>();
        check::<2>();
    }
}
