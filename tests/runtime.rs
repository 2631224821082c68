//! The runtime's contract: answers match the reference scorer, bad input is refused with the
//! event handed back, overload follows its policy, deadlines expire events before model time is
//! spent, and shutdown answers everything it accepted.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use streamscore::{
    Backend, Batch, Error, Event, EventBatch, NonFinitePolicy, Output, Overload, Reference,
    Runtime, RuntimeConfig, Schema,
};

/// Wraps the reference scorer: counts the rows it is asked to score, can be held shut so
/// batches pile up, and can be told to fail.
struct Gated {
    inner: Reference,
    rows: AtomicUsize,
    open: Mutex<bool>,
    cv: Condvar,
    fail: AtomicBool,
    /// Batches held at the closed gate right now.
    held: AtomicUsize,
}

impl Gated {
    fn new(model: &str) -> Arc<Self> {
        let forest = streamscore::load_forest(common::root().join(model)).unwrap();
        Arc::new(Gated {
            inner: Reference::new(forest),
            rows: AtomicUsize::new(0),
            open: Mutex::new(true),
            cv: Condvar::new(),
            fail: AtomicBool::new(false),
            held: AtomicUsize::new(0),
        })
    }
    fn set_open(&self, open: bool) {
        *self.open.lock().unwrap() = open;
        self.cv.notify_all();
    }
    /// Blocks until a batch is held at the closed gate (the scorer can take nothing more).
    fn wait_held(&self) {
        let start = std::time::Instant::now();
        while self.held.load(Ordering::SeqCst) == 0 {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(60),
                "no batch reached the gate"
            );
            std::thread::yield_now();
        }
    }
    fn schema(&self) -> Schema {
        Schema::new(self.inner.forest().feature_names().iter().cloned())
    }
}

impl Backend for Gated {
    fn name(&self) -> &'static str {
        "gated"
    }
    fn n_features(&self) -> usize {
        self.inner.n_features()
    }
    fn output_width(&self, output: Output) -> usize {
        self.inner.output_width(output)
    }
    fn score_batch(
        &self,
        batch: &Batch,
        output: Output,
        out: &mut [f32],
    ) -> streamscore::Result<()> {
        let mut open = self.open.lock().unwrap();
        if !*open {
            self.held.fetch_add(1, Ordering::SeqCst);
        }
        while !*open {
            open = self.cv.wait(open).unwrap();
        }
        self.held.store(0, Ordering::SeqCst);
        drop(open);
        self.rows.fetch_add(batch.n_rows(), Ordering::SeqCst);
        if self.fail.load(Ordering::SeqCst) {
            return Err(Error::Input { at: "gated".into(), message: "injected failure".into() });
        }
        self.inner.score_batch(batch, output, out)
    }
}

const BINARY: &str = "models/golden/lgb_binary/model.txt";

fn golden_rows(name: &str) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let case = common::golden_cases().into_iter().find(|c| c.name == name).unwrap();
    let forest = case.forest();
    let batch = case.batch(&forest);
    let reference = Reference::new(forest);
    let w = reference.output_width(Output::Transformed);
    let mut expected = vec![0.0; batch.n_rows() * w];
    reference.score_batch(&batch, Output::Transformed, &mut expected).unwrap();
    let rows = batch.to_rows().chunks(batch.n_features()).map(<[f32]>::to_vec).collect();
    (rows, expected.chunks(w).map(|c| c.to_vec()).collect())
}

