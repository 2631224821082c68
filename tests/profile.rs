//! Profiles and reference drift against NumPy and SciPy: the reference grid of each golden
//! training column (`tests/profile/`, from `generate.py`) equals `np.percentile`'s, the bin
//! counts equal `np.searchsorted`'s, and a live window's PSI, Jensen-Shannon distance
//! (`scipy.spatial.distance.jensenshannon`), KS estimate, mean and variance equal theirs
//! within 1e-9; the drifted columns raise alerts, the others do not.

use std::path::Path;
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use streamscore::Error;
use streamscore::batch::Columns;
use streamscore::monitor::profile::{Monitor, MonitorConfig};
use streamscore::monitor::reference::{Reference, distances};

#[derive(Deserialize)]
struct Golden {
    columns: Vec<Expected>,
}

#[derive(Deserialize)]
struct Expected {
    name: String,
    edges: Vec<f64>,
    reference: Vec<u64>,
    live: Vec<u64>,
    psi: f64,
    js: f64,
    ks: f64,
    mean: f64,
    variance: f64,
    missing: u64,
}

fn dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/profile"))
}

/// (names, feature-major values, rows).
fn read(name: &str) -> (Vec<String>, Vec<f32>, usize) {
    let text = std::fs::read_to_string(dir().join(name)).unwrap();
    let mut lines = text.lines();
    let names: Vec<String> = lines.next().unwrap().split(',').map(str::to_owned).collect();
    let rows: Vec<Vec<f32>> = lines
        .map(|l| {
            l.split(',').map(|v| if v.is_empty() { f32::NAN } else { v.parse().unwrap() }).collect()
        })
        .collect();
    let mut values = Vec::with_capacity(rows.len() * names.len());
    for f in 0..names.len() {
        values.extend(rows.iter().map(|r| r[f]));
    }
    (names, values, rows.len())
}

fn close(ours: f64, theirs: f64, what: &str) {
    assert!(
        (ours - theirs).abs() <= 1e-9 * theirs.abs().max(1.0),
        "{what}: ours {ours}, NumPy/SciPy {theirs}"
    );
}

fn golden() -> Golden {
    serde_json::from_str(&std::fs::read_to_string(dir().join("expected.json")).unwrap()).unwrap()
}

/// The reference, with the first column standing in for the score.
fn reference() -> (Reference, Vec<String>) {
    let (names, values, n) = read("train.csv");
    let cols = Columns::new(&values, n, names.len()).unwrap();
    (Reference::of(&names, cols, cols.column(0)).unwrap(), names)
}

#[test]
fn grids_counts_and_distances_equal_numpy_and_scipy() {
    let golden = golden();
    let (reference, names) = reference();
    // The file round-trips through JSON and its checks.
    let reference = Reference::from_json(&reference.to_json(), "test").unwrap();
    let (_, live, n) = read("live.csv");
    let cols = Columns::new(&live, n, names.len()).unwrap();
    let mut monitor = Monitor::new(MonitorConfig::new(Arc::new(reference.clone()))).unwrap();
    monitor.observe(1, cols, cols.column(0), 5_000).unwrap();
    let report = monitor.report();
    let window = &report.current[0];
    assert_eq!(window.events, n as u64);
    for (f, want) in golden.columns.iter().enumerate() {
        let r = &reference.columns[f];
        assert_eq!(r.name, want.name);
        assert_eq!(r.edges.len(), want.edges.len(), "{}", want.name);
        for (a, b) in r.edges.iter().zip(&want.edges) {
            close(*a, *b, &format!("{} edge", want.name));
        }
        assert_eq!(r.counts, want.reference, "{} reference counts", want.name);
        let d = distances(&want.reference, &want.live);
        close(d.psi, want.psi, &format!("{} psi", want.name));
        close(d.js, want.js, &format!("{} js", want.name));
        close(d.ks, want.ks, &format!("{} ks", want.name));
        // The monitor counted the live column into the same bins.
        let c = &window.columns[f];
        assert_eq!(c.distances, d, "{}", want.name);
        close(c.mean.unwrap(), want.mean, &format!("{} mean", want.name));
        close(c.variance.unwrap(), want.variance, &format!("{} variance", want.name));
        assert_eq!((c.missing_rate * n as f64).round() as u64, want.missing);
        let q = &c.quantiles;
        assert!(q.windows(2).all(|w| w[0].1 <= w[1].1), "{} quantiles {q:?}", want.name);
    }
}

