//! Rows through the pipeline: validated rows in pooled buffers (one event, or a set of events
//! submitted together), laid out as a columnar batch at flush, the feature stage when there is
//! one, the backend, one [`Score`] per event (one [`Scores`] per set).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crossbeam_queue::ArrayQueue;

use super::pipeline::{Flow, Job, Reply, Shared};
use crate::backend::Output;
use crate::batch::Batch;
use crate::error::Error;
use crate::event::epoch_ms;
use crate::ingest::reply::{Pool, Published, Responder, Score, Scores, SlotPool, Ticket, Timing};
use crate::metrics::{Busy, Stage};
use crate::registry::shadow::{Meta as ShadowMeta, Shadow};
use crate::registry::split::Active;
use crate::registry::{Registry, Swappable, Version, View};

/// Rows up to this width travel inside their queued job: no buffer to take from a pool and
/// give back, and no cache line of their own to move between threads. Wider inline rows make
/// every job larger, and the batcher moves each job several times: at 16 its intake cost rose
/// by about 30 ns an event (bench `ns per event`), at 8 it stayed as with pooled rows.
pub(crate) const INLINE_ROW: usize = 8;

/// A row's values: inline up to [`INLINE_ROW`], else in a pooled buffer.
pub(crate) enum RowValues {
    Inline([f32; INLINE_ROW]),
    /// A buffer recycled through `RowFlow::rows`.
    Pooled(Vec<f32>),
}

/// A validated row and what the feature stage needs of its event.
pub(crate) struct Row {
    /// `width` values.
    pub values: RowValues,
    /// Key and event time (ms), for the feature stage (0 when the runtime has none).
    pub key: u64,
    pub time_ms: i64,
    /// The event's id, kept for a feedback join.
    pub id: Option<u64>,
    /// The gates it violated under `flag` or `impute` (see `Score::gate_flags`).
    pub flags: u64,
}

/// Events submitted together: validated, in pooled buffers, answered as one [`Scores`].
#[derive(Default)]
pub(crate) struct Set {
    /// `n * width` values, row after row (a refused event's row is left as it came).
    pub values: Vec<f32>,
    /// One key per event when the set has keys, else empty.
    pub keys: Vec<u64>,
    /// One event time per event with a feature stage; empty without one.
    pub times: Vec<i64>,
    /// One id per event when the set has ids and the runtime a feedback join, else empty.
    pub ids: Vec<u64>,
    pub n: usize,
    /// Events refused on their own, ascending by event: they are not scored.
    pub errors: Vec<(usize, Error)>,
    /// One gate-flag word per event when the runtime has gates, else empty.
    pub flags: Vec<u64>,
}

impl Set {
    /// Events still to be scored.
    pub(crate) fn live(&self) -> usize {
        self.n - self.errors.len()
    }

    /// Event `i`'s key (0 when the set has none) and event time (0 without a feature stage).
    pub(crate) fn key_time(&self, i: usize) -> (u64, i64) {
        (self.keys.get(i).copied().unwrap_or(0), self.times.get(i).copied().unwrap_or(0))
    }

    /// The events still to be scored, ascending.
    fn live_rows(&self) -> impl Iterator<Item = usize> + '_ {
        let mut refused = self.errors.iter().map(|(r, _)| *r).peekable();
        (0..self.n).filter(move |&r| refused.next_if_eq(&r).is_none())
    }
}

/// What is queued: one event, or a set.
pub(crate) enum Rows {
    One(Row),
    Many(Box<Set>),
}

/// The runtime's end of the reply: one event's slot, or a set's.
pub(crate) enum RowReply {
    One(Responder<Score>),
    Many(Responder<Scores>),
}

impl Reply for RowReply {
    fn fail(self, error: Error) {
        match self {
            RowReply::One(r) => r.send(Err(error)),
            RowReply::Many(r) => r.send(Err(error)),
        }
    }
    fn cancel(self) {
        match self {
            RowReply::One(r) => r.cancel(),
            RowReply::Many(r) => r.cancel(),
        }
    }
}

