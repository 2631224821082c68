//! Tree scoring: model load time, the reference scorer (the baseline), every fast CPU kernel
//! and algorithm on the same rows, and thread scaling.
//!
//! Models: committed golden models and, where ../shared is present, the real lleaves models.
//! Rows: 16,384 synthetic rows per model drawn within its thresholds.
//!
//! `cargo bench --bench gbdt` (groups: load, reference, kernels, threads)

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use streamscore::backend::cpu::{Algorithm, Cpu, Kernel};
use streamscore::io::{Columns, read_rows, synthetic_rows};
use streamscore::{Backend, Output, Reference, load_forest};

fn models() -> Vec<(String, PathBuf, PathBuf)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut out = vec![];
    for name in ["lgb_binary", "lgb_multiclass", "xgb_binary", "xgb_categorical"] {
        let dir = root.join("models/golden").join(name);
        let model = if name.starts_with("lgb") { "model.txt" } else { "model.json" };
        out.push((name.to_string(), dir.join(model), dir.join("input.csv")));
    }
    let shared = root.join("../shared/data/lleaves-models");
    for name in ["airline", "NYC_taxi"] {
        let model = shared.join(format!("{name}.model.txt"));
        if model.exists() {
            out.push((
                name.to_string(),
                model,
                root.join("models/real").join(name).join("input.csv"),
            ));
        }
    }
    out
}

fn load(c: &mut Criterion) {
    let mut group = c.benchmark_group("load");
    for (name, model, _) in models() {
        group.bench_function(&name, |b| b.iter(|| load_forest(black_box(&model)).unwrap()));
    }
    group.finish();
}

fn reference(c: &mut Criterion) {
    let mut group = c.benchmark_group("reference");
    for (name, model, input) in models() {
        let forest = load_forest(&model).unwrap();
        let bytes = std::fs::read(&input).unwrap();
        let batch = read_rows(&bytes, Columns::ByName, forest.feature_names(), "bench").unwrap();
        let scorer = Reference::new(forest);
        let mut out = vec![0.0; batch.n_rows() * scorer.output_width(Output::Raw)];
        group.throughput(Throughput::Elements(batch.n_rows() as u64));
        group.bench_with_input(BenchmarkId::new("raw", &name), &batch, |b, batch| {
            b.iter(|| scorer.score_batch(batch, Output::Raw, &mut out).unwrap())
        });
    }
    group.finish();
}

/// Every kernel x algorithm against the reference scorer, same rows, raw margins.
fn kernels(c: &mut Criterion) {
    let mut group = c.benchmark_group("kernels");
    group.sample_size(20);
    for (name, model, _) in models() {
        let forest = load_forest(&model).unwrap();
        let batch = synthetic_rows(&forest, 16_384, 11);
        let reference = Reference::new(forest.clone());
        let mut out = vec![0.0; batch.n_rows() * reference.output_width(Output::Raw)];
        group.throughput(Throughput::Elements(batch.n_rows() as u64));
        group.bench_function(BenchmarkId::new("reference", &name), |b| {
            b.iter(|| reference.score_batch(&batch, Output::Raw, &mut out).unwrap())
        });
        for kernel in Kernel::available() {
            for algorithm in [Algorithm::Traverse, Algorithm::Bitvector, Algorithm::Masked] {
                let Ok(cpu) = Cpu::new(forest.clone())
                    .and_then(|c| c.with_kernel(kernel))
                    .and_then(|c| c.with_algorithm(algorithm))
                else {
                    continue;
                };
                let id = BenchmarkId::new(format!("{algorithm:?}-{kernel}"), &name);
                group.bench_function(id, |b| {
                    b.iter(|| cpu.score_batch(&batch, Output::Raw, &mut out).unwrap())
                });
            }
        }
    }
    group.finish();
}

/// One large batch on 1 and 2 threads (the default algorithm and kernel).
fn threads(c: &mut Criterion) {
    let mut group = c.benchmark_group("threads");
    group.sample_size(10);
    for (name, model, _) in models() {
        let forest = load_forest(&model).unwrap();
        let batch = synthetic_rows(&forest, 100_000, 13);
        for threads in [1, 2] {
            let cpu = Cpu::new(forest.clone()).unwrap().with_threads(threads).unwrap();
            let mut out = vec![0.0; batch.n_rows() * cpu.output_width(Output::Raw)];
            group.throughput(Throughput::Elements(batch.n_rows() as u64));
            group.bench_function(BenchmarkId::new(format!("{threads}"), &name), |b| {
                b.iter(|| cpu.score_batch(&batch, Output::Raw, &mut out).unwrap())
            });
        }
    }
    group.finish();
}

criterion_group!(benches, load, reference, kernels, threads);
criterion_main!(benches);