fn same(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

#[test]
fn every_api_returns_the_reference_score_for_its_own_event() {
    for name in ["lgb_binary", "lgb_multiclass", "xgb_categorical"] {
        let (rows, expected) = golden_rows(name);
        let model = common::golden_cases().into_iter().find(|c| c.name == name).unwrap().model;
        let rt = Runtime::builder()
            .model_path(&model)
            .config(RuntimeConfig::default().with_max_batch(7))
            .build()
            .unwrap();
        assert_eq!(rt.output_width(), expected[0].len());
        // Blocking, one at a time.
        for (row, want) in rows.iter().zip(&expected).take(50) {
            let s = rt.score(Event::new(row.as_slice())).unwrap();
            assert!(same(s.values(), want), "{name}: {:?} vs {want:?}", s.values());
        }
        // Many in flight, answers taken out of order.
        let tickets: Vec<_> =
            rows.iter().map(|r| rt.try_submit(Event::new(r.clone())).unwrap()).collect();
        for (i, t) in tickets.into_iter().enumerate().rev() {
            let s = t.wait().unwrap();
            assert!(same(s.values(), &expected[i]), "{name} row {i}");
            assert!(s.timing.batch_rows >= 1 && s.timing.total >= s.timing.queued);
        }
        // Async.
        let tokio = tokio::runtime::Builder::new_current_thread().build().unwrap();
        tokio.block_on(async {
            for (row, want) in rows.iter().zip(&expected).take(20) {
                assert!(same(rt.submit(Event::new(row.as_slice())).await.unwrap().values(), want));
            }
        });
        // Direct batch.
        let flat: Vec<f32> = rows.concat();
        let out = rt.score_batch(&Batch::from_rows(&flat, rows[0].len()).unwrap()).unwrap();
        assert!(same(&out, &expected.concat()));
        rt.shutdown();
        let m = rt.metrics();
        assert_eq!(m.accepted, 50 + rows.len() as u64 + 20);
        assert_eq!((m.scored, m.answered()), (m.accepted, m.accepted));
    }
}

#[test]
fn model_version_is_the_file_hash_unless_set() {
    let rt = Runtime::builder()
        .model_path(common::root().join(BINARY))
        .config(RuntimeConfig::default())
        .build()
        .unwrap();
    let v = rt.score(Event::new(vec![0.0; 8])).unwrap().model_version;
    let again = Runtime::builder()
        .model_path(common::root().join(BINARY))
        .config(RuntimeConfig::default())
        .build()
        .unwrap();
    assert_eq!(again.score(Event::new(vec![0.0; 8])).unwrap().model_version, v);
    let other = Runtime::builder()
        .model_path(common::root().join("models/golden/lgb_regression/model.txt"))
        .config(RuntimeConfig::default())
        .build()
        .unwrap();
    let w = other.schema().len();
    assert_ne!(other.score(Event::new(vec![0.0; w])).unwrap().model_version, v);
    let set = Runtime::builder()
        .model_path(common::root().join(BINARY))
        .config(RuntimeConfig::default().with_model_version(42))
        .build()
        .unwrap();
    assert_eq!(set.score(Event::new(vec![0.0; 8])).unwrap().model_version, 42);
}

#[test]
fn bad_events_are_handed_back_and_never_poison_a_batch() {
    let config =
        RuntimeConfig::default().with_non_finite(NonFinitePolicy::Reject).with_max_batch(4);
    let rt =
        Runtime::builder().model_path(common::root().join(BINARY)).config(config).build().unwrap();
    let good = vec![0.5; 8];
    let mut tickets = Vec::new();
    for i in 0..20 {
        tickets.push(rt.try_submit(Event::new(good.clone())).unwrap());
        let bad = match i % 3 {
            0 => vec![0.5; 7],
            1 => vec![0.5, f32::NAN, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            _ => vec![0.5, 0.0, 0.0, f32::NEG_INFINITY, 0.0, 0.0, 0.0, 0.0],
        };
        let r = rt.try_submit(Event::new(bad.clone()).with_key(i)).unwrap_err();
        assert!(
            same(&r.event.values, &bad) && r.event.key == Some(i),
            "the event comes back untouched"
        );
        match i % 3 {
            0 => assert!(
                matches!(r.error, Error::WidthMismatch { expected: 8, got: 7 }),
                "{}",
                r.error
            ),
            1 => assert!(matches!(r.error, Error::NonFinite { feature: 1, .. }), "{}", r.error),
            _ => assert!(matches!(r.error, Error::NonFinite { feature: 3, .. }), "{}", r.error),
        }
    }
    let want = rt.score_batch(&Batch::from_rows(&good, 8).unwrap()).unwrap()[0];
    for t in tickets {
        assert_eq!(t.wait().unwrap().value(), want);
    }
    assert!(matches!(rt.score(Event::new(vec![1.0; 9])), Err(Error::WidthMismatch { .. })));
    assert!(matches!(
        rt.schema().event([("no_such_feature", 1.0)]),
        Err(Error::UnknownField { .. })
    ));
    // Under `InfAsMissing` infinities score as NaN does.
    let config = RuntimeConfig::default().with_non_finite(NonFinitePolicy::InfAsMissing);
    let rt2 =
        Runtime::builder().model_path(common::root().join(BINARY)).config(config).build().unwrap();
    let mut inf = good.clone();
    inf[2] = f32::INFINITY;
    let mut nan = good.clone();
    nan[2] = f32::NAN;
    assert_eq!(
        rt2.score(Event::new(inf)).unwrap().value(),
        rt2.score(Event::new(nan)).unwrap().value()
    );
    rt.shutdown();
    assert_eq!(rt.metrics().rejected, 21);
    // Closed.
    let r = rt.try_submit(Event::new(good.clone())).unwrap_err();
    assert!(matches!(r.error, Error::Closed));
    assert!(matches!(rt.score(Event::new(good)), Err(Error::Closed)));
}

#[test]
fn a_full_queue_follows_the_overload_policy() {
    for policy in [Overload::Reject, Overload::Block, Overload::ShedOldest] {
        let gated = Gated::new(BINARY);
        gated.set_open(false);
        let config =
            RuntimeConfig::default().with_queue_capacity(8).with_max_batch(2).with_overload(policy);
        let rt = Runtime::builder()
            .backend(gated.clone())
            .schema(gated.schema())
            .config(config)
            .build()
            .unwrap();
        // One event first, held at the gate once its batch is due: from then on nothing drains
        // the queue, whatever the machine's load, so what follows is deterministic.
        let mut tickets = vec![rt.try_submit(Event::new(vec![0.0; 8])).unwrap()];
        gated.wait_held();
        let mut refused = 0;
        for i in 1..100 {
            match rt.try_submit(Event::new(vec![i as f32; 8])) {
                Ok(t) => tickets.push(t),
                Err(r) => {
                    assert!(matches!(r.error, Error::QueueFull), "{policy:?}: {}", r.error);
                    assert_eq!(r.event.values[0], i as f32);
                    refused += 1;
                }
            }
        }
        if policy == Overload::ShedOldest {
            assert_eq!(refused, 0, "shedding makes room");
        } else {
            // 8 queued, a few in the batcher and the hand-off: the rest is refused.
            assert!(refused >= 80, "{policy:?}: {refused}");
        }
        if policy == Overload::Reject {
            assert!(matches!(rt.score(Event::new(vec![0.0; 8])), Err(Error::QueueFull)));
        }
        gated.set_open(true);
        let answers: Vec<_> = tickets.into_iter().map(|t| t.wait()).collect();
        let shed = answers.iter().filter(|a| matches!(a, Err(Error::Shed))).count();
        let scored = answers.iter().filter(|a| a.is_ok()).count();
        assert_eq!(shed + scored, answers.len(), "{policy:?}");
        if policy == Overload::ShedOldest {
            assert!(shed >= 80, "{shed}");
            assert!(answers.last().unwrap().is_ok(), "the newest event survives");
        }
        rt.shutdown();
        let m = rt.metrics();
        assert_eq!(
            (m.accepted, m.shed, m.scored),
            ((100 - refused) as u64, shed as u64, scored as u64)
        );
        assert_eq!(gated.rows.load(Ordering::SeqCst), scored, "shed events never reach the model");
    }
}

#[test]
fn blocking_submitters_wait_for_room() {
    let gated = Gated::new(BINARY);
    gated.set_open(false);
    let config = RuntimeConfig::default().with_queue_capacity(4).with_max_batch(2);
    let rt = Arc::new(
        Runtime::builder()
            .backend(gated.clone())
            .schema(gated.schema())
            .config(config)
            .build()
            .unwrap(),
    );
    let blocked = {
        let rt = rt.clone();
        std::thread::spawn(move || {
            (0..50)
                .filter(|&i| rt.score(Event::new(vec![i as f32; 8])).unwrap().value().is_finite())
                .count()
        })
    };
    let tokio = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
    let awaited = {
        let rt = rt.clone();
        tokio.spawn(async move {
            let futures: Vec<_> = (0..50)
                .map(|i| {
                    let rt = rt.clone();
                    tokio::spawn(async move {
                        rt.submit(Event::new(vec![i as f32; 8])).await.map(|s| s.value())
                    })
                })
                .collect();
            let mut n = 0;
            for f in futures {
                f.await.unwrap().unwrap();
                n += 1;
            }
            n
        })
    };
    gated.wait_held();
    assert!(
        !blocked.is_finished() && !awaited.is_finished(),
        "both wait while the backend is shut"
    );
    gated.set_open(true);
    assert_eq!(blocked.join().unwrap(), 50);
    assert_eq!(tokio.block_on(awaited).unwrap(), 50);
    assert_eq!(rt.metrics().rejected, 0);
}

#[test]
fn deadlines_expire_queued_events_without_model_time() {
    let gated = Gated::new(BINARY);
    gated.set_open(false);
    let config =
        RuntimeConfig::default().with_max_batch(4).with_max_delay(Duration::from_micros(100));
    let rt = Runtime::builder()
        .backend(gated.clone())
        .schema(gated.schema())
        .config(config)
        .build()
        .unwrap();
    // The first batch is held at the gate; everything behind it waits in the queue.
    let first: Vec<_> = (0..8).map(|_| rt.try_submit(Event::new(vec![1.0; 8])).unwrap()).collect();
    gated.wait_held();
    let soon = Instant::now() + Duration::from_millis(30);
    let doomed: Vec<_> = (0..20)
        .map(|_| rt.try_submit(Event::new(vec![2.0; 8]).with_deadline(soon)).unwrap())
        .collect();
    let submitted = Instant::now();
    let patient: Vec<_> = (0..6)
        .map(|_| {
            rt.try_submit(Event::new(vec![3.0; 8]).with_timeout(Duration::from_secs(60))).unwrap()
        })
        .collect();
    // Open only once the deadline has passed (a wait, not a timing assertion): nothing was
    // taken off the queue meanwhile, so every doomed event is still queued and must expire.
    while Instant::now() <= soon {
        std::thread::sleep(
            soon.saturating_duration_since(Instant::now()) + Duration::from_millis(1),
        );
    }
    gated.set_open(true);
    for t in first.into_iter().chain(patient) {
        t.wait().unwrap();
    }
    // Each was accepted before `submitted` and expired after `soon`.
    let at_least = soon.saturating_duration_since(submitted);
    for t in doomed {
        match t.wait() {
            Err(Error::Expired { waited }) => assert!(waited >= at_least, "{waited:?}"),
            other => panic!("expected Expired, got {other:?}"),
        }
    }
    rt.shutdown();
    assert_eq!(gated.rows.load(Ordering::SeqCst), 14, "expired rows never reach the backend");
    let m = rt.metrics();
    assert_eq!((m.expired, m.scored, m.answered()), (20, 14, 34));
}

#[test]
fn a_failing_backend_answers_every_event_with_an_error() {
    let gated = Gated::new(BINARY);
    let rt = Runtime::builder()
        .backend(gated.clone())
        .schema(gated.schema())
        .config(RuntimeConfig::default())
        .build()
        .unwrap();
    gated.fail.store(true, Ordering::SeqCst);
    let tickets: Vec<_> =
        (0..10).map(|_| rt.try_submit(Event::new(vec![0.0; 8])).unwrap()).collect();
    for t in tickets {
        assert!(matches!(t.wait(), Err(Error::Backend { backend: "gated", .. })));
    }
    gated.fail.store(false, Ordering::SeqCst);
    assert!(rt.score(Event::new(vec![0.0; 8])).is_ok(), "the runtime survives");
    rt.shutdown();
    assert_eq!(rt.metrics().errors, 10);
}

#[test]
fn shutdown_under_load_answers_everything_and_dropped_tickets_do_not_block() {
    let gated = Gated::new(BINARY);
    let config = RuntimeConfig::default().with_queue_capacity(64).with_max_batch(16);
    let rt = Arc::new(
        Runtime::builder()
            .backend(gated.clone())
            .schema(gated.schema())
            .config(config)
            .build()
            .unwrap(),
    );
    let producers: Vec<_> = (0..4)
        .map(|p| {
            let rt = rt.clone();
            std::thread::spawn(move || {
                let (mut kept, mut ok, mut closed) = (Vec::new(), 0u64, false);
                for i in 0u64.. {
                    match rt.try_submit(Event::new(vec![i as f32; 8])) {
                        // Half the tickets are dropped at once: their events are still scored.
                        Ok(t) if i % 2 == p % 2 => kept.push(t),
                        Ok(_) => ok += 1,
                        Err(r) if matches!(r.error, Error::Closed) => {
                            closed = true;
                            break;
                        }
                        Err(_) => std::thread::yield_now(),
                    }
                }
                assert!(closed);
                let kept_n = kept.len() as u64;
                for t in kept {
                    t.wait().unwrap();
                }
                ok + kept_n
            })
        })
        .collect();
    // Shut down under load: once more than 1,000 events are in (however long that takes on a
    // loaded machine), not after a fixed sleep.
    let start = Instant::now();
    while rt.metrics().accepted <= 1000 {
        assert!(start.elapsed() < Duration::from_secs(120), "producers made no progress");
        std::thread::yield_now();
    }
    rt.shutdown();
    let m = rt.metrics();
    assert_eq!(m.answered(), m.accepted, "shutdown returned with everything answered");
    let accepted: u64 = producers.into_iter().map(|p| p.join().unwrap()).sum();
    assert_eq!(accepted, m.accepted);
    assert!(m.accepted > 1000, "{}", m.accepted);
    assert_eq!(gated.rows.load(Ordering::SeqCst) as u64, m.scored);
}

#[test]
fn metrics_render_as_prometheus_text() {
    let rt = Runtime::builder()
        .model_path(common::root().join(BINARY))
        .config(RuntimeConfig::default())
        .build()
        .unwrap();
    for _ in 0..100 {
        rt.score(Event::new(vec![0.1; 8])).unwrap();
    }
    let m = rt.metrics();
    assert_eq!(m.stage(streamscore::Stage::EndToEnd).count, 100);
    assert!(m.stage(streamscore::Stage::EndToEnd).p99 >= m.stage(streamscore::Stage::EndToEnd).p50);
    let text = m.prometheus();
    assert!(text.contains("streamscore_events_total{outcome=\"scored\"} 100"), "{text}");
    assert!(
        text.contains("streamscore_latency_seconds{stage=\"end_to_end\",quantile=\"0.99\"}"),
        "{text}"
    );
}

#[test]
fn invalid_configuration_is_refused_once_at_build() {
    let bad = [
        RuntimeConfig::default().with_max_batch(0),
        RuntimeConfig::default().with_workers(0),
        RuntimeConfig::default().with_queue_capacity(0),
        RuntimeConfig::default().with_max_delay(Duration::from_secs(61)),
    ];
    for config in bad {
        let err = Runtime::builder()
            .model_path(common::root().join(BINARY))
            .config(config)
            .build()
            .unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err}");
    }
    let gated = Gated::new(BINARY);
    let err = Runtime::builder()
        .backend(gated)
        .schema(Schema::new(["a"]))
        .config(RuntimeConfig::default())
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::WidthMismatch { .. }));
}