/// The event times of a batch's rows, in batch order (ms; before 1970 as 0).
fn event_times(jobs: &[Job<RowFlow>]) -> Vec<u64> {
    let mut times = Vec::new();
    for job in jobs {
        match &job.payload {
            Rows::One(row) => times.push(row.time_ms.max(0) as u64),
            Rows::Many(set) => {
                times.extend(set.live_rows().map(|r| set.key_time(r).1.max(0) as u64))
            }
        }
    }
    times
}

/// The ids of a batch's rows, in batch order (`None` for an event without one).
fn event_ids(jobs: &[Job<RowFlow>]) -> Vec<Option<u64>> {
    let mut ids = Vec::new();
    for job in jobs {
        match &job.payload {
            Rows::One(row) => ids.push(row.id),
            Rows::Many(set) => ids.extend(set.live_rows().map(|r| set.ids.get(r).copied())),
        }
    }
    ids
}

/// The version that scored batch row `r`: its variant's under a split (`of` holds each
/// row's variant), else the batch's.
fn scored_by(version: &Version, split: Option<&Active>, of: &[u8], r: usize) -> u64 {
    match split {
        Some(a) => a.arms[usize::from(of[r])].version.id(),
        None => version.id(),
    }
}

/// Keeps a scored batch's predictions for their labels: each row with an id, under the
/// version (or variant) that scored it, at its event time (`times`) or now. A score that is
/// not a probability is counted by the join, never an error to the answer.
#[allow(clippy::too_many_arguments)]
fn predicted(
    feedback: &Mutex<crate::monitor::feedback::Feedback>,
    ids: &[Option<u64>],
    out: &[f32],
    ow: usize,
    version: &Version,
    split: Option<&Active>,
    of: &[u8],
    times: Option<&[u64]>,
) {
    if ow != 1 || ids.iter().all(Option::is_none) {
        return;
    }
    let now = epoch_ms();
    let mut f = feedback.lock().unwrap_or_else(|e| e.into_inner());
    for (r, id) in ids.iter().enumerate() {
        let Some(id) = *id else { continue };
        let at = times.map_or(now, |t| t[r]);
        // Refusals (a score outside [0, 1]) are counted in the join's report.
        let _ = f.predicted(id, scored_by(version, split, of, r), f64::from(out[r]), at);
    }
}

/// Hands a scored batch to the drift monitor, by the version (or variant) that scored each
/// row, at the rows' event times (`times`) or now: off the answer's path only in that it
/// never fails it (a monitor error is logged).
#[allow(clippy::too_many_arguments)]
fn observe(
    monitor: &Mutex<crate::monitor::profile::Monitor>,
    batch: &Batch,
    out: &[f32],
    ow: usize,
    version: &Version,
    split: Option<&Active>,
    of: &[u8],
    times: Option<&[u64]>,
) {
    if ow != 1 {
        return;
    }
    let mut m = monitor.lock().unwrap_or_else(|e| e.into_inner());
    let result = match split {
        None => match times {
            Some(t) => m.observe_at(version.id(), batch.columns(), out, t),
            None => m.observe(version.id(), batch.columns(), out, epoch_ms()),
        },
        Some(active) => {
            // A variant's rows, gathered: splits are rare and a batch is small.
            let mut result = Ok(());
            for (a, arm) in active.arms.iter().enumerate() {
                let rows: Vec<usize> =
                    (0..batch.n_rows()).filter(|&r| usize::from(of[r]) == a).collect();
                if rows.is_empty() {
                    continue;
                }
                let mut values = Vec::with_capacity(rows.len() * batch.n_features());
                for f in 0..batch.n_features() {
                    let column = batch.column(f);
                    values.extend(rows.iter().map(|&r| column[r]));
                }
                let scores: Vec<f32> = rows.iter().map(|&r| out[r]).collect();
                result = crate::batch::Columns::new(&values, rows.len(), batch.n_features())
                    .and_then(|cols| match times {
                        Some(t) => {
                            let t: Vec<u64> = rows.iter().map(|&r| t[r]).collect();
                            m.observe_at(arm.version.id(), cols, &scores, &t)
                        }
                        None => m.observe(arm.version.id(), cols, &scores, epoch_ms()),
                    });
            }
            result
        }
    };
    if let Err(e) = result {
        log::warn!("drift monitor: {e}");
    }
}

