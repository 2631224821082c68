//! The delayed-label join against scikit-learn: the golden call sequence
//! (`tests/feedback/calls.csv`, from `tests/feedback/generate.py`) fed to `Feedback` joins
//! exactly the labels that arrived within the TTL, counts the rest, and gives per version and
//! window the log loss, Brier score, accuracy, ROC AUC and calibration scikit-learn computes
//! on the same pairs, within 1e-9.

use std::path::Path;

use serde::Deserialize;
use streamscore::Error;
use streamscore::monitor::drift::{Kind, Param};
use streamscore::monitor::feedback::{Feedback, FeedbackConfig, Joined};

#[derive(Deserialize)]
struct Golden {
    sklearn: String,
    ttl_ms: u64,
    window_ms: u64,
    counts: Counts,
    windows: Vec<Window>,
}

#[derive(Deserialize)]
struct Counts {
    predictions: u64,
    matched: u64,
    unmatched: u64,
    duplicates: u64,
    invalid: u64,
}

#[derive(Deserialize)]
struct Window {
    version: u64,
    start_ms: u64,
    n: u64,
    positives: u64,
    log_loss: f64,
    brier: f64,
    accuracy: f64,
    auc: Option<f64>,
    calibration_pred: Vec<f64>,
    calibration_true: Vec<f64>,
}

fn dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/feedback"))
}

fn close(ours: f64, theirs: f64, what: &str) {
    assert!((ours - theirs).abs() <= 1e-9, "{what}: ours {ours}, scikit-learn {theirs}");
}

/// Feeds the golden calls; returns the join and how each label was answered.
fn replay(config: FeedbackConfig) -> (Feedback, Vec<Joined>) {
    let mut fb = Feedback::new(config).unwrap();
    let calls = std::fs::read_to_string(dir().join("calls.csv")).unwrap();
    let mut answers = Vec::new();
    for line in calls.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let (id, version, at): (u64, u64, u64) =
            (f[1].parse().unwrap(), f[2].parse().unwrap(), f[4].parse().unwrap());
        let value: f64 = f[3].parse().unwrap();
        match f[0] {
            "p" => fb.predicted(id, version, value, at).unwrap(),
            _ => match fb.label(id, value, at) {
                Ok(joined) => answers.push(joined),
                Err(Error::Input { .. }) => assert!(value.is_nan()),
                Err(e) => panic!("{e}"),
            },
        }
    }
    (fb, answers)
}

fn golden() -> Golden {
    serde_json::from_str(&std::fs::read_to_string(dir().join("expected.json")).unwrap()).unwrap()
}

#[test]
fn metrics_equal_scikit_learns_and_no_label_within_the_ttl_is_lost() {
    let golden = golden();
    assert_eq!(golden.sklearn, "1.9.1");
    let config = FeedbackConfig {
        ttl_ms: golden.ttl_ms,
        window_ms: golden.window_ms,
        ..FeedbackConfig::default()
    };
    let (fb, answers) = replay(config);
    let report = fb.report();
    let c = &golden.counts;
    assert_eq!(
        (report.predictions, report.matched, report.unmatched, report.duplicates, report.invalid),
        (c.predictions, c.matched, c.unmatched, c.duplicates, c.invalid)
    );
    assert_eq!(
        answers.iter().filter(|j| matches!(j, Joined::Matched { .. })).count() as u64,
        c.matched
    );
    assert_eq!(report.evicted, 0);
    let mut compared = 0;
    for want in &golden.windows {
        let version = report.versions.iter().find(|v| v.version == want.version).unwrap();
        let got = version.windows.iter().find(|w| w.start_ms == want.start_ms).unwrap();
        let o = &got.outcomes;
        let what = format!("version {} window {}", want.version, want.start_ms);
        assert_eq!((o.n, o.positives), (want.n, want.positives), "{what}");
        close(o.log_loss.unwrap(), want.log_loss, &format!("{what} log loss"));
        close(o.brier.unwrap(), want.brier, &format!("{what} brier"));
        close(o.accuracy.unwrap(), want.accuracy, &format!("{what} accuracy"));
        match (o.auc, want.auc) {
            (Some(a), Some(b)) => close(a, b, &format!("{what} auc")),
            (a, b) => assert_eq!(a, b, "{what} auc"),
        }
        assert_eq!(o.calibration.len(), want.calibration_pred.len(), "{what} calibration bins");
        for ((pred, truth, _), (want_pred, want_true)) in
            o.calibration.iter().zip(want.calibration_pred.iter().zip(&want.calibration_true))
        {
            close(*pred, *want_pred, &format!("{what} calibration mean"));
            close(*truth, *want_true, &format!("{what} calibration share"));
        }
        assert_eq!(o.calibration.iter().map(|b| b.2).sum::<u64>(), o.n);
        compared += 1;
    }
    // Every window the join holds is one scikit-learn measured.
    let held: usize = report.versions.iter().map(|v| v.windows.len()).sum();
    assert_eq!((compared, held), (golden.windows.len(), golden.windows.len()));
    // The totals are the windows summed.
    for v in &report.versions {
        assert_eq!(v.total.n, v.windows.iter().map(|w| w.outcomes.n).sum::<u64>());
    }
    let delays = &report.delay_quantiles_ms;
    assert!(delays.len() == 4 && delays[3].1 <= golden.ttl_ms + golden.ttl_ms / 500, "{delays:?}");
}

