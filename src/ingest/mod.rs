//! Ingestion: the bounded queue's items, reply slots, and what a refused event gets back.
//!
//! Events cross from producer threads to the batcher through a bounded crossbeam channel (a
//! lock-free array queue on the fast path). Each accepted event carries a [`reply`] slot; its
//! row travels in a buffer recycled through a lock-free pool, so steady-state submission does
//! not allocate.

pub mod reply;

use crate::error::Error;

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