#[test]
fn drifted_columns_raise_alerts_when_the_window_closes() {
    let (reference, names) = reference();
    let (_, live, n) = read("live.csv");
    let cols = Columns::new(&live, n, names.len()).unwrap();
    let (_, train, tn) = read("train.csv");
    let train_cols = Columns::new(&train, tn, names.len()).unwrap();
    // 800 live rows: under the default least for an alert (1,000).
    let config = MonitorConfig { min_events: 500, ..MonitorConfig::new(Arc::new(reference)) };
    let mut monitor = Monitor::new(config).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    monitor.on_alert(move |a| sink.lock().unwrap().push(a.column.clone()));
    // Minute 0: training-like rows; minute 1: the drifted ones; the window closes at minute 2.
    monitor.observe(3, train_cols, train_cols.column(0), 1_000).unwrap();
    monitor.observe(3, cols, cols.column(0), 61_000).unwrap();
    monitor.flush(125_000);
    let report = monitor.report();
    assert_eq!(report.windows.len(), 2);
    assert_eq!(report.windows[0].start_ms, Some(0));
    assert!(
        report.windows[0].columns.iter().all(|c| c.distances.psi < 0.01),
        "{:?}",
        report.windows[0]
    );
    let alerted: Vec<_> =
        report.alerts.iter().map(|a| (a.window_start_ms, a.column.as_str())).collect();
    assert_eq!(alerted, [(60_000, "normal"), (60_000, "skewed"), (60_000, "score")]);
    assert_eq!(*seen.lock().unwrap(), ["normal", "skewed", "score"]);
    assert_eq!(report.alerts_total, 3);
    assert_eq!(report.cumulative[0].events, (tn + n) as u64);
}

#[test]
fn a_detector_on_the_score_sees_the_shift_and_skips_a_nan() {
    use streamscore::monitor::drift::{Detector, Kind};
    let (reference, names) = reference();
    let (_, live, n) = read("live.csv");
    let cols = Columns::new(&live, n, names.len()).unwrap();
    let (_, train, tn) = read("train.csv");
    let train_cols = Columns::new(&train, tn, names.len()).unwrap();
    let config = MonitorConfig {
        score_detector: Some((Kind::Adwin, Vec::new())),
        ..MonitorConfig::new(Arc::new(reference))
    };
    let mut monitor = Monitor::new(config).unwrap();
    monitor.observe(1, train_cols, train_cols.column(0), 0).unwrap();
    // A NaN score among the live ones is skipped by the detector (and counted missing).
    let mut scores = cols.column(0).to_vec();
    scores[10] = f32::NAN;
    monitor.observe(1, cols, &scores, 1).unwrap();
    // The same stream through a detector of its own, the NaN left out.
    let mut alone = Detector::new(Kind::Adwin, &[]).unwrap();
    let mut want = Vec::new();
    for (i, &x) in
        train_cols.column(0).iter().chain(scores.iter().filter(|x| !x.is_nan())).enumerate()
    {
        if alone.update(f64::from(x)).unwrap() == streamscore::monitor::drift::Signal::Drift {
            want.push(i as u64);
        }
    }
    let report = monitor.report();
    let got: Vec<u64> = report.score_drifts.iter().map(|d| d.1).collect();
    assert!(!want.is_empty() && want.iter().all(|&i| i >= tn as u64), "{want:?}");
    assert_eq!(got, want);
    assert_eq!(report.score_drifts_total, want.len() as u64);
}