#[test]
fn a_full_buffer_evicts_the_oldest_and_counts_it() {
    let config = FeedbackConfig { capacity: 3, ttl_ms: 1_000, ..FeedbackConfig::default() };
    let mut fb = Feedback::new(config).unwrap();
    for id in 0..5 {
        fb.predicted(id, 1, 0.5, id * 10).unwrap();
    }
    // 0 and 1 were evicted, 2, 3 and 4 wait.
    assert_eq!(fb.label(0, 1.0, 100).unwrap(), Joined::Unmatched);
    assert!(matches!(fb.label(2, 1.0, 100).unwrap(), Joined::Matched { version: 1, delay_ms: 80 }));
    assert_eq!(fb.label(2, 0.0, 101).unwrap(), Joined::Duplicate);
    // Past the TTL, 3 and 4 expire unlabelled; a label then is unmatched.
    assert_eq!(fb.label(4, 1.0, 1_041).unwrap(), Joined::Unmatched);
    let r = fb.report();
    assert_eq!(
        (r.evicted, r.expired, r.waiting, r.matched, r.unmatched, r.duplicates),
        (2, 2, 0, 1, 2, 1)
    );
}

#[test]
fn bad_input_is_typed_or_counted() {
    let mut fb = Feedback::new(FeedbackConfig::default()).unwrap();
    assert!(matches!(fb.predicted(1, 1, f64::NAN, 0), Err(Error::Input { .. })));
    assert!(matches!(fb.predicted(1, 1, 1.5, 0), Err(Error::Input { .. })));
    fb.predicted(1, 1, 0.7, 0).unwrap();
    assert!(matches!(fb.label(1, f64::NAN, 5), Err(Error::Input { .. })));
    assert!(matches!(fb.label(1, 0.5, 5), Err(Error::Input { .. })));
    // The refused labels did not consume the prediction.
    assert!(matches!(fb.label(1, 1.0, 5).unwrap(), Joined::Matched { .. }));
    assert_eq!(fb.label(99, 1.0, 5).unwrap(), Joined::Unmatched);
    let r = fb.report();
    assert_eq!((r.predictions, r.invalid, r.matched, r.unmatched), (1, 2, 1, 1));
    // One class only: no AUC, the rest defined.
    let o = &r.versions[0].windows[0].outcomes;
    assert_eq!((o.auc, o.accuracy), (None, Some(1.0)));
    for bad in [
        FeedbackConfig { ttl_ms: 0, ..FeedbackConfig::default() },
        FeedbackConfig { threshold: 2.0, ..FeedbackConfig::default() },
        FeedbackConfig { bins: 0, ..FeedbackConfig::default() },
        FeedbackConfig {
            detector: Some((Kind::Ddm, vec![Param { name: "x".into(), value: "1".into() }])),
            ..FeedbackConfig::default()
        },
    ] {
        assert!(matches!(Feedback::new(bad), Err(Error::Config(_))));
    }
}

#[test]
fn the_error_stream_detects_concept_drift_after_labels_arrive() {
    // A model right 90% of the time, then 50%: DDM on its errors fires after the change, at a
    // label's time.
    let config =
        FeedbackConfig { detector: Some((Kind::Ddm, Vec::new())), ..FeedbackConfig::default() };
    let mut fb = Feedback::new(config).unwrap();
    let mut state = 12345u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    for id in 0..4000u64 {
        let at = id * 1000;
        fb.predicted(id, 1, 0.9, at).unwrap();
        let right = next() < if id < 2000 { 0.9 } else { 0.5 };
        fb.label(id, if right { 1.0 } else { 0.0 }, at + 60_000).unwrap();
    }
    let drifts = fb.report().concept_drift_ms;
    assert!(!drifts.is_empty());
    assert!(
        drifts.iter().any(|&t| t > 2000 * 1000 + 60_000 && t < 2400 * 1000 + 60_000),
        "{drifts:?}"
    );
}
