//! Frames through a runtime: a bounded queue that cameras submit to without blocking, the same
//! deadline micro-batcher as rows ([`Batcher`]), batches formed across cameras, one answer per
//! accepted frame, and latency histograms per stage.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use hdrhistogram::Histogram;

use super::{Frame, FrameScore, FrameScorer, PixelFormat};
use crate::batch::batcher::{Batcher, Queued};
use crate::error::{Error, Result};
use crate::ingest::Rejected;

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

struct Job {
    frame: OwnedFrame,
    accepted: Instant,
    reply: Sender<Result<FrameScore>>,
}

impl Queued for Job {
    fn accepted(&self) -> Instant {
        self.accepted
    }
    fn deadline(&self) -> Option<Instant> {
        self.frame.deadline
    }
}

/// The answer to one submitted frame.
#[derive(Debug)]
pub struct FrameTicket(Receiver<Result<FrameScore>>);

impl FrameTicket {
    /// Blocks until the frame is answered.
    pub fn wait(self) -> Result<FrameScore> {
        self.0.recv().unwrap_or(Err(Error::Closed))
    }
}

/// Latency per stage, in µs, since the runtime started.
#[derive(Debug, Clone)]
pub struct FrameLatency {
    /// Acceptance to the batch's start.
    pub queue: Histogram<u64>,
    /// Preprocessing and motion of the batch (on the GPU: upload, dispatch and readback).
    pub preprocess: Histogram<u64>,
    /// The model on the batch's moving frames.
    pub model: Histogram<u64>,
    /// Acceptance to answer.
    pub end_to_end: Histogram<u64>,
    /// Frames per batch.
    pub batch: Histogram<u64>,
}

impl FrameLatency {
    fn new() -> Self {
        let h = || Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
        FrameLatency { queue: h(), preprocess: h(), model: h(), end_to_end: h(), batch: h() }
    }
}

/// Frame scoring behind a queue and a micro-batcher.
pub struct FrameRuntime {
    tx: Sender<Option<Job>>,
    closed: Arc<AtomicBool>,
    scorer: Arc<FrameScorer>,
    latency: Arc<Mutex<FrameLatency>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for FrameRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameRuntime").field("scorer", &self.scorer).finish_non_exhaustive()
    }
}

