//! The one pipeline every runtime runs, generic over what is queued ([`Flow`]): admission and
//! the overload policy, the bounded queue, the deadline batcher, the hand-off to N workers,
//! pooled reply slots, metrics and shutdown are written once. Rows (`Runtime`) and frames
//! (`FrameRuntime`) are two flows; what differs between them is a flow's `prepare` (in the
//! batcher thread, in acceptance order: column transposition and the feature stage; frame
//! preprocessing and motion gating) and `score` (in a worker: the backend, the answers).
//!
//! Invariant: every `Job` taken off the queue is answered exactly once, by `Shared::fail`
//! (expired, shed, no worker), a flow's `prepare` or `score`, or (if either panics) its
//! `Responder`'s drop.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError, TrySendError};
use crossbeam_queue::{ArrayQueue, SegQueue};
use crossbeam_utils::CachePadded;

use crate::batch::batcher::{Batcher, Queued};
use crate::error::{Error, Result};
use crate::ingest::reply::Responder;
use crate::metrics::{Busy, Metrics, MetricsSnapshot, Stage};

use super::config::{Overload, RuntimeConfig};

/// The batcher takes at most this many events per drain round before re-checking its flush
/// deadline, so a flood cannot delay a due flush.
const DRAIN_ROUND: usize = 4096;

/// What one kind of queued item needs from the pipeline. Everything else is shared.
pub(crate) trait Flow: Send + Sync + Sized + 'static {
    /// What a producer hands over, validated (a row in a pooled buffer; a frame).
    type Payload: Send + 'static;
    /// The runtime's end of an accepted item's reply slot.
    type Reply: Reply;
    /// A prepared batch on its way to a scorer, owning its jobs.
    type Work: Send + 'static;
    /// One scoring thread's state (output buffers).
    type Scorer: Send + 'static;

    /// Takes back the buffers of a payload that will not be scored (expired, shed, refused).
    fn recycle(&self, payload: Self::Payload);

    /// Records an accepted item answered with `error` instead of a score (the audit log), just
    /// before it is answered.
    fn failed(&self, _job: &Job<Self>, _error: &Error) {}

    /// Events in a payload (a set of events counts each), for the counters and the batch size.
    fn events(payload: &Self::Payload) -> usize;

    /// Lets go of the flow's pools when the pipeline is dropped (they and their slots refer to
    /// each other).
    fn close(&self);

    /// Runs in the batcher thread, in acceptance order, on each flushed batch (never empty):
    /// builds its work, answering the jobs it refuses or completes itself. `None` when no job
    /// is left to score.
    fn prepare(&self, sh: &Shared<Self>, jobs: Vec<Job<Self>>, now: Instant) -> Option<Self::Work>;

    /// A scorer recording its metrics into recorder `recorder`.
    fn scorer(&self, recorder: usize) -> Self::Scorer;

    /// Scores `work` and answers every one of its jobs.
    fn score(&self, sh: &Shared<Self>, scorer: &mut Self::Scorer, work: Self::Work);

    /// The jobs of `work`, unscored (no scoring worker is left: the pipeline answers them).
    fn jobs(work: Self::Work) -> Vec<Job<Self>>;
}

/// The runtime's end of a reply: answered once by its flow, or failed or withdrawn by the
/// pipeline.
pub(crate) trait Reply: Send + 'static {
    /// Answers with `error` (every event of the item, for a set).
    fn fail(self, error: Error);
    /// Withdraws an item that was never queued.
    fn cancel(self);
}

impl<T: Send + 'static> Reply for Responder<T> {
    fn fail(self, error: Error) {
        self.send(Err(error));
    }
    fn cancel(self) {
        Responder::cancel(self);
    }
}

/// One accepted item on its way through the pipeline.
pub(crate) struct Job<F: Flow> {
    pub payload: F::Payload,
    pub deadline: Option<Instant>,
    pub accepted: Instant,
    /// When the batcher took it off the queue.
    pub popped: Instant,
    pub reply: F::Reply,
}

impl<F: Flow> Queued for Job<F> {
    fn accepted(&self) -> Instant {
        self.accepted
    }
    fn deadline(&self) -> Option<Instant> {
        self.deadline
    }
    fn rows(&self) -> usize {
        F::events(&self.payload)
    }
}