/// The builder takes a model as a path, bytes, a loaded model or a backend, and refuses an
/// incomplete or inconsistent recipe with a clear error before starting anything.
#[test]
fn the_builder_takes_every_kind_of_model_and_refuses_bad_recipes() {
    let path = common::root().join(BINARY);
    let bytes = std::fs::read(&path).unwrap();
    let row = vec![0.25f32; 8];
    let from_path = Runtime::builder().model_path(&path).build().unwrap();
    let want = from_path.score(Event::new(row.clone())).unwrap();
    let from_bytes = Runtime::builder().model_bytes(bytes).build().unwrap();
    let got = from_bytes.score(Event::new(row.clone())).unwrap();
    assert_eq!((got.value(), got.model_version), (want.value(), want.model_version));
    let forest = streamscore::load_forest(&path).unwrap();
    let reference = Runtime::builder()
        .model(forest)
        .backend_spec(streamscore::BackendSpec::reference())
        .config(RuntimeConfig::default().with_model_version(7))
        .build()
        .unwrap();
    assert_eq!(reference.backend_name(), "reference");
    let s = reference.score(Event::new(row)).unwrap();
    assert_eq!((s.value(), s.model_version), (want.value(), 7));
    assert!(matches!(Runtime::builder().build(), Err(Error::Config(_))));
    let gated = Gated::new(BINARY);
    let no_schema = Runtime::builder().backend(gated.clone()).build();
    assert!(matches!(no_schema, Err(Error::Config(m)) if m.contains("schema")));
    let bad =
        Runtime::builder().model_path(&path).config(RuntimeConfig::default().with_max_batch(0));
    assert!(matches!(bad.build(), Err(Error::Config(_))));
    let missing = Runtime::builder().model_path("models/none.txt").build();
    assert!(matches!(missing, Err(Error::Io { .. })), "{missing:?}");
}

