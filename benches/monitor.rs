//! What monitoring adds per event: a batch of 256 events with 10 features and a score,
//! profiled against a training reference (every column binned on its grid, moments, range,
//! missing and out-of-range counts), with one drift detector (Page-Hinkley, or ADWIN) on the
//! score; against a baseline in the same run that reads every value of the batch once (a sum:
//! the least any monitor must do). Per-event figures are the time per batch over 256.
//!
//! `cargo bench --bench monitor`

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use streamscore::io::normal_rows;
use streamscore::monitor::drift::Kind;
use streamscore::monitor::profile::{Monitor, MonitorConfig};
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
}

criterion_group!(benches, bench);
criterion_main!(benches);
