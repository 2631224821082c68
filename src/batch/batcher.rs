//! The micro-batching policy: when to flush, and which events to give up on.
//!
//! Pure logic over caller-supplied instants, so every timing rule is tested on a virtual clock.
//! A batch is flushed when it holds `max_batch` events, or when the oldest has waited `max_delay`
//! since acceptance, or early enough that the most urgent event's deadline can still be met
//! given the recent scoring time of a batch. An event whose deadline cannot be met is expired,
//! at admission or at flush, and never reaches the model.

use std::time::{Duration, Instant};

/// What the batcher needs to know about a queued item.
pub trait Queued {
    /// When the runtime accepted it.
    fn accepted(&self) -> Instant;
    /// When its answer stops being useful, if ever.
    fn deadline(&self) -> Option<Instant>;
    /// Rows it adds to a batch (a set of events submitted together is never split).
    fn rows(&self) -> usize {
        1
    }
}

/// Collects items and decides when they form a batch.
#[derive(Debug)]
pub struct Batcher<T> {
    max_batch: usize,
    max_delay: Duration,
    items: Vec<T>,
    /// Rows of `items`.
    rows: usize,
    oldest: Option<Instant>,
    earliest_deadline: Option<Instant>,
    scoring_estimate: Duration,
}

impl<T: Queued> Batcher<T> {
    /// A batcher flushing at `max_batch` items (at least 1) or after `max_delay`.
    pub fn new(max_batch: usize, max_delay: Duration) -> Self {
        let max_batch = max_batch.max(1);
        Batcher {
            max_batch,
            max_delay,
            items: Vec::with_capacity(max_batch),
            rows: 0,
            oldest: None,
            earliest_deadline: None,
            scoring_estimate: Duration::ZERO,
        }
    }

    /// Items waiting.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// True when the batch holds `max_batch` rows or more: flush before admitting more. (An
    /// admitted set can take a batch past `max_batch`: sets are never split.)
    pub fn is_full(&self) -> bool {
        self.rows >= self.max_batch
    }

    /// The expected time to score one batch, used to give up early on events that would miss
    /// their deadline anyway.
    pub fn set_scoring_estimate(&mut self, d: Duration) {
        self.scoring_estimate = d;
    }

    fn hopeless(&self, item: &T, now: Instant) -> bool {
        item.deadline().is_some_and(|d| d < now + self.scoring_estimate)
    }

    /// Admits `item` at `now`, or hands it back if its deadline cannot be met.
    /// Call only when not [`is_full`](Self::is_full).
    pub fn admit(&mut self, item: T, now: Instant) -> Result<(), T> {
        if self.hopeless(&item, now) {
            return Err(item);
        }
        debug_assert!(!self.is_full());
        let accepted = item.accepted();
        self.oldest = Some(self.oldest.map_or(accepted, |o| o.min(accepted)));
        if let Some(d) = item.deadline() {
            self.earliest_deadline = Some(self.earliest_deadline.map_or(d, |e| e.min(d)));
        }
        self.rows += item.rows();
        self.items.push(item);
        Ok(())
    }

    /// When the current batch must be flushed at the latest; `None` when empty.
    pub fn flush_at(&self) -> Option<Instant> {
        let by_delay = self.oldest? + self.max_delay;
        Some(match self.earliest_deadline {
            Some(d) => by_delay.min(d.checked_sub(self.scoring_estimate).unwrap_or(d)),
            None => by_delay,
        })
    }

    /// True when the batch should go now.
    pub fn flush_due(&self, now: Instant) -> bool {
        self.is_full() || self.flush_at().is_some_and(|t| now >= t)
    }

