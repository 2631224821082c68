//! One-shot reply slots: how each accepted event gets exactly one answer.
//!
//! A slot is shared by two holders, the caller's [`Ticket`] and the runtime's `Responder`.
//! The responder writes the answer once and wakes whoever waits (a task's waker or a parked
//! thread); the ticket takes it. Whichever holder lets go last resets the slot and returns it
//! to its pool, so in steady state no event allocates. A responder dropped without answering
//! (a panicking worker) answers with an error rather than leaving its ticket waiting forever.

use std::future::Future;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use crate::error::{Error, Result};
use sync::{Arc, ArrayQueue, AtomicBool, AtomicU8, Ordering, UnsafeCell, fence, thread};

/// What the slot protocol is built from: std's atomics and two well-kept crates, or, under
/// `--cfg streamscore_loom`, loom's model-checked twins (a mutex stands in for the two crates, whose
/// contracts it keeps), so the protocol itself can be checked exhaustively.
#[cfg(not(streamscore_loom))]
mod sync {
    pub(super) use crossbeam_queue::ArrayQueue;
    pub(super) use std::sync::Arc;
    pub(super) use std::sync::atomic::{AtomicBool, AtomicU8, Ordering, fence};
    pub(super) use std::thread;

    /// `std::cell::UnsafeCell` with loom's closure API.
    pub(super) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

    impl<T> UnsafeCell<T> {
        pub(super) fn new(value: T) -> Self {
            UnsafeCell(std::cell::UnsafeCell::new(value))
        }
        pub(super) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
            f(self.0.get())
        }
    }
}

#[cfg(streamscore_loom)]
mod sync {
    pub(super) use loom::cell::UnsafeCell;
    pub(super) use loom::sync::Arc;
    pub(super) use loom::sync::atomic::{AtomicBool, AtomicU8, Ordering, fence};
    pub(super) use loom::thread;

    /// `crossbeam_queue::ArrayQueue`'s contract: bounded, a full push hands the value back.
    pub(super) struct ArrayQueue<T> {
        items: loom::sync::Mutex<Vec<T>>,
        capacity: usize,
    }

    impl<T> ArrayQueue<T> {
        pub(super) fn new(capacity: usize) -> Self {
            ArrayQueue { items: loom::sync::Mutex::new(Vec::new()), capacity }
        }
        pub(super) fn push(&self, value: T) -> Result<(), T> {
            let mut items = self.items.lock().unwrap();
            if items.len() >= self.capacity {
                return Err(value);
            }
            items.push(value);
            Ok(())
        }
        pub(super) fn pop(&self) -> Option<T> {
            self.items.lock().unwrap().pop()
        }
    }
}

/// No answer, and no waker registered: only the ticket touches the waker cell.
const EMPTY: u8 = 0;
/// No answer; the ticket registered a waker and lets go of the cell until it sees READY (or
/// takes the cell back with a CAS to EMPTY, to register another).
const WAITING: u8 = 1;
/// Answered: the value is written; a responder that saw WAITING owns the waker cell.
const READY: u8 = 2;
/// The ticket took the value.
const TAKEN: u8 = 3;

/// Rounds of exponentially longer spinning (1, 2, 4 ... 64 hints) before a ticket parks.
#[cfg(not(streamscore_loom))]
const SPIN_STEPS: u32 = 7;

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
    /// The data-quality gates it violated under `flag` or `impute`, one bit per rule in the
    /// runtime's order ([`Runtime::gate_names`](crate::Runtime::gate_names)); 0 when none.
    pub gate_flags: u64,
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
        Score { inline, len: values.len() as u32, spill, model_version, timing, gate_flags: 0 }
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

/// The answers to a set of events submitted together
/// ([`Runtime::try_submit_many`](crate::Runtime::try_submit_many)): one per event, in
/// submission order. An event refused on its own (a non-finite value under the `reject`
/// policy, an event time out of range, a feature-stage refusal) has its error here; the others
/// were scored in one batch, by one model version.
#[derive(Debug)]
pub struct Scores {
    /// `width` values per event, row-major; NaN for a refused event.
    pub(crate) values: Vec<f32>,
    pub(crate) width: usize,
    /// (event, why), by event.
    pub(crate) errors: Vec<(usize, Error)>,
    /// Version of the model that scored the set (its first scored event's, when a traffic
    /// split put its events in several variants: see [`version_of`](Scores::version_of)).
    pub model_version: u64,
    /// Each event's version, when they differ.
    pub(crate) versions: Option<Vec<u64>>,
    /// Where the set's time went (`batch_rows` counts every row of the batch it was in).
    pub timing: Timing,
    /// Each event's gate flags (see [`Score::gate_flags`]), empty when the runtime has no
    /// gates.
    pub(crate) flags: Vec<u64>,
}

