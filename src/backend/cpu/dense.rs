//! Dense nets on the CPU: [`DenseCpu`], the fast path, and [`DenseReference`], the scalar truth
//! it is tested against.
//!
//! Rows go through every layer in tiles of [`TILE`] rows, while they are hot in cache. Per
//! layer, by measurement (`cargo bench --bench dense`; `--backend cpu` in `streamscore bench`):
//! - with AVX-512: our register-blocked kernel at every batch size. It keeps up to 6 rows x 64
//!   outputs (2 rows x 128, or 1 row x 256 with the loads folded into the FMAs) of
//!   accumulators in zmm registers and streams each weight row once per row block: no packing,
//!   no call overhead, so batch 1 is as fast as the weights can be read. A layer with one
//!   output is a dot product per row, vectorized over the inputs (not one FMA chain `n_in`
//!   long): that and the 1 x 256 block took batch 1 of the MLP from 2.5 to 2.0 µs. On the MLP 32-256-256-1 it scored 1.2M rows/s at 64-65536 rows where
//!   `matrixmultiply` (AVX2 kernels) scored 0.70-0.86M; the `gemm` crate (0.18) keeps its
//!   AVX-512 kernels behind a nightly-only feature and was slower than `matrixmultiply` on one
//!   256x256 layer from 64 rows up.
//! - without it: a vectorized row kernel (AVX2+FMA, or portable) up to [`SMALL`] rows, and
//!   `matrixmultiply`'s packed kernels above, with the bias pre-loaded into the output.
//!
//! The activation runs over each layer's tile output right after the layer.
//! Scratch buffers are thread-local: no allocation per batch once warm.

use std::cell::RefCell;
use std::sync::Arc;

use crate::backend::cpu::Kernel;
use crate::backend::cpu::aligned::Aligned;
use crate::backend::{Backend, Output};
use crate::batch::Batch;
use crate::error::{Error, Result};
use crate::model::dense::{Dense, Layer};

/// Without AVX-512, tiles of at most this many rows take the row kernel instead of `gemm`.
pub const SMALL: usize = 4;

/// Rows per tile on the `gemm` path.
pub const TILE: usize = 256;

fn check(net: &Dense, batch: &Batch, out: &[f32]) -> Result<()> {
    if batch.n_features() != net.n_inputs() {
        return Err(Error::WidthMismatch { expected: net.n_inputs(), got: batch.n_features() });
    }
    let need = batch.n_rows() * net.n_outputs();
    if out.len() != need {
        return Err(Error::OutputLength { expected: need, got: out.len() });
    }
    Ok(())
}

/// The scalar reference for dense nets: [`Dense::forward_row`] on each row.
#[derive(Debug, Clone)]
pub struct DenseReference {
    net: Arc<Dense>,
}

impl DenseReference {
    /// A reference scorer for `net`.
    pub fn new(net: Arc<Dense>) -> Self {
        DenseReference { net }
    }
}

impl Backend for DenseReference {
    fn name(&self) -> &'static str {
        "dense-reference"
    }

    fn n_features(&self) -> usize {
        self.net.n_inputs()
    }

    /// A dense net has no separate raw output: both outputs are the last layer's activations.
    fn output_width(&self, _output: Output) -> usize {
        self.net.n_outputs()
    }

    fn score_batch(&self, batch: &Batch, _output: Output, out: &mut [f32]) -> Result<()> {
        check(&self.net, batch, out)?;
        let width = self.net.n_outputs();
        let mut row = vec![0.0; batch.n_features()];
        for r in 0..batch.n_rows() {
            for (f, v) in row.iter_mut().enumerate() {
                *v = batch.value(r, f);
            }
            out[r * width..(r + 1) * width].copy_from_slice(&self.net.forward_row(&row)?);
        }
        Ok(())
    }
}

/// The fast CPU path for dense nets.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use streamscore::backend::cpu::DenseCpu;
/// use streamscore::model::dense::{Activation, Dense, Layer};
/// use streamscore::{Backend, Batch, Output};
///
/// let layer = Layer { n_in: 2, n_out: 1, weights: vec![1.0, -2.0], bias: vec![0.5],
///                     activation: Activation::Identity };
/// let cpu = DenseCpu::new(Arc::new(Dense::new(2, vec![], vec![layer])?));
/// let mut out = [0.0; 2];
/// cpu.score_batch(&Batch::from_rows(&[3.0, 1.0, 0.0, 1.0], 2)?, Output::Raw, &mut out)?;
/// assert_eq!(out, [1.5, -1.5]);
/// # Ok::<(), streamscore::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct DenseCpu {
    net: Arc<Dense>,
    kernel: Kernel,
}

