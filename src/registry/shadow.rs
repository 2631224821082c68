//! Shadow scoring: a challenger version scores a share of the primary's events, chosen by key
//! hash, on its own thread behind a bounded queue, and is compared with the primary's answers.
//! The primary never waits for it: a full queue drops the shadow's copy and counts it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use crossbeam_queue::ArrayQueue;
use hdrhistogram::Histogram;

use super::{ModelUpdate, Version, lock};
use crate::backend::Output;
use crate::batch::Batch;
use crate::error::{Error, Result};
use crate::metrics::{ShadowSnapshot, ShadowWindow};
use crate::sink::Audit;

/// A challenger to score beside the live version ([`Runtime::set_shadow`](crate::Runtime::set_shadow)).
///
/// # Examples
///
/// ```
/// use streamscore::{Event, ModelUpdate, Runtime, ShadowConfig};
///
/// let rt = Runtime::builder().model_path("models/golden/lgb_binary/model.txt").build()?;
/// let challenger = ModelUpdate::path("models/golden/lgb_binary_sigmoid/model.txt").with_version(2);
/// rt.set_shadow(ShadowConfig::new(challenger).with_threshold(0.5))?;
/// for i in 0..100 {
///     rt.score(Event::new(vec![i as f32 / 100.0; 8]).with_key(i))?;
/// }
/// rt.clear_shadow(); // waits for the shadow's queue to drain
/// let report = rt.metrics().shadow.expect("a shadow ran");
/// assert_eq!(report.compared + report.dropped, 100);
/// # Ok::<(), streamscore::Error>(())
/// ```
#[derive(Debug)]
#[must_use = "a shadow does nothing until `Runtime::set_shadow`"]
pub struct ShadowConfig {
    pub(crate) update: ModelUpdate,
    pub(crate) settings: Settings,
}

/// How a shadow runs, beside which model it runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    fraction: f64,
    queue: usize,
    threshold: f32,
    window: Duration,
    pub(crate) audit: bool,
}

impl ShadowConfig {
    /// The challenger; every event shadowed, a queue of 64 batches, decision threshold 0.5,
    /// windows of 60 s.
    pub fn new(update: ModelUpdate) -> Self {
        let settings = Settings {
            fraction: 1.0,
            queue: 64,
            threshold: 0.5,
            window: Duration::from_secs(60),
            audit: false,
        };
        ShadowConfig { update, settings }
    }

    /// The share of keys shadowed (0..=1): an event is shadowed when its key's hash falls in
    /// that share, so the same keys are chosen every time (events without a key count as key
    /// 0).
    pub fn with_fraction(mut self, fraction: f64) -> Self {
        self.settings.fraction = fraction;
        self
    }

    /// Batches the shadow's queue holds (1..=65,536); beyond it, copies are dropped and counted.
    pub fn with_queue(mut self, batches: usize) -> Self {
        self.settings.queue = batches;
        self
    }

    /// Where a decision flips: primary and shadow disagree on `value >= threshold` (models of
    /// one output; for more, on the arg max).
    pub fn with_threshold(mut self, threshold: f32) -> Self {
        self.settings.threshold = threshold;
        self
    }

    /// Also writes the shadow's answers to the runtime's audit log, beside the primary's, with
    /// `shadow` true; the runtime needs an audit log (`RuntimeBuilder::audit`).
    pub fn with_audit(mut self, audit: bool) -> Self {
        self.settings.audit = audit;
        self
    }

    /// The length of a comparison window (at least 1 ms).
    pub fn with_window(mut self, window: Duration) -> Self {
        self.settings.window = window.max(Duration::from_millis(1));
        self
    }
}

impl Settings {
    pub(crate) fn validate(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.fraction) {
            return Err(Error::Config(format!(
                "shadow fraction {} is not in 0..=1",
                self.fraction
            )));
        }
        if !(1..=1 << 16).contains(&self.queue) {
            return Err(Error::Config(format!("shadow queue {} is not in 1..=65536", self.queue)));
        }
        if !self.threshold.is_finite() {
            return Err(Error::Config("shadow threshold must be finite".into()));
        }
        Ok(())
    }
}