/// A batch on its way to a scorer.
pub(crate) struct RowWork {
    batch: Batch,
    jobs: Vec<Job<RowFlow>>,
}

/// Idle set buffers kept for reuse.
const SPARE_SETS: usize = 64;

/// The row flow's state, shared by producers, the batcher and the workers.
pub(crate) struct RowFlow {
    /// The live model version and those kept for rollback.
    pub registry: Registry,
    /// The challenger scoring beside the live version, if any.
    pub shadow: Swappable<Option<Shadow>>,
    /// The traffic split in service, if any: it then picks each event's version.
    pub split: Swappable<Option<Active>>,
    /// Width of an accepted row (the backend's, or the feature spec's raw fields).
    pub width: usize,
    pub output: Output,
    /// The feature stage between batcher and backend, if any (only the batcher locks it).
    pub features: Option<Mutex<crate::features::Features>>,
    pub rows: ArrayQueue<Vec<f32>>,
    /// The audit log, when the runtime writes one.
    pub audit: Option<Arc<crate::sink::Audit>>,
    /// The drift monitor, when one is set (once, by the builder, before any event).
    pub monitor: std::sync::OnceLock<Mutex<crate::monitor::profile::Monitor>>,
    /// The delayed-label join, when set (once, by the builder, before any event).
    pub feedback: std::sync::OnceLock<Mutex<crate::monitor::feedback::Feedback>>,
    /// The data-quality gates, when set (once, by the builder, before any event).
    pub gates: std::sync::OnceLock<crate::monitor::gates::Gates>,
    sets: ArrayQueue<Box<Set>>,
    slots: Pool<Score>,
    set_slots: Pool<Scores>,
    spare_columns: ArrayQueue<Vec<f32>>,
}

impl RowFlow {
    pub(crate) fn new(
        first: Version,
        width: usize,
        config: &super::RuntimeConfig,
        features: Option<crate::features::Features>,
    ) -> Self {
        let workers = config.workers.get();
        // Enough idle row buffers and reply slots for a full queue plus the batches in flight.
        let in_flight =
            config.queue_capacity.get().min(1 << 20) + config.max_batch.get() * (workers + 2);
        RowFlow {
            registry: Registry::new(first, config.keep_versions.get()),
            shadow: Swappable::new(Arc::new(None)),
            split: Swappable::new(Arc::new(None)),
            width,
            output: config.output,
            features: features.map(Mutex::new),
            // Narrow rows travel inline: no buffers to pool.
            rows: ArrayQueue::new(if width <= INLINE_ROW { 1 } else { in_flight }),
            audit: None,
            monitor: std::sync::OnceLock::new(),
            feedback: std::sync::OnceLock::new(),
            gates: std::sync::OnceLock::new(),
            sets: ArrayQueue::new(SPARE_SETS),
            slots: SlotPool::new(in_flight),
            set_slots: SlotPool::new(SPARE_SETS),
            spare_columns: ArrayQueue::new(workers + 2),
        }
    }

    pub(crate) fn recycle_row(&self, row: Vec<f32>) {
        if row.capacity() > 0 {
            let _ = self.rows.push(row);
        }
    }

    /// An empty set buffer (pooled).
    pub(crate) fn spare_set(&self) -> Box<Set> {
        self.sets.pop().unwrap_or_default()
    }

    pub(crate) fn recycle_set(&self, mut set: Box<Set>) {
        set.errors.clear();
        set.flags.clear();
        set.n = 0;
        let _ = self.sets.push(set);
    }

    /// A reply slot for one event.
    pub(crate) fn pair_one(&self) -> (Ticket<Score>, RowReply) {
        let (ticket, responder) = SlotPool::pair(&self.slots);
        (ticket, RowReply::One(responder))
    }

