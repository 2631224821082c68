//! The feature stage's throughput: a spec with 10 windowed features (counts, sums, means,
//! max, std over 1 h and 24 h, an EWMA, a z-score, time since last) over 100,000 live keys, in
//! batches of 4,096 events, one thread. Events arrive in time order, keys uniformly at random,
//! about 20 events per key per simulated day (the windows hold 1-20 events). The second
//! function adds a session window (a count and a sum over the current session, 2 h gap, and
//! the session's age) and a windowed median over 24 h to the same spec, as issue 27 measures.
//!
//! `moving_state` times what a partition's move costs (issue 24): its keys' snapshot, the
//! merge into another instance's stage, and the old owner forgetting them.
//!
//! `cargo bench --bench features` (`-- moving_state` for the last alone)

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use streamscore::Batch;
use streamscore::features::{Features, Output, Spec};

pub const SPEC: &str = r#"
[events]
key = "card"
time = "ts"
numeric = ["amount"]

[state]
ttl = "7d"
max_keys = 200000

[[feature]]
name = "n_1h"
op = "count"
window = "1h"

[[feature]]
name = "n_24h"
op = "count"
window = "24h"

[[feature]]
name = "sum_1h"
op = "sum"
field = "amount"
window = "1h"

[[feature]]
name = "sum_24h"
op = "sum"
field = "amount"
window = "24h"

[[feature]]
name = "mean_24h"
op = "mean"
field = "amount"
window = "24h"

[[feature]]
name = "max_24h"
op = "max"
field = "amount"
window = "24h"

[[feature]]
name = "std_24h"
op = "std"
field = "amount"
window = "24h"

[[feature]]
name = "ewma"
op = "ewma"
field = "amount"
half_life = "6h"

[[feature]]
name = "z_24h"
op = "zscore"
field = "amount"
window = "24h"

[[feature]]
name = "since_last"
op = "since_last"
"#;

/// What the second function adds to [`SPEC`].
const SESSION_AND_QUANTILE: &str = r#"
[[feature]]
name = "n_session"
op = "count"
session = "2h"

[[feature]]
name = "sum_session"
op = "sum"
field = "amount"
session = "2h"

[[feature]]
name = "session_age"
op = "session_age"
session = "2h"

[[feature]]
name = "median_24h"
op = "median"
field = "amount"
window = "24h"
"#;

const KEYS: u64 = 100_000;
const BATCH: usize = 4_096;

/// `n` events: keys uniform over 100k, time advancing so each key sees ~20 events a day.
fn events(n: usize, start: i64, seed: u64) -> (Vec<f32>, Vec<u64>, Vec<i64>) {
    let mut s = seed;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let step = 86_400_000 / (20 * KEYS as i64); // ms between events
    let mut rows = Vec::with_capacity(n);
    let mut keys = Vec::with_capacity(n);
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        rows.push((next() % 10_000) as f32 / 100.0);
        keys.push(next() % KEYS);
        times.push(start + (i as i64 + 1) * step.max(1));
    }
    (rows, keys, times)
}

fn stage(c: &mut Criterion) {
    measure(c, "10_windowed_100k_keys", SPEC);
    measure(c, "10_windowed_session_median_100k_keys", &format!("{SPEC}{SESSION_AND_QUANTILE}"));
}