impl DenseCpu {
    /// The fast path for `net`, with the best kernel this CPU has ([`Kernel::detect`]).
    pub fn new(net: Arc<Dense>) -> Self {
        Self::with_kernel(net, Kernel::detect())
            .unwrap_or_else(|(net, _)| DenseCpu { net, kernel: Kernel::Scalar })
    }

    /// The fast path with a forced small-batch kernel; errors (handing `net` back) when this
    /// CPU cannot run it. The AVX2 kernel also needs FMA.
    #[allow(clippy::result_large_err)]
    pub fn with_kernel(
        net: Arc<Dense>,
        kernel: Kernel,
    ) -> std::result::Result<Self, (Arc<Dense>, Error)> {
        if !kernel_available(kernel) {
            let e =
                Error::Config(format!("the {kernel} dense kernel is not available on this CPU"));
            return Err((net, e));
        }
        Ok(DenseCpu { net, kernel })
    }

    /// The small-batch kernel in use.
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// The net.
    pub fn net(&self) -> &Arc<Dense> {
        &self.net
    }
}

fn kernel_available(kernel: Kernel) -> bool {
    match kernel {
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => kernel.is_available() && std::arch::is_x86_feature_detected!("fma"),
        k => k.is_available(),
    }
}

/// Activations in and out of a layer, each `TILE x widest`; rows the kernels load as vectors,
/// so they start on a 64-byte line ([`Aligned`]).
#[derive(Default)]
struct Scratch {
    a: Aligned<f32>,
    b: Aligned<f32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

impl Backend for DenseCpu {
    fn name(&self) -> &'static str {
        match self.kernel {
            Kernel::Avx512 => "dense-cpu-avx512",
            Kernel::Avx2 => "dense-cpu-avx2",
            _ => "dense-cpu-scalar",
        }
    }

    fn n_features(&self) -> usize {
        self.net.n_inputs()
    }

    /// A dense net has no separate raw output: both outputs are the last layer's activations.
    fn output_width(&self, _output: Output) -> usize {
        self.net.n_outputs()
    }

    fn score_batch(&self, batch: &Batch, _output: Output, out: &mut [f32]) -> Result<()> {
        check(&self.net, batch, out)?;
        let rows = batch.n_rows();
        let width = self.net.n_outputs();
        let widest = self.net.layers().iter().map(|l| l.n_in.max(l.n_out)).max().unwrap_or(0);
        SCRATCH.with_borrow_mut(|s| {
            let tile = rows.min(TILE);
            for buf in [&mut s.a, &mut s.b] {
                if buf.len() < tile * widest {
                    buf.resize(tile * widest, 0.0);
                }
            }
            let mut r0 = 0;
            while r0 < rows {
                let n = (rows - r0).min(TILE);
                self.tile(batch, r0, n, s, &mut out[r0 * width..(r0 + n) * width]);
                r0 += n;
            }
        });
        Ok(())
    }
}

impl DenseCpu {
    /// Runs rows `r0..r0 + n` through every layer; `s.a` and `s.b` hold `n x widest` each.
    fn tile(&self, batch: &Batch, r0: usize, n: usize, s: &mut Scratch, out: &mut [f32]) {
        let k0 = self.net.n_inputs();
        // Plain slices: one deref, not one per element.
        let (mut x, mut y): (&mut [f32], &mut [f32]) = (&mut s.a, &mut s.b);
        for f in 0..k0 {
            let column = &batch.column(f)[r0..r0 + n];
            for (r, &v) in column.iter().enumerate() {
                x[r * k0 + f] = v;
            }
        }
        if !self.net.input_ops().is_empty() {
            for row in x[..n * k0].chunks_exact_mut(k0) {
                self.net.standardize(row);
            }
        }
        let layers = self.net.layers();
        for (l, layer) in layers.iter().enumerate() {
            let last = l + 1 == layers.len();
            let dst: &mut [f32] = if last { out } else { &mut y[..n * layer.n_out] };
            let src = &x[..n * layer.n_in];
            // Measured (see the module docs): the AVX-512 register-blocked kernel beats the
            // GEMM crates at every batch size; the AVX2 and portable row kernels only on the
            // smallest batches.
            if n <= SMALL || self.kernel == Kernel::Avx512 {
                small_layer(self.kernel, src, n, layer, dst);
            } else {
                gemm_layer(src, n, layer, dst);
            }
            for row in dst.chunks_exact_mut(layer.n_out) {
                layer.activation.apply_row(row);
            }
            std::mem::swap(&mut x, &mut y);
        }
    }
}