    /// A reply slot for a set.
    pub(crate) fn pair_many(&self) -> (Ticket<Scores>, RowReply) {
        let (ticket, responder) = SlotPool::pair(&self.set_slots);
        (ticket, RowReply::Many(responder))
    }

    /// A ticket already answered: for a set none of whose events is left to score.
    pub(crate) fn answered(&self, set: Box<Set>) -> Ticket<Scores> {
        #[cfg(feature = "audit")]
        if let Some(log) = &self.audit {
            self.audit_refused_set(log, &set);
        }
        let (ticket, reply) = SlotPool::pair(&self.set_slots);
        reply.send(Ok(self.answers(set, &[], Timing::default(), &self.registry.live())));
        ticket
    }

    /// A set's answers: its scored rows' values from `out` (in live order, scored by
    /// `version`), its refusals.
    fn answers(&self, mut set: Box<Set>, out: &[f32], timing: Timing, version: &Version) -> Scores {
        let ow = version.out_width;
        let mut values = vec![f32::NAN; set.n * ow];
        for (r, v) in set.live_rows().zip(out.chunks_exact(ow)) {
            values[r * ow..(r + 1) * ow].copy_from_slice(v);
        }
        let errors = std::mem::take(&mut set.errors);
        let flags = std::mem::take(&mut set.flags);
        self.recycle_set(set);
        Scores {
            values,
            width: ow,
            errors,
            model_version: version.id(),
            versions: None,
            timing,
            flags,
        }
    }
}

/// One scoring thread's buffers.
pub(crate) struct RowScorer {
    recorder: usize,
    /// The version this thread scores with, refreshed once per batch.
    view: View<Version>,
    shadow: View<Option<Shadow>>,
    split: View<Option<Active>>,
    /// A split batch's rows by variant, and the buffers its variants score in.
    arms: Arms,
    /// Which rows of a batch the shadow takes.
    chosen: Vec<bool>,
    shadow_meta: ShadowMeta,
    out: Vec<f32>,
    keep: Vec<bool>,
    /// A batch's answers, published and woken once all are written.
    published: Vec<Published<Score>>,
}

impl Flow for RowFlow {
    type Payload = Rows;
    type Reply = RowReply;
    type Work = RowWork;
    type Scorer = RowScorer;

    fn recycle(&self, payload: Rows) {
        match payload {
            Rows::One(Row { values: RowValues::Pooled(v), .. }) => self.recycle_row(v),
            Rows::One(_) => {}
            Rows::Many(set) => self.recycle_set(set),
        }
    }

    #[cfg(feature = "audit")]
    fn failed(&self, job: &Job<Self>, error: &Error) {
        if let Some(log) = &self.audit {
            self.audit_failed(log, job, Some(error));
        }
    }

    fn events(payload: &Rows) -> usize {
        match payload {
            Rows::One(_) => 1,
            Rows::Many(set) => set.live(),
        }
    }

    fn close(&self) {
        self.slots.close();
        self.set_slots.close();
    }