/// Where a key falls in 0..2^64 (Fibonacci hashing: neighbouring keys land far apart). Shadow
/// sampling reads it, so a key's fate is the same on every run.
pub(crate) fn key_hash(key: u64) -> u64 {
    (key ^ (key >> 31)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Pairs a window keeps for its rank correlation (a uniform sample beyond that).
const PAIRS: usize = 1 << 16;
/// Differences are recorded in units of 1e-9 (of the output's own scale).
const DIFF_SCALE: f64 = 1e9;

/// A batch's shadowed rows and the primary's answers for them.
struct Work {
    batch: Batch,
    primary: Vec<f32>,
    /// For the audit log (empty without one): each row's key, event time and acceptance.
    #[cfg_attr(not(feature = "audit"), allow(dead_code))]
    meta: Meta,
}

/// Each shadowed row's key, event time (ms) and acceptance time, for the audit log.
#[derive(Default)]
pub(crate) struct Meta {
    pub keys: Vec<u64>,
    pub times: Vec<i64>,
    pub accepted: Vec<Instant>,
}

impl Meta {
    pub(crate) fn clear(&mut self) {
        self.keys.clear();
        self.times.clear();
        self.accepted.clear();
    }
}

/// A running shadow.
pub(crate) struct Shadow {
    pub version: Arc<Version>,
    /// An event is shadowed when `key_hash(key) < cut` (or always, with `all`).
    cut: u64,
    all: bool,
    tx: Sender<Option<Work>>,
    /// For counting what is left in the queue when the shadow stops.
    rx: Receiver<Option<Work>>,
    /// Column and answer buffers handed back by the shadow's thread.
    spare: Arc<ArrayQueue<(Vec<f32>, Vec<f32>)>>,
    stats: Arc<Mutex<Stats>>,
    dropped: Arc<AtomicU64>,
    closed: AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
    audits: bool,
}

impl Shadow {
    /// Starts the shadow's thread for `version`.
    pub(crate) fn start(
        version: Version,
        config: &Settings,
        output: Output,
        audit: Option<Arc<Audit>>,
    ) -> Result<Self> {
        let audit = audit.filter(|_| config.audit);
        let audits = audit.is_some();
        let (tx, rx) = crossbeam_channel::bounded(config.queue);
        let version = Arc::new(version);
        let spare = Arc::new(ArrayQueue::new(config.queue + 2));
        let stats = Arc::new(Mutex::new(Stats::new(config.window)));
        let dropped = Arc::new(AtomicU64::new(0));
        let worker = Worker {
            version: version.clone(),
            output,
            threshold: config.threshold,
            spare: spare.clone(),
            stats: stats.clone(),
            dropped: dropped.clone(),
            audit,
        };
        let thread = std::thread::Builder::new()
            .name("streamscore-shadow".into())
            .spawn({
                let rx = rx.clone();
                move || worker.run(rx)
            })
            .map_err(|e| Error::Config(format!("cannot start the shadow thread: {e}")))?;
        let all = config.fraction >= 1.0;
        Ok(Shadow {
            version,
            cut: (config.fraction * 2f64.powi(64)) as u64,
            all,
            tx,
            rx,
            spare,
            stats,
            dropped,
            closed: AtomicBool::new(false),
            thread: Mutex::new(Some(thread)),
            audits,
        })
    }

    /// Whether the event with `key` is shadowed.
    #[inline]
    pub(crate) fn wants(&self, key: u64) -> bool {
        self.all || key_hash(key) < self.cut
    }

    pub(crate) fn takes_all(&self) -> bool {
        self.all
    }

    /// Whether its answers go to the audit log (then `offer` wants each row's [`Meta`]).
    pub(crate) fn audits(&self) -> bool {
        self.audits
    }

    /// Hands the shadow a copy of the batch's rows for which `chosen` says yes, with the
    /// primary's answers (`out`, `width` per row). Never blocks: a full queue drops the copy.
    pub(crate) fn offer(
        &self,
        batch: &Batch,
        out: &[f32],
        width: usize,
        chosen: &[bool],
        meta: &Meta,
    ) {
        let n = chosen.iter().filter(|&&c| c).count();
        if n == 0 {
            return;
        }
        if self.closed.load(Ordering::Relaxed) {
            // Scored while the shadow was being stopped.
            self.dropped.fetch_add(n as u64, Ordering::Relaxed);
            return;
        }
        let (mut columns, mut primary) = self.spare.pop().unwrap_or_default();
        columns.clear();
        primary.clear();
        let all = n == batch.n_rows();
        for f in 0..batch.n_features() {
            let column = batch.column(f);
            if all {
                columns.extend_from_slice(column);
            } else {
                columns.extend(column.iter().zip(chosen).filter(|(_, c)| **c).map(|(v, _)| *v));
            }
        }
        if all {
            primary.extend_from_slice(out);
        } else {
            for (row, _) in out.chunks_exact(width).zip(chosen).filter(|(_, c)| **c) {
                primary.extend_from_slice(row);
            }
        }
        let batch = Batch::from_columns(columns, n, batch.n_features()).expect("n rows");
        let mut kept = Meta::default();
        if self.audits {
            for r in (0..meta.keys.len()).filter(|&r| chosen.get(r).copied().unwrap_or(false)) {
                kept.keys.push(meta.keys[r]);
                kept.times.push(meta.times[r]);
                kept.accepted.push(meta.accepted[r]);
            }
        }
        match self.tx.try_send(Some(Work { batch, primary, meta: kept })) {
            Ok(()) => {}
            Err(TrySendError::Full(Some(w)) | TrySendError::Disconnected(Some(w))) => {
                self.dropped.fetch_add(n as u64, Ordering::Relaxed);
                let _ = self.spare.push((w.batch.into_values(), w.primary));
            }
            Err(_) => {}
        }
    }

    /// Stops taking copies, lets the thread compare what is queued, and waits for it.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        let _ = self.tx.send(None);
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
        // A copy queued behind the stop (by a batch scored while stopping) is counted.
        while let Ok(work) = self.rx.try_recv() {
            if let Some(w) = work {
                self.dropped.fetch_add(w.batch.n_rows() as u64, Ordering::Relaxed);
            }
        }
    }

    pub(crate) fn snapshot(&self) -> ShadowSnapshot {
        let stats = lock(&self.stats);
        ShadowSnapshot {
            version: self.version.id(),
            compared: stats.total.rows,
            dropped: self.dropped.load(Ordering::Relaxed),
            window: stats.current.report(true),
            last_window: stats.last.clone(),
            total: stats.total.report(false),
        }
    }
}

/// The shadow's thread.
struct Worker {
    version: Arc<Version>,
    output: Output,
    threshold: f32,
    spare: Arc<ArrayQueue<(Vec<f32>, Vec<f32>)>>,
    stats: Arc<Mutex<Stats>>,
    dropped: Arc<AtomicU64>,
    #[cfg_attr(not(feature = "audit"), allow(dead_code))]
    audit: Option<Arc<Audit>>,
}

impl Worker {
    fn run(self, rx: Receiver<Option<Work>>) {
        let mut out = Vec::new();
        while let Ok(Some(work)) = rx.recv() {
            let n = work.batch.n_rows();
            let width = self.version.out_width;
            out.clear();
            out.resize(n * width, 0.0);
            match self.version.backend.score_batch(&work.batch, self.output, &mut out) {
                Ok(()) => {
                    lock(&self.stats).add(&work.primary, &out, width, self.threshold);
                    #[cfg(feature = "audit")]
                    if let Some(log) = &self.audit {
                        record(log, &work, &out, width, self.version.id());
                    }
                }
                Err(e) => {
                    self.dropped.fetch_add(n as u64, Ordering::Relaxed);
                    log::warn!("the shadow failed on a batch of {n}: {e}");
                }
            }
            let _ = self.spare.push((work.batch.into_values(), work.primary));
        }
    }
}

/// Writes a shadow batch's answers to the audit log, with role `shadow`.
#[cfg(feature = "audit")]
fn record(log: &Audit, work: &Work, out: &[f32], width: usize, version: u64) {
    use crate::audit::{Inputs, Meta as Record};
    let n = work.batch.n_rows();
    if work.meta.keys.len() != n {
        return;
    }
    let answered = Instant::now();
    let mut records = log.records(n);
    records.shadow = true;
    for r in 0..n {
        let event = (work.meta.keys[r], work.meta.times[r], work.meta.accepted[r]);
        let meta = Record::scored(event, answered, version, None);
        let inputs = Inputs::Column { values: work.batch.as_slice(), n, row: r };
        log.push(&mut records, meta, inputs, None, Some(&out[r * width..(r + 1) * width]));
    }
    log.send(records);
}

/// Differences and flips over a span of events.
struct Tally {
    rows: u64,
    abs: Histogram<u64>,
    rel: Histogram<u64>,
    flips: u64,
    /// (primary, shadow) first outputs: all of them up to `PAIRS`, then a uniform sample.
    pairs: Vec<(f32, f32)>,
    seen: u64,
    rng: u64,
}

fn diff_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 1 << 62, 3).expect("valid static bounds")
}

