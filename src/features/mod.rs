//! Streaming features: one declarative [`Spec`] (a TOML file), evaluated per batch by
//! [`Features`], online inside the runtime and offline over a file through the same code.
//!
//! A raw event is a row of the spec's fields (numeric values, then categorical codes from
//! [`Spec::encode`]) with a key and an event time (ms). Per batch, stateless columns are computed
//! column by column over the whole batch; stateful ones (windows, EWMA, z-scores, time since
//! last) walk the rows in order and update each key's state in event order, so the output does
//! not depend on where batch boundaries fall: a run over a file and a run through the runtime
//! with any batching give bit-identical features.
//!
//! # Examples
//!
//! ```
//! use streamscore::features::{Features, Spec};
//!
//! let spec = Spec::from_toml(r#"
//!     [events]
//!     key = "card"
//!     time = "ts"
//!     numeric = ["amount"]
//!
//!     [[feature]]
//!     name = "n_1h"
//!     op = "count"
//!     window = "1h"
//!
//!     [[feature]]
//!     name = "sum_1h"
//!     op = "sum"
//!     field = "amount"
//!     window = "1h"
//! "#)?;
//! let mut features = Features::new(spec);
//! let rows = [[10.0f32], [5.0], [7.0]];
//! let (keys, times) = ([1u64, 1, 2], [0i64, 60_000, 60_000]);
//! let out = features.transform_rows(&rows.concat(), &keys, &times)?;
//! // Feature-major: the counts, then the sums.
//! assert_eq!(out.values, [1.0, 2.0, 1.0, 10.0, 15.0, 7.0]);
//! # Ok::<(), streamscore::Error>(())
//! ```

pub mod offline;
mod spec;
mod state;

use std::sync::Arc;

pub use spec::{
    Agg, Categorical, LatePolicy, Op, Operand, Spec, UnknownPolicy, fnv1a, parse_duration,
};
use state::{KeyMap, KeyState};

use crate::batch::Batch;
use crate::error::{Error, Result};

/// Rows whose key states are looked up and prefetched together.
const AHEAD: usize = 64;

/// Events between two sweeps of idle keys.
const SWEEP_EVERY: u64 = 1 << 16;

/// Counts the feature stage keeps (also in the runtime's metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FeatureCounters {
    /// Events whose features were computed.
    pub events: u64,
    /// Late events rejected ([`LatePolicy::Reject`]).
    pub late_rejected: u64,
    /// Late events counted in at the oldest accepted time ([`LatePolicy::Include`]).
    pub late_included: u64,
    /// Keys forgotten after their TTL.
    pub expired_keys: u64,
    /// Keys evicted to stay within `max_keys`.
    pub evicted_keys: u64,
    /// Events dropped from a key's history to stay within `max_events_per_key`.
    pub dropped_events: u64,
}

/// One batch's features, feature-major (`n_rows` values per column), and the rows that failed.
#[derive(Debug, Default)]
pub struct Output {
    /// `names.len() x n_rows` values, column after column.
    pub values: Vec<f32>,
    /// Rows, by index, whose event was refused (their values are NaN).
    pub errors: Vec<(usize, Error)>,
}

/// The feature stage: a spec and the per-key state it keeps.
#[derive(Debug)]
pub struct Features {
    spec: Arc<Spec>,
    keys: KeyMap<KeyState>,
    /// Largest event time seen.
    clock: i64,
    counters: FeatureCounters,
    vals: Vec<f32>,
    /// Per-event caches: window starts, and statistics per (slot, start, skipped entry).
    bounds: Vec<(i64, bool, usize)>,
    stats: Vec<(usize, usize, Option<usize>, Stats)>,
}

impl Features {
    /// A stage with no state yet.
    pub fn new(spec: impl Into<Arc<Spec>>) -> Self {
        Features {
            spec: spec.into(),
            keys: KeyMap::default(),
            clock: i64::MIN,
            counters: FeatureCounters::default(),
            vals: Vec::new(),
            bounds: Vec::new(),
            stats: Vec::new(),
        }
    }

    /// The spec.
    pub fn spec(&self) -> &Arc<Spec> {
        &self.spec
    }

    /// Counters so far.
    pub fn counters(&self) -> FeatureCounters {
        self.counters
    }

    /// Keys with state.
    pub fn live_keys(&self) -> usize {
        self.keys.len()
    }

    /// Approximate bytes of per-key state (the map's slots and every key's buffers).
    pub fn state_bytes(&self) -> usize {
        self.keys.capacity() * (8 + std::mem::size_of::<KeyState>())
            + self.keys.values().map(|k| k.bytes() - std::mem::size_of::<KeyState>()).sum::<usize>()
    }