    fn prepare(&self, sh: &Shared<Self>, mut jobs: Vec<Job<Self>>, _: Instant) -> Option<RowWork> {
        let started = Instant::now();
        let width = self.width;
        let n: usize = jobs.iter().map(|j| Self::events(&j.payload)).sum();
        let mut columns = self.spare_columns.pop().unwrap_or_default();
        columns.clear();
        columns.resize(n * width, 0.0);
        let mut r = 0;
        for job in jobs.iter_mut() {
            match &mut job.payload {
                Rows::One(row) => {
                    // Every row was checked to be `width` long when it was accepted.
                    let values = match &mut row.values {
                        RowValues::Inline(v) => &v[..width],
                        RowValues::Pooled(v) => &v[..],
                    };
                    for (f, &v) in values.iter().enumerate() {
                        columns[f * n + r] = v;
                    }
                    r += 1;
                    if let RowValues::Pooled(v) = &mut row.values {
                        self.recycle_row(std::mem::take(v));
                    }
                }
                Rows::Many(set) => {
                    for i in set.live_rows() {
                        for (f, &v) in set.values[i * width..(i + 1) * width].iter().enumerate() {
                            columns[f * n + r] = v;
                        }
                        r += 1;
                    }
                }
            }
        }
        let mut batch = Batch::from_columns(columns, n, width).expect("length is n * width");
        let t0 = Instant::now();
        sh.metrics.counters.busy(Busy::Layout, t0 - started);
        if let Some(stage) = &self.features {
            let features = features(sh, stage, batch, &mut jobs);
            let prepared = t0.elapsed();
            sh.metrics.with(0, |rec| rec.record(Stage::Prepare, prepared));
            sh.metrics.counters.busy(Busy::Prepare, prepared);
            match features {
                Some(b) => batch = b,
                None => {
                    let _ = sh.spare_jobs.push(jobs);
                    return None;
                }
            }
        }
        Some(RowWork { batch, jobs })
    }

    fn scorer(&self, recorder: usize) -> RowScorer {
        RowScorer {
            recorder,
            view: self.registry.view(),
            shadow: self.shadow.view(),
            split: self.split.view(),
            arms: Arms::default(),
            chosen: Vec::new(),
            shadow_meta: ShadowMeta::default(),
            out: Vec::new(),
            keep: Vec::new(),
            published: Vec::new(),
        }
    }

