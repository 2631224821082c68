//! Frames through the one pipeline ([`crate::Runtime`]'s): the same bounded queue, overload
//! policies, deadline micro-batcher, workers, reply slots and metrics as rows. Only the flow
//! differs: at flush, in the batcher thread and in acceptance order (motion is a per-camera
//! sequence), frames are preprocessed and gated on motion, and the frames motion keeps from
//! the model are answered at once; a worker then runs the model through its backend.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{Frame, FrameScore, FrameScorer, PixelFormat};
use crate::error::{Error, Result};
use crate::ingest::Rejected;
use crate::ingest::reply::{Pool, Responder, SlotPool, Ticket};
use crate::metrics::{Busy, MetricsSnapshot, Stage};
use crate::runtime::config::RuntimeConfig;
use crate::runtime::{Flow, Job, Pipeline, Shared};

/// A frame the caller hands over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedFrame {
    /// The camera it came from.
    pub camera: u32,
    /// Capture time, ms since the Unix epoch.
    pub timestamp_ms: i64,
    /// Pixels per row.
    pub width: u32,
    /// Rows.
    pub height: u32,
    /// Pixel layout.
    pub format: PixelFormat,
    /// The pixels.
    pub data: Vec<u8>,
    /// When the answer stops being useful (an expired frame is answered with
    /// [`Error::Expired`] and never reaches the model).
    pub deadline: Option<Instant>,
}

impl OwnedFrame {
    fn borrow(&self) -> Frame<'_> {
        Frame {
            camera: self.camera,
            timestamp_ms: self.timestamp_ms,
            width: self.width,
            height: self.height,
            format: self.format,
            data: &self.data,
        }
    }
}

/// The answer to one submitted frame: wait, await or poll it as a row's [`Ticket`].
pub type FrameTicket = Ticket<FrameScore>;

/// The frame flow: the scorer, shared by the batcher (preprocessing) and the workers (model).
pub(crate) struct FrameFlow {
    scorer: FrameScorer,
    slots: Pool<FrameScore>,
}

impl FrameFlow {
    fn pair(&self) -> (FrameTicket, Responder<FrameScore>) {
        SlotPool::pair(&self.slots)
    }
}

/// A gated batch on its way to a worker: the model input of its kept frames, in job order.
pub(crate) struct FrameWork {
    input: Vec<f32>,
    jobs: Vec<Job<FrameFlow>>,
    motion: Vec<f32>,
}

impl Flow for FrameFlow {
    type Payload = OwnedFrame;
    type Reply = Responder<FrameScore>;
    type Work = FrameWork;
    type Scorer = usize;

    fn recycle(&self, _: OwnedFrame) {}

    fn events(_: &OwnedFrame) -> usize {
        1
    }

    fn close(&self) {
        self.slots.close();
    }

    fn prepare(&self, sh: &Shared<Self>, jobs: Vec<Job<Self>>, now: Instant) -> Option<FrameWork> {
        let frames: Vec<Frame> = jobs.iter().map(|j| j.payload.borrow()).collect();
        let gated = self.scorer.gate(&frames);
        drop(frames);
        let prepared = now.elapsed();
        sh.metrics.with(0, |rec| rec.record(Stage::Prepare, prepared));
        sh.metrics.counters.busy(Busy::Prepare, prepared);
        let gated = match gated {
            Ok(g) => g,
            Err(e) => {
                for job in jobs {
                    let error = Error::Backend { backend: "frames", message: e.to_string() };
                    sh.fail(job, error, &sh.metrics.counters.errors);
                }
                return None;
            }
        };
        let mut keep = gated.keep.iter().peekable();
        let (mut kept, mut motion) = (Vec::with_capacity(gated.keep.len()), Vec::new());
        let mut skipped = 0;
        for (i, job) in jobs.into_iter().enumerate() {
            if keep.next_if_eq(&&i).is_some() {
                kept.push(job);
                motion.push(gated.motion[i]);
            } else {
                let camera = job.payload.camera;
                job.reply.send(Ok(FrameScore { camera, motion: gated.motion[i], scores: None }));
                skipped += 1;
            }
        }
        sh.metrics.counters.scored.fetch_add(skipped, Ordering::Relaxed);
        (!kept.is_empty()).then_some(FrameWork { input: gated.input, jobs: kept, motion })
    }

    fn scorer(&self, recorder: usize) -> usize {
        recorder
    }

