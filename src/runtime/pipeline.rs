//! The runtime's threads: one batcher (queue -> columnar batches) that either scores each
//! batch itself (one worker) or hands it through a small bounded channel to N worker threads
//! (batch -> backend -> replies), filling the next batch while they score.
//!
//! Invariant: every `Job` taken off the queue is answered exactly once, by `Shared::fail`
//! (expired, shed, no worker), a `Scorer`'s reply loop, or (if a scorer panics) its
//! `Responder`'s drop.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};
use std::task::Waker;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use crossbeam_queue::{ArrayQueue, SegQueue};
use crossbeam_utils::CachePadded;

use crate::backend::Backend;
use crate::batch::Batch;
use crate::batch::batcher::Batcher;
use crate::error::Error;
use crate::ingest::Job;
use crate::ingest::reply::{Score, SlotPool, Timing};
use crate::metrics::{Metrics, Stage};

use super::config::RuntimeConfig;

/// The batcher takes at most this many events per drain round before re-checking its flush
/// deadline, so a flood cannot delay a due flush.
const DRAIN_ROUND: usize = 4096;

/// State shared by producers, the batcher and the workers.
pub(crate) struct Shared {
    pub tx: Sender<Option<Job>>,
    /// Producers use it to shed the oldest event; the batcher holds a clone.
    pub rx: Receiver<Option<Job>>,
    pub slots: Arc<SlotPool>,
    pub rows: ArrayQueue<Vec<f32>>,
    pub spare_columns: ArrayQueue<Vec<f32>>,
    pub spare_jobs: ArrayQueue<Vec<Job>>,
    /// Wakers of async submitters waiting for room in the queue.
    pub room: SegQueue<Waker>,
    pub closed: AtomicBool,
    /// Producers between their `closed` check and the end of their send: the batcher drains
    /// until this is zero, so shutdown never strands an accepted event.
    pub in_submit: CachePadded<AtomicUsize>,
    /// Recent scoring time of one batch (ns), for deadline decisions.
    pub scoring_estimate_ns: AtomicU64,
    pub metrics: Metrics,
    /// The validated configuration.
    pub config: RuntimeConfig,
    /// Width of an accepted row (the backend's, or the feature spec's raw fields).
    pub width: usize,
    /// The feature stage between batcher and backend, if any (only the batcher locks it).
    pub features: Option<std::sync::Mutex<crate::features::Features>>,
    pub out_width: usize,
    /// `config.model_version`, defaulted.
    pub model_version: u64,
}

impl Shared {
    /// Answers an event that cannot meet its deadline; its row buffer goes back to the pool.
    pub(crate) fn expire(&self, job: Job, now: Instant) {
        let waited = now.saturating_duration_since(job.accepted);
        self.fail(job, Error::Expired { waited }, &self.metrics.counters.expired);
    }

    /// Answers an accepted event with `error` instead of a score, counting it in `counter`;
    /// its row buffer (if it still has one) goes back to the pool.
    pub(crate) fn fail(&self, job: Job, error: Error, counter: &AtomicU64) {
        self.recycle_row(job.row);
        job.reply.send(Err(error));
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn recycle_row(&self, row: Vec<f32>) {
        if row.capacity() > 0 {
            let _ = self.rows.push(row);
        }
    }

    /// Wakes every async submitter waiting for room.
    pub(crate) fn wake_room(&self) {
        // Pairs with the fence in `RoomWait::poll`: either we see its waker or it sees room.
        fence(Ordering::SeqCst);
        while let Some(w) = self.room.pop() {
            w.wake();
        }
    }
}

/// A batch on its way to a worker.
pub(crate) struct Work {
    batch: Batch,
    jobs: Vec<Job>,
}

/// Where the batcher's batches go.
pub(crate) enum Sink {
    /// The batcher scores each batch itself (one worker): no hand-off, one thread fewer to
    /// schedule; events keep queueing while it scores.
    Inline(Scorer),
    /// Handed to worker threads; the batcher fills the next batch while they score.
    Workers(Sender<Work>),
}

pub(crate) fn spawn_batcher(
    sh: Arc<Shared>,
    sink: Sink,
) -> std::io::Result<thread::JoinHandle<()>> {
    thread::Builder::new().name("streamscore-batcher".into()).spawn(move || batcher_loop(&sh, sink))
}

pub(crate) fn spawn_worker(
    sh: Arc<Shared>,
    backend: Arc<dyn Backend>,
    work: Receiver<Work>,
    index: usize,
) -> std::io::Result<thread::JoinHandle<()>> {
    thread::Builder::new()
        .name(format!("streamscore-worker-{index}"))
        .spawn(move || worker_loop(&sh, Scorer::new(backend, index + 1), work))
}

/// Linux wakes a thread from a timed wait up to its timer slack (50 µs by default) late; the
/// batcher's flush deadlines are in that range, so it asks for 1 µs.
fn tighten_timer_slack() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_TIMERSLACK only changes this thread's timer slack; it takes no pointers.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
    }
}