    fn score(&self, sh: &Shared<Self>, scorer: &mut RowScorer, work: RowWork) {
        let RowWork { mut batch, mut jobs } = work;
        let RowScorer {
            recorder,
            view,
            shadow,
            split,
            arms,
            chosen,
            shadow_meta,
            out,
            keep,
            published,
        } = scorer;
        // The swap point: every event of this batch is scored, and answered, by this version
        // (or, under a split, by its variant's).
        let version = view.current(self.registry.published()).clone();
        let split = split.current(&self.split).clone();
        let backend = &*version.backend;
        let ow = version.out_width;
        let t0 = Instant::now();
        // Deadlines that passed while the batch waited for a scorer: drop those rows before
        // spending model time on them.
        if jobs.iter().any(|j| j.deadline.is_some_and(|d| d <= t0)) {
            keep.clear();
            for j in &jobs {
                let alive = j.deadline.is_none_or(|d| d > t0);
                keep.extend(std::iter::repeat_n(alive, Self::events(&j.payload)));
            }
            batch.retain_rows(keep);
            for job in std::mem::take(&mut jobs) {
                if job.deadline.is_none_or(|d| d > t0) {
                    jobs.push(job);
                } else {
                    sh.expire(job, t0);
                }
            }
        }
        let n = batch.n_rows();
        if n > 0 {
            out.clear();
            out.resize(n * ow, 0.0);
            let result = match &*split {
                None => backend.score_batch(&batch, self.output, out),
                Some(active) => {
                    arms.assign(active, &jobs);
                    arms.score(active, &batch, self.output, ow, out)
                }
            };
            // The shadow's copy is handed over before any answer is out, so that an event
            // answered before `clear_shadow` is compared (or counted as dropped): a copy of
            // the batch, a few µs at most, never a wait.
            if let (Some(s), true) = (&**shadow.current(&self.shadow), result.is_ok()) {
                choose(s, &jobs, n, chosen, shadow_meta);
                s.offer(&batch, out, ow, chosen, shadow_meta);
            }
            let t1 = Instant::now();
            let scoring = t1 - t0;
            sh.note_scoring(scoring);
            #[cfg(feature = "audit")]
            if let (Some(log), Ok(())) = (&self.audit, &result) {
                self.audit_scored(
                    log,
                    &jobs,
                    &batch,
                    out,
                    ow,
                    &version,
                    (*split).as_ref(),
                    &arms.of,
                    t1,
                );
            }
            // With a feature stage events carry their time: the monitor's windows are of event
            // time (read now: the replies below take the jobs).
            let monitor = self.monitor.get().filter(|_| result.is_ok());
            let feedback = self.feedback.get().filter(|_| result.is_ok());
            let times = (monitor.is_some() || feedback.is_some())
                .then_some(self.features.as_ref())
                .flatten()
                .map(|_| event_times(&jobs));
            // Predictions are kept before their answers go out, so a label sent on an answer
            // always finds its prediction (a hash insert per event with an id).
            if let Some(feedback) = feedback {
                predicted(
                    feedback,
                    &event_ids(&jobs),
                    out,
                    ow,
                    &version,
                    (*split).as_ref(),
                    &arms.of,
                    times.as_deref(),
                );
            }
            let counters = &sh.metrics.counters;
            sh.metrics.with(*recorder, |rec| {
                rec.record(Stage::Scoring, scoring);
                rec.record_batch(n);
                match &result {
                    Ok(()) => {
                        let mut at = 0;
                        let active = (*split).as_ref();
                        let id_of = |r: usize| scored_by(&version, active, &arms.of, r);
                        for job in jobs.drain(..) {
                            let total = t1.saturating_duration_since(job.accepted);
                            rec.record(Stage::EndToEnd, total);
                            let queued = t0.saturating_duration_since(job.accepted);
                            let timing = Timing { queued, scoring, batch_rows: n as u32, total };
                            match (job.payload, job.reply) {
                                (Rows::One(row), RowReply::One(reply)) => {
                                    let values = &out[at * ow..(at + 1) * ow];
                                    let mut score = Score::new(values, id_of(at), timing);
                                    score.gate_flags = row.flags;
                                    published.push(reply.publish(Ok(score)));
                                    if active.is_some() {
                                        arms.latency[usize::from(arms.of[at])].push(total);
                                    }
                                    at += 1;
                                }
                                (Rows::Many(set), RowReply::Many(reply)) => {
                                    let rows = set.live();
                                    let values = &out[at * ow..(at + rows) * ow];
                                    let mut scores = self.answers(set, values, timing, &version);
                                    if active.is_some() {
                                        scores.set_versions((at..at + rows).map(id_of));
                                        for r in at..at + rows {
                                            arms.latency[usize::from(arms.of[r])].push(total);
                                        }
                                    }
                                    reply.send(Ok(scores));
                                    at += rows;
                                }
                                (payload, reply) => {
                                    // Built together in `Runtime`; never mixed.
                                    self.recycle(payload);
                                    let message = "a reply of the wrong kind".to_string();
                                    reply.fail(Error::Backend { backend: "runtime", message });
                                }
                            }
                        }
                        // Wake the waiters now that every answer is written.
                        published.clear();
                        if let Some(active) = active {
                            arms.record(active, out, ow);
                        }
                        counters.scored.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Err(e) => {
                        if let Some(active) = &*split {
                            arms.record_errors(active);
                        }
                        for job in jobs.drain(..) {
                            let message = e.to_string();
                            let error = Error::Backend { backend: backend.name(), message };
                            sh.fail(job, error, &counters.errors);
                        }
                    }
                }
            });
            // The monitor profiles the batch once its answers are out: it costs throughput
            // (counted as reply time), never an answer's latency.
            if let Some(monitor) = monitor {
                observe(
                    monitor,
                    &batch,
                    out,
                    ow,
                    &version,
                    (*split).as_ref(),
                    &arms.of,
                    times.as_deref(),
                );
            }
            counters.batches.fetch_add(1, Ordering::Relaxed);
            counters.busy(Busy::Backend, scoring);
            counters.busy(Busy::Reply, t1.elapsed());
        }
        let _ = self.spare_columns.push(batch.into_values());
        let _ = sh.spare_jobs.push(jobs);
    }

    fn jobs(work: RowWork) -> Vec<Job<Self>> {
        work.jobs
    }
}

/// A split batch: which variant each row is in, and the buffers its variants score in.
#[derive(Default)]
struct Arms {
    /// Variant of each batch row (in job order).
    of: Vec<u8>,
    /// Rows of the variant being scored.
    rows: Vec<usize>,
    columns: Vec<f32>,
    out: Vec<f32>,
    /// End-to-end latency of each variant's rows in this batch.
    latency: Vec<Vec<std::time::Duration>>,
    /// Whether the batch's rows are all in one variant (then it is scored whole).
    one: Option<u8>,
}

impl Arms {
    /// Places each event of `jobs` in its variant by key.
    fn assign(&mut self, active: &Active, jobs: &[Job<RowFlow>]) {
        self.of.clear();
        self.of.extend(batch_events(jobs).map(|(key, ..)| active.arm_of(key) as u8));
        let first = self.of.first().copied();
        self.one = first.filter(|&a| self.of.iter().all(|&b| b == a));
        self.latency.resize_with(active.arms.len(), Vec::new);
        self.latency.iter_mut().for_each(Vec::clear);
    }