    fn score(&self, sh: &Shared<Self>, recorder: &mut usize, work: FrameWork) {
        let FrameWork { input, jobs, motion } = work;
        let t0 = Instant::now();
        let n = jobs.len();
        let result = self.scorer.run_model(&input, n);
        let t1 = Instant::now();
        sh.note_scoring(t1 - t0);
        let counters = &sh.metrics.counters;
        sh.metrics.with(*recorder, |rec| {
            rec.record(Stage::Scoring, t1 - t0);
            rec.record_batch(n);
            match result {
                Ok(out) => {
                    let width = self.scorer.out_width();
                    for ((job, row), motion) in
                        jobs.into_iter().zip(out.chunks_exact(width)).zip(motion)
                    {
                        rec.record(Stage::EndToEnd, t1.saturating_duration_since(job.accepted));
                        let scores = Some(self.scorer.read(row));
                        job.reply.send(Ok(FrameScore {
                            camera: job.payload.camera,
                            motion,
                            scores,
                        }));
                    }
                    counters.scored.fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(e) => {
                    for job in jobs {
                        let message = e.to_string();
                        job.reply.send(Err(Error::Backend { backend: "frames", message }));
                    }
                    counters.errors.fetch_add(n as u64, Ordering::Relaxed);
                }
            }
        });
        counters.batches.fetch_add(1, Ordering::Relaxed);
        counters.busy(Busy::Backend, t1 - t0);
        counters.busy(Busy::Reply, t1.elapsed());
    }

    fn jobs(work: FrameWork) -> Vec<Job<Self>> {
        work.jobs
    }
}

/// Frame scoring behind the runtime's pipeline.
///
/// `config`'s queue, batching, workers and overload settings apply as they do to rows (its
/// backend, NaN and output settings are the rows' and do not: the frame model's backend is
/// in the [`FrameConfig`](super::FrameConfig)).
pub struct FrameRuntime {
    pipeline: Pipeline<FrameFlow>,
}

impl std::fmt::Debug for FrameRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameRuntime").field("scorer", self.scorer()).finish_non_exhaustive()
    }
}

impl FrameRuntime {
    /// Starts the pipeline: a batch is flushed at `config.max_batch` frames or when its oldest
    /// frame has waited `config.max_delay`.
    pub fn new(scorer: FrameScorer, config: RuntimeConfig) -> Result<Self> {
        // Sizes below come from the config: check it before allocating for them.
        config.validate()?;
        // Enough idle reply slots for a full queue plus the batches in flight.
        let in_flight = config.queue_capacity.get().min(1 << 20)
            + config.max_batch.get() * (config.workers.get() + 2);
        let flow = FrameFlow { scorer, slots: SlotPool::new(in_flight) };
        Ok(FrameRuntime { pipeline: Pipeline::start(flow, config)? })
    }

    /// Queues a frame without blocking; a full queue (under the `block` and `reject`
    /// policies), a closed runtime or a malformed frame hands it back with the reason (boxed:
    /// a frame is large).
    pub fn try_submit(
        &self,
        frame: OwnedFrame,
    ) -> std::result::Result<FrameTicket, Box<Rejected<OwnedFrame>>> {
        if let Err(error) = frame.borrow().check() {
            let error = self.pipeline.rejected(error);
            return Err(Box::new(Rejected { event: frame, error }));
        }
        let deadline = frame.deadline;
        self.pipeline.offer(frame, deadline, FrameFlow::pair).map_err(|(error, frame)| {
            Box::new(Rejected { event: frame, error: self.pipeline.rejected(error) })
        })
    }

    /// Scores one frame, blocking until its answer (and, under the `block` policy, until there
    /// is room in the queue).
    pub fn score(&self, frame: OwnedFrame) -> Result<FrameScore> {
        frame.borrow().check().map_err(|e| self.pipeline.rejected(e))?;
        let deadline = frame.deadline;
        let ticket = self
            .pipeline
            .offer_waiting(frame, deadline, FrameFlow::pair)
            .map_err(|(error, _)| self.pipeline.rejected(error))?;
        ticket.wait()
    }

    /// Scores one frame asynchronously: awaits room under the `block` policy, then the answer.
    pub async fn submit(&self, frame: OwnedFrame) -> Result<FrameScore> {
        frame.borrow().check().map_err(|e| self.pipeline.rejected(e))?;
        let deadline = frame.deadline;
        self.pipeline.submit(frame, deadline, FrameFlow::pair).await
    }

    /// The scorer (its counters: frames, scored, skipped).
    pub fn scorer(&self) -> &FrameScorer {
        &self.pipeline.shared.flow.scorer
    }

    /// A snapshot of every counter and histogram (`prometheus()` renders it): queue wait,
    /// batching, preprocessing with motion (`prepare`, per batch), the model (`scoring`, per
    /// batch) and end to end for the frames the model scored.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.pipeline.metrics()
    }

    /// Answers every queued frame, then stops.
    pub fn shutdown(&self) {
        self.pipeline.shutdown();
    }
}
