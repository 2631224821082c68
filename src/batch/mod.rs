//! Columnar batches: the unit every backend scores.
//!
//! A [`Batch`] is feature-major: column `f` is `values[f * n_rows..(f + 1) * n_rows]`, ready for
//! SIMD lanes across rows and for a single GPU upload.

pub mod batcher;

use crate::error::{Error, Result};

/// A batch of rows stored column by column.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Batch {
    n_rows: usize,
    n_features: usize,
    values: Vec<f32>,
}

impl Batch {
    /// Builds a batch from row-major values (`n_features` per row).
    ///
    /// # Examples
    ///
    /// ```
    /// let batch = streamscore::Batch::from_rows(&[1.0, 2.0, 3.0, 4.0], 2).unwrap();
    /// assert_eq!(batch.column(1), &[2.0, 4.0]);
    /// assert_eq!(batch.value(1, 0), 3.0);
    /// ```
    pub fn from_rows(rows: &[f32], n_features: usize) -> Result<Self> {
        if n_features == 0 || !rows.len().is_multiple_of(n_features) {
            return Err(Error::WidthMismatch { expected: n_features, got: rows.len() });
        }
        let n_rows = rows.len() / n_features;
        let mut values = vec![0.0; rows.len()];
        for (r, row) in rows.chunks_exact(n_features).enumerate() {
            for (f, &v) in row.iter().enumerate() {
                values[f * n_rows + r] = v;
            }
        }
        Ok(Batch { n_rows, n_features, values })
    }

    /// The rows, row-major (`n_features` values per row): the inverse of [`Batch::from_rows`].
    ///
    /// # Examples
    ///
    /// ```
    /// let rows = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
    /// assert_eq!(streamscore::Batch::from_rows(&rows, 3).unwrap().to_rows(), rows);
    /// ```
    pub fn to_rows(&self) -> Vec<f32> {
        let mut rows = vec![0.0; self.values.len()];
        for (f, column) in self.values.chunks_exact(self.n_rows.max(1)).enumerate() {
            for (r, &v) in column.iter().enumerate() {
                rows[r * self.n_features + f] = v;
            }
        }
        rows
    }

    /// Builds a batch from feature-major values (`n_rows` per column).
    pub fn from_columns(values: Vec<f32>, n_rows: usize, n_features: usize) -> Result<Self> {
        if n_rows.checked_mul(n_features) != Some(values.len()) {
            return Err(Error::WidthMismatch { expected: n_rows * n_features, got: values.len() });
        }
        Ok(Batch { n_rows, n_features, values })
    }

    /// Number of rows.
    pub fn n_rows(&self) -> usize {
        self.n_rows
    }

    /// Number of features per row.
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// Column `f` (all rows' values of feature `f`). Panics if `f >= n_features()`.
    pub fn column(&self, f: usize) -> &[f32] {
        &self.values[f * self.n_rows..(f + 1) * self.n_rows]
    }

    /// Row `r`'s value of feature `f`. Panics if either is out of range.
    #[inline]
    pub fn value(&self, r: usize, f: usize) -> f32 {
        assert!(r < self.n_rows);
        self.values[f * self.n_rows + r]
    }

    /// The whole feature-major buffer.
    pub fn as_slice(&self) -> &[f32] {
        &self.values
    }

    /// The whole feature-major buffer as bytes, ready for a GPU upload.
    pub fn as_bytes(&self) -> &[u8] {
        bytemuck::cast_slice(&self.values)
    }

    /// Gives the buffer back for reuse.
    pub fn into_values(self) -> Vec<f32> {
        self.values
    }

    /// The batch borrowed as [`Columns`].
    pub fn columns(&self) -> Columns<'_> {
        Columns { values: &self.values, n_rows: self.n_rows, n_features: self.n_features }
    }

    /// Keeps only the rows whose `keep` entry is true, in order. Panics if `keep.len()` is not
    /// `n_rows()`.
    pub fn retain_rows(&mut self, keep: &[bool]) {
        assert_eq!(keep.len(), self.n_rows);
        let kept = keep.iter().filter(|&&k| k).count();
        let mut out = 0;
        for f in 0..self.n_features {
            let start = f * self.n_rows;
            for (r, &k) in keep.iter().enumerate() {
                if k {
                    // `out` never passes `start + r`: each column moves down, never up.
                    self.values[out] = self.values[start + r];
                    out += 1;
                }
            }
        }
        self.values.truncate(kept * self.n_features);
        self.n_rows = kept;
    }
}

/// A feature-major batch borrowed from someone else's buffer (a numpy array in Fortran order,
/// an Arrow table's columns): what [`Batch`] holds, without owning or copying it. Backends
/// whose own layout is feature-major score it in place
/// ([`Backend::score_columns`](crate::Backend::score_columns)).
///
/// # Examples
///
/// ```
/// let values = [1.0, 3.0, 2.0, 4.0]; // two rows, two features, column after column
/// let c = streamscore::Columns::new(&values, 2, 2).unwrap();
/// assert_eq!(c.column(1), &[2.0, 4.0]);
/// assert_eq!(c.value(1, 0), 3.0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Columns<'a> {
    values: &'a [f32],
    n_rows: usize,
    n_features: usize,
}

impl<'a> Columns<'a> {
    /// `n_features` columns of `n_rows` values each, one after another.
    pub fn new(values: &'a [f32], n_rows: usize, n_features: usize) -> Result<Self> {
        if n_features == 0 || n_rows.checked_mul(n_features) != Some(values.len()) {
            return Err(Error::WidthMismatch {
                expected: n_rows.saturating_mul(n_features),
                got: values.len(),
            });
        }
        Ok(Columns { values, n_rows, n_features })
    }

    /// Number of rows.
    pub fn n_rows(&self) -> usize {
        self.n_rows
    }

    /// Number of features per row.
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// Column `f`. Panics if `f >= n_features()`.
    #[inline]
    pub fn column(&self, f: usize) -> &'a [f32] {
        &self.values[f * self.n_rows..(f + 1) * self.n_rows]
    }

    /// Row `r`'s value of feature `f`. Panics if either is out of range.
    #[inline]
    pub fn value(&self, r: usize, f: usize) -> f32 {
        assert!(r < self.n_rows);
        self.values[f * self.n_rows + r]
    }

    /// The whole buffer.
    pub fn as_slice(&self) -> &'a [f32] {
        self.values
    }

    /// An owned copy.
    pub fn to_batch(&self) -> Batch {
        Batch { n_rows: self.n_rows, n_features: self.n_features, values: self.values.to_vec() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_borrow_what_a_batch_owns_and_check_their_sizes() {
        let b = Batch::from_rows(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 3).unwrap();
        let c = Columns::new(b.as_slice(), 2, 3).unwrap();
        assert_eq!(c, b.columns());
        assert_eq!(c.to_batch(), b);
        assert_eq!((c.column(2), c.value(1, 0)), (&[3.0, 6.0][..], 4.0));
        assert!(Columns::new(b.as_slice(), 4, 3).is_err());
        assert!(Columns::new(&[], 0, 0).is_err());
        assert!(Columns::new(&[1.0], usize::MAX, 2).is_err());
    }

    #[test]
    fn retain_rows_keeps_columns_aligned() {
        let mut b = Batch::from_rows(&[1.0, 10.0, 2.0, 20.0, 3.0, 30.0], 2).unwrap();
        b.retain_rows(&[true, false, true]);
        assert_eq!((b.n_rows(), b.column(0), b.column(1)), (2, &[1.0, 3.0][..], &[10.0, 30.0][..]));
        assert_eq!(b.as_bytes().len(), 16);
    }
}