    /// Scores each variant's rows with its version into their places in `out`. A backend
    /// error fails the whole batch; its rows count as errors of their variants.
    fn score(
        &mut self,
        active: &Active,
        batch: &Batch,
        output: crate::backend::Output,
        ow: usize,
        out: &mut [f32],
    ) -> crate::error::Result<()> {
        if let Some(a) = self.one {
            return active.arms[usize::from(a)].version.backend.score_batch(batch, output, out);
        }
        let width = batch.n_features();
        for (a, arm) in active.arms.iter().enumerate() {
            self.rows.clear();
            self.rows.extend(
                self.of.iter().enumerate().filter(|&(_, &v)| usize::from(v) == a).map(|(r, _)| r),
            );
            let m = self.rows.len();
            if m == 0 {
                continue;
            }
            let mut columns = std::mem::take(&mut self.columns);
            columns.clear();
            for f in 0..width {
                let c = batch.column(f);
                columns.extend(self.rows.iter().map(|&r| c[r]));
            }
            let sub = Batch::from_columns(columns, m, width)?;
            self.out.clear();
            self.out.resize(m * ow, 0.0);
            let scored = arm.version.backend.score_batch(&sub, output, &mut self.out);
            self.columns = sub.into_values();
            scored?;
            for (i, &r) in self.rows.iter().enumerate() {
                out[r * ow..(r + 1) * ow].copy_from_slice(&self.out[i * ow..(i + 1) * ow]);
            }
        }
        Ok(())
    }

    /// Records each variant's share of a scored batch.
    fn record(&self, active: &Active, out: &[f32], ow: usize) {
        for (a, latency) in self.latency.iter().enumerate() {
            if latency.is_empty() {
                continue;
            }
            let sum: f64 = (self.of.iter().enumerate())
                .filter(|&(_, &v)| usize::from(v) == a)
                .map(|(r, _)| f64::from(out[r * ow]))
                .sum();
            active.record(a, sum, latency);
        }
    }

