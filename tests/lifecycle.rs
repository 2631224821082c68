//! Model lifecycle on a running runtime: swaps under load lose nothing and every answer is its
//! named version's; a file that does not load, validate or keep the schema never goes live;
//! rollback and the kept versions; a watched model directory.

mod common;

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use streamscore::{
    Backend, Batch, Error, Event, EventBatch, ModelDir, ModelUpdate, Output, Reference, Runtime,
    RuntimeConfig, ShadowConfig, Ticket,
};

const A: &str = "models/golden/lgb_binary/model.txt";
/// Same inputs as `A`, other trees: its answers differ from A's on nearly every row.
const B: &str = "models/golden/lgb_binary_sigmoid/model.txt";

fn path(model: &str) -> PathBuf {
    common::root().join(model)
}

/// The reference scorer's answers for `rows` (row-major, `Output::Transformed`).
fn reference(model: &str, rows: &Batch) -> Vec<f32> {
    let r = Reference::new(streamscore::load_forest(path(model)).unwrap());
    let mut out = vec![0.0; rows.n_rows() * r.output_width(Output::Transformed)];
    r.score_batch(rows, Output::Transformed, &mut out).unwrap();
    out
}

fn close(a: f32, b: f32) -> bool {
    common::rel_err(f64::from(a), f64::from(b)) <= 1e-6
}