fn batcher_loop(sh: &Shared, mut sink: Sink) {
    tighten_timer_slack();
    let rx = sh.rx.clone();
    let mut b: Batcher<Job> = Batcher::new(sh.config.max_batch.get(), sh.config.max_delay);
    let mut draining = false;
    let mut expired = Vec::new();
    loop {
        b.set_scoring_estimate(Duration::from_nanos(
            sh.scoring_estimate_ns.load(Ordering::Relaxed),
        ));
        let first = if draining {
            rx.try_recv().ok()
        } else {
            match b.flush_at() {
                Some(t) => match rx.recv_deadline(t) {
                    Ok(m) => Some(m),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => unreachable!("Shared holds a sender"),
                },
                None => rx.recv().ok(),
            }
        };
        let mut now = Instant::now();
        let mut got = 0;
        let mut next = first;
        while let Some(msg) = next {
            match msg {
                None => draining = true,
                Some(mut job) => {
                    got += 1;
                    job.popped = now;
                    if let Err(job) = b.admit(job, now) {
                        sh.expire(job, now);
                    }
                    if b.is_full() {
                        flush(sh, &mut b, &mut sink, now, &mut expired);
                        now = Instant::now();
                    }
                }
            }
            next = if got < DRAIN_ROUND {
                match rx.try_recv() {
                    Ok(m) => Some(m),
                    Err(TryRecvError::Empty) => None,
                    Err(TryRecvError::Disconnected) => unreachable!("Shared holds a sender"),
                }
            } else {
                None
            };
        }
        if got > 0 && !sh.room.is_empty() {
            sh.wake_room();
        }
        if b.flush_due(now) || (draining && !b.is_empty()) {
            flush(sh, &mut b, &mut sink, now, &mut expired);
        }
        if draining && got == 0 {
            // Exit only when no producer can still send: `in_submit` is read after `closed`
            // was set (SeqCst), so any later producer sees `closed` and refuses.
            if b.is_empty() && sh.in_submit.load(Ordering::SeqCst) == 0 && rx.is_empty() {
                break;
            }
            sh.wake_room();
            thread::yield_now();
        }
    }
    // Dropping the sink lets the workers finish the batches in flight and exit.
}

fn flush(sh: &Shared, b: &mut Batcher<Job>, sink: &mut Sink, now: Instant, expired: &mut Vec<Job>) {
    let mut jobs =
        sh.spare_jobs.pop().unwrap_or_else(|| Vec::with_capacity(sh.config.max_batch.get()));
    b.take(now, &mut jobs, expired);
    for job in expired.drain(..) {
        sh.expire(job, now);
    }
    if jobs.is_empty() {
        let _ = sh.spare_jobs.push(jobs);
        return;
    }
    let (n, width) = (jobs.len(), sh.width);
    let mut columns = sh.spare_columns.pop().unwrap_or_default();
    columns.clear();
    columns.resize(n * width, 0.0);
    for (r, job) in jobs.iter_mut().enumerate() {
        // Every row was checked to be `width` long when it was accepted.
        for (f, &v) in job.row.iter().enumerate() {
            columns[f * n + r] = v;
        }
        sh.recycle_row(std::mem::take(&mut job.row));
    }
    sh.metrics.with(0, |rec| {
        for job in &jobs {
            rec.record(Stage::Queue, job.popped.saturating_duration_since(job.accepted));
            rec.record(Stage::Batching, now.saturating_duration_since(job.popped));
        }
    });
    let mut batch = Batch::from_columns(columns, n, width).expect("length is n * width");
    if let Some(stage) = &sh.features {
        match features(sh, stage, batch, &mut jobs) {
            Some(b) => batch = b,
            None => {
                let _ = sh.spare_jobs.push(jobs);
                return;
            }
        }
    }
    let work = match sink {
        Sink::Inline(scorer) => return scorer.score(sh, Work { batch, jobs }),
        Sink::Workers(work) => work,
    };
    // Blocks while every worker is busy and the hand-off slot is taken: backpressure reaches
    // the queue, which keeps accepting until it is full.
    if let Err(failed) = work.send(Work { batch, jobs }) {
        // Every worker is gone (they only exit when this sender drops, or by panicking):
        // answer the batch rather than lose it.
        for job in failed.0.jobs {
            let message = "no scoring worker is running".to_string();
            sh.fail(
                job,
                Error::Backend { backend: "runtime", message },
                &sh.metrics.counters.errors,
            );
        }
    }
}