/// State shared by producers, the batcher and the workers.
pub(crate) struct Shared<F: Flow> {
    pub flow: F,
    tx: Sender<Option<Job<F>>>,
    /// Producers use it to shed the oldest item; the batcher holds a clone.
    rx: Receiver<Option<Job<F>>>,
    pub spare_jobs: ArrayQueue<Vec<Job<F>>>,
    /// Wakers of async submitters waiting for room in the queue.
    room: SegQueue<Waker>,
    closed: AtomicBool,
    /// Producers between their `closed` check and the end of their send: the batcher drains
    /// until this is zero, so shutdown never strands an accepted item.
    in_submit: CachePadded<AtomicUsize>,
    /// Recent scoring time of one batch (ns), for deadline decisions.
    scoring_estimate_ns: AtomicU64,
    pub metrics: Metrics,
    /// The validated configuration.
    pub config: RuntimeConfig,
}

impl<F: Flow> Shared<F> {
    /// Answers an item that cannot meet its deadline.
    pub(crate) fn expire(&self, job: Job<F>, now: Instant) {
        let waited = now.saturating_duration_since(job.accepted);
        self.fail(job, Error::Expired { waited }, &self.metrics.counters.expired);
    }

    /// Answers an accepted item with `error` instead of a score, counting its events in
    /// `counter`; its payload goes back to the flow.
    pub(crate) fn fail(&self, job: Job<F>, error: Error, counter: &AtomicU64) {
        counter.fetch_add(F::events(&job.payload) as u64, Ordering::Relaxed);
        self.flow.failed(&job, &error);
        self.flow.recycle(job.payload);
        job.reply.fail(error);
    }

    /// Feeds one batch's scoring time into the estimate the batcher's deadline rule uses.
    pub(crate) fn note_scoring(&self, scoring: Duration) {
        let ns = scoring.as_nanos() as u64;
        let old = self.scoring_estimate_ns.load(Ordering::Relaxed);
        let new = if old == 0 { ns } else { (old * 7 + ns) / 8 };
        self.scoring_estimate_ns.store(new, Ordering::Relaxed);
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Wakes every async submitter waiting for room.
    fn wake_room(&self) {
        // Pairs with the fence in `RoomWait::poll`: either we see its waker or it sees room.
        fence(Ordering::SeqCst);
        while let Some(w) = self.room.pop() {
            w.wake();
        }
    }
}

/// The queue, batcher and workers of one flow, and the ways in.
pub(crate) struct Pipeline<F: Flow> {
    pub shared: Arc<Shared<F>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl<F: Flow> Pipeline<F> {
    /// Validates `config` and starts the batcher and worker threads.
    pub(crate) fn start(flow: F, config: RuntimeConfig) -> Result<Self> {
        config.validate()?;
        let (tx, rx) = crossbeam_channel::bounded(config.queue_capacity.get());
        let workers = config.workers.get();
        let shared = Arc::new(Shared {
            flow,
            tx,
            rx,
            spare_jobs: ArrayQueue::new(workers + 2),
            room: SegQueue::new(),
            closed: AtomicBool::new(false),
            in_submit: Default::default(),
            scoring_estimate_ns: AtomicU64::new(0),
            metrics: Metrics::new(workers + 1),
            config,
        });
        let mut threads = Vec::with_capacity(workers + 1);
        let spawned = (|| {
            let sink = if workers == 1 {
                Sink::Inline(shared.flow.scorer(0))
            } else {
                // One batch waits per worker while the next one fills in the batcher.
                let (work_tx, work_rx) = crossbeam_channel::bounded(workers);
                for i in 0..workers {
                    let (sh, rx) = (shared.clone(), work_rx.clone());
                    let t = thread::Builder::new()
                        .name(format!("streamscore-worker-{i}"))
                        .spawn(move || worker_loop(&sh, rx, i + 1))?;
                    threads.push(t);
                }
                Sink::Workers(work_tx)
            };
            let sh = shared.clone();
            let t = thread::Builder::new()
                .name("streamscore-batcher".into())
                .spawn(move || batcher_loop(&sh, sink))?;
            threads.push(t);
            std::io::Result::Ok(())
        })();
        let pipeline = Pipeline { shared, threads: Mutex::new(threads) };
        spawned.map_err(|e| Error::Config(format!("cannot start runtime threads: {e}")))?;
        Ok(pipeline)
    }

    /// Opens a submission: marks the producer as inside one (the batcher drains until it
    /// leaves, so shutdown cannot strand the job), refuses a closed pipeline, and pairs a reply
    /// slot (`pair`: the caller's end and the runtime's) with the job for `payload`.
    #[inline]
    fn open<T>(
        &self,
        payload: F::Payload,
        deadline: Option<Instant>,
        pair: impl FnOnce(&F) -> (T, F::Reply),
    ) -> Result<Opened<'_, F, T>, (Error, F::Payload)> {
        let sh = &*self.shared;
        let entered = Entered::new(sh);
        if sh.closed.load(Ordering::SeqCst) {
            return Err((Error::Closed, payload));
        }
        let (ticket, reply) = pair(&sh.flow);
        let accepted = Instant::now();
        Ok((entered, ticket, Job { payload, deadline, accepted, popped: accepted, reply }))
    }