/// Batch submission: sets of every size (past `max_batch` too), as rows and as columns,
/// non-blocking, blocking and async, each event answered with the reference score in order.
#[test]
fn sets_answer_every_event_with_the_reference_score() {
    for name in ["lgb_binary", "lgb_multiclass"] {
        let (rows, expected) = golden_rows(name);
        let model = common::golden_cases().into_iter().find(|c| c.name == name).unwrap().model;
        let rt = Runtime::builder()
            .model_path(&model)
            .config(RuntimeConfig::default().with_max_batch(7))
            .build()
            .unwrap();
        let flat: Vec<f32> = rows.concat();
        let w = rows[0].len();
        let mut tickets = Vec::new();
        let (mut at, mut k) = (0, 1);
        while at < rows.len() {
            let n = k.min(rows.len() - at);
            let set = EventBatch::rows(&flat[at * w..(at + n) * w]);
            tickets.push((at, rt.try_submit_many(set).unwrap()));
            (at, k) = (at + n, k * 2 + 1);
        }
        for (first, t) in tickets.into_iter().rev() {
            let scores = t.wait().unwrap();
            assert!(scores.timing.batch_rows as usize >= scores.len());
            for (i, s) in scores.iter().enumerate() {
                assert!(same(s.unwrap(), &expected[first + i]), "{name} event {}", first + i);
            }
        }
        let columns = Batch::from_rows(&flat, w).unwrap();
        let all = rt.score_many(EventBatch::columns(&columns)).unwrap();
        assert_eq!((all.len(), all.width()), (rows.len(), expected[0].len()));
        assert!(same(all.values(), &expected.concat()));
        let tokio = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let s = tokio.block_on(rt.submit_many(EventBatch::rows(&flat[..3 * w]))).unwrap();
        assert!(same(s.values(), &expected[..3].concat()));
        let empty = rt.score_many(EventBatch::rows(&[])).unwrap();
        assert!(empty.is_empty() && empty.get(0).is_none());
        rt.shutdown();
        let m = rt.metrics();
        let n = 2 * rows.len() as u64 + 3;
        assert_eq!((m.accepted, m.scored, m.answered(), m.rejected), (n, n, n, 0));
    }
}