impl FrameRuntime {
    /// Starts the batcher thread: a batch is flushed at `max_batch` frames or when its oldest
    /// frame has waited `max_delay`.
    pub fn new(
        scorer: FrameScorer,
        max_batch: usize,
        max_delay: Duration,
        queue: usize,
    ) -> Result<Self> {
        if max_batch == 0 || queue == 0 {
            return Err(Error::Config("max_batch and queue must be positive".into()));
        }
        let (tx, rx) = crossbeam_channel::bounded(queue);
        let scorer = Arc::new(scorer);
        let latency = Arc::new(Mutex::new(FrameLatency::new()));
        let (s, l) = (scorer.clone(), latency.clone());
        let thread = std::thread::Builder::new()
            .name("streamscore-frames".into())
            .spawn(move || batcher(&rx, &s, &l, max_batch, max_delay))
            .map_err(|e| Error::Config(format!("cannot start the frame batcher: {e}")))?;
        Ok(FrameRuntime {
            tx,
            closed: Arc::new(AtomicBool::new(false)),
            scorer,
            latency,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues a frame without blocking; a full queue, a closed runtime or a malformed frame
    /// hands it back with the reason (boxed: a frame is large).
    pub fn try_submit(
        &self,
        frame: OwnedFrame,
    ) -> std::result::Result<FrameTicket, Box<Rejected<OwnedFrame>>> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(Box::new(Rejected { event: frame, error: Error::Closed }));
        }
        if let Err(error) = frame.borrow().check() {
            return Err(Box::new(Rejected { event: frame, error }));
        }
        let (reply, rx) = crossbeam_channel::bounded(1);
        let job = Job { frame, accepted: Instant::now(), reply };
        match self.tx.try_send(Some(job)) {
            Ok(()) => Ok(FrameTicket(rx)),
            Err(TrySendError::Full(Some(job)) | TrySendError::Disconnected(Some(job))) => {
                let error = if self.closed.load(Ordering::SeqCst) {
                    Error::Closed
                } else {
                    Error::QueueFull
                };
                Err(Box::new(Rejected { event: job.frame, error }))
            }
            Err(_) => unreachable!("a job was sent"),
        }
    }

    /// The scorer (its counters: frames, scored, skipped).
    pub fn scorer(&self) -> &FrameScorer {
        &self.scorer
    }

    /// Latency histograms so far.
    pub fn latency(&self) -> FrameLatency {
        self.latency.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Answers every queued frame, then stops the batcher.
    pub fn shutdown(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let _ = self.tx.send(None);
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }
}

impl Drop for FrameRuntime {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn batcher(
    rx: &Receiver<Option<Job>>,
    scorer: &FrameScorer,
    latency: &Mutex<FrameLatency>,
    max_batch: usize,
    max_delay: Duration,
) {
    let mut b: Batcher<Job> = Batcher::new(max_batch, max_delay);
    let (mut batch, mut expired) = (Vec::new(), Vec::new());
    let mut draining = false;
    loop {
        let msg = if draining {
            rx.try_recv().ok()
        } else {
            match b.flush_at() {
                Some(t) => match rx.recv_deadline(t) {
                    Ok(m) => Some(m),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => Some(None),
                },
                None => Some(rx.recv().unwrap_or(None)),
            }
        };
        let now = Instant::now();
        // Take what is already queued (up to a full batch) before deciding to flush: frames
        // that waited in the queue are past their delay, and flushing each alone would
        // starve the batch.
        let mut next = msg;
        while let Some(m) = next.take() {
            match m {
                Some(job) => {
                    if let Err(job) = b.admit(job, now) {
                        let _ = job.reply.send(Err(Error::Expired { waited: now - job.accepted }));
                    }
                }
                None => draining = true,
            }
            if !b.is_full() {
                next = rx.try_recv().ok();
            }
        }
        if b.is_full() || b.flush_due(now) || (draining && !b.is_empty()) {
            b.take(now, &mut batch, &mut expired);
            for job in expired.drain(..) {
                let _ = job.reply.send(Err(Error::Expired { waited: now - job.accepted }));
            }
            if !batch.is_empty() {
                score(&mut batch, scorer, latency);
            }
        }
        if draining && b.is_empty() && rx.is_empty() {
            // Frames sent after `closed` was set are refused by `try_submit`; answer any
            // that raced in.
            while let Ok(Some(job)) = rx.try_recv() {
                let _ = job.reply.send(Err(Error::Closed));
            }
            return;
        }
    }
}

fn score(batch: &mut Vec<Job>, scorer: &FrameScorer, latency: &Mutex<FrameLatency>) {
    let start = Instant::now();
    let frames: Vec<Frame> = batch.iter().map(|j| j.frame.borrow()).collect();
    let result = scorer.score_timed(&frames);
    let done = Instant::now();
    let mut l = latency.lock().unwrap_or_else(|p| p.into_inner());
    let us = |d: Duration| (d.as_micros() as u64).max(1);
    l.batch.saturating_record(batch.len() as u64);
    match result {
        Ok((scores, pre, model)) => {
            l.preprocess.saturating_record(us(pre));
            l.model.saturating_record(us(model));
            for (job, s) in batch.drain(..).zip(scores) {
                l.queue.saturating_record(us(start.saturating_duration_since(job.accepted)));
                l.end_to_end.saturating_record(us(done.saturating_duration_since(job.accepted)));
                let _ = job.reply.send(Ok(s));
            }
        }
        Err(e) => {
            let message = e.to_string();
            for job in batch.drain(..) {
                let _ = job
                    .reply
                    .send(Err(Error::Backend { backend: "frames", message: message.clone() }));
            }
        }
    }
}