#[test]
fn bad_references_and_batches_are_typed_errors() {
    let (reference, names) = reference();
    // A reference for another model.
    let other: Vec<String> = names.iter().rev().cloned().collect();
    assert!(matches!(reference.check_model(&other, None), Err(Error::Config(_))));
    assert!(reference.check_model(&names, None).is_ok());
    // The same names from another file.
    let mut signed = reference.clone();
    signed.model_sha256 = Some("ab".repeat(32));
    assert!(signed.check_model(&names, Some(&"ab".repeat(32))).is_ok());
    assert!(matches!(signed.check_model(&names, Some(&"cd".repeat(32))), Err(Error::Config(_))));
    let good = reference.to_json();
    let tampered = [
        good.replacen("\"format\": 1", "\"format\": 9", 1),
        good.replacen("\"count\": 2000", "\"count\": 2001", 1),
        good.replacen("\"name\": \"skewed\"", "\"name\": \"other\"", 1),
        "{\"not\": \"a reference\"}".to_owned(),
        "[1, 2".to_owned(),
    ];
    for (i, text) in tampered.iter().enumerate() {
        assert!(text != &good || i >= 3);
        assert!(matches!(Reference::from_json(text, "test"), Err(Error::Input { .. })), "case {i}");
    }
    let mut unsorted: Reference = Reference::from_json(&good, "test").unwrap();
    unsorted.columns[0].edges.swap(1, 2);
    assert!(matches!(Reference::from_json(&unsorted.to_json(), "test"), Err(Error::Input { .. })));
    // A batch of another width is refused, not half counted.
    let mut monitor = Monitor::new(MonitorConfig::new(Arc::new(reference))).unwrap();
    let narrow = [0.0f32; 6];
    let cols = Columns::new(&narrow, 2, 3).unwrap();
    assert!(matches!(monitor.observe(1, cols, &[0.5, 0.5], 0), Err(Error::WidthMismatch { .. })));
    assert!(monitor.report().current.is_empty());
}

/// The element of rank `q (n - 1)`, rounded down, of the present values: the quantile a
/// DDSketch keeps within its relative accuracy.
fn lower_quantile(values: &[f32], q: f64) -> f64 {
    let mut v: Vec<f64> = values.iter().filter(|x| !x.is_nan()).map(|&x| f64::from(x)).collect();
    v.sort_by(f64::total_cmp);
    v[(q * (v.len() - 1) as f64) as usize]
}

#[test]
fn sketched_quantiles_are_within_their_accuracy_in_each_window_and_cumulatively() {
    use streamscore::monitor::profile::QUANTILES;
    let (reference, names) = reference();
    let (_, live, n) = read("live.csv");
    let cols = Columns::new(&live, n, names.len()).unwrap();
    let (_, train, tn) = read("train.csv");
    let train_cols = Columns::new(&train, tn, names.len()).unwrap();
    let reference = Arc::new(reference);
    for alpha in [0.0, 1.0, -0.5, f64::NAN] {
        let bad =
            MonitorConfig { quantile_sketch: Some(alpha), ..MonitorConfig::new(reference.clone()) };
        assert!(matches!(Monitor::new(bad), Err(Error::Config(_))), "{alpha}");
    }
    let config =
        MonitorConfig { quantile_sketch: Some(0.01), ..MonitorConfig::new(reference.clone()) };
    let mut sketched = Monitor::new(config).unwrap();
    let mut gridded = Monitor::new(MonitorConfig::new(reference)).unwrap();
    for m in [&mut sketched, &mut gridded] {
        m.observe(1, train_cols, train_cols.column(0), 1_000).unwrap();
        m.observe(1, cols, cols.column(0), 61_000).unwrap();
    }
    let (report, grid) = (sketched.report(), gridded.report());
    let all: Vec<Vec<f32>> = (0..names.len())
        .map(|f| train_cols.column(f).iter().chain(cols.column(f)).copied().collect())
        .collect();
    let windows = [
        (
            &report.windows[0],
            &grid.windows[0],
            (0..names.len()).map(|f| train_cols.column(f).to_vec()).collect::<Vec<_>>(),
        ),
        (
            &report.current[0],
            &grid.current[0],
            (0..names.len()).map(|f| cols.column(f).to_vec()).collect(),
        ),
        (&report.cumulative[0], &grid.cumulative[0], all),
    ];
    let mut better = 0;
    for (window, on_grid, values) in windows {
        for (f, c) in window.columns.iter().enumerate().take(names.len()) {
            let g = &on_grid.columns[f];
            // Everything but the quantiles is the same with and without the sketch.
            assert_eq!(
                (c.count, c.mean, c.range, c.distances),
                (g.count, g.mean, g.range, g.distances)
            );
            for (&(q, ours), &(_, theirs)) in c.quantiles.iter().zip(&g.quantiles) {
                let exact = lower_quantile(&values[f], q);
                assert!(
                    (ours - exact).abs() <= 0.01 * exact.abs() + 1e-9,
                    "{} q {q}: sketch {ours}, exact {exact}",
                    c.name
                );
                better += usize::from((ours - exact).abs() < (theirs - exact).abs());
            }
            assert_eq!(c.quantiles.len(), QUANTILES.len());
        }
    }
    // The grid's quantiles are coarser (not a bound: a count, so the test sees the sketch used).
    assert!(better > 0);
}
