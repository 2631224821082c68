//! The feedback join inside the runtime: every scored event with an id is kept under the
//! version that scored it, before its answer goes out, so a label sent on an answer always
//! finds its prediction; the join's metrics equal those of the standalone join (itself
//! checked against scikit-learn in `tests/feedback.rs`) fed the same pairs, and reach
//! `MetricsSnapshot` and the Prometheus text. Unknown ids, duplicates and NaN labels are
//! counted or typed; a model of several outputs, or a runtime without a join, is refused.

use streamscore::monitor::feedback::{Feedback, FeedbackConfig, Joined};
use streamscore::{Error, Event, EventBatch, ModelUpdate, Runtime, RuntimeConfig};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/golden/");

fn model(name: &str) -> String {
    format!("{DIR}{name}/model.txt")
}

/// The golden binary model's input rows (row-major) and their width.
fn rows() -> (Vec<f32>, usize) {
    let text = std::fs::read_to_string(format!("{DIR}lgb_binary/input.csv")).unwrap();
    let mut lines = text.lines();
    let width = lines.next().unwrap().split(',').count();
    let rows = lines
        .flat_map(|l| {
            l.split(',').map(|v| v.parse::<f32>().unwrap_or(f32::NAN)).collect::<Vec<_>>()
        })
        .collect();
    (rows, width)
}

/// A deterministic label for event `id`.
fn label(id: u64) -> f64 {
    f64::from(u8::from(id.wrapping_mul(2_654_435_761) % 7 < 3))
}

/// The golden binary model as version 1, with a feedback join of the default settings.
fn joined_runtime() -> Runtime {
    Runtime::builder()
        .model_path(model("lgb_binary"))
        .config(RuntimeConfig::default().with_model_version(1))
        .feedback(Feedback::new(FeedbackConfig::default()).unwrap())
        .build()
        .unwrap()
}

#[test]
fn every_answered_event_with_an_id_is_joined_to_its_label_under_its_version() {
    let (rows, w) = rows();
    let n = rows.len() / w;
    let rt = joined_runtime();
    // The same pairs, fed to a join of our own.
    let mut mirror = Feedback::new(FeedbackConfig::default()).unwrap();
    let half = n / 2;
    let mut scored = 0;
    for r in 0..half {
        let event = Event::new(&rows[r * w..(r + 1) * w]);
        // Every tenth event has no id: scored, never kept.
        let event = if r % 10 == 0 { event } else { event.with_id(r as u64) };
        let s = rt.score(event).unwrap();
        scored += 1;
        if r % 10 != 0 {
            // Sent on the answer: the prediction is already there.
            let joined = rt.feedback(r as u64, label(r as u64)).unwrap();
            assert!(matches!(joined, Joined::Matched { version: 1, .. }), "event {r}: {joined:?}");
            mirror.predicted(r as u64, 1, f64::from(s.value()), 0).unwrap();
            mirror.label(r as u64, label(r as u64), 0).unwrap();
        }
    }
    let ids: Vec<u64> = (half as u64..n as u64).collect();
    let set = rt.score_many(EventBatch::rows(&rows[half * w..]).with_ids(&ids)).unwrap();
    assert_eq!(set.len(), n - half);
    for (i, &id) in ids.iter().enumerate() {
        let joined = rt.feedback(id, label(id)).unwrap();
        assert!(matches!(joined, Joined::Matched { version: 1, .. }), "set event {i}");
        let p = f64::from(set.get(i).unwrap().unwrap()[0]);
        mirror.predicted(id, 1, p, 0).unwrap();
        mirror.label(id, label(id), 0).unwrap();
    }
    // Counted, never lost or wrong: an unknown id, a second label, a NaN.
    assert_eq!(rt.feedback(0, 1.0).unwrap(), Joined::Unmatched, "event 0 had no id");
    assert_eq!(rt.feedback(u64::MAX, 0.0).unwrap(), Joined::Unmatched);
    assert_eq!(rt.feedback(1, label(1)).unwrap(), Joined::Duplicate);
    assert!(matches!(rt.feedback(2, f64::NAN), Err(Error::Input { .. })));
    rt.shutdown();

    let report = rt.feedback_report().unwrap();
    let kept = (scored - half.div_ceil(10)) + (n - half);
    assert_eq!(report.predictions, kept as u64);
    assert_eq!(report.matched, kept as u64);
    assert_eq!((report.unmatched, report.duplicates, report.invalid), (2, 1, 1));
    assert_eq!((report.waiting, report.expired, report.evicted, report.refused), (0, 0, 0, 0));
    let want = mirror.report();
    assert_eq!(report.versions.len(), 1);
    assert_eq!(report.versions[0].total, want.versions[0].total, "the same metrics");
    assert!(report.versions[0].total.log_loss.is_some());

    let m = rt.metrics();
    let f = m.feedback.as_ref().unwrap();
    assert_eq!(f.counts.matched, kept as u64);
    assert_eq!(f.versions[0].version, 1);
    assert_eq!(f.versions[0].log_loss, want.versions[0].total.log_loss);
    let text = m.prometheus();
    for line in [
        format!("streamscore_feedback_predictions_total {kept}"),
        format!("streamscore_feedback_labels_total{{result=\"matched\"}} {kept}"),
        "streamscore_feedback_labels_total{result=\"unmatched\"} 2".to_string(),
        "streamscore_feedback_labels_total{result=\"duplicate\"} 1".to_string(),
        "streamscore_feedback_labels_total{result=\"invalid\"} 1".to_string(),
        "streamscore_feedback_waiting 0".to_string(),
        format!(
            "streamscore_feedback_log_loss{{version=\"1\"}} {}",
            want.versions[0].total.log_loss.unwrap()
        ),
    ] {
        assert!(text.contains(&line), "{line} not in:\n{text}");
    }
}