/// Runs the feature stage over a raw batch: answers the events it refuses, drops them from
/// `jobs`, and returns the feature batch of the rest (`None` when none is left).
fn features(
    sh: &Shared,
    stage: &std::sync::Mutex<crate::features::Features>,
    raw: Batch,
    jobs: &mut Vec<Job>,
) -> Option<Batch> {
    let keys: Vec<u64> = jobs.iter().map(|j| j.key).collect();
    let times: Vec<i64> = jobs.iter().map(|j| j.time_ms).collect();
    let mut out = crate::features::Output::default();
    let mut stage = stage.lock().unwrap_or_else(|p| p.into_inner());
    let n_out = stage.spec().names.len();
    let result = stage.transform(&raw, &keys, &times, &mut out);
    drop(stage);
    let n = jobs.len();
    if let Err(e) = result {
        // Widths were checked when the runtime started; answer rather than lose the batch.
        for job in jobs.drain(..) {
            let error = Error::Backend { backend: "features", message: e.to_string() };
            sh.fail(job, error, &sh.metrics.counters.errors);
        }
        return None;
    }
    if out.errors.is_empty() {
        return Some(Batch::from_columns(out.values, n, n_out).expect("n * n_out values"));
    }
    let mut refused = vec![false; n];
    let mut kept = Vec::with_capacity(n);
    for (r, e) in out.errors.drain(..).rev() {
        refused[r] = true;
        let job = jobs.remove(r);
        sh.fail(job, e, &sh.metrics.counters.errors);
    }
    let live: Vec<usize> = (0..n).filter(|&r| !refused[r]).collect();
    for c in 0..n_out {
        kept.extend(live.iter().map(|&r| out.values[c * n + r]));
    }
    (!live.is_empty())
        .then(|| Batch::from_columns(kept, live.len(), n_out).expect("rows * n_out values"))
}

/// Scores batches and answers their events; owned by one thread.
pub(crate) struct Scorer {
    backend: Arc<dyn Backend>,
    recorder: usize,
    out: Vec<f32>,
    keep: Vec<bool>,
}

impl Scorer {
    /// A scorer recording its metrics into recorder `recorder`.
    pub(crate) fn new(backend: Arc<dyn Backend>, recorder: usize) -> Self {
        Scorer { backend, recorder, out: Vec::new(), keep: Vec::new() }
    }

    fn score(&mut self, sh: &Shared, Work { mut batch, mut jobs }: Work) {
        let backend = &*self.backend;
        let (out, keep) = (&mut self.out, &mut self.keep);
        let ow = sh.out_width;
        let t0 = Instant::now();
        // Deadlines that passed while the batch waited for a scorer: drop those rows before
        // spending model time on them.
        if jobs.iter().any(|j| j.deadline.is_some_and(|d| d <= t0)) {
            keep.clear();
            keep.extend(jobs.iter().map(|j| j.deadline.is_none_or(|d| d > t0)));
            batch.retain_rows(keep);
            let mut k = keep.iter();
            for job in std::mem::take(&mut jobs) {
                if *k.next().expect("one flag per job") {
                    jobs.push(job);
                } else {
                    sh.expire(job, t0);
                }
            }
        }
        let n = jobs.len();
        if n > 0 {
            out.clear();
            out.resize(n * ow, 0.0);
            let result = backend.score_batch(&batch, sh.config.output, out);
            let t1 = Instant::now();
            let scoring = t1 - t0;
            let old = sh.scoring_estimate_ns.load(Ordering::Relaxed);
            let new = (old * 7 + scoring.as_nanos() as u64) / 8;
            sh.scoring_estimate_ns
                .store(if old == 0 { scoring.as_nanos() as u64 } else { new }, Ordering::Relaxed);
            let counters = &sh.metrics.counters;
            sh.metrics.with(self.recorder, |rec| {
                rec.record(Stage::Scoring, scoring);
                rec.record_batch(n);
                match &result {
                    Ok(()) => {
                        for (job, values) in jobs.drain(..).zip(out.chunks_exact(ow)) {
                            let total = t1.saturating_duration_since(job.accepted);
                            rec.record(Stage::EndToEnd, total);
                            let queued = t0.saturating_duration_since(job.accepted);
                            let timing = Timing { queued, scoring, batch_rows: n as u32, total };
                            job.reply.send(Ok(Score::new(values, sh.model_version, timing)));
                        }
                        counters.scored.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Err(e) => {
                        for job in jobs.drain(..) {
                            let message = e.to_string();
                            job.reply
                                .send(Err(Error::Backend { backend: backend.name(), message }));
                        }
                        counters.errors.fetch_add(n as u64, Ordering::Relaxed);
                    }
                }
            });
            counters.batches.fetch_add(1, Ordering::Relaxed);
        }
        let _ = sh.spare_columns.push(batch.into_values());
        let _ = sh.spare_jobs.push(jobs);
    }
}

fn worker_loop(sh: &Shared, mut scorer: Scorer, work: Receiver<Work>) {
    while let Ok(w) = work.recv() {
        scorer.score(sh, w);
    }
}