impl Scores {
    /// Event `i`'s gate flags (see [`Score::gate_flags`]); 0 when none, or out of range.
    pub fn gate_flags(&self, i: usize) -> u64 {
        self.flags.get(i).copied().unwrap_or(0)
    }

    /// Events in the set.
    pub fn len(&self) -> usize {
        self.values.len().checked_div(self.width).unwrap_or(0)
    }

    /// True for an empty set.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Values per event (1, or the number of classes).
    pub fn width(&self) -> usize {
        self.width
    }

    /// Event `i`'s values, or why it was not scored; `None` past the end.
    pub fn get(&self, i: usize) -> Option<std::result::Result<&[f32], &Error>> {
        if i >= self.len() {
            return None;
        }
        if let Ok(e) = self.errors.binary_search_by_key(&i, |(r, _)| *r) {
            return Some(Err(&self.errors[e].1));
        }
        Some(Ok(&self.values[i * self.width..(i + 1) * self.width]))
    }

    /// Every event's answer, in submission order.
    pub fn iter(&self) -> impl Iterator<Item = std::result::Result<&[f32], &Error>> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }

    /// Every value, row-major (`width()` per event; NaN for a refused event).
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// The refused events and why, by event index.
    pub fn errors(&self) -> &[(usize, Error)] {
        &self.errors
    }

    /// The version that scored event `i` (under a traffic split the events of one set may
    /// land in different variants); `model_version` for a refused event or past the end.
    pub fn version_of(&self, i: usize) -> u64 {
        self.versions.as_ref().and_then(|v| v.get(i).copied()).unwrap_or(self.model_version)
    }

    /// Sets the versions of the scored events (in order), when they are not all one.
    pub(crate) fn set_versions(&mut self, mut scored: impl Iterator<Item = u64>) {
        let n = self.len();
        let mut refused = self.errors.iter().map(|(r, _)| *r).peekable();
        let mut each = Vec::with_capacity(n);
        let mut first = None;
        for i in 0..n {
            let v = match refused.next_if_eq(&i) {
                Some(_) => None,
                None => scored.next(),
            };
            first = first.or(v);
            each.push(v);
        }
        let Some(first) = first else { return };
        self.model_version = first;
        if each.iter().flatten().any(|&v| v != first) {
            self.versions = Some(each.into_iter().map(|v| v.unwrap_or(first)).collect());
        }
    }
}

pub(crate) struct Slot<T> {
    state: AtomicU8,
    holders: AtomicU8,
    value: UnsafeCell<MaybeUninit<Result<T>>>,
    /// The waiting ticket's waker, owned by whoever the state says (see the constants).
    waker: UnsafeCell<Option<Waker>>,
    pool: Arc<SlotPool<T>>,
}

// SAFETY: `value` is written only by the responder before it publishes READY (Release) and read
// only by the ticket after it observes READY (Acquire), or by the last holder in `reset`, after
// both holders have let go (AcqRel on `holders`). `waker` is touched by one side at a time, as
// the state hands it over (EMPTY: the ticket; WAITING -> READY: the responder that swapped it;
// `reset`: the last holder). `Result<T>` and `Waker` are Send.
unsafe impl<T: Send> Sync for Slot<T> {}
// SAFETY: as above; moving a slot between threads moves at most one `Result<T>`, which is Send.
unsafe impl<T: Send> Send for Slot<T> {}

impl<T> Slot<T> {
    /// Called only by the last holder: no one else can touch the slot.
    fn reset(&self) {
        if self.state.load(Ordering::Acquire) == READY {
            // SAFETY: READY means written and not yet taken; we are the only holder left.
            self.value.with_mut(|v| unsafe { (*v).assume_init_drop() });
        }
        self.state.store(EMPTY, Ordering::Relaxed);
        // SAFETY: the last holder owns the waker cell (a ticket whose registration lost the race
        // to READY leaves its waker here).
        drop(self.waker.with_mut(|w| unsafe { (*w).take() }));
    }
}

