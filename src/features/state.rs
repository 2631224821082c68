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

/// Spreads a `u64` key over the index's bits (keys may be small integers, or hashes).
#[inline(always)]
fn spread(k: u64) -> u64 {
    let h = (k ^ (k >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^ (h >> 32)
}

/// Key to slot: an open-addressing table with linear probing, at most half full, 16 bytes
/// an entry, deletion by backward shift (no tombstones). A lookup usually reads one cache
/// line, whose address is known from the key alone, so it can be prefetched a step earlier.
#[derive(Debug, Default)]
struct KeyIndex {
    /// (key, slot + 1); slot 0 marks an empty entry.
    entries: Vec<(u64, u32)>,
    len: usize,
}

impl KeyIndex {
    #[inline(always)]
    fn home(&self, key: u64) -> usize {
        spread(key) as usize & (self.entries.len() - 1)
    }

    #[inline]
    fn prefetch(&self, key: u64) {
        if !self.entries.is_empty() {
            prefetch(self.entries.as_ptr().wrapping_add(self.home(key)));
        }
    }

    /// The entry holding `key`, if any.
    #[inline]
    fn find(&self, key: u64) -> Option<usize> {
        if self.entries.is_empty() {
            return None;
        }
        let mask = self.entries.len() - 1;
        let mut i = self.home(key);
        loop {
            let (k, s) = self.entries[i];
            if s == 0 {
                return None;
            }
            if k == key {
                return Some(i);
            }
            i = (i + 1) & mask;
        }
    }

    #[inline]
    fn get(&self, key: u64) -> Option<u32> {
        self.find(key).map(|i| self.entries[i].1 - 1)
    }

    /// Adds `key` (which must be absent).
    fn insert(&mut self, key: u64, slot: u32) {
        if (self.len + 1) * 2 > self.entries.len() {
            self.grow();
        }
        let mask = self.entries.len() - 1;
        let mut i = self.home(key);
        while self.entries[i].1 != 0 {
            i = (i + 1) & mask;
        }
        self.entries[i] = (key, slot + 1);
        self.len += 1;
    }

    fn grow(&mut self) {
        let cap = (self.entries.len() * 2).max(16);
        let old = std::mem::replace(&mut self.entries, vec![(0, 0); cap]);
        self.len = 0;
        for (k, s) in old {
            if s != 0 {
                self.insert(k, s - 1);
            }
        }
    }

    /// Removes `key` if present; later entries of its probe run shift back into the gap.
    fn remove(&mut self, key: u64) {
        let Some(mut gap) = self.find(key) else { return };
        let mask = self.entries.len() - 1;
        let mut j = gap;
        loop {
            j = (j + 1) & mask;
            let (k, s) = self.entries[j];
            if s == 0 {
                break;
            }
            // The entry at `j` may fill the gap unless its home lies after the gap.
            let home = self.home(k);
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(gap) & mask) {
                self.entries[gap] = (k, s);
                gap = j;
            }
        }
        self.entries[gap] = (0, 0);
        self.len -= 1;
    }

    fn bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<(u64, u32)>()
    }
}

/// No previous event.
const NONE: i64 = i64::MIN;

/// Window values a quantile cache holds in place (a cache entry is then under 200 bytes).
pub(crate) const SORTED_INLINE: usize = 32;

/// One quantile's window values as sorted order keys (`f32::total_cmp` order as `i32`), over
/// the history entries it last read: a cache derived from the history, never snapshotted, kept
/// up to date by what enters and leaves the window and rebuilt when it cannot be.
#[derive(Debug, Default)]
pub(crate) struct Sorted {
    /// The non-missing values' order keys, ascending: up to [`SORTED_INLINE`] in the entry
    /// itself (one block the stage prefetches with the key's state), more on the heap.
    pub keys: smallvec::SmallVec<[i32; SORTED_INLINE]>,
    /// Absolute positions (see [`KeyState::base`]) of the entries covered: `from..to`.
    pub from: u64,
    /// End of the covered entries.
    pub to: u64,
    /// Whether `keys` holds exactly the values of `from..to`.
    pub valid: bool,
}

