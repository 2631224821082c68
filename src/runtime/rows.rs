//! Rows through the pipeline: validated rows in pooled buffers, transposed into a columnar
//! batch at flush, the feature stage when there is one, the backend, one [`Score`] each.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use crossbeam_queue::ArrayQueue;

use super::pipeline::{Flow, Job, Shared};
use crate::backend::{Backend, Output};
use crate::batch::Batch;
use crate::error::Error;
use crate::ingest::reply::{Score, Timing};
use crate::metrics::Stage;

/// A validated row and what the feature stage needs of its event.
pub(crate) struct Row {
    /// `width` values, in a buffer recycled through `RowFlow::rows`.
    pub values: Vec<f32>,
    /// Key and event time (ms), for the feature stage (0 when the runtime has none).
    pub key: u64,
    pub time_ms: i64,
}

/// A batch on its way to a scorer.
pub(crate) struct RowWork {
    batch: Batch,
    jobs: Vec<Job<RowFlow>>,
}

/// The row flow's state, shared by producers, the batcher and the workers.
pub(crate) struct RowFlow {
    pub backend: Arc<dyn Backend>,
    /// Width of an accepted row (the backend's, or the feature spec's raw fields).
    pub width: usize,
    pub out_width: usize,
    pub output: Output,
    /// `config.model_version`, defaulted.
    pub model_version: u64,
    /// The feature stage between batcher and backend, if any (only the batcher locks it).
    pub features: Option<Mutex<crate::features::Features>>,
    pub rows: ArrayQueue<Vec<f32>>,
    spare_columns: ArrayQueue<Vec<f32>>,
}

impl RowFlow {
    pub(crate) fn new(
        backend: Arc<dyn Backend>,
        width: usize,
        config: &super::RuntimeConfig,
        features: Option<crate::features::Features>,
    ) -> Self {
        let workers = config.workers.get();
        // Enough idle row buffers for a full queue plus the batches in flight.
        let in_flight =
            config.queue_capacity.get().min(1 << 20) + config.max_batch.get() * (workers + 2);
        RowFlow {
            out_width: backend.output_width(config.output),
            backend,
            width,
            output: config.output,
            model_version: config.model_version.unwrap_or(0),
            features: features.map(Mutex::new),
            rows: ArrayQueue::new(in_flight),
            spare_columns: ArrayQueue::new(workers + 2),
        }
    }

    pub(crate) fn recycle_row(&self, row: Vec<f32>) {
        if row.capacity() > 0 {
            let _ = self.rows.push(row);
        }
    }
}

/// One scoring thread's buffers.
pub(crate) struct RowScorer {
    recorder: usize,
    out: Vec<f32>,
    keep: Vec<bool>,
}

impl Flow for RowFlow {
    type Payload = Row;
    type Answer = Score;
    type Work = RowWork;
    type Scorer = RowScorer;

    fn recycle(&self, payload: Row) {
        self.recycle_row(payload.values);
    }

    fn prepare(&self, sh: &Shared<Self>, mut jobs: Vec<Job<Self>>, _: Instant) -> Option<RowWork> {
        let (n, width) = (jobs.len(), self.width);
        let mut columns = self.spare_columns.pop().unwrap_or_default();
        columns.clear();
        columns.resize(n * width, 0.0);
        for (r, job) in jobs.iter_mut().enumerate() {
            // Every row was checked to be `width` long when it was accepted.
            for (f, &v) in job.payload.values.iter().enumerate() {
                columns[f * n + r] = v;
            }
            self.recycle_row(std::mem::take(&mut job.payload.values));
        }
        let mut batch = Batch::from_columns(columns, n, width).expect("length is n * width");
        if let Some(stage) = &self.features {
            let t0 = Instant::now();
            let features = features(sh, stage, batch, &mut jobs);
            sh.metrics.with(0, |rec| rec.record(Stage::Prepare, t0.elapsed()));
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
        RowScorer { recorder, out: Vec::new(), keep: Vec::new() }
    }

    fn score(&self, sh: &Shared<Self>, scorer: &mut RowScorer, work: RowWork) {
        let RowWork { mut batch, mut jobs } = work;
        let backend = &*self.backend;
        let (out, keep) = (&mut scorer.out, &mut scorer.keep);
        let ow = self.out_width;
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
            let result = backend.score_batch(&batch, self.output, out);
            let t1 = Instant::now();
            let scoring = t1 - t0;
            sh.note_scoring(scoring);
            let counters = &sh.metrics.counters;
            sh.metrics.with(scorer.recorder, |rec| {
                rec.record(Stage::Scoring, scoring);
                rec.record_batch(n);
                match &result {
                    Ok(()) => {
                        for (job, values) in jobs.drain(..).zip(out.chunks_exact(ow)) {
                            let total = t1.saturating_duration_since(job.accepted);
                            rec.record(Stage::EndToEnd, total);
                            let queued = t0.saturating_duration_since(job.accepted);
                            let timing = Timing { queued, scoring, batch_rows: n as u32, total };
                            job.reply.send(Ok(Score::new(values, self.model_version, timing)));
                        }
                        counters.scored.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(e) => {
                        for job in jobs.drain(..) {
                            let message = e.to_string();
                            job.reply
                                .send(Err(Error::Backend { backend: backend.name(), message }));
                        }
                        counters.errors.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
            counters.batches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let _ = self.spare_columns.push(batch.into_values());
        let _ = sh.spare_jobs.push(jobs);
    }

    fn jobs(work: RowWork) -> Vec<Job<Self>> {
        work.jobs
    }
}

/// Runs the feature stage over a raw batch: answers the events it refuses, drops them from
/// `jobs`, and returns the feature batch of the rest (`None` when none is left).
fn features(
    sh: &Shared<RowFlow>,
    stage: &Mutex<crate::features::Features>,
    raw: Batch,
    jobs: &mut Vec<Job<RowFlow>>,
) -> Option<Batch> {
    let keys: Vec<u64> = jobs.iter().map(|j| j.payload.key).collect();
    let times: Vec<i64> = jobs.iter().map(|j| j.payload.time_ms).collect();
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
