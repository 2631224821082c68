//! Per-key state, kept in a slab: a small map from key to slot, and per slot the key's recent
//! events (times and windowed values, each in one contiguous buffer, in time order), its
//! watermark and its previous event time; EWMA states sit in one flat array beside the slab.
//!
//! The layout is for speed at hundreds of thousands of keys: a lookup touches a 16-byte map
//! entry, then one slab entry, then the two history buffers, and each of those addresses can be
//! prefetched ahead of use (the feature stage looks up a group of rows' slots, prefetches their
//! entries, then their histories, before it updates them in order).
//!
//! Memory is bounded three ways: events older than the longest window (plus the lateness
//! allowance) are dropped, a key keeps at most `max_events_per_key` events, and at most
//! `max_keys` keys live at once.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Hashes a `u64` key with one multiply (keys are already well spread, or are hashes).
#[derive(Default)]
pub(crate) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn write_u64(&mut self, k: u64) {
        self.0 = (k ^ (k >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        self.0 ^= self.0 >> 32;
    }
}

type KeyMap<V> = HashMap<u64, V, BuildHasherDefault<KeyHasher>>;

/// No previous event.
const NONE: i64 = i64::MIN;

/// One key's state. Its history is `times[start..]` and `values[start * slots..]`: dropping
/// the oldest events only moves `start`, and the dead prefix is cut off once it outgrows the
/// live part, so both stay contiguous and each event is moved at most once.
#[derive(Debug)]
pub(crate) struct KeyState {
    key: u64,
    /// Whether the slot holds a key (freed slots wait on the free list).
    live: bool,
    /// Latest event time seen (the key's watermark).
    pub watermark: i64,
    /// Time of the key's previous event, for `since_last` ([`NONE`] before the first).
    previous: i64,
    start: usize,
    times: Vec<i64>,
    values: Vec<f32>,
}

impl KeyState {
    /// Event times, ascending.
    #[inline]
    pub fn times(&self) -> &[i64] {
        &self.times[self.start..]
    }

    /// Windowed values, `slots` per event, parallel to [`times`](Self::times).
    #[inline]
    pub fn values(&self, slots: usize) -> &[f32] {
        &self.values[self.start * slots..]
    }

    /// Time of the key's previous event.
    pub fn previous(&self) -> Option<i64> {
        (self.previous != NONE).then_some(self.previous)
    }

    /// Records an event at `t` as the key's latest seen.
    pub fn seen(&mut self, t: i64) {
        self.previous = self.previous.max(t);
        self.watermark = self.watermark.max(t);
    }

    /// Inserts an event at its time position (after events of the same time) and returns its
    /// index in [`times`](Self::times).
    #[inline]
    pub fn insert(&mut self, t: i64, vals: &[f32]) -> usize {
        let live = self.times();
        // In-order events (the common case) append without a search.
        if live.last().is_none_or(|&b| b <= t) {
            let at = live.len();
            self.times.push(t);
            self.values.extend_from_slice(vals);
            return at;
        }
        let at = live.partition_point(|&x| x <= t);
        self.times.insert(self.start + at, t);
        let v = (self.start + at) * vals.len();
        self.values.splice(v..v, vals.iter().copied());
        at
    }

    /// Drops events at or before `before`, and the oldest beyond `max_events`; returns how
    /// many.
    #[inline]
    pub fn evict(&mut self, before: i64, max_events: usize, slots: usize) -> usize {
        let live = self.times();
        let old = if live.first().is_some_and(|&x| x <= before) {
            live.partition_point(|&x| x <= before)
        } else {
            0
        };
        let drop = old.max(live.len().saturating_sub(max_events));
        self.start += drop;
        let len = self.times.len() - self.start;
        if self.start > len.max(4) {
            self.times.drain(..self.start);
            self.values.drain(..self.start * slots);
            self.start = 0;
        }
        drop
    }

    /// Asks the CPU to bring the part of the history an update reads into cache: the newest
    /// entries (appended to, and where short windows start) and the oldest (evicted from).
    #[inline]
    pub fn prefetch_history(&self, slots: usize) {
        let live = self.times.len() - self.start;
        let (t, v) = (self.times.as_ptr(), self.values.as_ptr());
        // Up to 4 lines of times (8 events each) and 2 of values, from the newest back, and
        // the oldest line of each.
        for back in [0usize, 8, 16, 24] {
            if back <= live {
                prefetch(t.wrapping_add(self.start + live - back));
            }
        }
        for back in [0usize, 16] {
            if back <= live {
                prefetch(v.wrapping_add((self.start + live - back) * slots));
            }
        }
        prefetch(t.wrapping_add(self.start));
        prefetch(v.wrapping_add(self.start * slots));
    }

    /// Approximate heap bytes.
    fn heap_bytes(&self) -> usize {
        self.times.capacity() * 8 + self.values.capacity() * 4
    }
}

/// A hint to bring the line holding `p` into cache.
#[inline(always)]
pub(crate) fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: prefetching is a hint; it never faults, whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Every key's state.
#[derive(Debug, Default)]
pub(crate) struct Store {
    index: KeyMap<u32>,
    slab: Vec<KeyState>,
    /// `n_ewma` (value, time of last update) per slab entry; NaN before the first value.
    ewma: Vec<(f64, i64)>,
    n_ewma: usize,
    free: Vec<u32>,
    /// Bumped whenever a key is removed, so slots looked up earlier can be known stale.
    generation: u64,
}

impl Store {
    pub fn new(n_ewma: usize) -> Self {
        Store { n_ewma, ..Default::default() }
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The slot of `key`, if it has state.
    #[inline]
    pub fn slot(&self, key: u64) -> Option<u32> {
        self.index.get(&key).copied()
    }

    #[inline]
    pub fn get(&self, slot: u32) -> &KeyState {
        &self.slab[slot as usize]
    }

    /// A slot's state and its EWMA states.
    #[inline]
    pub fn get_mut(&mut self, slot: u32) -> (&mut KeyState, &mut [(f64, i64)]) {
        let e = slot as usize * self.n_ewma;
        (&mut self.slab[slot as usize], &mut self.ewma[e..e + self.n_ewma])
    }

    /// Prefetches a slot's entry and EWMA states.
    #[inline]
    pub fn prefetch(&self, slot: u32) {
        let p = self.slab.as_ptr().wrapping_add(slot as usize);
        prefetch(p);
        prefetch(p.cast::<u8>().wrapping_add(63));
        if self.n_ewma > 0 {
            prefetch(self.ewma.as_ptr().wrapping_add(slot as usize * self.n_ewma));
        }
    }

    /// Creates state for a key that has none, first seen at `t`.
    pub fn insert(&mut self, key: u64, t: i64) -> u32 {
        let fresh = KeyState {
            key,
            live: true,
            watermark: t,
            previous: NONE,
            start: 0,
            times: Vec::with_capacity(4),
            values: Vec::new(),
        };
        let slot = match self.free.pop() {
            Some(s) => {
                self.slab[s as usize] = fresh;
                let e = s as usize * self.n_ewma;
                self.ewma[e..e + self.n_ewma].fill((f64::NAN, t));
                s
            }
            None => {
                self.slab.push(fresh);
                self.ewma.extend(std::iter::repeat_n((f64::NAN, t), self.n_ewma));
                u32::try_from(self.slab.len() - 1).expect("fewer than 2^32 keys")
            }
        };
        self.index.insert(key, slot);
        slot
    }

    /// Forgets `slot`'s key and frees its buffers.
    pub fn remove(&mut self, slot: u32) {
        let s = &mut self.slab[slot as usize];
        self.index.remove(&s.key);
        s.live = false;
        s.times = Vec::new();
        s.values = Vec::new();
        s.start = 0;
        self.free.push(slot);
        self.generation += 1;
    }

    /// Removes every key whose watermark is below `horizon`; returns how many. One pass
    /// over the slab, in memory order (free slots have no key to remove).
    pub fn remove_idle(&mut self, horizon: i64) -> usize {
        let mut removed = 0;
        for slot in 0..self.slab.len() {
            let s = &self.slab[slot];
            if s.live && s.watermark < horizon {
                self.remove(slot as u32);
                removed += 1;
            }
        }
        removed
    }

    /// Removes the `n` keys seen least recently (oldest watermark; ties by key, so the choice
    /// is deterministic).
    pub fn remove_oldest(&mut self, n: usize) {
        let mut by_age: Vec<(i64, u64, u32)> =
            self.live().map(|(slot, s)| (s.watermark, s.key, slot)).collect();
        if n == 0 || by_age.is_empty() {
            return;
        }
        let n = n.min(by_age.len());
        by_age.select_nth_unstable(n - 1);
        for &(_, _, slot) in &by_age[..n] {
            self.remove(slot);
        }
    }

    /// Live slots and their states.
    fn live(&self) -> impl Iterator<Item = (u32, &KeyState)> {
        self.index.values().map(|&slot| (slot, &self.slab[slot as usize]))
    }

    /// Approximate bytes: the map's slots, the slab, the EWMA states and every key's buffers.
    pub fn bytes(&self) -> usize {
        self.index.capacity() * 16
            + self.slab.capacity() * std::mem::size_of::<KeyState>()
            + self.ewma.capacity() * 16
            + self.free.capacity() * 4
            + self.slab.iter().map(KeyState::heap_bytes).sum::<usize>()
    }
}
