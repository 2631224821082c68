//! Ingestion: the bounded queue's items, reply slots, and what a refused event gets back.
//!
//! Events cross from producer threads to the batcher through a bounded crossbeam channel (a
//! lock-free array queue on the fast path). Each accepted event carries a [`reply`] slot; its
//! row travels in a buffer recycled through a lock-free pool, so steady-state submission does
//! not allocate.

pub mod reply;

use std::time::Instant;

use crate::batch::batcher::Queued;
use crate::error::Error;
use reply::Responder;

/// An event the runtime refused, handed back to the caller with the reason (as crossbeam's
/// `TrySendError::Full(T)` hands back its message).
#[derive(Debug)]
pub struct Rejected<E> {
    /// The event, untouched.
    pub event: E,
    /// Why: [`Error::QueueFull`], [`Error::Closed`], or a validation error such as
    /// [`Error::WidthMismatch`] or [`Error::NonFinite`].
    pub error: Error,
}

impl<E> std::fmt::Display for Rejected<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "event rejected: {}", self.error)
    }
}

impl<E: std::fmt::Debug> std::error::Error for Rejected<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// One accepted event on its way through the runtime.
pub(crate) struct Job {
    /// The validated row, in a pooled buffer.
    pub row: Vec<f32>,
    /// Key and event time (ms), for the feature stage (0 when the runtime has none).
    pub key: u64,
    pub time_ms: i64,
    pub deadline: Option<Instant>,
    pub accepted: Instant,
    /// When the batcher took it off the queue.
    pub popped: Instant,
    pub reply: Responder,
}

impl Queued for Job {
    fn accepted(&self) -> Instant {
        self.accepted
    }
    fn deadline(&self) -> Option<Instant> {
        self.deadline
    }
}