fn measure(c: &mut Criterion, name: &str, spec: &str) {
    let spec = Spec::from_toml(spec).unwrap();
    let mut features = Features::new(spec);
    // Warm up: two simulated days, so every key is live with full windows.
    let warm = 40 * KEYS as usize;
    let (rows, keys, times) = events(warm, 0, 1);
    let mut out = Output::default();
    for ((r, k), t) in rows.chunks(BATCH).zip(keys.chunks(BATCH)).zip(times.chunks(BATCH)) {
        let batch = Batch::from_columns(r.to_vec(), r.len(), 1).unwrap();
        features.transform(&batch, k, t, &mut out).unwrap();
    }
    assert!(features.live_keys() >= 99_000, "{} live keys", features.live_keys());
    eprintln!(
        "state: {} bytes for {} live keys ({} bytes per key)",
        features.state_bytes(),
        features.live_keys(),
        features.state_bytes() / features.live_keys()
    );
    // Measured: the following events, in batches, cycling through a pre-generated day.
    let (rows, keys, times) = events(20 * KEYS as usize, *times.last().unwrap(), 2);
    let batches: Vec<(Batch, &[u64], &[i64])> = rows
        .chunks(BATCH)
        .zip(keys.chunks(BATCH))
        .zip(times.chunks(BATCH))
        .map(|((r, k), t)| (Batch::from_columns(r.to_vec(), r.len(), 1).unwrap(), k, t))
        .collect();
    let mut group = c.benchmark_group("features");
    group.throughput(Throughput::Elements(BATCH as u64));
    let mut i = 0;
    let mut shift = 0i64;
    let day = times.last().unwrap() - times[0] + 1;
    group.bench_function(name, |b| {
        b.iter(|| {
            let (batch, k, t) = &batches[i];
            // Later passes over the same day move forward in time, so state stays steady.
            let t: Vec<i64> = t.iter().map(|x| x + shift).collect();
            features.transform(batch, k, &t, &mut out).unwrap();
            black_box(&out.values);
            i += 1;
            if i == batches.len() {
                i = 0;
                shift += day;
            }
        })
    });
    group.finish();
}

/// State that moves with its partition (issue 24): a stage with 100,000 live keys written as
/// one snapshot (what a revoked partition's checkpoint holds; SHA-256 included), and that
/// snapshot merged into a running stage that holds 100,000 other keys (what an instance does
/// when the partition is assigned to it), then forgotten again (what the old owner does).
fn moving_state(c: &mut Criterion) {
    let spec = std::sync::Arc::new(Spec::from_toml(SPEC).unwrap());
    let warm = |seed: u64, offset: u64| {
        let mut features = Features::new(spec.clone());
        let (rows, keys, times) = events(40 * KEYS as usize, 0, seed);
        let keys: Vec<u64> = keys.iter().map(|k| k + offset).collect();
        let mut out = Output::default();
        for ((r, k), t) in rows.chunks(BATCH).zip(keys.chunks(BATCH)).zip(times.chunks(BATCH)) {
            let batch = Batch::from_columns(r.to_vec(), r.len(), 1).unwrap();
            features.transform(&batch, k, t, &mut out).unwrap();
        }
        features
    };
    let moving = warm(1, 0);
    let mut snapshot = Vec::new();
    moving.snapshot(0, &mut snapshot).unwrap();
    eprintln!(
        "snapshot: {} bytes for {} keys ({} bytes per key)",
        snapshot.len(),
        moving.live_keys(),
        snapshot.len() / moving.live_keys()
    );
    // The stages merged into are restored from snapshots in each sample's setup, untimed.
    let mut staying = Vec::new();
    warm(3, 1 << 40).snapshot(0, &mut staying).unwrap();
    let fresh = |bytes: &[u8]| Features::restore(spec.clone(), bytes).unwrap().0;
    let mut group = c.benchmark_group("moving_state");
    group.sample_size(10);
    group.throughput(Throughput::Elements(moving.live_keys() as u64));
    group.bench_function("snapshot_100k_keys", |b| {
        let mut buf = Vec::with_capacity(snapshot.len());
        b.iter(|| {
            buf.clear();
            black_box(moving.snapshot(0, &mut buf).unwrap());
        })
    });
    group.bench_function("merge_100k_keys_beside_100k", |b| {
        b.iter_batched(
            || fresh(&staying),
            |mut stage| {
                black_box(stage.merge(&snapshot).unwrap());
                stage
            },
            criterion::BatchSize::LargeInput,
        )
    });
    let mut both = fresh(&staying);
    both.merge(&snapshot).unwrap();
    let mut both_bytes = Vec::new();
    both.snapshot(0, &mut both_bytes).unwrap();
    group.bench_function("forget_100k_keys_of_200k", |b| {
        b.iter_batched(
            || fresh(&both_bytes),
            |mut stage| {
                black_box(stage.forget(|k| k < 1 << 40));
                stage
            },
            criterion::BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, stage, moving_state);
criterion_main!(benches);
