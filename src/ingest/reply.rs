//! One-shot reply slots: how each accepted event gets exactly one answer.
//!
//! A slot is shared by two holders, the caller's [`Ticket`] and the runtime's `Responder`.
//! The responder writes the answer once and wakes whoever waits (a task's waker or a parked
//! thread); the ticket takes it. Whichever holder lets go last resets the slot and returns it
//! to its pool, so in steady state no event allocates. A responder dropped without answering
//! (a panicking worker) answers with an error rather than leaving its ticket waiting forever.

use std::cell::UnsafeCell;
use std::future::Future;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::Duration;

use atomic_waker::AtomicWaker;
use crossbeam_queue::ArrayQueue;

use crate::error::{Error, Result};

const EMPTY: u8 = 0;
const READY: u8 = 1;
const TAKEN: u8 = 2;

/// Values up to this width are stored inline in a [`Score`] (binary, regression and small
/// multiclass models need no allocation per answer).
const INLINE: usize = 4;

/// The answer for one event: its score(s), the model version and where its time went.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    inline: [f32; INLINE],
    len: u32,
    spill: Option<Box<[f32]>>,
    /// Version of the model that scored the event (a hash of the model file unless configured).
    pub model_version: u64,
    /// Where the event's time went.
    pub timing: Timing,
}

/// Per-event timing, measured by the runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timing {
    /// From acceptance to the start of scoring (queue wait plus batching).
    pub queued: Duration,
    /// Time the backend spent on the whole batch the event was in.
    pub scoring: Duration,
    /// Rows in that batch.
    pub batch_rows: u32,
    /// From acceptance to the answer.
    pub total: Duration,
}

impl Score {
    pub(crate) fn new(values: &[f32], model_version: u64, timing: Timing) -> Self {
        let mut inline = [0.0; INLINE];
        let spill = if values.len() <= INLINE {
            inline[..values.len()].copy_from_slice(values);
            None
        } else {
            Some(values.into())
        };
        Score { inline, len: values.len() as u32, spill, model_version, timing }
    }

    /// All values: one for binary and regression models, one per class for multiclass.
    pub fn values(&self) -> &[f32] {
        match &self.spill {
            Some(v) => v,
            None => &self.inline[..self.len as usize],
        }
    }

    /// The first value (the score of a single-output model).
    pub fn value(&self) -> f32 {
        self.values()[0]
    }
}

pub(crate) struct Slot<T> {
    state: AtomicU8,
    holders: AtomicU8,
    value: UnsafeCell<MaybeUninit<Result<T>>>,
    waker: AtomicWaker,
    pool: Arc<SlotPool<T>>,
}

// SAFETY: `value` is written only by the responder before it publishes READY (Release) and read
// only by the ticket after it observes READY (Acquire), or by the last holder in `reset`, after
// both holders have let go (AcqRel on `holders`). `Result<T>` is Send when `T` is.
unsafe impl<T: Send> Sync for Slot<T> {}
// SAFETY: as above; moving a slot between threads moves at most one `Result<T>`, which is Send.
unsafe impl<T: Send> Send for Slot<T> {}

impl<T> Slot<T> {
    /// Called only by the last holder: no one else can touch the slot.
    fn reset(&self) {
        if self.state.load(Ordering::Acquire) == READY {
            // SAFETY: READY means written and not yet taken; we are the only holder left.
            unsafe { (*self.value.get()).assume_init_drop() };
        }
        self.state.store(EMPTY, Ordering::Relaxed);
        drop(self.waker.take());
    }
}

/// Lets go of one holder's share; the last one recycles the slot.
fn release<T>(slot: Arc<Slot<T>>) {
    if slot.holders.fetch_sub(1, Ordering::AcqRel) != 1 {
        return;
    }
    slot.reset();
    let pool: *const SlotPool<T> = Arc::as_ptr(&slot.pool);
    // SAFETY: `slot` holds a strong reference to the pool, so the pool outlives this call
    // whether `push` keeps the slot (the pool then owns it) or hands it back (dropped after).
    let pool = unsafe { &*pool };
    if !pool.closed.load(Ordering::Relaxed) {
        let _ = pool.free.push(slot);
    }
}

/// Recycled reply slots. Holds at most `capacity` idle slots; more are allocated when a burst
/// needs them and dropped when the pool is full again.
pub(crate) struct SlotPool<T = Score> {
    free: ArrayQueue<Arc<Slot<T>>>,
    closed: AtomicBool,
}

impl<T> SlotPool<T> {
    pub(crate) fn new(capacity: usize) -> Arc<Self> {
        Arc::new(SlotPool {
            free: ArrayQueue::new(capacity.max(1)),
            closed: AtomicBool::new(false),
        })
    }

    /// A fresh pair of ends for one event.
    pub(crate) fn pair(self: &Arc<Self>) -> (Ticket<T>, Responder<T>) {
        let slot = self.free.pop().unwrap_or_else(|| {
            Arc::new(Slot {
                state: AtomicU8::new(EMPTY),
                holders: AtomicU8::new(0),
                value: UnsafeCell::new(MaybeUninit::uninit()),
                waker: AtomicWaker::new(),
                pool: Arc::clone(self),
            })
        });
        slot.holders.store(2, Ordering::Relaxed);
        (Ticket { slot: Some(Arc::clone(&slot)) }, Responder { slot: Some(slot) })
    }

    /// Breaks the pool <-> slot reference cycle: idle slots are freed and released ones are no
    /// longer kept.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        while self.free.pop().is_some() {}
    }
}

