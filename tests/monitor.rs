//! The drift monitor inside the runtime: every scored batch is profiled under the version
//! that scored it, a shifted feature raises an alert when its window closes, and the
//! figures reach `MetricsSnapshot` and the Prometheus text. A reference for another model,
//! or for a model with several outputs, is refused when the runtime is built.

use std::sync::{Arc, Mutex};

use streamscore::batch::Columns;
use streamscore::monitor::profile::{Monitor, MonitorConfig};
use streamscore::monitor::reference::Reference;
use streamscore::{Error, Event, Runtime, load_model};

const MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/golden/lgb_binary/model.txt");

/// The golden model's input rows (row-major) and a reference made from them.
fn rows_and_reference() -> (Vec<f32>, usize, Reference) {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/models/golden/lgb_binary/input.csv"
    ))
    .unwrap();
    let mut lines = text.lines();
    let names: Vec<String> = lines.next().unwrap().split(',').map(str::to_owned).collect();
    let rows: Vec<f32> = lines
        .flat_map(|l| {
            l.split(',').map(|v| v.parse::<f32>().unwrap_or(f32::NAN)).collect::<Vec<_>>()
        })
        .collect();
    let width = names.len();
    let n = rows.len() / width;
    let mut columns = vec![0.0f32; rows.len()];
    for r in 0..n {
        for f in 0..width {
            columns[f * n + r] = rows[r * width + f];
        }
    }
    let model = load_model(MODEL).unwrap();
    let scores: Vec<f32> = streamscore::BackendSpec::default()
        .select(model)
        .map(|b| {
            let batch = streamscore::Batch::from_rows(&rows, width).unwrap();
            let mut out = vec![0.0; n];
            b.score_batch(&batch, streamscore::Output::Transformed, &mut out).unwrap();
            out
        })
        .unwrap();
    let reference =
        Reference::of(&names, Columns::new(&columns, n, width).unwrap(), &scores).unwrap();
    (rows, width, reference)
}

#[test]
fn a_shifted_feature_raises_an_alert_and_reaches_the_metrics() {
    let (rows, width, reference) = rows_and_reference();
    let config = MonitorConfig {
        window_ms: 1000,
        min_events: 100,
        ..MonitorConfig::new(Arc::new(reference))
    };
    let mut monitor = Monitor::new(config).unwrap();
    let alerts = Arc::new(Mutex::new(Vec::new()));
    let sink = alerts.clone();
    monitor.on_alert(move |a| sink.lock().unwrap().push(a.column.clone()));
    let rt = Runtime::builder().model_path(MODEL).monitor(monitor).build().unwrap();
    let version = rt.live_version();
    // Windows follow the wall clock: start just after a second begins, so that the rows
    // (a few ms of scoring) fall in one window.
    let ms = || {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
            as u64
    };
    std::thread::sleep(std::time::Duration::from_millis(1005 - ms() % 1000));
    // The training rows, with feature f2 moved by four of its standard deviations.
    for row in rows.chunks(width) {
        let mut row = row.to_vec();
        row[2] += 4.0;
        rt.score(Event::new(row)).unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(1005 - ms() % 1000));
    let report = rt.monitor_report().unwrap();
    let events: u64 = report.windows.iter().map(|w| w.events).sum();
    assert_eq!(events, (rows.len() / width) as u64);
    assert!(report.windows.iter().all(|w| w.version == version));
    assert!(alerts.lock().unwrap().iter().any(|c| c == "f2"), "{:?}", alerts.lock().unwrap());
    assert_eq!(report.windows.len(), 1, "the rows straddled a second: {:?}", report.windows);
    // Unshifted features do not alert.
    assert!(
        report.alerts.iter().all(|a| a.column == "f2" || a.column == "score"),
        "{:?}",
        report.alerts
    );
    let m = rt.metrics();
    let drift = m.drift.as_ref().unwrap();
    assert!(drift.alerts_total >= 1);
    let text = m.prometheus();
    assert!(text.contains("streamscore_drift_alerts_total"), "{text}");
    assert!(
        text.contains(&format!("streamscore_drift_psi{{version=\"{version}\",column=\"f2\"}}")),
        "{text}"
    );
    rt.shutdown();
}

#[test]
fn a_reference_for_another_model_is_refused() {
    let (_, _, mut reference) = rows_and_reference();
    reference.features.swap(0, 1);
    let monitor = Monitor::new(MonitorConfig::new(Arc::new(reference))).unwrap();
    let err = Runtime::builder().model_path(MODEL).monitor(monitor).build().unwrap_err();
    assert!(matches!(&err, Error::Config(m) if m.contains("another model")), "{err}");
}