#[test]
fn a_split_joins_each_label_to_the_variant_that_answered() {
    let (rows, w) = rows();
    let n = rows.len() / w;
    let rt = joined_runtime();
    rt.load(ModelUpdate::path(model("lgb_binary_sigmoid")).with_version(2)).unwrap();
    rt.set_split(streamscore::Split::new().variant("control", 1, 1).variant("canary", 2, 1))
        .unwrap();
    let mut by_version = [0u64; 3];
    for r in 0..n {
        let id = 1_000 + r as u64;
        let s = rt.score(Event::new(&rows[r * w..(r + 1) * w]).with_key(r as u64).with_id(id));
        let s = s.unwrap();
        match rt.feedback(id, label(id)).unwrap() {
            Joined::Matched { version, .. } => assert_eq!(version, s.model_version, "event {r}"),
            other => panic!("event {r}: {other:?}"),
        }
        by_version[s.model_version as usize] += 1;
    }
    let ids: Vec<u64> = (0..n as u64).collect();
    let keys = ids.clone();
    let set = rt.score_many(EventBatch::rows(&rows).with_keys(&keys).with_ids(&ids)).unwrap();
    for (i, &id) in ids.iter().enumerate() {
        let joined = rt.feedback(id, label(id)).unwrap();
        let version = set.version_of(i);
        assert_eq!(
            joined,
            match joined {
                Joined::Matched { delay_ms, .. } => Joined::Matched { version, delay_ms },
                other => panic!("set event {i}: {other:?}"),
            }
        );
        by_version[version as usize] += 1;
    }
    assert!(by_version[1] > 0 && by_version[2] > 0, "both variants answered: {by_version:?}");
    rt.shutdown();
    let report = rt.feedback_report().unwrap();
    let labelled: Vec<(u64, u64)> =
        report.versions.iter().map(|v| (v.version, v.total.n)).collect();
    assert_eq!(labelled, vec![(1, by_version[1]), (2, by_version[2])]);
}

#[test]
fn ids_of_the_wrong_length_and_models_without_one_probability_are_refused() {
    let rt = Runtime::builder()
        .model_path(model("lgb_binary"))
        .feedback(Feedback::new(FeedbackConfig::default()).unwrap())
        .build()
        .unwrap();
    let (rows, w) = rows();
    let err = rt.score_many(EventBatch::rows(&rows[..3 * w]).with_ids(&[1, 2])).unwrap_err();
    assert!(err.to_string().contains("2 ids for 3 events"), "{err}");
    rt.shutdown();

    let err = Runtime::builder()
        .model_path(model("lgb_multiclass"))
        .feedback(Feedback::new(FeedbackConfig::default()).unwrap())
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");

    // A regression model's scores are not probabilities: scored, counted as refused.
    let rt = Runtime::builder()
        .model_path(model("lgb_regression"))
        .feedback(Feedback::new(FeedbackConfig::default()).unwrap())
        .build()
        .unwrap();
    let text = std::fs::read_to_string(format!("{DIR}lgb_regression/input.csv")).unwrap();
    let width = text.lines().next().unwrap().split(',').count();
    let mut refused = 0;
    for (i, line) in text.lines().skip(1).take(200).enumerate() {
        let row: Vec<f32> = line.split(',').map(|v| v.parse().unwrap_or(f32::NAN)).collect();
        assert_eq!(row.len(), width);
        let s = rt.score(Event::new(row).with_id(i as u64)).unwrap();
        refused += u64::from(!(0.0..=1.0).contains(&s.value()));
    }
    rt.shutdown();
    let report = rt.feedback_report().unwrap();
    assert!(refused > 0, "the regression model scores outside [0, 1]");
    assert_eq!(report.refused, refused);
    assert_eq!(report.predictions, 200 - refused);

    let plain = Runtime::builder().model_path(model("lgb_binary")).build().unwrap();
    assert!(matches!(plain.feedback(1, 1.0), Err(Error::Config(_))));
    assert!(plain.feedback_report().is_none());
    assert!(plain.metrics().feedback.is_none());
}