    /// Moves the batch into `batch` and the items that can no longer meet their deadline into
    /// `expired`, in acceptance order within each, and starts a new batch.
    pub fn take(&mut self, now: Instant, batch: &mut Vec<T>, expired: &mut Vec<T>) {
        let doomed = self.earliest_deadline.is_some_and(|d| d < now + self.scoring_estimate);
        if !doomed && batch.is_empty() {
            // Nothing to expire (the usual case): hand the whole batch over without moving
            // its items one by one.
            std::mem::swap(&mut self.items, batch);
            self.items.reserve(self.max_batch);
            self.rows = 0;
            self.oldest = None;
            self.earliest_deadline = None;
            return;
        }
        for item in self.items.drain(..) {
            if item.deadline().is_some_and(|d| d < now + self.scoring_estimate) {
                expired.push(item);
            } else {
                batch.push(item);
            }
        }
        self.rows = 0;
        self.oldest = None;
        self.earliest_deadline = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq)]
    struct Item {
        id: u32,
        accepted: Instant,
        deadline: Option<Instant>,
    }

    impl Queued for Item {
        fn accepted(&self) -> Instant {
            self.accepted
        }
        fn deadline(&self) -> Option<Instant> {
            self.deadline
        }
    }

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    fn take(b: &mut Batcher<Item>, now: Instant) -> (Vec<u32>, Vec<u32>) {
        let (mut batch, mut expired) = (Vec::new(), Vec::new());
        b.take(now, &mut batch, &mut expired);
        (batch.iter().map(|i| i.id).collect(), expired.iter().map(|i| i.id).collect())
    }

    #[test]
    fn flushes_when_full_before_the_delay() {
        let t0 = Instant::now();
        let mut b = Batcher::new(3, us(1000));
        for id in 0..3 {
            assert!(!b.flush_due(t0 + us(id as u64)));
            b.admit(Item { id, accepted: t0 + us(id as u64), deadline: None }, t0 + us(10))
                .unwrap();
        }
        assert!(b.flush_due(t0 + us(10)), "full at 3 items, long before max_delay");
        assert_eq!(take(&mut b, t0 + us(10)), (vec![0, 1, 2], vec![]));
        assert!(b.is_empty() && b.flush_at().is_none());
    }

    #[test]
    fn flushes_when_the_oldest_has_waited_max_delay() {
        let t0 = Instant::now();
        let mut b = Batcher::new(100, us(500));
        assert!(!b.flush_due(t0 + us(10_000)), "an empty batcher never flushes");
        // Accepted at t0 but popped from the queue later: the delay counts from acceptance.
        b.admit(Item { id: 1, accepted: t0, deadline: None }, t0 + us(200)).unwrap();
        b.admit(Item { id: 2, accepted: t0 + us(300), deadline: None }, t0 + us(300)).unwrap();
        assert_eq!(b.flush_at(), Some(t0 + us(500)));
        assert!(!b.flush_due(t0 + us(499)));
        assert!(b.flush_due(t0 + us(500)));
        assert_eq!(take(&mut b, t0 + us(500)).0, vec![1, 2]);
        // The next batch's clock starts with its own oldest item.
        b.admit(Item { id: 3, accepted: t0 + us(600), deadline: None }, t0 + us(600)).unwrap();
        assert_eq!(b.flush_at(), Some(t0 + us(1100)));
    }

    #[test]
    fn an_urgent_deadline_pulls_the_flush_earlier() {
        let t0 = Instant::now();
        let mut b = Batcher::new(100, us(1000));
        b.set_scoring_estimate(us(50));
        b.admit(Item { id: 1, accepted: t0, deadline: None }, t0).unwrap();
        b.admit(Item { id: 2, accepted: t0, deadline: Some(t0 + us(300)) }, t0 + us(10)).unwrap();
        assert_eq!(b.flush_at(), Some(t0 + us(250)), "deadline minus the scoring estimate");
        assert!(b.flush_due(t0 + us(250)));
        assert_eq!(take(&mut b, t0 + us(250)), (vec![1, 2], vec![]));
    }

    #[test]
    fn hopeless_events_expire_without_reaching_a_batch() {
        let t0 = Instant::now();
        let mut b = Batcher::new(100, us(1000));
        b.set_scoring_estimate(us(100));
        // Already past its deadline when popped.
        let late = Item { id: 1, accepted: t0, deadline: Some(t0 + us(50)) };
        assert_eq!(b.admit(late, t0 + us(60)), Err(late));
        // Cannot be scored in time: the deadline is closer than one batch's scoring time.
        let tight = Item { id: 2, accepted: t0, deadline: Some(t0 + us(150)) };
        assert_eq!(b.admit(tight, t0 + us(60)), Err(tight));
        // Admitted, but the flush comes too late for it (the batcher was starved of CPU).
        b.admit(Item { id: 3, accepted: t0, deadline: Some(t0 + us(400)) }, t0 + us(60)).unwrap();
        b.admit(Item { id: 4, accepted: t0, deadline: None }, t0 + us(60)).unwrap();
        assert_eq!(take(&mut b, t0 + us(350)), (vec![4], vec![3]));
    }
}