/// Waits (up to 20 s) for `done`.
fn eventually(what: &str, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(20), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn swaps_under_four_producers_lose_nothing_and_each_answer_is_its_versions() {
    let forest = streamscore::load_forest(path(A)).unwrap();
    let rows = streamscore::io::synthetic_rows(&forest, 2_000, 7);
    let (ref_a, ref_b) = (reference(A, &rows), reference(B, &rows));
    let differ = ref_a.iter().zip(&ref_b).filter(|(a, b)| !close(**a, **b)).count();
    assert!(differ > 1_900, "A and B must be told apart: they differ on {differ} rows");
    let row_major = rows.to_rows();
    let w = rows.n_features();
    let config = RuntimeConfig::default()
        .with_max_batch(64)
        .with_max_delay(Duration::from_micros(200))
        .with_workers(2)
        .with_model_version(1);
    let rt = Runtime::builder().model_path(path(A)).config(config).build().unwrap();
    // Which file each version number is.
    let mut file_of: HashMap<u64, &str> = HashMap::from([(1, A)]);
    let per_producer = 40_000;
    let swapped = AtomicBool::new(false);
    let answers: Vec<Vec<(usize, u64, f32)>> = std::thread::scope(|s| {
        let producers: Vec<_> = (0..4)
            .map(|p| {
                let (rt, row_major, swapped) = (&rt, &row_major, &swapped);
                s.spawn(move || {
                    let mut got = Vec::with_capacity(per_producer);
                    let mut window: VecDeque<(usize, Ticket)> = VecDeque::new();
                    let settle =
                        |window: &mut VecDeque<(usize, Ticket)>,
                         got: &mut Vec<(usize, u64, f32)>| {
                            let (r, t) = window.pop_front().expect("a ticket");
                            let s = t.wait().expect("every event is scored");
                            got.push((r, s.model_version, s.value()));
                        };
                    let mut i = p * 500;
                    // At least `per_producer` events each, and on until the last swap.
                    while got.len() + window.len() < per_producer
                        || !swapped.load(Ordering::Relaxed)
                    {
                        let r = i % 2_000;
                        if p == 3 && r + 16 <= 2_000 && i % 5 == 0 {
                            // One producer also submits sets of 16.
                            let set = EventBatch::rows(&row_major[r * w..(r + 16) * w]);
                            let scores = rt.score_many(set).expect("a set is scored");
                            for (k, v) in scores.values().chunks(scores.width()).enumerate() {
                                got.push((r + k, scores.model_version, v[0]));
                            }
                            i += 16;
                            continue;
                        }
                        match rt.try_submit(Event::new(&row_major[r * w..(r + 1) * w])) {
                            Ok(t) => window.push_back((r, t)),
                            Err(_) => settle(&mut window, &mut got),
                        }
                        if window.len() >= 256 {
                            settle(&mut window, &mut got);
                        }
                        i += 1;
                    }
                    while !window.is_empty() {
                        settle(&mut window, &mut got);
                    }
                    got
                })
            })
            .collect();
        for k in 0..10u64 {
            std::thread::sleep(Duration::from_millis(15));
            let (version, file) = (10 + k, if k % 2 == 0 { B } else { A });
            file_of.insert(version, file);
            let live = rt.swap(ModelUpdate::path(path(file)).with_version(version)).unwrap();
            assert_eq!((live, rt.live_version()), (version, version));
        }
        swapped.store(true, Ordering::Relaxed);
        producers.into_iter().map(|h| h.join().unwrap()).collect()
    });
    rt.shutdown();
    let m = rt.metrics();
    assert_eq!(m.accepted, m.answered(), "nothing lost");
    assert_eq!((m.swaps, m.swap_failures), (10, 0));
    let mut by_version: HashMap<u64, usize> = HashMap::new();
    let mut total = 0;
    for (r, version, value) in answers.iter().flatten() {
        let file = file_of.get(version).unwrap_or_else(|| panic!("unknown version {version}"));
        let want = if *file == A { ref_a[*r] } else { ref_b[*r] };
        assert!(close(*value, want), "row {r} version {version}: {value} vs {file}'s {want}");
        *by_version.entry(*version).or_default() += 1;
        total += 1;
    }
    assert!(total >= 4 * 40_000, "every event answered once: {total}");
    assert_eq!(total as u64, m.scored, "no answer twice, none missing");
    assert!(by_version.len() >= 3, "answers from several versions: {by_version:?}");
}

/// `A`'s text with its feature names renamed: same width, another schema.
fn renamed(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(path(A)).unwrap();
    let text = text.replace("feature_names=f0 f1 f2 f3", "feature_names=g0 g1 g2 g3");
    let p = dir.join("renamed.txt");
    std::fs::write(&p, text).unwrap();
    p
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ss-lifecycle-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_bad_model_never_goes_live_and_the_serving_version_keeps_answering() {
    let dir = temp_dir("bad");
    let text = std::fs::read(path(A)).unwrap();
    let rt = Runtime::builder()
        .model_path(path(A))
        .config(RuntimeConfig::default().with_model_version(1))
        .build()
        .unwrap();
    let row = vec![0.5f32; 8];
    let before = rt.score(Event::new(row.clone())).unwrap();
    let bad: Vec<(&str, ModelUpdate)> = vec![
        ("truncated", ModelUpdate::bytes(text[..text.len() / 2].to_vec())),
        ("corrupt", ModelUpdate::bytes(b"tree\nversion=v4\nnum_class=x\n".to_vec())),
        ("empty", ModelUpdate::bytes(Vec::new())),
        ("missing", ModelUpdate::path(dir.join("no-such-model.txt"))),
        ("another width", ModelUpdate::path(path("models/golden/lgb_deep/model.txt"))),
        ("another output width", ModelUpdate::path(path("models/golden/lgb_multiclass/model.txt"))),
        ("renamed inputs", ModelUpdate::path(renamed(&dir))),
    ];
    let n = bad.len() as u64;
    for (what, update) in bad {
        let err = rt.swap(update.with_version(2)).expect_err(what);
        if what.starts_with("another") || what == "renamed inputs" {
            assert!(matches!(err, Error::SchemaChange { version: 2, .. }), "{what}: {err}");
        }
        assert_eq!(rt.live_version(), 1, "{what}");
        let s = rt.score(Event::new(row.clone())).unwrap();
        assert_eq!((s.model_version, s.value()), (1, before.value()), "{what}");
    }
    assert_eq!(rt.metrics().swap_failures, n);
    // Said to be intended, a renamed schema goes live; another width never does.
    rt.swap(ModelUpdate::path(renamed(&dir)).with_version(3).allow_schema_change()).unwrap();
    assert_eq!(rt.score(Event::new(row.clone())).unwrap().model_version, 3);
    let wide = ModelUpdate::path(path("models/golden/lgb_deep/model.txt")).allow_schema_change();
    assert!(matches!(rt.swap(wide), Err(Error::SchemaChange { .. })));
    rt.shutdown();
    assert!(matches!(rt.swap(ModelUpdate::path(path(B))), Err(Error::Closed)));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rollback_returns_to_a_kept_version_and_the_oldest_is_forgotten() {
    let config = RuntimeConfig::default().with_model_version(1).with_keep_versions(2);
    let rt = Runtime::builder().model_path(path(A)).config(config).build().unwrap();
    let row = vec![0.25f32; 8];
    let a = rt.score(Event::new(row.clone())).unwrap().value();
    rt.swap(ModelUpdate::path(path(B)).with_version(2)).unwrap();
    let b = rt.score(Event::new(row.clone())).unwrap().value();
    assert_ne!(a, b);
    rt.rollback(1).unwrap();
    let s = rt.score(Event::new(row.clone())).unwrap();
    assert_eq!((s.model_version, s.value()), (1, a));
    rt.swap(ModelUpdate::path(path(B)).with_version(3)).unwrap();
    // Keeping 2: version 1 (the oldest loaded) is gone, 2 and 3 stay.
    assert_eq!(rt.metrics().kept_versions, vec![2, 3]);
    assert!(matches!(rt.rollback(1), Err(Error::UnknownVersion(1))));
    rt.rollback(2).unwrap();
    assert_eq!(rt.score(Event::new(row)).unwrap().model_version, 2);
    // The same content under a kept number is a rollback; other content under it is refused.
    assert_eq!(rt.swap(ModelUpdate::path(path(B)).with_version(3)).unwrap(), 3);
    assert!(rt.swap(ModelUpdate::path(path(A)).with_version(3)).is_err());
    let lineage = rt.versions();
    let live = lineage.iter().find(|l| l.version == 3).unwrap();
    assert_eq!(live.trees, Some(25));
    assert_eq!(live.sha256.as_deref().map(str::len), Some(64));
    assert_eq!(live.feature_names.len(), 8);
    assert!(rt.metrics().prometheus().contains("streamscore_model_version_live{version=\"3\"} 1"));
}

/// Writes `bytes` as version `version`'s model, the safe way: a temporary name, then a
/// rename into place.
fn publish(root: &Path, version: u64, bytes: &[u8]) {
    let dir = root.join("m").join(version.to_string());
    std::fs::create_dir_all(&dir).unwrap();
    let tmp = dir.join(".model.txt.tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, dir.join("model.txt")).unwrap();
}

#[test]
fn a_model_directory_serves_its_latest_good_version() {
    let root = temp_dir("dir");
    let (a, b) = (std::fs::read(path(A)).unwrap(), std::fs::read(path(B)).unwrap());
    publish(&root, 1, &a);
    let dir = ModelDir::new(&root, "m").with_poll_interval(Duration::from_millis(10));
    let rt = Runtime::builder().model_dir(dir).build().unwrap();
    let row = vec![0.75f32; 8];
    let version = || rt.score(Event::new(row.clone())).unwrap().model_version;
    assert_eq!(version(), 1);
    // Truncated, corrupt, another width: each fails and is counted; 1 keeps answering.
    publish(&root, 2, &a[..a.len() / 3]);
    eventually("the truncated file to fail", || rt.metrics().swap_failures >= 1);
    publish(&root, 3, b"\x08garbage that is no protobuf");
    eventually("the corrupt file to fail", || rt.metrics().swap_failures >= 2);
    publish(&root, 4, &std::fs::read(path("models/golden/lgb_deep/model.txt")).unwrap());
    eventually("the wider model to be refused", || rt.metrics().swap_failures >= 3);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!((version(), rt.metrics().swap_failures), (1, 3), "failures are not retried");
    // A good version goes live.
    publish(&root, 5, &b);
    eventually("version 5", || version() == 5);
    // Fixing version 4's file makes it the latest good version... but 5 is higher: 5 stays.
    publish(&root, 4, &a);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(version(), 5);
    // Version 5 removed: the latest good one left (the fixed 4) goes live, 5 is retired.
    std::fs::remove_dir_all(root.join("m/5")).unwrap();
    eventually("version 4", || version() == 4);
    eventually("5 retired", || !rt.metrics().kept_versions.contains(&5));
    rt.shutdown();
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_model_directory_with_nothing_to_serve_is_an_error() {
    let root = temp_dir("empty");
    std::fs::create_dir_all(root.join("m/1")).unwrap();
    let err = Runtime::builder().model_dir(ModelDir::new(&root, "m")).build().unwrap_err();
    assert!(err.to_string().contains("no version directory"), "{err}");
    publish(&root, 2, b"tree\nnot a model");
    let err = Runtime::builder().model_dir(ModelDir::new(&root, "m")).build().unwrap_err();
    assert!(err.to_string().contains("no version loads"), "{err}");
    let both = Runtime::builder().model_path(path(A)).model_dir(ModelDir::new(&root, "m"));
    assert!(both.build().is_err());
    let _ = std::fs::remove_dir_all(&root);
}

/// A backend that takes its time: a shadow that cannot keep up.
struct Slow(Reference);

impl Backend for Slow {
    fn name(&self) -> &'static str {
        "slow"
    }
    fn n_features(&self) -> usize {
        self.0.n_features()
    }
    fn output_width(&self, output: Output) -> usize {
        self.0.output_width(output)
    }
    fn score_batch(
        &self,
        batch: &Batch,
        output: Output,
        out: &mut [f32],
    ) -> streamscore::Result<()> {
        std::thread::sleep(Duration::from_millis(20));
        self.0.score_batch(batch, output, out)
    }
}

#[test]
fn a_shadow_at_every_event_compares_each_one_and_leaves_the_primary_alone() {
    let forest = streamscore::load_forest(path(A)).unwrap();
    let rows = streamscore::io::synthetic_rows(&forest, 2_000, 11);
    let (ref_a, ref_b) = (reference(A, &rows), reference(B, &rows));
    let config = RuntimeConfig::default().with_model_version(1);
    let rt = Runtime::builder().model_path(path(A)).config(config).build().unwrap();
    let challenger = ModelUpdate::path(path(B))
        .with_version(2)
        .with_backend_spec(streamscore::BackendSpec::reference());
    assert_eq!(rt.set_shadow(ShadowConfig::new(challenger).with_threshold(0.5)).unwrap(), 2);
    let row_major = rows.to_rows();
    let mut primary = Vec::new();
    for chunk in row_major.chunks(100 * 8) {
        let scores = rt.score_many(EventBatch::rows(chunk)).unwrap();
        assert_eq!(scores.model_version, 1, "the shadow never answers");
        primary.extend_from_slice(scores.values());
    }
    for (r, (&p, &want)) in primary.iter().zip(&ref_a).enumerate() {
        assert!(close(p, want), "row {r}: the primary's answer is its own");
    }
    rt.clear_shadow();
    let report = rt.metrics().shadow.expect("a shadow report");
    assert_eq!((report.version, report.compared, report.dropped), (2, 2_000, 0));
    let flips = primary.iter().zip(&ref_b).filter(|(p, b)| (**p >= 0.5) != (**b >= 0.5)).count();
    assert_eq!(report.total.flips, flips as u64);
    assert!(flips > 0, "the models disagree somewhere");
    let max_abs = primary.iter().zip(&ref_b).map(|(p, b)| (p - b).abs()).fold(0.0f32, f32::max);
    let got = report.total.abs_diff[2];
    assert!((got - f64::from(max_abs)).abs() <= 2e-3 * f64::from(max_abs), "{got} vs {max_abs}");
    let rho = report.window.spearman.expect("a rank correlation");
    assert!(rho > 0.5 && rho <= 1.0, "{rho}");
    assert!(
        rt.metrics()
            .prometheus()
            .contains("streamscore_shadow_events_total{version=\"2\",outcome=\"compared\"} 2000")
    );
    // A challenger of other widths is refused; the primary keeps answering.
    for other in ["models/golden/lgb_deep/model.txt", "models/golden/lgb_multiclass/model.txt"] {
        let update = ModelUpdate::path(path(other)).with_version(3);
        assert!(matches!(
            rt.set_shadow(ShadowConfig::new(update)),
            Err(Error::SchemaChange { .. })
        ));
    }
    assert!(
        rt.set_shadow(ShadowConfig::new(ModelUpdate::path(path(B))).with_fraction(1.5)).is_err()
    );
}

#[test]
fn a_shadow_that_cannot_keep_up_is_dropped_and_counted() {
    let forest = streamscore::load_forest(path(A)).unwrap();
    let rows = streamscore::io::synthetic_rows(&forest, 5_000, 12);
    let ref_a = reference(A, &rows);
    let rt = Runtime::builder().model_path(path(A)).build().unwrap();
    let slow =
        std::sync::Arc::new(Slow(Reference::new(streamscore::load_forest(path(B)).unwrap())));
    let challenger = ModelUpdate::backend(slow).with_version(9);
    rt.set_shadow(ShadowConfig::new(challenger).with_queue(1)).unwrap();
    let row_major = rows.to_rows();
    let mut primary = Vec::new();
    for chunk in row_major.chunks(50 * 8) {
        primary.extend_from_slice(rt.score_many(EventBatch::rows(chunk)).unwrap().values());
    }
    for (&p, &want) in primary.iter().zip(&ref_a) {
        assert!(close(p, want));
    }
    rt.shutdown();
    let report = rt.metrics().shadow.expect("a shadow report");
    assert_eq!(report.compared + report.dropped, 5_000, "every event compared or counted");
    assert!(report.dropped > 0, "the primary did not wait for the shadow: {report:?}");
}

#[test]
fn a_shadow_fraction_picks_the_same_keys_every_time() {
    let forest = streamscore::load_forest(path(A)).unwrap();
    let rows = streamscore::io::synthetic_rows(&forest, 4_000, 13).to_rows();
    let keys: Vec<u64> = (0..4_000u64).map(|k| k * 7 + 3).collect();
    let run = || {
        let rt = Runtime::builder().model_path(path(A)).build().unwrap();
        let challenger = ModelUpdate::path(path(B)).with_version(2);
        rt.set_shadow(ShadowConfig::new(challenger).with_fraction(0.25)).unwrap();
        for (chunk, keys) in rows.chunks(100 * 8).zip(keys.chunks(100)) {
            rt.score_many(EventBatch::rows(chunk).with_keys(keys)).unwrap();
        }
        for (r, &k) in keys.iter().enumerate().take(500) {
            rt.score(Event::new(&rows[r * 8..(r + 1) * 8]).with_key(k)).unwrap();
        }
        rt.shutdown();
        rt.metrics().shadow.unwrap()
    };
    let (first, second) = (run(), run());
    assert_eq!(first.dropped, 0);
    assert_eq!(first.compared, second.compared, "the same keys each time");
    assert_eq!(first.total.flips, second.total.flips);
    let share = first.compared as f64 / 4_500.0;
    assert!((0.18..0.32).contains(&share), "a quarter of the keys: {share}");
}

/// Scores keys `0..keys` one event each (row `k % rows`), and again as one set; checks every
/// answer against the reference of the version it names. Returns each key's version.
fn split_round(rt: &Runtime, rows: &Batch, refs: &HashMap<u64, Vec<f32>>, keys: u64) -> Vec<u64> {
    let row_major = rows.to_rows();
    let w = rows.n_features();
    let row = |k: u64| (k as usize) % rows.n_rows();
    let mut single = Vec::new();
    for k in 0..keys {
        let r = row(k);
        let s = rt.score(Event::new(&row_major[r * w..(r + 1) * w]).with_key(k)).unwrap();
        let want = refs[&s.model_version][r];
        assert!(
            close(s.value(), want),
            "key {k}: {} vs version {}'s {want}",
            s.value(),
            s.model_version
        );
        single.push(s.model_version);
    }
    let all: Vec<f32> =
        (0..keys).flat_map(|k| row_major[row(k) * w..(row(k) + 1) * w].to_vec()).collect();
    let ks: Vec<u64> = (0..keys).collect();
    let set = rt.score_many(EventBatch::rows(&all).with_keys(&ks)).unwrap();
    for k in 0..keys as usize {
        assert_eq!(
            set.version_of(k),
            single[k],
            "key {k}: a set's event lands where the single one did"
        );
        let got = set.get(k).unwrap().unwrap()[0];
        assert!(close(got, refs[&single[k]][row(k as u64)]), "set event {k}");
    }
    single
}

#[test]
fn a_split_by_key_is_sticky_follows_its_weights_and_ramps_a_canary_one_way() {
    let forest = streamscore::load_forest(path(A)).unwrap();
    let rows = streamscore::io::synthetic_rows(&forest, 500, 3);
    let refs = HashMap::from([(1, reference(A, &rows)), (2, reference(B, &rows))]);
    let config = RuntimeConfig::default()
        .with_max_batch(64)
        .with_max_delay(Duration::from_micros(100))
        .with_model_version(1);
    let rt = Runtime::builder().model_path(path(A)).config(config).build().unwrap();
    assert!(matches!(
        rt.set_split(streamscore::Split::new().variant("control", 1, 9).variant("canary", 2, 1)),
        Err(Error::UnknownVersion(2))
    ));
    assert_eq!(rt.load(ModelUpdate::path(path(B)).with_version(2)).unwrap(), 2);
    assert_eq!(rt.live_version(), 1, "a loaded version is not live");
    let keys = 2_000;
    let mut in_canary: Vec<u64> = Vec::new();
    for pct in [10, 50, 100] {
        let split =
            streamscore::Split::new().variant("control", 1, 100 - pct).variant("canary", 2, pct);
        rt.set_split(split.clone()).unwrap();
        assert_eq!(rt.split(), Some(split));
        let got = split_round(&rt, &rows, &refs, keys);
        let again = split_round(&rt, &rows, &refs, keys);
        assert_eq!(got, again, "the same key lands in the same variant for the same weights");
        let canary: Vec<u64> = (0..keys).filter(|&k| got[k as usize] == 2).collect();
        let share = canary.len() as f64 / keys as f64;
        assert!((share - f64::from(pct) / 100.0).abs() < 0.04, "{pct}%: canary took {share}");
        assert!(in_canary.iter().all(|k| canary.contains(k)), "a key left the canary at {pct}%");
        in_canary = canary;
        let m = rt.metrics();
        assert_eq!(m.variants.len(), 2);
        let events: u64 = m.variants.iter().map(|v| v.events).sum();
        assert_eq!(events, 4 * keys, "every scored event is counted in its variant");
        assert_eq!(m.variants[1].events, 2 * in_canary.len() as u64 * 2);
        assert_eq!((m.variants[1].name.as_str(), m.variants[1].version), ("canary", 2));
        assert!(m.prometheus().contains("streamscore_variant_events_total{variant=\"canary\""));
    }
    rt.clear_split();
    assert!(rt.metrics().variants.is_empty());
    assert!(split_round(&rt, &rows, &refs, 200).iter().all(|&v| v == 1), "the live version again");
}
