//! Dense nets: the GEMM core choice, and the MLP 32-256-256-1 on every path in one run.
//!
//! - `gemm`: one 256 -> 256 layer (bias + ReLU) at 1, 16, 64 and 1024 rows: the `gemm` crate,
//!   `matrixmultiply` (row-major input ready), and our kernels through a one-layer net (which
//!   also pays the batch's transposition from feature-major columns: 256 values per row here),
//!   so the choice in `src/backend/cpu/dense.rs` is a measurement.
//! - `mlp`: models/onnx/mlp_32_256_256_1 at 1, 64, 1024 and 65536 rows, 1 thread: the scalar
//!   reference (naive baseline), our CPU path per kernel, and ONNX Runtime on the same file.
//!
//! - `peak`: this core's FMA peak, measured: 16 independent chains of 512-bit FMAs in
//!   registers (AVX-512 only), throughput in flops (2 per lane per FMA), to put the MLP's
//!   GFLOP/s in proportion.
//!
//! `cargo bench --bench dense` (ONNX Runtime from scripts/onnxruntime.sh)

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use streamscore::backend::cpu::{DenseCpu, DenseReference, Kernel};
use streamscore::backend::onnx::{OnnxOptions, OnnxRuntime};
use streamscore::io::normal_rows;
use streamscore::model::dense::{Activation, Dense, Layer};
use streamscore::model::onnx::OnnxModel;
use streamscore::{Backend, Output};

fn layer_gemm(c: &mut Criterion) {
    let (k, m) = (256, 256);
    let rows = normal_rows(k, 1024, 1).to_rows();
    let weights: Vec<f32> = normal_rows(m, k, 2).to_rows().iter().map(|w| w * 0.06).collect();
    let bias = vec![0.1f32; m];
    let net = Arc::new(
        Dense::new(
            k,
            vec![],
            vec![Layer {
                n_in: k,
                n_out: m,
                weights: weights.clone(),
                bias: bias.clone(),
                activation: Activation::Relu,
            }],
        )
        .unwrap(),
    );
    let mut group = c.benchmark_group("gemm");
    for n in [1usize, 16, 64, 1024] {
        group.throughput(Throughput::Elements((n * k * m) as u64)); // multiply-adds
        let x = &rows[..n * k];
        let mut out = vec![0.0f32; n * m];
        let finish = |out: &mut [f32]| {
            for v in out.iter_mut() {
                *v = v.max(0.0);
            }
        };
        group.bench_function(BenchmarkId::new("gemm_crate", n), |b| {
            b.iter(|| {
                for row in out.chunks_exact_mut(m) {
                    row.copy_from_slice(&bias);
                }
                // SAFETY: n x k, k x m and n x m row-major buffers, strides to match.
                unsafe {
                    gemm::gemm(
                        n,
                        m,
                        k,
                        out.as_mut_ptr(),
                        1,
                        m as isize,
                        true,
                        x.as_ptr(),
                        1,
                        k as isize,
                        weights.as_ptr(),
                        1,
                        m as isize,
                        1.0,
                        1.0,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    )
                };
                finish(&mut out);
                black_box(&out);
            })
        });
        group.bench_function(BenchmarkId::new("matrixmultiply", n), |b| {
            b.iter(|| {
                for row in out.chunks_exact_mut(m) {
                    row.copy_from_slice(&bias);
                }
                // SAFETY: as above.
                unsafe {
                    matrixmultiply::sgemm(
                        n,
                        k,
                        m,
                        1.0,
                        x.as_ptr(),
                        k as isize,
                        1,
                        weights.as_ptr(),
                        m as isize,
                        1,
                        1.0,
                        out.as_mut_ptr(),
                        m as isize,
                        1,
                    )
                };
                finish(&mut out);
                black_box(&out);
            })
        });
        let batch = streamscore::Batch::from_rows(x, k).unwrap();
        for kernel in Kernel::ALL {
            if let Ok(cpu) = DenseCpu::with_kernel(net.clone(), kernel) {
                group.bench_function(BenchmarkId::new(format!("streamscore_{kernel}"), n), |b| {
                    b.iter(|| cpu.score_batch(&batch, Output::Raw, &mut out).unwrap())
                });
            }
        }
    }
    group.finish();
}

fn mlp(c: &mut Criterion) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/models/onnx/mlp_32_256_256_1/model.onnx");
    let model = Arc::new(OnnxModel::from_bytes(std::fs::read(path).unwrap()).unwrap());
    let net = model.dense().unwrap().clone();
    let mut backends: Vec<Box<dyn Backend>> = vec![Box::new(DenseReference::new(net.clone()))];
    for kernel in Kernel::ALL {
        if let Ok(cpu) = DenseCpu::with_kernel(net.clone(), kernel) {
            backends.push(Box::new(cpu));
        }
    }
    match OnnxRuntime::new(model.clone(), OnnxOptions::default()) {
        Ok(ort) => backends.push(Box::new(ort)),
        Err(e) => eprintln!("SKIP onnx: {e}"),
    }
    let mut group = c.benchmark_group("mlp");
    for n in [1usize, 64, 1024, 65536] {
        let batch = normal_rows(32, n, 7);
        let mut out = vec![0.0f32; n];
        group.throughput(Throughput::Elements(n as u64));
        for backend in &backends {
            if backend.name() == "dense-reference" && n > 1024 {
                continue; // minutes per sample, and the ratio is already clear at 1024
            }
            group.bench_function(BenchmarkId::new(backend.name(), n), |b| {
                b.iter(|| backend.score_batch(&batch, Output::Raw, &mut out).unwrap())
            });
        }
    }
    group.finish();
}

/// 16 chains x 16 lanes of FMAs, `n` rounds: `2 * 256 * n` flops.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn fma_chains(n: usize, seed: f32) -> f32 {
    use std::arch::x86_64::*;
    let mut acc = [_mm512_set1_ps(seed); 16];
    let (a, b) = (_mm512_set1_ps(0.999_9), _mm512_set1_ps(1e-4));
    for _ in 0..n {
        for x in acc.iter_mut() {
            *x = _mm512_fmadd_ps(*x, a, b);
        }
    }
    let sum = acc.iter().fold(_mm512_setzero_ps(), |s, &x| _mm512_add_ps(s, x));
    _mm512_reduce_add_ps(sum)
}

fn peak(c: &mut Criterion) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        let n = 100_000;
        let mut group = c.benchmark_group("peak");
        group.throughput(Throughput::Elements(2 * 256 * n as u64));
        group.bench_function("avx512_fma_flops", |b| {
            // SAFETY: AVX-512F was detected above.
            b.iter(|| unsafe { fma_chains(black_box(n), black_box(1.0)) })
        });
        group.finish();
    }
}

criterion_group!(benches, layer_gemm, mlp, peak);
criterion_main!(benches);
