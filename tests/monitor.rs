//! The drift monitor inside the runtime: every scored batch is profiled under the version
//! that scored it, a shifted feature raises an alert when its window closes, and the
//! figures reach `MetricsSnapshot` and the Prometheus text. A reference for another model,
//! or for a model with several outputs, is refused when the runtime is built.

use std::sync::{Arc, Mutex};

use streamscore::batch::Columns;
use streamscore::monitor::profile::{Monitor, MonitorConfig};
use streamscore::monitor::reference::Reference;
use streamscore::{Error, EventBatch, Runtime, load_model};

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
    // The training rows, with feature f2 moved by four of its standard deviations.
    let mut shifted = rows.clone();
    for row in shifted.chunks_mut(width) {
        row[2] += 4.0;
    }
    let ms = || {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
            as u64
    };
    // Windows follow the wall clock: the rows go in one set just after a second begins, so
    // that they fall in one window; on a machine so loaded that they straddle two, again.
    for attempt in 0..3 {
        let config = MonitorConfig {
            window_ms: 1000,
            min_events: 100,
            ..MonitorConfig::new(Arc::new(reference.clone()))
        };
        let mut monitor = Monitor::new(config).unwrap();
        let alerts = Arc::new(Mutex::new(Vec::new()));
        let sink = alerts.clone();
        monitor.on_alert(move |a| sink.lock().unwrap().push(a.column.clone()));
        let rt = Runtime::builder().model_path(MODEL).monitor(monitor).build().unwrap();
        let version = rt.live_version();
        std::thread::sleep(std::time::Duration::from_millis(1005 - ms() % 1000));
        let scores = rt.score_many(EventBatch::rows(&shifted)).unwrap();
        assert_eq!(scores.len(), rows.len() / width);
        std::thread::sleep(std::time::Duration::from_millis(1005 - ms() % 1000));
        // After shutdown every batch has been profiled (each is, just after its answers are out).
        rt.shutdown();
        let report = rt.monitor_report().unwrap();
        if report.windows.len() != 1 && attempt < 2 {
            rt.shutdown();
            continue;
        }
        assert_eq!(report.windows.len(), 1, "the rows straddled a second three times");
        assert_eq!(report.windows[0].events, (rows.len() / width) as u64);
        assert_eq!(report.windows[0].version, version);
        assert!(alerts.lock().unwrap().iter().any(|c| c == "f2"), "{:?}", alerts.lock().unwrap());
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
        return;
    }
}

#[test]
fn a_reference_for_another_model_is_refused() {
    let (_, _, mut reference) = rows_and_reference();
    reference.features.swap(0, 1);
    let monitor = Monitor::new(MonitorConfig::new(Arc::new(reference))).unwrap();
    let err = Runtime::builder().model_path(MODEL).monitor(monitor).build().unwrap_err();
    assert!(matches!(&err, Error::Config(m) if m.contains("another model")), "{err}");
}

/// The report, computed again offline from the audit log, is the online one.
#[cfg(feature = "audit")]
#[test]
fn the_audit_log_gives_the_same_report_offline() {
    use streamscore::audit::AuditConfig;
    let (rows, width, reference) = rows_and_reference();
    let reference = Arc::new(reference);
    let hour = MonitorConfig { window_ms: 3_600_000, ..MonitorConfig::new(reference.clone()) };
    let dir =
        std::env::temp_dir().join(format!("streamscore-monitor-audit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let rt = Runtime::builder()
        .model_path(MODEL)
        .monitor(Monitor::new(hour.clone()).unwrap())
        .audit(AuditConfig::new(&dir))
        .build()
        .unwrap();
    for row in rows.chunks(width) {
        let mut row = row.to_vec();
        row[5] *= 1.5;
        rt.score(streamscore::Event::new(row)).unwrap();
    }
    // After shutdown every batch has been profiled (each is, just after its answers are out).
    rt.shutdown();
    let online = rt.monitor_report().unwrap();
    let mut offline = Monitor::new(hour).unwrap();
    let mut fed = 0;
    for file in streamscore::audit::files(&dir).unwrap() {
        fed += streamscore::audit::read(&file).unwrap().monitor(&mut offline).unwrap();
    }
    assert_eq!(fed, (rows.len() / width) as u64);
    let offline = offline.report();
    let (a, b) = (&online.cumulative[0], &offline.cumulative[0]);
    assert_eq!((a.version, a.events), (b.version, b.events));
    for (x, y) in a.columns.iter().zip(&b.columns) {
        assert_eq!(
            (&x.name, x.count, x.missing_rate, x.out_of_range_rate),
            (&y.name, y.count, y.missing_rate, y.out_of_range_rate)
        );
        assert_eq!(x.range, y.range, "{}", x.name);
        assert_eq!(x.quantiles, y.quantiles, "{}", x.name);
        let close = |p: f64, q: f64| (p - q).abs() <= 1e-9 * q.abs().max(1.0);
        assert!(
            close(x.mean.unwrap(), y.mean.unwrap())
                && close(x.variance.unwrap(), y.variance.unwrap()),
            "{}",
            x.name
        );
        assert!(
            close(x.distances.psi, y.distances.psi) && close(x.distances.js, y.distances.js),
            "{}",
            x.name
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `streamscore profile` writes the reference, `streamscore monitor` reads an audit log
/// against it.
#[cfg(all(feature = "audit", feature = "cli"))]
#[test]
fn the_profile_and_monitor_commands_work_together() {
    use std::process::Command;
    let dir = std::env::temp_dir().join(format!("streamscore-monitor-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let reference = dir.join("ref.json");
    let input = concat!(env!("CARGO_MANIFEST_DIR"), "/models/golden/lgb_binary/input.csv");
    let bin = env!("CARGO_BIN_EXE_streamscore");
    let out = Command::new(bin)
        .args(["profile", "--model", MODEL, "--input", input, "--output"])
        .arg(&reference)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The command's reference is the library's.
    let (rows, width, ours) = rows_and_reference();
    let written = Reference::from_path(&reference).unwrap();
    assert_eq!(written.columns, ours.columns);
    let log = dir.join("audit");
    let rt = Runtime::builder()
        .model_path(MODEL)
        .audit(streamscore::audit::AuditConfig::new(&log))
        .build()
        .unwrap();
    rt.score_many(EventBatch::rows(&rows)).unwrap();
    rt.shutdown();
    let out = Command::new(bin)
        .args(["monitor", "--window-ms", "3600000", "--audit"])
        .arg(&log)
        .arg("--reference")
        .arg(&reference)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["cumulative"][0]["events"], (rows.len() / width) as u64);
    // The reference's own rows: no column drifts.
    assert_eq!(report["alerts_total"], 0);
    let bad = Command::new(bin)
        .args(["monitor", "--audit"])
        .arg(&log)
        .args(["--reference", input])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).starts_with("error: "));
    std::fs::remove_dir_all(&dir).unwrap();
}