/// `dst = src W + b` for `n` rows through `matrixmultiply`, with the bias pre-loaded into
/// `dst`.
fn gemm_layer(src: &[f32], n: usize, layer: &Layer, dst: &mut [f32]) {
    let (k, m) = (layer.n_in, layer.n_out);
    assert!(src.len() == n * k && dst.len() == n * m && layer.weights.len() == k * m);
    for row in dst.chunks_exact_mut(m) {
        row.copy_from_slice(&layer.bias);
    }
    // SAFETY: the three matrices are exactly n x k, k x m and n x m, row-major (asserted
    // above), and the strides below describe that layout.
    unsafe {
        matrixmultiply::sgemm(
            n,
            k,
            m,
            1.0,
            src.as_ptr(),
            k as isize,
            1,
            layer.weights.as_ptr(),
            m as isize,
            1,
            1.0,
            dst.as_mut_ptr(),
            m as isize,
            1,
        );
    }
}

/// `dst = src W + b` for at most a few rows, with the kernel's register blocking.
fn small_layer(kernel: Kernel, src: &[f32], n: usize, layer: &Layer, dst: &mut [f32]) {
    assert!(src.len() == n * layer.n_in && dst.len() == n * layer.n_out);
    assert!(layer.weights.len() == layer.n_in * layer.n_out && layer.bias.len() == layer.n_out);
    match kernel {
        // SAFETY: the kernel was checked available at construction; lengths asserted above.
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => unsafe { avx512::small(src, n, layer, dst) },
        // SAFETY: as above (AVX2 and FMA were both checked).
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => unsafe { small_avx2(src, n, layer, dst) },
        _ => small_portable(src, n, layer, dst),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn small_avx2(src: &[f32], n: usize, layer: &Layer, dst: &mut [f32]) {
    small_generic::<true>(src, n, layer, dst)
}

fn small_portable(src: &[f32], n: usize, layer: &Layer, dst: &mut [f32]) {
    small_generic::<false>(src, n, layer, dst)
}

/// One row at a time, `y += x_i * W[i, ..]` over contiguous weight rows: LLVM vectorizes the
/// inner loop (and fuses it into FMAs under `small_avx2`, where `FMA` is set; elsewhere
/// `mul_add` would be a library call).
#[inline(always)]
fn small_generic<const FMA: bool>(src: &[f32], n: usize, layer: &Layer, dst: &mut [f32]) {
    let (k, m) = (layer.n_in, layer.n_out);
    for r in 0..n {
        let y = &mut dst[r * m..(r + 1) * m];
        y.copy_from_slice(&layer.bias);
        for (i, &xv) in src[r * k..(r + 1) * k].iter().enumerate() {
            let wi = &layer.weights[i * m..(i + 1) * m];
            for (yo, &wo) in y.iter_mut().zip(wi) {
                *yo = if FMA { xv.mul_add(wo, *yo) } else { *yo + xv * wo };
            }
        }
    }
}

/// The AVX-512 small-batch kernel: `R` rows x `V` vectors of 16 outputs of accumulators in
/// zmm registers (`R * V <= 24`), masked loads and stores for the last columns.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use crate::model::dense::Layer;

    /// # Safety
    /// AVX-512F must be available; `src` holds `n x n_in` and `dst` `n x n_out` values, and the
    /// layer's weights and bias are `n_in x n_out` and `n_out` long.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn small(src: &[f32], n: usize, layer: &Layer, dst: &mut [f32]) {
        // SAFETY: the caller's contract; every pointer below stays inside its slice (rows
        // r0..r0+rows < n, columns o0..o0+cols <= m), and masked lanes are not accessed.
        unsafe {
            let (k, m) = (layer.n_in, layer.n_out);
            if m == 1 {
                // One output: a dot product per row, vectorized over the inputs (the weights
                // are contiguous), instead of one FMA chain `k` long.
                for (r, d) in dst[..n].iter_mut().enumerate() {
                    *d = dot(src.as_ptr().add(r * k), layer.weights.as_ptr(), k) + layer.bias[0];
                }
                return;
            }
            let mut r0 = 0;
            while r0 < n {
                let rows = (n - r0).min(6);
                // Few rows: more vectors (up to 256 outputs for one row), so that enough
                // independent FMA chains are in flight to hide their latency and each weight
                // row is streamed once, contiguously.
                let vmax = match rows {
                    1 => 16,
                    2 => 8,
                    _ => 4,
                };
                let mut o0 = 0;
                while o0 < m {
                    let cols = (m - o0).min(16 * vmax);
                    let x = src.as_ptr().add(r0 * k);
                    let d = dst.as_mut_ptr().add(r0 * m + o0);
                    let w = layer.weights.as_ptr().add(o0);
                    let b = layer.bias.as_ptr().add(o0);
                    macro_rules! dispatch {
                        ($(($r:literal, $v:literal)),*) => {
                            match (rows, cols.div_ceil(16)) {
                                $(($r, $v) => block::<$r, $v>(x, k, w, b, m, cols, d),)*
                                _ => unreachable!("rows <= 6, vectors <= vmax"),
                            }
                        };
                    }
                    dispatch!(
                        (1, 1),
                        (1, 2),
                        (1, 3),
                        (1, 4),
                        (1, 5),
                        (1, 6),
                        (1, 7),
                        (1, 8),
                        (1, 9),
                        (1, 10),
                        (1, 11),
                        (1, 12),
                        (1, 13),
                        (1, 14),
                        (1, 15),
                        (1, 16),
                        (2, 1),
                        (2, 2),
                        (2, 3),
                        (2, 4),
                        (2, 5),
                        (2, 6),
                        (2, 7),
                        (2, 8),
                        (3, 1),
                        (3, 2),
                        (3, 3),
                        (3, 4),
                        (4, 1),
                        (4, 2),
                        (4, 3),
                        (4, 4),
                        (5, 1),
                        (5, 2),
                        (5, 3),
                        (5, 4),
                        (6, 1),
                        (6, 2),
                        (6, 3),
                        (6, 4)
                    );
                    o0 += cols;
                }
                r0 += rows;
            }
        }
    }

    /// `sum(x[i] * w[i])` for `i < k`, over four accumulators.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn dot(x: *const f32, w: *const f32, k: usize) -> f32 {
        // SAFETY: the caller passes `k` readable values behind both pointers; the tail is
        // loaded masked.
        unsafe {
            let mut acc = [_mm512_setzero_ps(); 4];
            let mut i = 0;
            while i + 64 <= k {
                for (j, a) in acc.iter_mut().enumerate() {
                    let at = i + 16 * j;
                    *a =
                        _mm512_fmadd_ps(_mm512_loadu_ps(x.add(at)), _mm512_loadu_ps(w.add(at)), *a);
                }
                i += 64;
            }
            while i < k {
                let mask = ((1u32 << (k - i).min(16)) - 1) as u16;
                let (xv, wv) =
                    (_mm512_maskz_loadu_ps(mask, x.add(i)), _mm512_maskz_loadu_ps(mask, w.add(i)));
                acc[0] = _mm512_fmadd_ps(xv, wv, acc[0]);
                i += 16;
            }
            let sum = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
            _mm512_reduce_add_ps(sum)
        }
    }

    /// `R` rows (stride `k`) from `x`, outputs `0..cols` of a weight matrix with row stride `m`
    /// starting at `w`, into `d` (row stride `m`).
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn block<const R: usize, const V: usize>(
        x: *const f32,
        k: usize,
        w: *const f32,
        b: *const f32,
        m: usize,
        cols: usize,
        d: *mut f32,
    ) {
        // SAFETY: `small` passes pointers with `R` rows of `k` inputs, `cols` outputs and the
        // bias behind them; masked-off lanes are neither loaded nor stored.
        unsafe {
            let mut masks = [0u16; V];
            for (j, mask) in masks.iter_mut().enumerate() {
                let c = cols.saturating_sub(16 * j).min(16);
                *mask = ((1u32 << c) - 1) as u16;
            }
            let mut acc = [[_mm512_setzero_ps(); V]; R];
            for row in acc.iter_mut() {
                for j in 0..V {
                    row[j] = _mm512_maskz_loadu_ps(masks[j], b.add(16 * j));
                }
            }
            if R == 1 && cols == 16 * V {
                // Full vectors: unmasked loads fold into the FMAs (no register per weight
                // vector, so 16 accumulators fit).
                let row = &mut acc[0];
                for i in 0..k {
                    let wi = w.add(i * m);
                    let xv = _mm512_set1_ps(*x.add(i));
                    for (j, a) in row.iter_mut().enumerate() {
                        *a = _mm512_fmadd_ps(xv, _mm512_loadu_ps(wi.add(16 * j)), *a);
                    }
                }
            } else {
                for i in 0..k {
                    let wi = w.add(i * m);
                    let mut wv = [_mm512_setzero_ps(); V];
                    for j in 0..V {
                        wv[j] = _mm512_maskz_loadu_ps(masks[j], wi.add(16 * j));
                    }
                    for (r, row) in acc.iter_mut().enumerate() {
                        let xv = _mm512_set1_ps(*x.add(r * k + i));
                        for j in 0..V {
                            row[j] = _mm512_fmadd_ps(xv, wv[j], row[j]);
                        }
                    }
                }
            }
            for (r, row) in acc.iter().enumerate() {
                for j in 0..V {
                    _mm512_mask_storeu_ps(d.add(r * m + 16 * j), masks[j], row[j]);
                }
            }
        }
    }
}