/// Lets go of one holder's share; the last one recycles the slot.
fn release<T>(slot: Arc<Slot<T>>) {
    if slot.holders.fetch_sub(1, Ordering::AcqRel) != 1 {
        return;
    }
    slot.reset();
    // A reference of our own: once pushed, the slot (and the reference it holds) belongs to
    // the pool, where a concurrent `close` may drop it.
    let pool = Arc::clone(&slot.pool);
    if pool.closed.load(Ordering::Relaxed) {
        return;
    }
    let _ = pool.free.push(slot);
    // `close` may have drained between the check and the push, which would strand the slot
    // (and, through it, the pool: a reference cycle). Pairs with the fence in `close`: one of
    // the two sees the other's write, so one of them drains what the other left. (Found by
    // the loom model below.)
    fence(Ordering::SeqCst);
    if pool.closed.load(Ordering::Relaxed) {
        while pool.free.pop().is_some() {}
    }
}

/// A shared pool (loom's Arc under `--cfg streamscore_loom`).
pub(crate) type Pool<T = Score> = Arc<SlotPool<T>>;

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
    pub(crate) fn pair(pool: &Pool<T>) -> (Ticket<T>, Responder<T>) {
        let slot = pool.free.pop().unwrap_or_else(|| {
            Arc::new(Slot {
                state: AtomicU8::new(EMPTY),
                holders: AtomicU8::new(0),
                value: UnsafeCell::new(MaybeUninit::uninit()),
                waker: UnsafeCell::new(None),
                pool: Arc::clone(pool),
            })
        });
        slot.holders.store(2, Ordering::Relaxed);
        (Ticket { slot: Some(Arc::clone(&slot)) }, Responder { slot: Some(slot) })
    }

    /// Breaks the pool <-> slot reference cycle: idle slots are freed and released ones are no
    /// longer kept.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        // Pairs with the fence in `release`.
        fence(Ordering::SeqCst);
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
    let waiting = publish(&slot, answer);
    wake(slot, waiting);
}

/// Writes the answer and marks it READY: a ticket that looks now takes it, but one already
/// waiting is not woken until [`wake`]. Returns whether one was waiting.
fn publish<T>(slot: &Slot<T>, answer: Result<T>) -> bool {
    // SAFETY: the responder is the only writer and writes once; the ticket reads only after
    // observing READY below.
    slot.value.with_mut(|v| unsafe { (*v).write(answer) });
    slot.state.swap(READY, Ordering::AcqRel) == WAITING
}

/// Wakes the ticket if it was `waiting` when the answer was published, and lets go of the
/// responder's share.
fn wake<T>(slot: Arc<Slot<T>>, waiting: bool) {
    if waiting {
        // SAFETY: our swap took WAITING to READY: the ticket registered this waker before it set
        // WAITING (Release, paired with our AcqRel swap) and no longer touches the cell.
        let waker = slot.waker.with_mut(|w| unsafe { (*w).take() });
        if let Some(w) = waker {
            w.wake();
        }
    }
    release(slot);
}

impl<T> Responder<T> {
    /// Writes the answer without waking a waiting ticket yet: a batch's answers are all
    /// published first and their waiters woken after, so a caller that catches up with the
    /// answers mid-batch parks once per batch, not once per event (each wake-up is a system
    /// call on the answering thread). Dropping the [`Published`] wakes.
    pub(crate) fn publish(mut self, answer: Result<T>) -> Published<T> {
        let slot = self.slot.take().map(|slot| {
            let waiting = publish(&slot, answer);
            (slot, waiting)
        });
        Published { slot }
    }
}

/// An answer written but its waiter not yet woken ([`Responder::publish`]).
pub(crate) struct Published<T = Score> {
    slot: Option<(Arc<Slot<T>>, bool)>,
}

impl<T> Drop for Published<T> {
    fn drop(&mut self) {
        if let Some((slot, waiting)) = self.slot.take() {
            wake(slot, waiting);
        }
    }
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

struct ThreadWaker(thread::Thread);

// The waker is std's (the `Wake` trait wants std's Arc) even under loom: it only unparks.
impl Wake for ThreadWaker {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &std::sync::Arc<Self>) {
        self.0.unpark();
    }
}