    /// Features of row-major raw rows (the spec's fields per row), one key and time per row.
    pub fn transform_rows(&mut self, rows: &[f32], keys: &[u64], times: &[i64]) -> Result<Output> {
        let batch = offline::raw_batch(rows, keys.len(), self.spec.fields.len())?;
        let mut out = Output::default();
        self.transform(&batch, keys, times, &mut out)?;
        Ok(out)
    }

    /// Computes the features of `raw` (feature-major, the spec's fields) into `out`, rows in
    /// order. Errors only when the widths disagree; a refused event is listed in `out.errors`.
    pub fn transform(
        &mut self,
        raw: &Batch,
        keys: &[u64],
        times: &[i64],
        out: &mut Output,
    ) -> Result<()> {
        let spec = self.spec.clone();
        let n = raw.n_rows();
        if raw.n_features() != spec.fields.len() {
            return Err(Error::WidthMismatch {
                expected: spec.fields.len(),
                got: raw.n_features(),
            });
        }
        if keys.len() != n || times.len() != n {
            return Err(Error::Input {
                at: "features".into(),
                message: format!("{n} rows but {} keys and {} times", keys.len(), times.len()),
            });
        }
        out.values.clear();
        out.values.resize(n * spec.ops.len(), f32::NAN);
        out.errors.clear();
        for (c, op) in spec.ops.iter().enumerate() {
            if !op.is_stateful() {
                stateless(op, raw, &mut out.values[c * n..(c + 1) * n]);
            }
        }
        if spec.ops.iter().any(Op::is_stateful) {
            // The batch's keys are known up front: look up a group of rows' states first
            // (independent lookups, whose cache misses overlap) and prefetch them, then
            // update them in order.
            for group in (0..n).step_by(AHEAD) {
                let end = (group + AHEAD).min(n);
                for k in &keys[group..end] {
                    if let Some(s) = self.keys.get(k) {
                        s.prefetch();
                    }
                }
                for r in group..end {
                    if let Err(e) = self.row(&spec, raw, r, keys[r], times[r], &mut out.values, n) {
                        out.errors.push((r, e));
                    }
                }
            }
        }
        for &(r, _) in &out.errors {
            for c in 0..spec.ops.len() {
                out.values[c * n + r] = f32::NAN;
            }
        }
        Ok(())
    }

