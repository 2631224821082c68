//! Arguments from C, checked before use: null pointers, alignment, sizes that overflow,
//! strings that are not UTF-8, output buffers that overlap inputs.

use std::ffi::{CStr, c_char};

use crate::status::{Fail, SsStatus};

/// A NUL-terminated UTF-8 string.
///
/// # Safety
/// `p` is null or points to a NUL-terminated string that outlives the call.
pub(crate) unsafe fn text<'a>(p: *const c_char, what: &str) -> Result<&'a str, Fail> {
    if p.is_null() {
        return Err(Fail::null(what));
    }
    // SAFETY: non-null, and NUL-terminated and alive by the caller's contract.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str().map_err(|e| Fail::argument(format!("{what} is not UTF-8: {e}")))
}

/// An optional string: null is `None`.
///
/// # Safety
/// As [`text`].
pub(crate) unsafe fn optional_text<'a>(
    p: *const c_char,
    what: &str,
) -> Result<Option<&'a str>, Fail> {
    // SAFETY: the pointers are as this function's contract states.
    if p.is_null() { Ok(None) } else { unsafe { text(p, what) }.map(Some) }
}

/// `a * b` elements of `T`, refused when the count or its bytes overflow.
pub(crate) fn count<T>(a: usize, b: usize, what: &str) -> Result<usize, Fail> {
    a.checked_mul(b)
        .filter(|&n| n <= isize::MAX as usize / size_of::<T>().max(1))
        .ok_or_else(|| Fail::argument(format!("{what}: {a} x {b} values overflow")))
}

fn aligned<T>(p: *const T, len: usize, what: &str) -> Result<(), Fail> {
    if len > isize::MAX as usize / size_of::<T>().max(1) {
        return Err(Fail::argument(format!("{what}: {len} values overflow")));
    }
    if p.is_null() {
        return Err(Fail::null(what));
    }
    if !(p as usize).is_multiple_of(align_of::<T>()) {
        return Err(Fail::argument(format!("{what} is not aligned to {} bytes", align_of::<T>())));
    }
    Ok(())
}

/// `len` values at `p`; an empty slice for `len == 0` whatever `p` is.
///
/// # Safety
/// Where `len > 0`, `p` points to `len` initialized values that outlive the call and that
/// nothing writes during it.
pub(crate) unsafe fn slice<'a, T>(p: *const T, len: usize, what: &str) -> Result<&'a [T], Fail> {
    if len == 0 {
        return Ok(&[]);
    }
    aligned(p, len, what)?;
    // SAFETY: non-null and aligned, `len` elements fit in isize bytes (checked); `len` values
    // by the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// An optional input array: null is `None`.
///
/// # Safety
/// As [`slice`].
pub(crate) unsafe fn optional_slice<'a, T>(
    p: *const T,
    len: usize,
    what: &str,
) -> Result<Option<&'a [T]>, Fail> {
    // SAFETY: the pointers are as this function's contract states.
    if p.is_null() { Ok(None) } else { unsafe { slice(p, len, what) }.map(Some) }
}

/// `len` writable values at `p`, which must not overlap `input`.
///
/// # Safety
/// Where `len > 0`, `p` points to `len` writable values that outlive the call and that
/// nothing else reads or writes during it.
pub(crate) unsafe fn slice_mut<'a, T, I>(
    p: *mut T,
    len: usize,
    what: &str,
    input: &[I],
) -> Result<&'a mut [T], Fail> {
    if len == 0 {
        return Ok(&mut []);
    }
    aligned(p.cast_const(), len, what)?;
    let (start, end) = (p as usize, p as usize + len * size_of::<T>());
    let (i0, i1) = (input.as_ptr() as usize, input.as_ptr() as usize + size_of_val(input));
    if !input.is_empty() && start < i1 && i0 < end {
        return Err(Fail::argument(format!("{what} overlaps the input")));
    }
    // SAFETY: non-null, aligned, disjoint from the input (checked); writable and exclusive by
    // the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts_mut(p, len) })
}

/// Writes one value to an out-pointer.
///
/// # Safety
/// `p` is null (refused) or points to a writable `T`.
pub(crate) unsafe fn put<T>(p: *mut T, value: T, what: &str) -> Result<(), Fail> {
    aligned(p.cast_const(), 1, what)?;
    // SAFETY: non-null and aligned (checked), writable by the caller's contract.
    unsafe { p.write(value) };
    Ok(())
}

/// Writes one value where `p` is not null.
///
/// # Safety
/// As [`put`], but null is allowed.
pub(crate) unsafe fn put_optional<T>(p: *mut T, value: T, what: &str) -> Result<(), Fail> {
    // SAFETY: the pointers are as this function's contract states.
    if p.is_null() { Ok(()) } else { unsafe { put(p, value, what) } }
}

/// Copies `s` and a NUL into `buf` (`cap` bytes); `needed`, when not null, gets the bytes it
/// takes with the NUL. A `buf` too small (or null with `cap` 0, to ask the size) is
/// `SS_STATUS_BUFFER_TOO_SMALL`, and nothing is written to it.
///
/// # Safety
/// `buf` is null or points to `cap` writable bytes; `needed` is null or writable.
pub(crate) unsafe fn copy_text(
    s: &str,
    buf: *mut c_char,
    cap: usize,
    needed: *mut usize,
) -> Result<(), Fail> {
    let n = s.len() + 1;
    // SAFETY: the pointers are as this function's contract states.
    unsafe { put_optional(needed, n, "needed") }?;
    if cap < n {
        return Err(Fail::new(
            SsStatus::BufferTooSmall,
            format!("the text takes {n} bytes with its NUL; the buffer has {cap}"),
        ));
    }
    if buf.is_null() {
        return Err(Fail::null("buf"));
    }
    // SAFETY: `buf` has `cap >= n` writable bytes by the caller's contract; `s` is ours, so the
    // two do not overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(s.as_ptr(), buf.cast::<u8>(), s.len());
        buf.add(s.len()).write(0);
    }
    Ok(())
}