/// One key's state. Its history is `times[start..]` and `values[start * slots..]`: dropping
/// the oldest events only moves `start`, and the dead prefix is cut off once it outgrows half
/// the live part, so both stay contiguous at a bounded cost per event.
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
    /// Entries ever dropped from the front: entry `i` of [`times`](Self::times) is the key's
    /// entry `base + i` for as long as no late event is inserted before it.
    base: u64,
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

    /// The absolute position of the oldest live entry.
    #[inline]
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Time of the key's previous event.
    pub fn previous(&self) -> Option<i64> {
        (self.previous != NONE).then_some(self.previous)
    }

    /// The previous event time as stored (`i64::MIN` before the first), for snapshots.
    pub fn previous_raw(&self) -> i64 {
        self.previous
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
            if self.times.len() == self.times.capacity() {
                // Grow by half (not double): histories are many and mostly steady in length.
                let more = (self.times.len() / 2).max(4);
                self.times.reserve_exact(more);
                self.values.reserve_exact(more * vals.len());
            }
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
        self.base += drop as u64;
        let len = self.times.len() - self.start;
        // Cut the dead prefix once it is over half the live part (each event is moved at
        // most twice, amortized), and give back capacity a burst left behind.
        if self.start > (len / 2).max(4) {
            self.times.drain(..self.start);
            self.values.drain(..self.start * slots);
            self.start = 0;
            if self.times.capacity() > 4 * len + 16 {
                self.times.shrink_to(2 * len + 8);
                self.values.shrink_to((2 * len + 8) * slots);
            }
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
    index: KeyIndex,
    slab: Vec<KeyState>,
    /// `n_ewma` (value, time of last update) per slab entry; NaN before the first value.
    ewma: Vec<(f64, i64)>,
    n_ewma: usize,
    /// `n_sorted` quantile caches per slab entry.
    sorted: Vec<Sorted>,
    n_sorted: usize,
    free: Vec<u32>,
    /// Bumped whenever a key is removed, so slots looked up earlier can be known stale.
    generation: u64,
}

impl Store {
    pub fn new(n_ewma: usize, n_sorted: usize) -> Self {
        Store { n_ewma, n_sorted, ..Default::default() }
    }

    pub fn len(&self) -> usize {
        self.index.len
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The slot of `key`, if it has state.
    #[inline]
    pub fn slot(&self, key: u64) -> Option<u32> {
        self.index.get(key)
    }

    #[inline]
    pub fn get(&self, slot: u32) -> &KeyState {
        &self.slab[slot as usize]
    }

    /// A slot's state, its EWMA states and its quantile caches.
    #[inline]
    pub fn get_mut(&mut self, slot: u32) -> (&mut KeyState, &mut [(f64, i64)], &mut [Sorted]) {
        let e = slot as usize * self.n_ewma;
        let q = slot as usize * self.n_sorted;
        (
            &mut self.slab[slot as usize],
            &mut self.ewma[e..e + self.n_ewma],
            &mut self.sorted[q..q + self.n_sorted],
        )
    }

    /// Prefetches where `key`'s slot is looked up.
    #[inline]
    pub fn prefetch_key(&self, key: u64) {
        self.index.prefetch(key);
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
        let q = self.sorted.as_ptr().wrapping_add(slot as usize * self.n_sorted);
        for c in 0..self.n_sorted {
            let p = q.wrapping_add(c).cast::<u8>();
            for line in (0..std::mem::size_of::<Sorted>()).step_by(64) {
                prefetch(p.wrapping_add(line));
            }
        }
    }

    /// Prefetches a slot's quantile caches' values (their entries must be in cache by now).
    #[inline]
    pub fn prefetch_sorted(&self, slot: u32) {
        let q = slot as usize * self.n_sorted;
        for c in &self.sorted[q..q + self.n_sorted] {
            // Held in place, the values came with the entry; spilled, the first two lines.
            if c.keys.spilled() {
                prefetch(c.keys.as_ptr());
                prefetch(c.keys.as_ptr().wrapping_add(16));
            }
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
            base: 0,
            times: Vec::with_capacity(4),
            values: Vec::new(),
        };
        let slot = match self.free.pop() {
            Some(s) => {
                self.slab[s as usize] = fresh;
                let e = s as usize * self.n_ewma;
                self.ewma[e..e + self.n_ewma].fill((f64::NAN, t));
                let q = s as usize * self.n_sorted;
                self.sorted[q..q + self.n_sorted].iter_mut().for_each(|c| c.valid = false);
                s
            }
            None => {
                self.slab.push(fresh);
                self.ewma.extend(std::iter::repeat_n((f64::NAN, t), self.n_ewma));
                self.sorted.extend(std::iter::repeat_with(Sorted::default).take(self.n_sorted));
                u32::try_from(self.slab.len() - 1).expect("fewer than 2^32 keys")
            }
        };
        self.index.insert(key, slot);
        slot
    }

    /// Forgets `slot`'s key and frees its buffers.
    pub fn remove(&mut self, slot: u32) {
        let s = &mut self.slab[slot as usize];
        self.index.remove(s.key);
        s.live = false;
        s.times = Vec::new();
        s.values = Vec::new();
        s.start = 0;
        let q = slot as usize * self.n_sorted;
        self.sorted[q..q + self.n_sorted].iter_mut().for_each(|c| *c = Sorted::default());
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

    /// Every live key with its state and EWMA states, in slot order (for snapshots).
    pub fn entries(&self) -> impl Iterator<Item = (u64, &KeyState, &[(f64, i64)])> {
        self.live().map(|(slot, s)| {
            let e = slot as usize * self.n_ewma;
            (s.key, s, &self.ewma[e..e + self.n_ewma])
        })
    }

    /// Adds a key with the state a snapshot recorded (`times` ascending, `slots` values per
    /// event in `values`, `n_ewma` states). A key given twice is refused.
    pub fn restore_key(
        &mut self,
        key: u64,
        watermark: i64,
        previous: i64,
        times: &[i64],
        values: &[f32],
        ewma: &[(f64, i64)],
    ) -> Result<(), String> {
        if self.index.get(key).is_some() {
            return Err(format!("key {key} appears twice"));
        }
        if ewma.len() != self.n_ewma {
            return Err(format!("key {key}: {} EWMA states, expected {}", ewma.len(), self.n_ewma));
        }
        let slot = self.insert(key, watermark);
        let (state, states, _) = self.get_mut(slot);
        state.watermark = watermark;
        state.previous = previous;
        state.times.extend_from_slice(times);
        state.values.extend_from_slice(values);
        states.copy_from_slice(ewma);
        Ok(())
    }

    /// Live slots and their states.
    fn live(&self) -> impl Iterator<Item = (u32, &KeyState)> {
        (0u32..).zip(&self.slab).filter(|(_, s)| s.live)
    }

    /// Approximate bytes: the map's slots, the slab, the EWMA states and every key's buffers.
    pub fn bytes(&self) -> usize {
        self.index.bytes()
            + self.slab.capacity() * std::mem::size_of::<KeyState>()
            + self.ewma.capacity() * 16
            + self.sorted.capacity() * std::mem::size_of::<Sorted>()
            + self
                .sorted
                .iter()
                .filter(|s| s.keys.spilled())
                .map(|s| s.keys.capacity() * 4)
                .sum::<usize>()
            + self.free.capacity() * 4
            + self.slab.iter().map(KeyState::heap_bytes).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The index against a `HashMap` under random inserts and removes on a small key space
    /// (long probe runs, wrap-around, shifts across the table's end).
    #[test]
    fn key_index_agrees_with_a_map() {
        let mut index = KeyIndex::default();
        let mut model = std::collections::HashMap::new();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for step in 0..200_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = x % 3_000;
            if x >> 62 == 0 {
                index.remove(key);
                model.remove(&key);
            } else if let std::collections::hash_map::Entry::Vacant(e) = model.entry(key) {
                index.insert(key, step);
                e.insert(step);
            }
            assert_eq!(index.get(key), model.get(&key).copied());
            assert_eq!(index.len, model.len());
        }
        for k in 0..3_000 {
            assert_eq!(index.get(k), model.get(&k).copied(), "key {k}");
        }
    }

    /// Slots come back through the free list, and a removed key's slot is not found again.
    #[test]
    fn store_reuses_freed_slots() {
        let mut store = Store::new(1, 0);
        let a = store.insert(10, 0);
        let b = store.insert(20, 0);
        store.remove(a);
        assert_eq!(store.slot(10), None);
        let c = store.insert(30, 5);
        assert_eq!(c, a);
        assert_eq!(store.slot(20), Some(b));
        assert_eq!(store.slot(30), Some(c));
        assert!(store.get_mut(c).1[0].0.is_nan());
        assert_eq!(store.remove_idle(1), 1);
        assert_eq!(store.len(), 1);
    }
}