/// The runtime's end of a reply slot. Answers exactly once: by [`Responder::send`], or with an
/// error if dropped unanswered.
pub(crate) struct Responder<T = Score> {
    slot: Option<Arc<Slot<T>>>,
}

impl<T> Responder<T> {
    pub(crate) fn send(mut self, answer: Result<T>) {
        if let Some(slot) = self.slot.take() {
            put(slot, answer);
        }
    }

    /// Withdraws an event that was never queued: no answer is written and the slot is recycled
    /// once its ticket is dropped too.
    pub(crate) fn cancel(mut self) {
        if let Some(slot) = self.slot.take() {
            release(slot);
        }
    }
}

fn put<T>(slot: Arc<Slot<T>>, answer: Result<T>) {
    // SAFETY: the responder is the only writer and writes once; the ticket reads only after
    // observing READY below.
    unsafe { (*slot.value.get()).write(answer) };
    slot.state.store(READY, Ordering::Release);
    slot.waker.wake();
    release(slot);
}

impl<T> Drop for Responder<T> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            let message = "the event was dropped unanswered (a worker panicked)".to_string();
            put(slot, Err(Error::Backend { backend: "runtime", message }));
        }
    }
}

/// The caller's claim on one accepted event's answer (a [`Score`] for rows; a
/// [`FrameScore`](crate::frames::FrameScore) for frames).
///
/// Wait for it with [`Ticket::wait`] (blocking), `.await` it (any async runtime), or poll it
/// with [`Ticket::try_take`]. Dropping a ticket is fine: the event is still scored and the
/// answer discarded, with nothing leaked and nothing blocked.
#[must_use = "a ticket is the only way to read the event's answer"]
pub struct Ticket<T = Score> {
    slot: Option<Arc<Slot<T>>>,
}

impl<T> std::fmt::Debug for Ticket<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket").field("ready", &self.is_ready()).finish()
    }
}

struct ThreadWaker(Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

thread_local! {
    static THREAD_WAKER: Waker = Waker::from(Arc::new(ThreadWaker(thread::current())));
}

impl<T> Ticket<T> {
    /// True once the answer is there (taking it will not block).
    pub fn is_ready(&self) -> bool {
        self.slot.as_ref().is_some_and(|s| s.state.load(Ordering::Acquire) == READY)
    }

    /// The answer if it is there, without blocking. Returns `None` while pending and after the
    /// answer has been taken.
    pub fn try_take(&mut self) -> Option<Result<T>> {
        if self.is_ready() { Some(self.take()) } else { None }
    }

    /// Blocks the current thread until the answer arrives.
    pub fn wait(mut self) -> Result<T> {
        THREAD_WAKER.with(|waker| {
            loop {
                if let Poll::Ready(answer) = self.poll_with(waker) {
                    return answer;
                }
                thread::park();
            }
        })
    }

    fn take(&mut self) -> Result<T> {
        let Some(slot) = self.slot.take() else {
            return Err(Error::Closed);
        };
        // SAFETY: READY was observed with Acquire by the caller; the value is read exactly once
        // (the slot leaves the ticket here) and marked TAKEN so `reset` does not drop it again.
        let answer = unsafe { (*slot.value.get()).assume_init_read() };
        slot.state.store(TAKEN, Ordering::Relaxed);
        release(slot);
        answer
    }

    fn poll_with(&mut self, waker: &Waker) -> Poll<Result<T>> {
        let Some(slot) = &self.slot else {
            // Polled again after completion.
            return Poll::Ready(Err(Error::Closed));
        };
        if slot.state.load(Ordering::Acquire) == READY {
            return Poll::Ready(self.take());
        }
        slot.waker.register(waker);
        // The responder may have published between the check and the registration.
        if slot.state.load(Ordering::Acquire) == READY {
            return Poll::Ready(self.take());
        }
        Poll::Pending
    }
}

impl<T> Future for Ticket<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        self.get_mut().poll_with(cx.waker())
    }
}

impl<T> Drop for Ticket<T> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            release(slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score(v: f32) -> Score {
        Score::new(&[v], 7, Timing::default())
    }

    #[test]
    fn answer_reaches_ticket_and_slot_is_recycled() {
        let pool = SlotPool::new(4);
        let (ticket, responder) = pool.pair();
        responder.send(Ok(score(1.5)));
        let s = ticket.wait().unwrap();
        assert_eq!((s.value(), s.model_version), (1.5, 7));
        assert_eq!(pool.free.len(), 1, "both holders gone: back in the pool");
        let (t2, r2) = pool.pair();
        assert_eq!(pool.free.len(), 0, "reused");
        drop(t2);
        r2.send(Ok(score(2.0)));
        assert_eq!(pool.free.len(), 1);
        pool.close();
    }

    #[test]
    fn dropped_responder_answers_with_an_error() {
        let pool = SlotPool::<Score>::new(4);
        let (ticket, responder) = pool.pair();
        drop(responder);
        assert!(matches!(ticket.wait(), Err(Error::Backend { .. })));
        pool.close();
    }

    #[test]
    fn wait_across_threads_and_wide_scores() {
        let pool = SlotPool::new(64);
        for i in 0..2000 {
            let (ticket, responder) = pool.pair();
            let h = thread::spawn(move || {
                let values: Vec<f32> = (0..(i % 7)).map(|k| (i + k) as f32).collect();
                responder.send(Ok(Score::new(&values, 1, Timing::default())));
            });
            let s = ticket.wait().unwrap();
            assert_eq!(s.values().len(), i % 7);
            assert!(s.values().iter().enumerate().all(|(k, &v)| v == (i + k) as f32));
            h.join().unwrap();
        }
        pool.close();
    }
}