/// An event refused on its own is answered in its set with its error, and the rest scored;
/// a set whose shape is wrong is refused whole, before anything is queued.
#[test]
fn a_set_refuses_its_bad_events_alone() {
    let (rows, _) = golden_rows("lgb_binary");
    let config = RuntimeConfig::default().with_non_finite(NonFinitePolicy::Reject);
    let rt = Runtime::builder().model_path(BINARY).config(config).build().unwrap();
    // The golden rows have missing values, which `reject` refuses: made finite here, and
    // scored straight through the backend for the expected answers.
    let mut flat: Vec<f32> =
        rows[..10].concat().iter().map(|v| if v.is_finite() { *v } else { 0.0 }).collect();
    let expected: Vec<Vec<f32>> = rt
        .score_batch(&Batch::from_rows(&flat, 8).unwrap())
        .unwrap()
        .chunks(1)
        .map(<[f32]>::to_vec)
        .collect();
    flat[3 * 8 + 2] = f32::NAN;
    flat[7 * 8] = f32::INFINITY;
    let scores = rt.score_many(EventBatch::rows(&flat)).unwrap();
    assert_eq!(scores.errors().len(), 2);
    for (i, s) in scores.iter().enumerate() {
        match (i, s) {
            (3, Err(Error::NonFinite { feature: 2, .. }))
            | (7, Err(Error::NonFinite { feature: 0, .. })) => {}
            (3 | 7, other) => panic!("event {i}: {other:?}"),
            (_, s) => assert!(same(s.unwrap(), &expected[i]), "event {i}"),
        }
    }
    assert!(scores.values()[3].is_nan());
    // Every event refused: answered at once, nothing queued.
    let bad = [f32::NAN; 16];
    let none = rt.try_submit_many(EventBatch::rows(&bad)).unwrap().wait().unwrap();
    assert_eq!(none.errors().len(), 2);
    // Shape errors refuse the whole set.
    for (set, says) in [
        (EventBatch::rows(&flat[..13]), "whole number"),
        (EventBatch::rows(&flat[..16]).with_keys(&[1]), "1 keys for 2 events"),
    ] {
        let e = rt.try_submit_many(set).unwrap_err();
        assert!(e.to_string().contains(says), "{e}");
    }
    let big = vec![0.0f32; (streamscore::MAX_SET + 1) * 8];
    let e = rt.try_submit_many(EventBatch::rows(&big)).unwrap_err();
    assert!(e.to_string().contains("at most"), "{e}");
    let narrow = Batch::from_rows(&[0.0; 6], 3).unwrap();
    assert!(matches!(
        rt.try_submit_many(EventBatch::columns(&narrow)),
        Err(Error::WidthMismatch { expected: 8, got: 3 })
    ));
    rt.shutdown();
    assert!(matches!(rt.try_submit_many(EventBatch::rows(&flat)), Err(Error::Closed)));
    let m = rt.metrics();
    // 2 + 2 refused events, and 5 sets refused before validation (4 shapes, 1 closed), each
    // counted once.
    assert_eq!((m.accepted, m.scored, m.rejected), (8, 8, 9));
}