impl Tally {
    fn new() -> Self {
        Tally {
            rows: 0,
            abs: diff_histogram(),
            rel: diff_histogram(),
            flips: 0,
            pairs: Vec::new(),
            seen: 0,
            rng: 0x5eed,
        }
    }

    fn pair(&mut self, a: f32, b: f32) {
        self.seen += 1;
        if self.pairs.len() < PAIRS {
            self.pairs.push((a, b));
            return;
        }
        // Reservoir sampling (xorshift: reproducible).
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let j = self.rng % self.seen;
        if (j as usize) < PAIRS {
            self.pairs[j as usize] = (a, b);
        }
    }

    fn report(&self, with_rank: bool) -> ShadowWindow {
        let q = |h: &Histogram<u64>| {
            if h.is_empty() {
                return [0.0; 3];
            }
            [h.value_at_quantile(0.5), h.value_at_quantile(0.99), h.max()]
                .map(|v| (v - 1) as f64 / DIFF_SCALE)
        };
        ShadowWindow {
            rows: self.rows,
            abs_diff: q(&self.abs),
            rel_diff: q(&self.rel),
            flips: self.flips,
            spearman: if with_rank { spearman(&self.pairs) } else { None },
        }
    }
}

struct Stats {
    window: Duration,
    started: Instant,
    current: Tally,
    last: Option<ShadowWindow>,
    total: Tally,
}