#[cfg(not(streamscore_loom))]
thread_local! {
    static THREAD_WAKER: Waker = Waker::from(std::sync::Arc::new(ThreadWaker(thread::current())));
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
        #[cfg(not(streamscore_loom))]
        return THREAD_WAKER.with(|waker| self.wait_with(waker));
        #[cfg(streamscore_loom)]
        {
            let waker = Waker::from(std::sync::Arc::new(ThreadWaker(thread::current())));
            self.wait_with(&waker)
        }
    }

    fn wait_with(&mut self, waker: &Waker) -> Result<T> {
        // An answer due within microseconds (the rest of a batch being written) is cheaper to
        // spin for than to park for: parking costs both threads a system call. Bounded (127
        // spin hints, a few µs), then park. Never `yield_now`: on a machine with other busy
        // processes a yield can hand the core away for a whole time slice (milliseconds),
        // where a parked thread is woken the moment its answer is written.
        #[cfg(not(streamscore_loom))]
        for step in 0..SPIN_STEPS {
            if self.is_ready() {
                return self.take();
            }
            for _ in 0..1u32 << step {
                std::hint::spin_loop();
            }
        }
        loop {
            if let Poll::Ready(answer) = self.poll_with(waker) {
                return answer;
            }
            thread::park();
        }
    }

    fn take(&mut self) -> Result<T> {
        let Some(slot) = self.slot.take() else {
            return Err(Error::Closed);
        };
        // SAFETY: READY was observed with Acquire by the caller; the value is read exactly once
        // (the slot leaves the ticket here) and marked TAKEN so `reset` does not drop it again.
        let answer = slot.value.with_mut(|v| unsafe { (*v).assume_init_read() });
        slot.state.store(TAKEN, Ordering::Relaxed);
        release(slot);
        answer
    }

    fn poll_with(&mut self, waker: &Waker) -> Poll<Result<T>> {
        let Some(slot) = &self.slot else {
            // Polled again after completion.
            return Poll::Ready(Err(Error::Closed));
        };
        match slot.state.load(Ordering::Acquire) {
            READY => return Poll::Ready(self.take()),
            // Registered before: take the cell back to register this waker (a task may move
            // between executor threads); losing the race means the answer is there.
            WAITING
                if slot
                    .state
                    .compare_exchange(WAITING, EMPTY, Ordering::Acquire, Ordering::Acquire)
                    .is_err() =>
            {
                return Poll::Ready(self.take());
            }
            _ => {}
        }
        // SAFETY: the state is EMPTY and only this ticket moves it on from EMPTY to WAITING:
        // the cell is ours until the CAS below publishes it.
        slot.waker.with_mut(|w| unsafe {
            match &mut *w {
                Some(old) if old.will_wake(waker) => {}
                cell => *cell = Some(waker.clone()),
            }
        });
        match slot.state.compare_exchange(EMPTY, WAITING, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => Poll::Pending,
            // Published meanwhile (READY): the waker stays in the cell for `reset`.
            Err(_) => Poll::Ready(self.take()),
        }
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

#[cfg(all(test, not(streamscore_loom)))]
mod tests {
    use super::*;

    fn score(v: f32) -> Score {
        Score::new(&[v], 7, Timing::default())
    }

    #[test]
    fn answer_reaches_ticket_and_slot_is_recycled() {
        let pool = SlotPool::new(4);
        let (ticket, responder) = SlotPool::pair(&pool);
        responder.send(Ok(score(1.5)));
        let s = ticket.wait().unwrap();
        assert_eq!((s.value(), s.model_version), (1.5, 7));
        assert_eq!(pool.free.len(), 1, "both holders gone: back in the pool");
        let (t2, r2) = SlotPool::pair(&pool);
        assert_eq!(pool.free.len(), 0, "reused");
        drop(t2);
        r2.send(Ok(score(2.0)));
        assert_eq!(pool.free.len(), 1);
        pool.close();
    }

    #[test]
    fn dropped_responder_answers_with_an_error() {
        let pool = SlotPool::<Score>::new(4);
        let (ticket, responder) = SlotPool::pair(&pool);
        drop(responder);
        assert!(matches!(ticket.wait(), Err(Error::Backend { .. })));
        pool.close();
    }

    #[test]
    fn wait_across_threads_and_wide_scores() {
        let pool = SlotPool::new(64);
        for i in 0..2000 {
            let (ticket, responder) = SlotPool::pair(&pool);
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

/// Exhaustive interleavings of the slot protocol under loom (answer on one thread, wait, drop or
/// poll on another). Run: `RUSTFLAGS="--cfg streamscore_loom" cargo test --release --lib loom`.
#[cfg(all(test, streamscore_loom))]
mod loom_tests {
    use super::*;

    fn score(v: f32) -> Score {
        Score::new(&[v], 1, Timing::default())
    }

    #[test]
    fn loom_answer_reaches_a_waiting_ticket() {
        loom::model(|| {
            let pool = SlotPool::new(1);
            let (ticket, responder) = SlotPool::pair(&pool);
            // Not joined: the responder's wake may unpark this thread after `wait` returned,
            // and loom aborts on an unpark that reaches a thread blocked in `join` (loom #249,
            // open; std allows it). The model still runs the thread to completion.
            thread::spawn(move || responder.send(Ok(score(2.5))));
            assert_eq!(ticket.wait().unwrap().value(), 2.5);
            pool.close();
        });
    }

    /// The answer is dropped exactly once whichever holder lets go last (a tracked Arc: a
    /// missed drop is a leak loom reports, a second one a double free).
    #[test]
    fn loom_a_dropped_ticket_frees_the_answer_once() {
        loom::model(|| {
            let pool = SlotPool::new(1);
            let (ticket, responder) = SlotPool::pair(&pool);
            let answer = Arc::new(7u8);
            let h = thread::spawn(move || responder.send(Ok(answer)));
            drop(ticket);
            h.join().unwrap();
            pool.close();
        });
    }

    #[test]
    fn loom_a_responder_dropped_unanswered_answers_an_error() {
        loom::model(|| {
            let pool = SlotPool::<Score>::new(1);
            let (ticket, responder) = SlotPool::pair(&pool);
            // Not joined, as above (loom #249).
            thread::spawn(move || drop(responder));
            assert!(matches!(ticket.wait(), Err(Error::Backend { .. })));
            pool.close();
        });
    }

    /// A waker that counts its wake-ups (std's Arc: the `Wake` trait wants it).
    struct Count(loom::sync::atomic::AtomicUsize);

    impl Wake for Count {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// An async task polled twice, with a different waker each time (it moved between
    /// executor threads), while the answer is published: it gets the answer, and a waker is
    /// woken whenever one was registered when the answer came.
    #[test]
    fn loom_a_repoll_with_another_waker_is_not_lost() {
        loom::model(|| {
            let pool = SlotPool::new(1);
            let (mut ticket, responder) = SlotPool::pair(&pool);
            let h = thread::spawn(move || responder.send(Ok(score(4.0))));
            let (a, b) = (
                std::sync::Arc::new(Count(loom::sync::atomic::AtomicUsize::new(0))),
                std::sync::Arc::new(Count(loom::sync::atomic::AtomicUsize::new(0))),
            );
            let (wa, wb) = (Waker::from(a.clone()), Waker::from(b.clone()));
            let mut answer = match ticket.poll_with(&wa) {
                Poll::Ready(x) => Some(x),
                Poll::Pending => None,
            };
            if answer.is_none() {
                answer = match ticket.poll_with(&wb) {
                    Poll::Ready(x) => Some(x),
                    Poll::Pending => None,
                };
            }
            h.join().unwrap();
            let answer = answer.or_else(|| {
                // Still pending after both polls: the answer came after the second
                // registration, so the second waker was woken and a poll now finds it.
                assert_eq!(b.0.load(Ordering::SeqCst), 1, "the registered waker is woken");
                match ticket.poll_with(&wb) {
                    Poll::Ready(x) => Some(x),
                    Poll::Pending => None,
                }
            });
            assert_eq!(answer.unwrap().unwrap().value(), 4.0);
            assert!(a.0.load(Ordering::SeqCst) + b.0.load(Ordering::SeqCst) <= 1, "woken once");
            drop(ticket);
            pool.close();
        });
    }

    /// A batch's answers published first and woken after: a ticket waiting on either is woken
    /// once, after its answer is there.
    #[test]
    fn loom_published_answers_wake_after_the_batch() {
        loom::model(|| {
            let pool = SlotPool::new(2);
            let (t1, r1) = SlotPool::pair(&pool);
            let (t2, r2) = SlotPool::pair(&pool);
            // Not joined, as above (loom #249).
            thread::spawn(move || {
                let p1 = r1.publish(Ok(score(1.0)));
                let p2 = r2.publish(Ok(score(2.0)));
                drop((p1, p2));
            });
            assert_eq!(t2.wait().unwrap().value(), 2.0);
            assert_eq!(t1.wait().unwrap().value(), 1.0);
            pool.close();
        });
    }

    /// A slot recycled through the pool is clean for its next pair, whichever side finished.
    #[test]
    fn loom_a_recycled_slot_starts_empty() {
        loom::model(|| {
            let pool = SlotPool::new(1);
            let (mut ticket, responder) = SlotPool::pair(&pool);
            let h = thread::spawn(move || responder.send(Ok(score(1.0))));
            let first = ticket.try_take();
            h.join().unwrap();
            drop(ticket);
            let (mut again, responder) = SlotPool::pair(&pool);
            assert!(again.try_take().is_none(), "a fresh pair has no answer");
            responder.send(Ok(score(3.0)));
            assert_eq!(again.try_take().unwrap().unwrap().value(), 3.0);
            if let Some(a) = first {
                assert_eq!(a.unwrap().value(), 1.0);
            }
            pool.close();
        });
    }
}
