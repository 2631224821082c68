//! What monitoring adds per event: a batch of 256 events with 10 features and a score,
//! profiled against a training reference (every column binned on its grid, moments, range,
//! missing and out-of-range counts), with one drift detector (Page-Hinkley, or ADWIN) on the
//! score; against a baseline in the same run that reads every value of the batch once (a sum:
//! the least any monitor must do). Per-event figures are the time per batch over 256.
//!
//! The `quantile_sketches` group measures the same monitor (no detector) with its quantiles
//! read off the reference's grid (the default), from a DDSketch per column
//! (`MonitorConfig::quantile_sketch`, 1% relative accuracy), and from the grid with a t-digest
//! per column fed beside it (the `tdigest` crate, 100 centroids: the other well-kept
//! mergeable sketch, for comparison). Before it, the bench prints how far each one's quantiles
//! are from the exact ones on real data (LightGBM's `binary.train` as the reference, its
//! `binary.test` as a window of 500 events; needs `../shared/data`).
//!
//! The `feedback` group measures the delayed-label join per event (see [`feedback`]).
//!
//! `cargo bench --bench monitor`

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use streamscore::io::normal_rows;
use streamscore::monitor::drift::Kind;
use streamscore::monitor::profile::{Monitor, MonitorConfig, QUANTILES};
use streamscore::monitor::reference::Reference;

const FEATURES: usize = 10;
const BATCH: usize = 256;

fn bench(c: &mut Criterion) {
    let names: Vec<String> = (0..FEATURES).map(|f| format!("f{f}")).collect();
    let train = normal_rows(FEATURES + 1, 20_000, 1);
    let train_cols = train.columns();
    let train_values = train_cols.as_slice();
    let n = train.n_rows();
    let features = streamscore::Columns::new(&train_values[..n * FEATURES], n, FEATURES).unwrap();
    let reference =
        Arc::new(Reference::of(&names, features, &train_values[n * FEATURES..]).unwrap());
    // Live rows: the same distribution, some missing.
    let live = normal_rows(FEATURES + 1, BATCH, 2);
    let mut values = live.columns().as_slice().to_vec();
    for v in values.iter_mut().step_by(97) {
        *v = f32::NAN;
    }
    let live_features =
        streamscore::Columns::new(&values[..BATCH * FEATURES], BATCH, FEATURES).unwrap();
    let scores = &values[BATCH * FEATURES..];

    let mut g = c.benchmark_group("monitor");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("baseline_read_every_value", |b| {
        b.iter(|| {
            black_box(values.iter().map(|&v| f64::from(v)).filter(|v| !v.is_nan()).sum::<f64>())
        })
    });
    for detector in [None, Some(Kind::PageHinkley), Some(Kind::Adwin)] {
        let config = MonitorConfig {
            score_detector: detector.map(|k| (k, Vec::new())),
            ..MonitorConfig::new(reference.clone())
        };
        let mut monitor = Monitor::new(config).unwrap();
        let name = match detector {
            None => "profiles_and_reference".to_owned(),
            Some(k) => format!("profiles_reference_and_{k}"),
        };
        let mut now = 0u64;
        g.bench_function(name, |b| {
            b.iter(|| {
                // One window a second of simulated time, closed as the next begins.
                now += 1;
                monitor.observe(1, live_features, scores, now).unwrap();
            })
        });
    }
    g.finish();

    accuracy();
    let mut g = c.benchmark_group("quantile_sketches");
    g.throughput(Throughput::Elements(BATCH as u64));
    let columns: Vec<&[f32]> =
        (0..FEATURES).map(|f| live_features.column(f)).chain(std::iter::once(scores)).collect();
    for quantiles in ["grid", "ddsketch", "grid_and_tdigest"] {
        let config = MonitorConfig {
            quantile_sketch: (quantiles == "ddsketch").then_some(0.01),
            ..MonitorConfig::new(reference.clone())
        };
        let mut monitor = Monitor::new(config).unwrap();
        let mut digests: Vec<tdigest::TDigest> =
            (0..=FEATURES).map(|_| tdigest::TDigest::new_with_size(100)).collect();
        let mut now = 0u64;
        g.bench_function(format!("monitor_{quantiles}"), |b| {
            b.iter(|| {
                now += 1;
                monitor.observe(1, live_features, scores, now).unwrap();
                if quantiles == "grid_and_tdigest" {
                    for (d, col) in digests.iter_mut().zip(&columns) {
                        col.iter().filter(|v| !v.is_nan()).for_each(|&v| d.push(f64::from(v)));
                    }
                }
            })
        });
    }
    g.finish();
}

