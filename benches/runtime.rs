//! The runtime's parts and the whole: queue push/pop against std's channel, the batching
//! policy against a plain Vec, and one batch of events through the full runtime (stream)
//! against the same rows scored directly by the backend, in the same run.
//!
//! `cargo bench --bench runtime`

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use streamscore::batch::batcher::{Batcher, Queued};
use streamscore::io::synthetic_rows;
use streamscore::{
    Backend, Event, EventBatch, Output, Reference, Runtime, RuntimeConfig, load_forest,
};

const N: usize = 256;

fn queue(c: &mut Criterion) {
    let mut group = c.benchmark_group("queue");
    group.throughput(Throughput::Elements(N as u64));
    group.bench_function("crossbeam_bounded", |b| {
        let (tx, rx) = crossbeam_channel::bounded::<u64>(1024);
        b.iter(|| {
            for i in 0..N as u64 {
                tx.try_send(i).unwrap();
            }
            for _ in 0..N {
                black_box(rx.try_recv().unwrap());
            }
        })
    });
    group.bench_function("std_sync_channel (baseline)", |b| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<u64>(1024);
        b.iter(|| {
            for i in 0..N as u64 {
                tx.try_send(i).unwrap();
            }
            for _ in 0..N {
                black_box(rx.try_recv().unwrap());
            }
        })
    });
    group.finish();
}

#[derive(Clone, Copy)]
struct Item(Instant, Option<Instant>);

impl Queued for Item {
    fn accepted(&self) -> Instant {
        self.0
    }
    fn deadline(&self) -> Option<Instant> {
        self.1
    }
}

fn batcher(c: &mut Criterion) {
    let mut group = c.benchmark_group("batcher");
    group.throughput(Throughput::Elements(N as u64));
    let now = Instant::now();
    let items: Vec<Item> =
        (0..N).map(|i| Item(now, (i % 4 == 0).then(|| now + Duration::from_secs(1)))).collect();
    group.bench_function("admit_and_take", |b| {
        let mut batcher = Batcher::new(N, Duration::from_millis(1));
        let (mut batch, mut expired) = (Vec::with_capacity(N), Vec::new());
        b.iter(|| {
            for &item in &items {
                let _ = batcher.admit(item, now);
            }
            black_box(batcher.flush_due(now));
            batcher.take(now, &mut batch, &mut expired);
            black_box(batch.len());
            batch.clear();
        })
    });
    group.bench_function("vec_push_drain (baseline)", |b| {
        let mut v = Vec::with_capacity(N);
        b.iter(|| {
            v.extend_from_slice(&items);
            black_box(v.drain(..).count());
        })
    });
    group.finish();
}

fn end_to_end(c: &mut Criterion) {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut group = c.benchmark_group("end_to_end");
    group.throughput(Throughput::Elements(N as u64));
    for name in ["lgb_single_leaf", "lgb_binary"] {
        let forest = load_forest(root.join("models/golden").join(name).join("model.txt")).unwrap();
        let rows = synthetic_rows(&forest, N, 1);
        let w = forest.n_features();
        let row_major = rows.to_rows();
        let reference = Reference::new(forest.clone());
        group.bench_function(BenchmarkId::new("direct", name), |b| {
            let mut out = vec![0.0; N];
            b.iter(|| reference.score_batch(&rows, Output::Transformed, &mut out).unwrap())
        });
        let rt = Runtime::builder()
            .model(forest)
            .config(RuntimeConfig::default().with_max_batch(N))
            .build()
            .unwrap();
        group.bench_function(BenchmarkId::new("stream", name), |b| {
            let mut tickets = Vec::with_capacity(N);
            b.iter(|| {
                for r in 0..N {
                    tickets
                        .push(rt.try_submit(Event::new(&row_major[r * w..(r + 1) * w])).unwrap());
                }
                for t in tickets.drain(..) {
                    black_box(t.wait().unwrap());
                }
            })
        });
        group.bench_function(BenchmarkId::new("stream_set", name), |b| {
            b.iter(|| black_box(rt.score_many(EventBatch::rows(&row_major)).unwrap()))
        });
    }
    group.finish();
}

criterion_group!(benches, queue, batcher, end_to_end);
criterion_main!(benches);