/// A set takes one queue place, follows the overload policy as a whole, and shares one
/// deadline: queued past it, every one of its events expires without model time.
#[test]
fn sets_follow_the_overload_policy_and_their_deadline() {
    let gated = Gated::new(BINARY);
    gated.set_open(false);
    let config = RuntimeConfig::default()
        .with_queue_capacity(2)
        .with_max_batch(4)
        .with_max_delay(Duration::from_micros(100))
        .with_overload(Overload::Reject);
    let rt = Runtime::builder()
        .backend(gated.clone())
        .schema(gated.schema())
        .config(config)
        .build()
        .unwrap();
    let rows = vec![1.0f32; 8 * 5];
    let first = rt.try_submit_many(EventBatch::rows(&rows)).unwrap();
    gated.wait_held();
    let soon = Instant::now() + Duration::from_millis(30);
    let doomed = rt.try_submit_many(EventBatch::rows(&rows).with_deadline(soon)).unwrap();
    let patient = rt.try_submit_many(EventBatch::rows(&rows[..16])).unwrap();
    // The queue (2 places) is full now: the next set is refused whole, each event counted.
    assert!(matches!(rt.try_submit_many(EventBatch::rows(&rows)), Err(Error::QueueFull)));
    while Instant::now() <= soon {
        std::thread::sleep(
            soon.saturating_duration_since(Instant::now()) + Duration::from_millis(1),
        );
    }
    gated.set_open(true);
    assert_eq!(first.wait().unwrap().len(), 5);
    assert!(matches!(doomed.wait(), Err(Error::Expired { .. })));
    assert_eq!(patient.wait().unwrap().len(), 2);
    rt.shutdown();
    assert_eq!(gated.rows.load(Ordering::SeqCst), 7, "the expired set never reached the model");
    let m = rt.metrics();
    assert_eq!((m.accepted, m.scored, m.expired, m.rejected, m.answered()), (12, 7, 5, 5, 12));
}