    /// Queues a validated payload without blocking. A full queue (under the `block` and
    /// `reject` policies) or a closed pipeline hands it back with the reason; refusals are
    /// not counted here (see [`Pipeline::rejected`]).
    #[inline]
    pub(crate) fn offer<T>(
        &self,
        payload: F::Payload,
        deadline: Option<Instant>,
        pair: impl FnOnce(&F) -> (T, F::Reply),
    ) -> Result<T, (Error, F::Payload)> {
        let sh = &*self.shared;
        let (_entered, ticket, mut job) = self.open(payload, deadline, pair)?;
        let events = F::events(&job.payload) as u64;
        loop {
            match sh.tx.try_send(Some(job)) {
                Ok(()) => {
                    sh.metrics.counters.accepted.fetch_add(events, Ordering::Relaxed);
                    return Ok(ticket);
                }
                Err(TrySendError::Full(back)) => {
                    job = back.expect("we sent Some");
                    if sh.config.overload == Overload::ShedOldest
                        && let Ok(Some(old)) = sh.rx.try_recv()
                    {
                        sh.fail(old, Error::Shed, &sh.metrics.counters.shed);
                        continue;
                    }
                    job.reply.cancel();
                    return Err((Error::QueueFull, job.payload));
                }
                Err(TrySendError::Disconnected(_)) => unreachable!("Shared holds a receiver"),
            }
        }
    }

    /// Queues a validated payload, waiting for room under the `block` policy (other policies
    /// answer as [`offer`](Pipeline::offer) does).
    pub(crate) fn offer_waiting<T>(
        &self,
        payload: F::Payload,
        deadline: Option<Instant>,
        pair: impl FnOnce(&F) -> (T, F::Reply),
    ) -> Result<T, (Error, F::Payload)> {
        let sh = &*self.shared;
        if sh.config.overload != Overload::Block {
            return self.offer(payload, deadline, pair);
        }
        let (_entered, ticket, job) = self.open(payload, deadline, pair)?;
        let events = F::events(&job.payload) as u64;
        // Blocking send: `_entered` keeps the batcher draining, so this cannot wait forever.
        if sh.tx.send(Some(job)).is_err() {
            unreachable!("Shared holds a receiver");
        }
        sh.metrics.counters.accepted.fetch_add(events, Ordering::Relaxed);
        Ok(ticket)
    }

    /// Queues a payload, awaiting room (without blocking the executor) under the `block`
    /// policy, then awaits its answer. Works with any async runtime.
    pub(crate) async fn submit<A, T: Future<Output = Result<A>>>(
        &self,
        payload: F::Payload,
        deadline: Option<Instant>,
        pair: impl Fn(&F) -> (T, F::Reply),
    ) -> Result<A> {
        let mut payload = payload;
        loop {
            match self.offer(payload, deadline, &pair) {
                Ok(ticket) => return ticket.await,
                Err((Error::QueueFull, back)) if self.shared.config.overload == Overload::Block => {
                    payload = back;
                    RoomWait { shared: &self.shared, registered: false }.await;
                }
                Err((error, back)) => {
                    let n = F::events(&back) as u64;
                    self.shared.flow.recycle(back);
                    return Err(self.rejected_n(error, n));
                }
            }
        }
    }

    /// Counts a refusal and passes its error on.
    pub(crate) fn rejected(&self, error: Error) -> Error {
        self.rejected_n(error, 1)
    }

    /// Counts the refusal of `n` events and passes its error on.
    pub(crate) fn rejected_n(&self, error: Error, n: u64) -> Error {
        self.count_rejected(n);
        error
    }