    /// Updates `key`'s state with row `r` and writes its stateful columns.
    #[allow(clippy::too_many_arguments)]
    fn row(
        &mut self,
        spec: &Spec,
        raw: &Batch,
        r: usize,
        key: u64,
        t: i64,
        out: &mut [f32],
        n: usize,
    ) -> Result<()> {
        self.clock = self.clock.max(t);
        self.counters.events += 1;
        if self.counters.events.is_multiple_of(SWEEP_EVERY) {
            self.sweep();
        }
        let clock = self.clock;
        let fresh =
            |s: &KeyState| spec.ttl_ms.is_none_or(|ttl| s.watermark >= clock.saturating_sub(ttl));
        match self.keys.get(&key) {
            Some(s) if !fresh(s) => {
                self.keys.remove(&key);
                self.counters.expired_keys += 1;
            }
            Some(_) => {}
            None if self.keys.len() >= spec.max_keys => self.make_room(),
            None => {}
        }
        let state = self.keys.entry(key).or_insert_with(|| KeyState::new(spec.n_ewma, t));
        let oldest = state.watermark.saturating_sub(spec.allowed_lateness_ms);
        let mut t = t;
        if t < oldest {
            match spec.late {
                LatePolicy::Reject => {
                    self.counters.late_rejected += 1;
                    self.counters.events -= 1;
                    return Err(Error::Late { key, time_ms: t, watermark_ms: state.watermark });
                }
                LatePolicy::Include => {
                    self.counters.late_included += 1;
                    t = oldest;
                }
            }
        }
        self.vals.clear();
        self.vals.extend(spec.slots.iter().map(|&f| raw.value(r, f)));
        let slots = spec.slots.len();
        let previous = state.previous;
        let at = state.insert(t, &self.vals);
        // Entries after `at` are later than `t` (insertion goes after equal times).
        let hi = at + 1;
        // Per event: each distinct window's start, and each (field, window) statistics, are
        // computed once however many features read them.
        let bounds = &mut self.bounds;
        bounds.clear();
        let stats = &mut self.stats;
        stats.clear();
        let mut start = |window_ms: i64, tumbling: bool| -> usize {
            if let Some(&(_, _, lo)) = bounds.iter().find(|b| b.0 == window_ms && b.1 == tumbling) {
                return lo;
            }
            let lo = if tumbling {
                let begin = t.div_euclid(window_ms) * window_ms;
                state.times.partition_point(|&x| x < begin)
            } else {
                state.times.partition_point(|&x| x <= t - window_ms)
            };
            bounds.push((window_ms, tumbling, lo));
            lo
        };
        let mut cached = |slot: usize, lo: usize, skip: Option<usize>, state: &KeyState| -> Stats {
            if let Some(&(_, _, _, st)) =
                stats.iter().find(|x| x.0 == slot && x.1 == lo && x.2 == skip)
            {
                return st;
            }
            let st = Stats::over(state, lo, hi, skip, slot, slots);
            stats.push((slot, lo, skip, st));
            st
        };
        for (c, op) in spec.ops.iter().enumerate() {
            let v = match *op {
                Op::Window { agg, slot, window_ms, tumbling } => {
                    let lo = start(window_ms, tumbling);
                    match agg {
                        Agg::Count => (hi - lo) as f32,
                        Agg::Last | Agg::Distinct => window(agg, state, lo, hi, at, slot, slots),
                        _ => cached(slot, lo, None, state).get(agg),
                    }
                }
                Op::ZScore { slot, window_ms } | Op::RatioToMean { slot, window_ms } => {
                    let lo = start(window_ms, false);
                    let x = f64::from(self.vals[slot]);
                    let st = cached(slot, lo, Some(at), state);
                    if matches!(op, Op::ZScore { .. }) {
                        let std = st.std();
                        if st.n >= 2.0 && std > 0.0 {
                            ((x - st.mean) / std) as f32
                        } else {
                            f32::NAN
                        }
                    } else if st.n >= 1.0 && st.mean != 0.0 {
                        (x / st.mean) as f32
                    } else {
                        f32::NAN
                    }
                }
                Op::Ewma { slot, half_life_ms, state: e } => {
                    let x = f64::from(self.vals[slot]);
                    let (value, since) = &mut state.ewma[e];
                    if !x.is_nan() {
                        if value.is_nan() {
                            *value = x;
                        } else {
                            let dt = (t - *since).max(0) as f64;
                            let alpha = 1.0 - (-dt / half_life_ms as f64).exp2();
                            *value += alpha * (x - *value);
                        }
                        *since = (*since).max(t);
                    }
                    *value as f32
                }
                Op::SinceLast => {
                    let before = if at + 1 == state.times.len() {
                        previous
                    } else {
                        at.checked_sub(1).map(|i| state.times[i])
                    };
                    before.map_or(f32::NAN, |p| ((t - p) as f64 / 1e3) as f32)
                }
                _ => continue,
            };
            out[c * n + r] = v;
        }
        state.previous = Some(state.previous.map_or(t, |p| p.max(t)));
        state.watermark = state.watermark.max(t);
        let before = state
            .watermark
            .saturating_sub(spec.retention_ms.saturating_add(spec.allowed_lateness_ms));
        let dropped_by_cap = state.times.len().saturating_sub(spec.max_events_per_key);
        state.evict(before, spec.max_events_per_key, slots);
        self.counters.dropped_events += dropped_by_cap as u64;
        Ok(())
    }

    /// Forgets keys idle past the TTL.
    fn sweep(&mut self) {
        if let Some(ttl) = self.spec.ttl_ms {
            let horizon = self.clock.saturating_sub(ttl);
            let before = self.keys.len();
            self.keys.retain(|_, s| s.watermark >= horizon);
            self.counters.expired_keys += (before - self.keys.len()) as u64;
        }
    }

    /// Makes room for a new key: idle keys go first, then the sixteenth of keys seen least
    /// recently (oldest watermark; ties by key, so the choice is deterministic).
    fn make_room(&mut self) {
        self.sweep();
        if self.keys.len() < self.spec.max_keys {
            return;
        }
        let mut by_age: Vec<(i64, u64)> =
            self.keys.iter().map(|(&k, s)| (s.watermark, k)).collect();
        let drop = (self.keys.len() / 16).max(1 + self.keys.len() - self.spec.max_keys);
        by_age.select_nth_unstable(drop - 1);
        for &(_, k) in &by_age[..drop] {
            self.keys.remove(&k);
        }
        self.counters.evicted_keys += drop as u64;
    }
}

