//! Per-key state: each key keeps its recent events (time and windowed values) in time order,
//! its EWMA states and its watermark. Memory is bounded three ways: events older than the
//! longest window (plus the lateness allowance) are dropped, a key keeps at most
//! `max_events_per_key` events, and at most `max_keys` keys live at once.

use std::collections::{HashMap, VecDeque};
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

pub(crate) type KeyMap<V> = HashMap<u64, V, BuildHasherDefault<KeyHasher>>;

/// One key's state.
#[derive(Debug, Default)]
pub(crate) struct KeyState {
    /// Event times, ascending.
    pub times: VecDeque<i64>,
    /// Windowed values, `slots` per event, parallel to `times`.
    pub values: VecDeque<f32>,
    /// Per EWMA feature: (value, time of last update); NaN before the first value.
    pub ewma: Vec<(f64, i64)>,
    /// Latest event time seen (the key's watermark).
    pub watermark: i64,
    /// Time of the key's previous event, for `since_last`.
    pub previous: Option<i64>,
}

impl KeyState {
    pub fn new(n_ewma: usize, t: i64) -> Self {
        KeyState { ewma: vec![(f64::NAN, t); n_ewma], watermark: t, ..Default::default() }
    }

    /// Inserts an event at its time position (after events of the same time) and returns its
    /// index.
    pub fn insert(&mut self, t: i64, vals: &[f32]) -> usize {
        // In-order events (the common case) append without a search.
        let at = if self.times.back().is_none_or(|&b| b <= t) {
            self.times.len()
        } else {
            self.times.partition_point(|&x| x <= t)
        };
        if at == self.times.len() {
            self.times.push_back(t);
            self.values.extend(vals.iter().copied());
        } else {
            self.times.insert(at, t);
            for (s, &v) in vals.iter().enumerate() {
                self.values.insert(at * vals.len() + s, v);
            }
        }
        at
    }

    /// Drops events at or before `before`, and the oldest beyond `max_events`.
    pub fn evict(&mut self, before: i64, max_events: usize, slots: usize) -> usize {
        let old = self.times.partition_point(|&x| x <= before);
        let drop = old.max(self.times.len().saturating_sub(max_events));
        self.times.drain(..drop);
        self.values.drain(..drop * slots);
        drop
    }

    /// Asks the CPU to bring the newest part of this key's history into cache (what the next
    /// event of the key reads and appends to).
    pub fn prefetch(&self) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            let (a, b) = self.times.as_slices();
            let (c, d) = self.values.as_slices();
            for p in [
                a.as_ptr().cast::<i8>(),
                b.last().map_or(a.as_ptr(), |x| x as *const i64).cast::<i8>(),
                c.as_ptr().cast::<i8>(),
                d.last().map_or(c.as_ptr(), |x| x as *const f32).cast::<i8>(),
                self.ewma.as_ptr().cast::<i8>(),
            ] {
                // SAFETY: prefetching is a hint; it never faults, whatever the address.
                unsafe { _mm_prefetch::<_MM_HINT_T0>(p) };
            }
        }
    }

    /// Approximate heap bytes.
    pub fn bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.times.capacity() * 8
            + self.values.capacity() * 4
            + self.ewma.capacity() * 16
    }
}