/// Sums each row: for rows wider than the runtime keeps inline, whose values travel in pooled
/// buffers instead.
struct RowSum(usize);

impl Backend for RowSum {
    fn name(&self) -> &'static str {
        "row-sum"
    }
    fn n_features(&self) -> usize {
        self.0
    }
    fn output_width(&self, _: Output) -> usize {
        1
    }
    fn score_batch(&self, batch: &Batch, _: Output, out: &mut [f32]) -> streamscore::Result<()> {
        for (r, o) in out.iter_mut().enumerate() {
            *o = (0..self.0).map(|f| batch.value(r, f)).sum();
        }
        Ok(())
    }
}

/// Narrow and wide rows (inline in the queued job, or in pooled buffers) reach the backend
/// intact, one at a time and in sets, with the buffers reused many times over.
#[test]
fn wide_and_narrow_rows_reach_the_backend_intact() {
    for width in [1, 8, 9, 300] {
        let schema = Schema::new((0..width).map(|i| format!("f{i}")));
        let rt = Runtime::builder()
            .backend(Arc::new(RowSum(width)))
            .schema(schema)
            .config(RuntimeConfig::default().with_max_batch(32).with_queue_capacity(256))
            .build()
            .unwrap();
        let row = |i: usize| -> Vec<f32> { (0..width).map(|f| (i * 7 + f) as f32).collect() };
        let sum = |i: usize| -> f32 { row(i).iter().sum() };
        let mut window = std::collections::VecDeque::new();
        for i in 0..2_000 {
            window.push_back((i, rt.try_submit(Event::new(row(i))).map_err(|r| r.error).unwrap()));
            if window.len() == 100 {
                let (j, t): (usize, streamscore::Ticket) = window.pop_front().unwrap();
                assert_eq!(t.wait().unwrap().value(), sum(j), "width {width} event {j}");
            }
        }
        for (j, t) in window {
            assert_eq!(t.wait().unwrap().value(), sum(j), "width {width} event {j}");
        }
        let flat: Vec<f32> = (0..50).flat_map(row).collect();
        let scores = rt.score_many(EventBatch::rows(&flat)).unwrap();
        for (j, s) in scores.iter().enumerate() {
            assert_eq!(s.unwrap()[0], sum(j), "width {width} set event {j}");
        }
        rt.shutdown();
        assert_eq!(rt.metrics().scored, 2_050);
    }
}