/// The delayed-label join per event, in steady state: a batch of 256 predictions recorded
/// (what the runtime does before it answers) and 256 labels joined to predictions made 100,000
/// events earlier, with DDM on the error stream; the predictions alone (the answer path's
/// part); against a baseline of a plain `HashMap`
/// insert and remove of the same ids (the least a join by id must do).
fn feedback(c: &mut Criterion) {
    use std::collections::HashMap;
    use streamscore::monitor::feedback::{Feedback, FeedbackConfig};
    const LAG: u64 = 100_000;
    let mut g = c.benchmark_group("feedback");
    g.throughput(Throughput::Elements(BATCH as u64));
    let score =
        |id: u64| ((id.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 11) as f64) / (1u64 << 53) as f64;
    let mut map: HashMap<u64, (u64, f64, u64)> = HashMap::new();
    let mut next = 0u64;
    g.bench_function("baseline_hashmap_insert_and_remove", |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                map.insert(next, (1, score(next), next * 10));
                if next >= LAG {
                    black_box(map.remove(&(next - LAG)));
                }
                next += 1;
            }
        })
    });
    // The default capacity (1,000,000 waiting: labelled predictions stay until they expire or
    // are evicted, so that a second label counts as a duplicate), and a fifth of it.
    for capacity in [1_000_000, 200_000] {
        let config = FeedbackConfig {
            capacity,
            detector: Some((Kind::Ddm, Vec::new())),
            ..FeedbackConfig::default()
        };
        let mut fb = Feedback::new(config).unwrap();
        let mut next = 0u64;
        g.bench_function(format!("predicted_and_labelled_with_ddm_capacity_{capacity}"), |b| {
            b.iter(|| {
                for _ in 0..BATCH {
                    // One event each 10 ms of prediction time; its label 1,000 s later.
                    fb.predicted(next, 1, score(next), next * 10).unwrap();
                    if next >= LAG {
                        let id = next - LAG;
                        let label = if score(id ^ 1) < score(id) { 1.0 } else { 0.0 };
                        black_box(fb.label(id, label, next * 10).unwrap());
                    }
                    next += 1;
                }
            })
        });
    }
    // What the runtime adds on the answer path: the prediction recorded, no label (the buffer
    // full, so each one evicts the oldest).
    let config = FeedbackConfig { capacity: 200_000, ..FeedbackConfig::default() };
    let mut fb = Feedback::new(config).unwrap();
    let mut next = 0u64;
    g.bench_function("predicted_only_capacity_200000", |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                fb.predicted(next, 1, score(next), next * 10).unwrap();
                next += 1;
            }
        })
    });
    g.finish();
}

/// How far `estimate` is from the `q` quantile of `sorted`, in rank: 0 if some rank of a value
/// equal to it is `q`.
fn rank_error(sorted: &[f64], estimate: f64, q: f64) -> f64 {
    let n = sorted.len() as f64;
    let below = sorted.partition_point(|&v| v < estimate) as f64 / n;
    let at_or_below = sorted.partition_point(|&v| v <= estimate) as f64 / n;
    if q < below {
        below - q
    } else if q > at_or_below {
        q - at_or_below
    } else {
        0.0
    }
}