    /// Counts `n` refused events.
    pub(crate) fn count_rejected(&self, n: u64) {
        if n > 0 {
            self.shared.metrics.counters.rejected.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// A snapshot of every counter and histogram.
    pub(crate) fn metrics(&self) -> MetricsSnapshot {
        self.shared.metrics.snapshot()
    }

    /// Stops intake and returns once every accepted item has been answered and the threads
    /// have exited. Idempotent; concurrent callers all wait for the drain.
    pub(crate) fn shutdown(&self) {
        let mut threads = self.threads.lock().unwrap_or_else(PoisonError::into_inner);
        if !self.shared.closed.swap(true, Ordering::SeqCst) {
            // Wakes a batcher blocked on an empty queue; it then drains and exits.
            let _ = self.shared.tx.send(None);
        }
        for t in threads.drain(..) {
            // A panicked thread's jobs were answered by their responders' drop.
            let _ = t.join();
        }
        self.shared.wake_room();
    }
}

impl<F: Flow> Drop for Pipeline<F> {
    fn drop(&mut self) {
        self.shutdown();
        self.shared.flow.close();
    }
}

/// An open submission: the producer's mark, the caller's ticket and the job to queue.
type Opened<'a, F, T> = (Entered<'a, F>, T, Job<F>);

/// Marks a producer as inside a submission (see `Shared::in_submit`).
struct Entered<'a, F: Flow>(&'a Shared<F>);

impl<'a, F: Flow> Entered<'a, F> {
    fn new(shared: &'a Shared<F>) -> Self {
        shared.in_submit.fetch_add(1, Ordering::SeqCst);
        Entered(shared)
    }
}

impl<F: Flow> Drop for Entered<'_, F> {
    fn drop(&mut self) {
        self.0.in_submit.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Resolves once the queue may have room (or the pipeline closed); the caller retries.
struct RoomWait<'a, F: Flow> {
    shared: &'a Shared<F>,
    registered: bool,
}

impl<F: Flow> Future for RoomWait<'_, F> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.registered {
            return Poll::Ready(());
        }
        self.shared.room.push(cx.waker().clone());
        self.registered = true;
        // Pairs with the fence in `Shared::wake_room`.
        fence(Ordering::SeqCst);
        if !self.shared.tx.is_full() || self.shared.closed.load(Ordering::SeqCst) {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

/// Where the batcher's prepared batches go.
enum Sink<F: Flow> {
    /// The batcher scores each batch itself (one worker): no hand-off, one thread fewer to
    /// schedule; items keep queueing while it scores.
    Inline(F::Scorer),
    /// Handed to worker threads; the batcher fills the next batch while they score.
    Workers(Sender<F::Work>),
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

fn batcher_loop<F: Flow>(sh: &Shared<F>, mut sink: Sink<F>) {
    tighten_timer_slack();
    let rx = sh.rx.clone();
    let mut b: Batcher<Job<F>> = Batcher::new(sh.config.max_batch.get(), sh.config.max_delay);
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
        let round = now;
        // Time spent flushing inside this round: not intake.
        let mut flushing = Duration::ZERO;
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
                        let started = Instant::now();
                        flush(sh, &mut b, &mut sink, now, &mut expired);
                        now = Instant::now();
                        flushing += now - started;
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
        if got > 0 {
            now = Instant::now();
            sh.metrics.counters.busy(Busy::Intake, (now - round).saturating_sub(flushing));
            if !sh.room.is_empty() {
                sh.wake_room();
            }
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

fn flush<F: Flow>(
    sh: &Shared<F>,
    b: &mut Batcher<Job<F>>,
    sink: &mut Sink<F>,
    now: Instant,
    expired: &mut Vec<Job<F>>,
) {
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
    sh.metrics.with(0, |rec| {
        for job in &jobs {
            rec.record(Stage::Queue, job.popped.saturating_duration_since(job.accepted));
            rec.record(Stage::Batching, now.saturating_duration_since(job.popped));
        }
    });
    let Some(work) = sh.flow.prepare(sh, jobs, now) else { return };
    let work_tx = match sink {
        Sink::Inline(scorer) => return sh.flow.score(sh, scorer, work),
        Sink::Workers(work_tx) => work_tx,
    };
    // Blocks while every worker is busy and the hand-off slot is taken: backpressure reaches
    // the queue, which keeps accepting until it is full.
    if let Err(failed) = work_tx.send(work) {
        // Every worker is gone (they only exit when this sender drops, or by panicking):
        // answer the batch rather than lose it.
        for job in F::jobs(failed.0) {
            let message = "no scoring worker is running".to_string();
            sh.fail(
                job,
                Error::Backend { backend: "runtime", message },
                &sh.metrics.counters.errors,
            );
        }
    }
}

fn worker_loop<F: Flow>(sh: &Shared<F>, work: Receiver<F::Work>, recorder: usize) {
    let mut scorer = sh.flow.scorer(recorder);
    while let Ok(w) = work.recv() {
        sh.flow.score(sh, &mut scorer, w);
    }
}
