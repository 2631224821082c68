//! The fraud stream with drift injected at known times, scored online with the monitor and
//! the delayed-label join: shared by `examples/fraud_drift.rs` (which prints) and
//! `tests/fraud_drift.rs` (which asserts).
//!
//! From day 24 fuel costs a third of what it did (data drift: the amount features move, but
//! small amounts are not what the model flags, so its answers stay right); from day 26 a new
//! fraud scheme the model never saw makes a quarter of grocery transactions fraudulent
//! (concept drift: nothing in the features moves, the model's errors rise). Labels arrive six hours
//! after their transaction. The training reference is the first 22 days' offline features
//! and LightGBM scores, so the monitor compares live windows with what the model was trained
//! on.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::sync::Arc;

use streamscore::features::{Features, Spec, offline};
use streamscore::monitor::drift::Kind;
use streamscore::monitor::feedback::{Feedback, FeedbackConfig};
use streamscore::monitor::profile::{Monitor, MonitorConfig};
use streamscore::monitor::reference::Reference;
use streamscore::{Batch, Error, Event, Output, Runtime, RuntimeConfig, load_forest};

pub const DAY: u64 = 86_400_000;
pub const START: u64 = 1_700_000_000_000;
pub const DATA_DRIFT_MS: u64 = START + 24 * DAY;
pub const CONCEPT_DRIFT_MS: u64 = START + 26 * DAY;
pub const LABEL_DELAY_MS: u64 = 6 * 3_600_000;

/// What the replay found.
pub struct Outcome {
    /// The first closed window whose `amount` drifted from the reference: its start, and
    /// when it closed (the alert's time).
    pub data_drift: Option<(u64, u64)>,
    /// Every (window start, column) that alerted.
    pub alerts: Vec<(u64, String)>,
    /// Label times at which DDM on the error stream detected concept drift.
    pub concept_drift: Vec<u64>,
    /// Per day of prediction time: (day start, labelled predictions, online ROC AUC).
    pub auc_per_day: Vec<(u64, u64, Option<f64>)>,
}

pub fn run() -> Result<Outcome, Error> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/fraud");
    let spec = Spec::from_path(format!("{dir}/spec.toml"))?;
    let forest = load_forest(format!("{dir}/model.txt"))?;
    let path = format!("{dir}/stream.csv");
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    let mut events = offline::read_csv(&spec, &bytes, &path)?;
    let mut labels = read_labels(&bytes);
    let width = spec.fields.len();
    let amount = spec.fields.iter().position(|f| f == "amount").expect("an amount field");
    let mcc = spec.fields.iter().position(|f| f == "mcc").expect("an mcc field");
    // Category codes: their places in the spec's vocabulary.
    let (grocery, fuel) = (0.0, 1.0);

    // The training reference: the first 22 days, features computed offline, scored.
    let backend = streamscore::BackendSpec::auto().select(forest)?;
    let (rows, _) = offline::run(&mut Features::new(spec.clone()), &events, 65_536)?;
    let n_out = spec.names.len();
    let train: Vec<usize> =
        (0..events.len()).filter(|&i| (events.times[i] as u64) < START + 22 * DAY).collect();
    let mut train_rows = Vec::with_capacity(train.len() * n_out);
    for &i in &train {
        train_rows.extend_from_slice(&rows[i * n_out..(i + 1) * n_out]);
    }
    let batch = Batch::from_rows(&train_rows, n_out)?;
    let mut scores = vec![0.0; train.len()];
    backend.score_batch(&batch, Output::Transformed, &mut scores)?;
    let reference = Arc::new(Reference::of(&spec.names, batch.columns(), &scores)?);

    // The drift, at known times; the new scheme's frauds drawn by a fixed hash of the event.
    for (i, (row, &t)) in events.rows.chunks_mut(width).zip(&events.times).enumerate() {
        let t = t as u64;
        if t >= DATA_DRIFT_MS && row[mcc] == fuel {
            row[amount] /= 3.0;
        }
        if t >= CONCEPT_DRIFT_MS
            && row[mcc] == grocery
            && (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 62 == 0
        {
            labels[i] = true;
        }
    }

    let monitor = Monitor::new(MonitorConfig {
        window_ms: DAY,
        min_events: 200,
        ..MonitorConfig::new(reference)
    })?;
    let rt = Runtime::builder()
        .features(Features::new(spec.clone()))
        .backend(backend)
        .monitor(monitor)
        .config(RuntimeConfig::default().with_max_batch(256))
        .build()?;
    let version = rt.live_version();
    let mut tickets = Vec::with_capacity(events.len());
    for i in 0..events.len() {
        let event = Event::new(&events.rows[i * width..(i + 1) * width])
            .with_key(events.keys[i])
            .with_timestamp_ms(events.times[i]);
        tickets.push(rt.try_submit(event).map_err(|r| r.error)?);
    }
    let scores: Vec<f32> =
        tickets.into_iter().map(|t| t.wait().map(|s| s.value())).collect::<Result<_, _>>()?;
    // After shutdown every batch has been profiled (each is, just after its answers are out).
    rt.shutdown();
    let report = rt.monitor_report().expect("a monitor");

    // Labels join their predictions six hours late, in time order.
    let config = FeedbackConfig {
        window_ms: DAY,
        windows_kept: 64,
        detector: Some((Kind::Ddm, Vec::new())),
        ..FeedbackConfig::default()
    };
    let mut feedback = Feedback::new(config)?;
    let mut due = BinaryHeap::new();
    for (i, (&t, &score)) in events.times.iter().zip(&scores).enumerate() {
        let t = t as u64;
        while let Some(&Reverse((at, j))) = due.peek() {
            if at > t {
                break;
            }
            due.pop();
            feedback.label(j as u64, if labels[j] { 1.0 } else { 0.0 }, at)?;
        }
        feedback.predicted(i as u64, version, f64::from(score), t)?;
        due.push(Reverse((t + LABEL_DELAY_MS, i)));
    }
    while let Some(Reverse((at, j))) = due.pop() {
        feedback.label(j as u64, if labels[j] { 1.0 } else { 0.0 }, at)?;
    }
    let fb = feedback.report();

    let alerts: Vec<(u64, String)> =
        report.alerts.iter().map(|a| (a.window_start_ms, a.column.clone())).collect();
    let data_drift = report
        .alerts
        .iter()
        .find(|a| a.column == "amount")
        .map(|a| (a.window_start_ms, a.window_start_ms + DAY));
    let days: HashSet<u64> =
        fb.versions.iter().flat_map(|v| v.windows.iter().map(|w| w.start_ms)).collect();
    let mut auc_per_day: Vec<(u64, u64, Option<f64>)> = fb
        .versions
        .iter()
        .flat_map(|v| v.windows.iter().map(|w| (w.start_ms, w.outcomes.n, w.outcomes.auc)))
        .collect();
    auc_per_day.sort_by_key(|d| d.0);
    debug_assert_eq!(days.len(), auc_per_day.len());
    Ok(Outcome { data_drift, alerts, concept_drift: fb.concept_drift_ms, auc_per_day })
}

/// The `label` column of the stream.
fn read_labels(bytes: &[u8]) -> Vec<bool> {
    let text = String::from_utf8_lossy(bytes);
    let mut lines = text.lines();
    let col =
        lines.next().and_then(|h| h.split(',').position(|c| c == "label")).expect("a label column");
    lines.map(|l| l.split(',').nth(col) == Some("1")).collect()
}

/// Days since the stream's start.
pub fn day(ms: u64) -> f64 {
    (ms as f64 - START as f64) / DAY as f64
}