/// Prints each method's quantile errors on LightGBM's binary example: the largest rank error
/// over the monitor's quantiles, per column, as the median and the worst over the 28 columns.
fn accuracy() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/lightgbm-examples");
    let read = |name: &str| -> Option<Vec<Vec<f32>>> {
        let text = std::fs::read_to_string(dir.join(name)).ok()?;
        let rows: Vec<Vec<f32>> = text
            .lines()
            .map(|l| l.split_whitespace().skip(1).map(|v| v.parse().unwrap()).collect())
            .collect();
        Some(rows)
    };
    let (Some(train), Some(test)) = (read("binary.train"), read("binary.test")) else {
        eprintln!("quantile accuracy: ../shared/data/lightgbm-examples not found, skipped");
        return;
    };
    let width = train[0].len();
    let names: Vec<String> = (0..width).map(|f| format!("f{f}")).collect();
    let by_column = |rows: &[Vec<f32>]| -> Vec<f32> {
        (0..width).flat_map(|f| rows.iter().map(move |r| r[f])).collect()
    };
    let (train_values, test_values) = (by_column(&train), by_column(&test));
    let train_cols = streamscore::Columns::new(&train_values, train.len(), width).unwrap();
    let test_cols = streamscore::Columns::new(&test_values, test.len(), width).unwrap();
    let score = vec![0.5f32; train.len()];
    let reference = Arc::new(Reference::of(&names, train_cols, &score).unwrap());
    let summary = |quantile_sketch| {
        let config = MonitorConfig { quantile_sketch, ..MonitorConfig::new(reference.clone()) };
        let mut monitor = Monitor::new(config).unwrap();
        monitor.observe(1, test_cols, &score[..test.len()], 0).unwrap();
        monitor.report().current.remove(0).columns
    };
    let (grid, sketched) = (summary(None), summary(Some(0.01)));
    // Per method: the worst rank error and the worst value error (as a share of the column's
    // range in the window) over the quantiles, one of each per column.
    let mut errors: [(Vec<f64>, Vec<f64>); 3] = Default::default();
    for f in 0..width {
        let mut sorted: Vec<f64> = test_cols.column(f).iter().map(|&v| f64::from(v)).collect();
        sorted.sort_by(f64::total_cmp);
        let span = sorted[sorted.len() - 1] - sorted[0];
        let exact = |q: f64| sorted[((q * sorted.len() as f64).ceil() as usize).max(1) - 1];
        let mut td = tdigest::TDigest::new_with_size(100);
        sorted.iter().for_each(|&v| td.push(v));
        td.flush();
        let read = |columns: &[streamscore::monitor::profile::ColumnSummary], q: f64| {
            columns[f].quantiles.iter().find(|(p, _)| *p == q).unwrap().1
        };
        let methods: [&dyn Fn(f64) -> f64; 3] =
            [&|q| read(&grid, q), &|q| read(&sketched, q), &|q| td.estimate_quantile(q).unwrap()];
        for (estimate, (rank, value)) in methods.into_iter().zip(errors.iter_mut()) {
            let worst =
                |e: &dyn Fn(f64) -> f64| QUANTILES.iter().map(|&q| e(q)).fold(0.0, f64::max);
            rank.push(worst(&|q| rank_error(&sorted, estimate(q), q)));
            value.push(worst(&|q| (estimate(q) - exact(q)).abs() / span));
        }
    }
    eprintln!(
        "quantile errors, LightGBM binary example ({} reference rows, a window of {}; per \
         column the worst over q = {QUANTILES:?}; median and worst of {width} columns):",
        train.len(),
        test.len()
    );
    let mid = |mut e: Vec<f64>| {
        e.sort_by(f64::total_cmp);
        (e[e.len() / 2], e[e.len() - 1])
    };
    for (name, (rank, value)) in
        ["reference grid", "DDSketch 1%", "t-digest 100"].into_iter().zip(errors)
    {
        let ((rm, rw), (vm, vw)) = (mid(rank), mid(value));
        eprintln!(
            "  {name:<15} rank error median {rm:.4} worst {rw:.4}; value error / range median {vm:.4} worst {vw:.4}"
        );
    }
}

criterion_group!(benches, bench, feedback);
criterion_main!(benches);
