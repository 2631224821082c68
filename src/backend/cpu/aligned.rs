//! Scratch buffers whose first value sits on a 64-byte boundary: one cache line, one AVX-512
//! vector. The kernels load whole vectors from them, and a vector that straddles two lines
//! costs two loads: a block 16 bytes off the line made the masked walk about 18% slower
//! (`streamscore bench`, one thread), and a `Vec`'s start depends on the allocator, so two
//! threads' buffers could differ by that much in the same run.

use std::ops::{Deref, DerefMut};

use bytemuck::{Pod, Zeroable};

/// One 64-byte line, the unit of storage.
#[derive(Clone, Copy, Pod, Zeroable)]
#[repr(C, align(64))]
struct Line([u8; 64]);

/// A growable buffer of `len` values of `T`, starting on a 64-byte boundary. `T` must divide
/// a line (every kernel lane type does: `f32`, `f64`, `u64`).
pub(crate) struct Aligned<T> {
    lines: Vec<Line>,
    len: usize,
    _values: std::marker::PhantomData<T>,
}

impl<T> Default for Aligned<T> {
    fn default() -> Self {
        Aligned { lines: Vec::new(), len: 0, _values: std::marker::PhantomData }
    }
}

impl<T: Pod> Aligned<T> {
    /// Drops every value (keeps the storage).
    pub(crate) fn clear(&mut self) {
        self.len = 0;
    }

    /// Sets the length to `len`, filling new values with `value` (as `Vec::resize`).
    pub(crate) fn resize(&mut self, len: usize, value: T) {
        let old = self.len;
        let bytes = len.checked_mul(size_of::<T>()).expect("scratch size overflows");
        self.lines.resize(bytes.div_ceil(size_of::<Line>()), Line::zeroed());
        self.len = len;
        if len > old {
            self[old..].fill(value);
        }
    }
}

impl<T: Pod> Deref for Aligned<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &bytemuck::cast_slice(&self.lines)[..self.len]
    }
}

impl<T: Pod> DerefMut for Aligned<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut bytemuck::cast_slice_mut(&mut self.lines)[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_on_a_line_and_resizes_like_a_vec() {
        let mut a = Aligned::<f32>::default();
        assert!(a.is_empty());
        a.resize(5, 1.5);
        assert_eq!(&a[..], &[1.5; 5]);
        a[4] = 2.0;
        a.resize(40, -1.0);
        assert_eq!(a.len(), 40);
        assert_eq!(a[3..6], [1.5, 2.0, -1.0]);
        assert_eq!(a.as_ptr() as usize % 64, 0);
        a.resize(3, 0.0);
        assert_eq!(&a[..], &[1.5; 3]);
        let mut b = Aligned::<f64>::default();
        b.resize(17, 0.25);
        assert_eq!(b.as_ptr() as usize % 64, 0);
        assert_eq!(b.iter().sum::<f64>(), 4.25);
    }
}
