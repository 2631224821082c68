//! Tree scoring: model load time and reference-scorer throughput.
//!
//! The reference scorer is the baseline every faster kernel is measured against; the fast
//! kernels join this file as they land. Models: committed golden models and, where ../shared is
//! present, the real lleaves models.
//!
//! `cargo bench --bench gbdt`

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use streamscore::io::{Columns, read_rows};
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
        let batch = read_rows(&bytes, Columns::ByName, &forest.feature_names, "bench").unwrap();
        let scorer = Reference::new(forest);
        let mut out = vec![0.0; batch.n_rows() * scorer.output_width(Output::Raw)];
        group.throughput(Throughput::Elements(batch.n_rows() as u64));
        group.bench_with_input(BenchmarkId::new("raw", &name), &batch, |b, batch| {
            b.iter(|| scorer.score_batch(batch, Output::Raw, &mut out).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, load, reference);
criterion_main!(benches);