impl Stats {
    fn new(window: Duration) -> Self {
        Stats {
            window,
            started: Instant::now(),
            current: Tally::new(),
            last: None,
            total: Tally::new(),
        }
    }

    fn add(&mut self, primary: &[f32], shadow: &[f32], width: usize, threshold: f32) {
        if self.started.elapsed() >= self.window {
            let done = std::mem::replace(&mut self.current, Tally::new());
            self.last = Some(done.report(true));
            self.started = Instant::now();
        }
        for (p, s) in primary.chunks_exact(width).zip(shadow.chunks_exact(width)) {
            let (mut abs, mut rel) = (0f64, 0f64);
            for (&a, &b) in p.iter().zip(s) {
                let d = (f64::from(a) - f64::from(b)).abs();
                let r = if a == 0.0 { d } else { d / f64::from(a).abs() };
                // NaN on either side counts as no difference here; it is the same input.
                if d.is_finite() {
                    abs = abs.max(d);
                    rel = rel.max(r);
                }
            }
            let flip = if width == 1 {
                (p[0] >= threshold) != (s[0] >= threshold)
            } else {
                argmax(p) != argmax(s)
            };
            for t in [&mut self.current, &mut self.total] {
                t.rows += 1;
                t.abs.saturating_record((abs * DIFF_SCALE) as u64 + 1);
                t.rel.saturating_record((rel * DIFF_SCALE) as u64 + 1);
                t.flips += u64::from(flip);
            }
            self.current.pair(p[0], s[0]);
        }
    }
}

fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

/// Spearman's rank correlation (Pearson's over average ranks, so ties count right); `None`
/// below 2 pairs or when either side is constant.
fn spearman(pairs: &[(f32, f32)]) -> Option<f64> {
    if pairs.len() < 2 {
        return None;
    }
    let ra = ranks(pairs.iter().map(|p| p.0));
    let rb = ranks(pairs.iter().map(|p| p.1));
    let n = ra.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let (mut cov, mut va, mut vb) = (0.0, 0.0, 0.0);
    for (a, b) in ra.iter().zip(&rb) {
        cov += (a - ma) * (b - mb);
        va += (a - ma) * (a - ma);
        vb += (b - mb) * (b - mb);
    }
    (va > 0.0 && vb > 0.0).then(|| cov / (va * vb).sqrt())
}

/// 1-based ranks, ties given their average rank (NaN ranks last).
fn ranks(values: impl Iterator<Item = f32>) -> Vec<f64> {
    let v: Vec<f32> = values.collect();
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
    let mut ranks = vec![0.0; v.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && v[order[j + 1]] == v[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = rank;
        }
        i = j + 1;
    }
    ranks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spearman_matches_a_hand_computation() {
        // Ranks (1,2,3,4,5) against (2,1,4,3,5): 1 - 6 * 4 / (5 * 24) = 0.8.
        let pairs = [(1.0, 2.0), (2.0, 1.0), (3.0, 4.0), (4.0, 3.0), (5.0, 5.0)];
        assert!((spearman(&pairs).unwrap() - 0.8).abs() < 1e-12);
        // Ties take their average rank; a constant side has no correlation.
        assert_eq!(ranks([1.0, 1.0, 3.0].into_iter()), vec![1.5, 1.5, 3.0]);
        assert_eq!(spearman(&[(1.0, 2.0), (2.0, 2.0)]), None);
    }

    #[test]
    fn key_sampling_takes_about_its_share_and_is_reproducible() {
        let cut = (0.25 * 2f64.powi(64)) as u64;
        let taken = (0..100_000u64).filter(|&k| key_hash(k) < cut).count();
        assert!((23_000..27_000).contains(&taken), "{taken}");
        assert_eq!(key_hash(42), key_hash(42));
    }

    #[test]
    fn flips_and_differences_are_counted() {
        let mut s = Stats::new(Duration::from_secs(60));
        s.add(&[0.2, 0.6, 0.9], &[0.3, 0.4, 0.9], 1, 0.5);
        let r = s.current.report(true);
        assert_eq!((r.rows, r.flips), (3, 1));
        assert!((r.abs_diff[2] - 0.2).abs() < 1e-3, "{:?}", r.abs_diff);
    }
}
