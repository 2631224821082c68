//! The audit log: pyarrow reads every answer back with its fields (scores, expired events,
//! refusals inside a set); after `kill -9` no record flushed before the kill is lost and
//! nothing after it is misread; a torn tail is detected and skipped.
//!
//! pyarrow comes from `scripts/python.sh` (target/py-venv); the README's test command runs
//! it first.
#![cfg(feature = "audit")]

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use streamscore::audit::{self, AuditConfig, AuditOverflow};
use streamscore::{
    Backend, Batch, Event, EventBatch, NonFinitePolicy, Output, Reference, Runtime, RuntimeConfig,
};

const MODEL: &str = "models/golden/lgb_binary/model.txt";

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("streamscore-audit-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// What pyarrow read from `dir` (tests/audit_read.py).
fn pyarrow(dir: &Path) -> Value {
    let python = common::root().join("target/py-venv/bin/python");
    assert!(
        python.exists(),
        "no test Python: run scripts/python.sh (the README's test command does)"
    );
    let out = Command::new(python)
        .arg(common::root().join("tests/audit_read.py"))
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn reference() -> Reference {
    Reference::new(streamscore::load_forest(common::root().join(MODEL)).unwrap())
}

/// The reference score of one row.
fn score_of(r: &Reference, row: &[f32]) -> f32 {
    let mut out = [0.0];
    r.score_batch(&Batch::from_rows(row, row.len()).unwrap(), Output::Transformed, &mut out)
        .unwrap();
    out[0]
}

#[test]
fn pyarrow_reads_every_answer_back_with_its_fields() {
    let dir = temp_dir("read");
    let config = RuntimeConfig::default()
        .with_max_batch(32)
        .with_max_delay(Duration::from_micros(200))
        .with_model_version(7)
        .with_non_finite(NonFinitePolicy::Reject);
    let audit = AuditConfig::new(&dir)
        .with_flush_every(Duration::from_millis(5))
        .with_rotate_bytes(64 << 10)
        .with_overflow(AuditOverflow::Block);
    let rt = Runtime::builder()
        .model_path(common::root().join(MODEL))
        .config(config)
        .audit(audit)
        .build()
        .unwrap();
    let forest = streamscore::load_forest(common::root().join(MODEL)).unwrap();
    let mut rows = streamscore::io::synthetic_rows(&forest, 3_000, 11).to_rows();
    // Finite rows: the reject policy refuses only the one made NaN below.
    rows.iter_mut().filter(|v| !v.is_finite()).for_each(|v| *v = 0.0);
    let w = forest.n_features();
    // key -> (status, score)
    let mut want: HashMap<u64, (&str, Option<f32>)> = HashMap::new();
    for k in 0..2_000u64 {
        let row = &rows[k as usize * w..(k as usize + 1) * w];
        let event = Event::new(row).with_key(k).with_timestamp_ms(1_700_000_000_000 + k as i64);
        let s = rt.score(event).unwrap();
        assert_eq!(s.model_version, 7);
        want.insert(k, ("scored", Some(s.value())));
    }
    // A set with one event refused on its own (NaN under the reject policy).
    let mut set_rows = rows[2_000 * w..2_100 * w].to_vec();
    set_rows[5 * w] = f32::NAN;
    let keys: Vec<u64> = (2_000..2_100).collect();
    let scores = rt.score_many(EventBatch::rows(&set_rows).with_keys(&keys)).unwrap();
    for (i, k) in keys.iter().enumerate() {
        match scores.get(i).unwrap() {
            Ok(v) => want.insert(*k, ("scored", Some(v[0]))),
            Err(_) => want.insert(*k, ("refused", None)),
        };
    }
    assert_eq!(want[&2_005].0, "refused");
    // Expired before they could be scored.
    for k in 3_000..3_010u64 {
        let event = Event::new(&rows[..w]).with_key(k).with_deadline(Instant::now());
        let _ = rt.score(event);
        want.insert(k, ("expired", None));
    }
    rt.shutdown();
    let m = rt.metrics().audit.unwrap();
    assert_eq!((m.written, m.dropped, m.errors), (want.len() as u64, 0, 0));
    assert!(m.files >= 2, "rotation at 64 KiB: {} files", m.files);

    let read = pyarrow(&dir);
    let files = read["files"].as_array().unwrap();
    assert_eq!(files.len() as u64, m.files, "every file closed at shutdown");
    assert!(files.iter().all(|f| f["name"].as_str().unwrap().ends_with(".arrow")));
    let records = read["records"].as_array().unwrap();
    assert_eq!(records.len(), want.len(), "one record per answer");
    let reference = reference();
    let mut seen = HashMap::new();
    for r in records {
        let key = r["key"].as_u64().unwrap();
        *seen.entry(key).or_insert(0) += 1;
        let (status, value) = want[&key];
        assert_eq!(r["status"], status, "key {key}");
        assert_eq!(r["role"], "primary");
        let inputs: Vec<f32> = (r["inputs"].as_array().unwrap().iter())
            .map(|v| v.as_f64().map_or(f32::NAN, |x| x as f32))
            .collect();
        assert_eq!(inputs.len(), w);
        match value {
            Some(v) => {
                let out = r["outputs"][0].as_f64().unwrap() as f32;
                assert_eq!(out, v, "key {key}: the logged output is the answer");
                assert_eq!(r["version"], 7);
                let again = score_of(&reference, &inputs);
                assert!(common::rel_err(f64::from(again), f64::from(v)) < 1e-6, "inputs of {key}");
                assert!(r["error"].is_null());
            }
            None => {
                assert!(r["outputs"].is_null() && r["version"].is_null(), "key {key}");
                assert!(r["error"].as_str().is_some_and(|e| !e.is_empty()));
            }
        }
        if key < 2_000 {
            assert_eq!(r["event_time_ms"], 1_700_000_000_000 + key as i64);
        }
        assert!(r["latency_ns"].as_u64().unwrap() > 0);
    }
    assert!(seen.values().all(|&n| n == 1), "no answer recorded twice");
    // The Rust reader agrees.
    let total: usize =
        audit::files(&dir).unwrap().iter().map(|f| audit::read(f).unwrap().rows()).sum();
    assert_eq!(total, want.len());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The child of the `kill -9` test: scores forever with an audit log in `dir`, printing how
/// many records the writer has flushed.
fn child(dir: &str) -> ! {
    let audit = AuditConfig::new(dir)
        .with_flush_every(Duration::from_millis(2))
        .with_rotate_bytes(256 << 10)
        .with_overflow(AuditOverflow::Block);
    let config =
        RuntimeConfig::default().with_max_batch(64).with_max_delay(Duration::from_micros(100));
    let rt = Runtime::builder()
        .model_path(common::root().join(MODEL))
        .config(config)
        .audit(audit)
        .build()
        .unwrap();
    let forest = streamscore::load_forest(common::root().join(MODEL)).unwrap();
    let rows = streamscore::io::synthetic_rows(&forest, 4_096, 5).to_rows();
    let w = forest.n_features();
    let mut k = 0u64;
    let mut last = Instant::now();
    loop {
        let keys: Vec<u64> = (k..k + 256).collect();
        let r = (k as usize) % 16 * 256;
        let _ = rt.score_many(EventBatch::rows(&rows[r * w..(r + 256) * w]).with_keys(&keys));
        k += 256;
        if last.elapsed() > Duration::from_millis(10) {
            let m = rt.metrics().audit.unwrap();
            println!("written {} files {}", m.written, m.files);
            last = Instant::now();
        }
    }
}

#[test]
fn after_kill_9_every_flushed_record_reads_back_and_nothing_else() {
    if let Ok(dir) = std::env::var("STREAMSCORE_AUDIT_CHILD") {
        child(&dir);
    }
    let dir = temp_dir("kill");
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["--exact", "after_kill_9_every_flushed_record_reads_back_and_nothing_else"])
        .args(["--nocapture", "--test-threads", "1"])
        .env("STREAMSCORE_AUDIT_CHILD", &dir)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let start = Instant::now();
    let mut flushed = 0;
    while let Some(Ok(line)) = lines.next() {
        let mut parts = line.split_whitespace();
        if parts.next() != Some("written") {
            continue;
        }
        flushed = parts.next().unwrap().parse::<u64>().unwrap();
        let files: u64 = parts.nth(1).unwrap().parse().unwrap();
        if (flushed > 50_000 && files >= 2) || start.elapsed() > Duration::from_secs(60) {
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(flushed > 50_000, "the child flushed only {flushed} records");

    let paths = audit::files(&dir).unwrap();
    let partial = paths.iter().filter(|p| p.to_string_lossy().ends_with(".partial")).count();
    assert!(partial <= 1 && paths.len() >= 3, "{paths:?}");
    let reference = reference();
    let mut keys = std::collections::HashSet::new();
    let mut rows = 0;
    for p in &paths {
        let f = audit::read(p).unwrap();
        assert!(!f.torn || p.to_string_lossy().ends_with(".partial"), "closed file {p:?} torn");
        for b in &f.batches {
            let key = b.column_by_name("key").unwrap();
            let key = key.as_any().downcast_ref::<arrow_array::UInt64Array>().unwrap();
            let inputs = b.column_by_name("inputs").unwrap();
            let inputs = inputs.as_any().downcast_ref::<arrow_array::FixedSizeListArray>().unwrap();
            let outputs = b.column_by_name("outputs").unwrap();
            let outputs =
                outputs.as_any().downcast_ref::<arrow_array::FixedSizeListArray>().unwrap();
            for i in (0..b.num_rows()).step_by(97) {
                let row = inputs.value(i);
                let row = row.as_any().downcast_ref::<arrow_array::Float32Array>().unwrap();
                let out = outputs.value(i);
                let out = out.as_any().downcast_ref::<arrow_array::Float32Array>().unwrap();
                let want = score_of(&reference, row.values());
                assert!(common::rel_err(f64::from(out.value(0)), f64::from(want)) < 1e-6);
            }
            for k in key.values() {
                assert!(keys.insert(*k), "key {k} recorded twice");
            }
            rows += b.num_rows();
        }
    }
    assert!(rows as u64 >= flushed, "{rows} records read, {flushed} were flushed before the kill");
    // pyarrow reads the same.
    let read = pyarrow(&dir);
    let py_rows: u64 =
        read["files"].as_array().unwrap().iter().map(|f| f["rows"].as_u64().unwrap()).sum();
    assert_eq!(py_rows, rows as u64);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_torn_tail_is_skipped_never_misread() {
    // One closed file of several batches, cut at every length as a killed writer could leave
    // it: the reader returns whole batches only, never more as the cut grows, never an error.
    let dir = temp_dir("torn");
    let audit = AuditConfig::new(&dir).with_flush_every(Duration::from_millis(1));
    let rt = Runtime::builder()
        .model_path(common::root().join(MODEL))
        .config(RuntimeConfig::default().with_max_batch(16))
        .audit(audit)
        .build()
        .unwrap();
    let rows = vec![0.25f32; 16 * 8];
    for _ in 0..6 {
        rt.score_many(EventBatch::rows(&rows)).unwrap();
        std::thread::sleep(Duration::from_millis(10));
    }
    rt.shutdown();
    let closed = audit::files(&dir).unwrap();
    assert_eq!(closed.len(), 1);
    let whole = audit::read(&closed[0]).unwrap();
    assert!(whole.batches.len() >= 2 && whole.rows() == 96, "{} rows", whole.rows());
    let bytes = std::fs::read(&closed[0]).unwrap();
    let cut_path = dir.join("audit-0-000099.arrow.partial");
    let mut last = 0;
    for cut in (0..bytes.len()).step_by(7) {
        std::fs::write(&cut_path, &bytes[..cut]).unwrap();
        let f = audit::read(&cut_path).unwrap();
        assert!(f.batches.len() >= last, "cut at {cut}: fewer batches than a shorter cut");
        last = f.batches.len();
        for (b, w) in f.batches.iter().zip(&whole.batches) {
            assert_eq!(b, w, "cut at {cut}: a batch read differs from the one written");
        }
    }
    assert_eq!(last, whole.batches.len(), "the stream before the footer holds every batch");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_full_queue_drops_records_and_counts_them_under_the_drop_policy() {
    let dir = temp_dir("drop");
    let audit = AuditConfig::new(&dir).with_queue(1).with_overflow(AuditOverflow::Drop);
    let rt = Runtime::builder()
        .model_path(common::root().join(MODEL))
        .config(RuntimeConfig::default().with_max_batch(8))
        .audit(audit)
        .build()
        .unwrap();
    let rows = vec![0.5f32; 8 * 8];
    for _ in 0..2_000 {
        rt.score_many(EventBatch::rows(&rows)).unwrap();
    }
    rt.shutdown();
    let m = rt.metrics();
    let a = m.audit.unwrap();
    assert!(a.dropped > 0, "a queue of one batch cannot hold 2,000 sets' records");
    assert_eq!(a.written + a.dropped, m.scored, "every record written or counted as dropped");
    let read: usize =
        audit::files(&dir).unwrap().iter().map(|f| audit::read(f).unwrap().rows()).sum();
    assert_eq!(read as u64, a.written);
    assert!(m.prometheus().contains("streamscore_audit_records_total{outcome=\"dropped\"}"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_shadows_answers_go_to_the_log_beside_the_primarys() {
    const CHALLENGER: &str = "models/golden/lgb_binary_sigmoid/model.txt";
    let dir = temp_dir("shadow");
    let audit = AuditConfig::new(&dir).with_overflow(AuditOverflow::Block);
    let rt = Runtime::builder()
        .model_path(common::root().join(MODEL))
        .config(RuntimeConfig::default().with_max_batch(16).with_model_version(1))
        .audit(audit)
        .build()
        .unwrap();
    let update = streamscore::ModelUpdate::path(common::root().join(CHALLENGER)).with_version(2);
    rt.set_shadow(streamscore::ShadowConfig::new(update).with_audit(true)).unwrap();
    let forest = streamscore::load_forest(common::root().join(MODEL)).unwrap();
    let rows = streamscore::io::synthetic_rows(&forest, 500, 9).to_rows();
    let w = forest.n_features();
    for k in 0..500u64 {
        let row = &rows[k as usize * w..(k as usize + 1) * w];
        rt.score(Event::new(row).with_key(k).with_timestamp_ms(1_000 + k as i64)).unwrap();
    }
    rt.shutdown();
    let shadowed = rt.metrics().shadow.unwrap();
    assert_eq!((shadowed.compared, shadowed.dropped), (500, 0));
    let read = pyarrow(&dir);
    let records = read["records"].as_array().unwrap();
    let challenger =
        Reference::new(streamscore::load_forest(common::root().join(CHALLENGER)).unwrap());
    let (mut primary, mut shadow) = (HashMap::new(), HashMap::new());
    for r in records {
        let key = r["key"].as_u64().unwrap();
        let out = r["outputs"][0].as_f64().unwrap() as f32;
        let inputs: Vec<f32> = (r["inputs"].as_array().unwrap().iter())
            .map(|v| v.as_f64().map_or(f32::NAN, |x| x as f32))
            .collect();
        match r["role"].as_str().unwrap() {
            "primary" => assert!(primary.insert(key, (out, inputs)).is_none()),
            "shadow" => {
                assert_eq!(r["version"], 2);
                assert_eq!(r["event_time_ms"], 1_000 + key as i64);
                let want = score_of(&challenger, &inputs);
                assert!(common::rel_err(f64::from(out), f64::from(want)) < 1e-6, "key {key}");
                assert!(shadow.insert(key, (out, inputs)).is_none());
            }
            other => panic!("role {other}"),
        }
    }
    assert_eq!((primary.len(), shadow.len()), (500, 500), "each event once per role");
    for (k, (_, inputs)) in &shadow {
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            bits(inputs),
            bits(&primary[k].1),
            "key {k}: the shadow saw the primary's inputs"
        );
    }
    // A shadow that wants the log on a runtime without one is refused.
    let plain = Runtime::builder().model_path(common::root().join(MODEL)).build().unwrap();
    let update = streamscore::ModelUpdate::path(common::root().join(CHALLENGER)).with_version(2);
    assert!(plain.set_shadow(streamscore::ShadowConfig::new(update).with_audit(true)).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}