    /// Counts a failed batch's rows against their variants.
    fn record_errors(&self, active: &Active) {
        for a in 0..active.arms.len() {
            let n = self.of.iter().filter(|&&v| usize::from(v) == a).count();
            if n > 0 {
                active.record_errors(a, n as u64);
            }
        }
    }
}

/// Runs the feature stage over a raw batch: answers the events it refuses (a set's refused
/// events become errors in its answers), drops them from `jobs`, and returns the feature batch
/// of the rest (`None` when none is left).
fn features(
    sh: &Shared<RowFlow>,
    stage: &Mutex<crate::features::Features>,
    raw: Batch,
    jobs: &mut Vec<Job<RowFlow>>,
) -> Option<Batch> {
    let n = raw.n_rows();
    let (mut keys, mut times) = (Vec::with_capacity(n), Vec::with_capacity(n));
    // Which job, and which event of a set, each batch row is.
    let mut owner: Vec<(usize, usize)> = Vec::with_capacity(n);
    for (j, job) in jobs.iter().enumerate() {
        match &job.payload {
            Rows::One(row) => {
                keys.push(row.key);
                times.push(row.time_ms);
                owner.push((j, 0));
            }
            Rows::Many(set) => {
                for i in set.live_rows() {
                    keys.push(set.keys[i]);
                    times.push(set.times[i]);
                    owner.push((j, i));
                }
            }
        }
    }
    let mut out = crate::features::Output::default();
    let mut stage = stage.lock().unwrap_or_else(|p| p.into_inner());
    let n_out = stage.spec().names.len();
    let result = stage.transform(&raw, &keys, &times, &mut out);
    drop(stage);
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
    let mut failed: Vec<Option<Error>> = Vec::new();
    failed.resize_with(jobs.len(), || None);
    let counters = &sh.metrics.counters;
    for (r, e) in out.errors.drain(..) {
        refused[r] = true;
        let (j, i) = owner[r];
        match &mut jobs[j].payload {
            Rows::One(_) => failed[j] = Some(e),
            Rows::Many(set) => {
                counters.errors.fetch_add(1, Ordering::Relaxed);
                set.errors.push((i, e));
            }
        }
    }
    // Answer the refused single events, and the sets with nothing left to score.
    let mut kept_jobs = Vec::with_capacity(jobs.len());
    for (mut job, failure) in jobs.drain(..).zip(failed) {
        if let Some(e) = failure {
            sh.fail(job, e, &counters.errors);
            continue;
        }
        if let Rows::Many(set) = &mut job.payload {
            set.errors.sort_unstable_by_key(|(r, _)| *r);
        }
        if RowFlow::events(&job.payload) > 0 {
            kept_jobs.push(job);
            continue;
        }
        // Only a set can be left with no event to score: answered here, with its refusals.
        #[cfg(feature = "audit")]
        if let Some(log) = &sh.flow.audit {
            sh.flow.audit_failed(log, &job, None);
        }
        let timing = Timing { total: job.accepted.elapsed(), ..Timing::default() };
        if let (Rows::Many(set), RowReply::Many(reply)) = (job.payload, job.reply) {
            reply.send(Ok(sh.flow.answers(set, &[], timing, &sh.flow.registry.live())));
        }
    }
    *jobs = kept_jobs;
    let live: Vec<usize> = (0..n).filter(|&r| !refused[r]).collect();
    let mut kept = Vec::with_capacity(live.len() * n_out);
    for c in 0..n_out {
        kept.extend(live.iter().map(|&r| out.values[c * n + r]));
    }
    (!live.is_empty())
        .then(|| Batch::from_columns(kept, live.len(), n_out).expect("rows * n_out values"))
}

/// Marks the batch rows (in job order) whose events the shadow takes, and when its answers
/// go to the audit log, notes each row's key, event time and acceptance.
fn choose(
    shadow: &Shadow,
    jobs: &[Job<RowFlow>],
    n: usize,
    chosen: &mut Vec<bool>,
    meta: &mut ShadowMeta,
) {
    meta.clear();
    if shadow.audits() {
        for (key, time_ms, accepted) in batch_events(jobs) {
            meta.keys.push(key);
            meta.times.push(time_ms);
            meta.accepted.push(accepted);
        }
    }
    chosen.clear();
    if shadow.takes_all() {
        chosen.resize(n, true);
        return;
    }
    chosen.extend(batch_events(jobs).map(|(key, ..)| shadow.wants(key)));
}

/// Each event still to be scored in `jobs`, in batch-row order: its key, event time (ms) and
/// when it was accepted.
fn batch_events(jobs: &[Job<RowFlow>]) -> impl Iterator<Item = (u64, i64, Instant)> + '_ {
    jobs.iter().flat_map(|job| {
        let (one, many) = match &job.payload {
            Rows::One(row) => (Some((row.key, row.time_ms)), None),
            Rows::Many(set) => (None, Some(set.live_rows().map(|r| set.key_time(r)))),
        };
        one.into_iter().chain(many.into_iter().flatten()).map(|(k, t)| (k, t, job.accepted))
    })
}