/// A stateless column over the whole batch.
fn stateless(op: &Op, raw: &Batch, out: &mut [f32]) {
    let col = |f: usize| raw.column(f);
    match op {
        Op::Field(f) => out.copy_from_slice(col(*f)),
        Op::Arith { op, a, b } => {
            let a = col(*a);
            for (i, o) in out.iter_mut().enumerate() {
                let y = match b {
                    Operand::Field(f) => raw.column(*f)[i],
                    Operand::Const(c) => *c,
                };
                *o = match op {
                    '+' => a[i] + y,
                    '-' => a[i] - y,
                    '*' => a[i] * y,
                    _ => a[i] / y,
                };
            }
        }
        Op::Log1p(f) => out.iter_mut().zip(col(*f)).for_each(|(o, &x)| *o = x.ln_1p()),
        Op::Clip(f, lo, hi) => out
            .iter_mut()
            .zip(col(*f))
            .for_each(|(o, &x)| *o = if x.is_nan() { x } else { x.clamp(*lo, *hi) }),
        Op::Ratio { num, den, default } => {
            for ((o, &a), &b) in out.iter_mut().zip(col(*num)).zip(col(*den)) {
                *o = if b == 0.0 || a.is_nan() || b.is_nan() { *default } else { a / b };
            }
        }
        Op::Bucketize(f, bounds) => out.iter_mut().zip(col(*f)).for_each(|(o, &x)| {
            *o = if x.is_nan() { x } else { bounds.partition_point(|&b| b <= x) as f32 }
        }),
        Op::OneHot(f, code) => {
            out.iter_mut().zip(col(*f)).for_each(|(o, &x)| *o = f32::from(u8::from(x == *code)))
        }
        Op::Fill(f, v) => {
            out.iter_mut().zip(col(*f)).for_each(|(o, &x)| *o = if x.is_nan() { *v } else { x })
        }
        _ => unreachable!("stateful ops are computed per row"),
    }
}

/// One pass over a window's non-missing values of one field: what sums, means, extremes and
/// std read (each formed in entry order, exactly as a separate pass would form it).
#[derive(Debug, Clone, Copy)]
struct Stats {
    n: f64,
    sum: f64,
    mean: f64,
    m2: f64,
    min: f32,
    max: f32,
}

impl Stats {
    /// Over entries `lo..hi` of slot `slot`, skipping `skip`: the count, sum (in entry order),
    /// extremes, and the mean as `sum / n`; then the squared deviations from that mean in a
    /// second pass (more accurate than a running update, and no division in the loop).
    fn over(
        s: &KeyState,
        lo: usize,
        hi: usize,
        skip: Option<usize>,
        slot: usize,
        slots: usize,
    ) -> Stats {
        let mut st =
            Stats { n: 0.0, sum: 0.0, mean: f64::NAN, m2: 0.0, min: f32::NAN, max: f32::NAN };
        let value = |i: usize| s.values[i * slots + slot];
        let skip = skip.unwrap_or(usize::MAX);
        for i in lo..hi {
            let x32 = value(i);
            if i == skip || x32.is_nan() {
                continue;
            }
            st.n += 1.0;
            st.sum += f64::from(x32);
            st.min = if st.min.is_nan() { x32 } else { st.min.min(x32) };
            st.max = if st.max.is_nan() { x32 } else { st.max.max(x32) };
        }
        if st.n > 0.0 {
            st.mean = st.sum / st.n;
            if st.n >= 2.0 {
                for i in lo..hi {
                    let x32 = value(i);
                    if i != skip && !x32.is_nan() {
                        let d = f64::from(x32) - st.mean;
                        st.m2 += d * d;
                    }
                }
            }
        }
        st
    }

    /// Sample std: 0 below two values.
    fn std(&self) -> f64 {
        if self.n >= 2.0 { (self.m2 / (self.n - 1.0)).sqrt() } else { 0.0 }
    }

    fn get(&self, agg: Agg) -> f32 {
        match agg {
            Agg::Sum => self.sum as f32,
            Agg::Mean => self.mean as f32,
            Agg::Min => self.min,
            Agg::Max => self.max,
            Agg::Std if self.n > 0.0 => self.std() as f32,
            _ => f32::NAN,
        }
    }
}

/// `last` or `distinct` over entries `lo..hi` (the current event, at `at`, among them).
fn window(
    agg: Agg,
    s: &KeyState,
    lo: usize,
    hi: usize,
    at: usize,
    slot: usize,
    slots: usize,
) -> f32 {
    match agg {
        Agg::Last => {
            (lo..hi).rev().find(|&i| i != at).map_or(f32::NAN, |i| s.values[i * slots + slot])
        }
        _ => {
            let mut seen: Vec<u32> = (lo..hi)
                .map(|i| s.values[i * slots + slot])
                .filter(|x| !x.is_nan())
                .map(|x| (x + 0.0).to_bits())
                .collect();
            seen.sort_unstable();
            seen.dedup();
            seen.len() as f32
        }
    }
}
