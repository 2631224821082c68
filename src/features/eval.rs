//! The stateful columns, compiled once per spec into a [`Plan`]: each distinct window's start
//! and each distinct (field, window, with or without the current event) statistics are computed
//! once per event however many columns read them, and only the parts some column reads (the
//! extremes, the squared deviations) are computed at all.

use std::collections::HashMap;

use super::spec::{Agg, Level, Op, Span, Spec};
use super::state::{KeyState, Sorted};

/// One field's statistics over one window: over every entry (`full`), and leaving the current
/// event out (`skip`: z-scores and ratios compare the event with the others), as columns ask.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct StatPlan {
    slot: usize,
    window: usize,
    full: bool,
    skip: bool,
    /// The full statistics' extremes.
    minmax: bool,
    /// Squared deviations, of the full and of the skipping statistics.
    m2_full: bool,
    m2_skip: bool,
}

/// One stateful column.
#[derive(Debug, Clone, Copy)]
enum Col {
    Count(usize),
    Stat(Agg, usize),
    /// `last` or `distinct` over (slot, window).
    Scan(Agg, usize, usize),
    /// A quantile over (slot, window), with its cache.
    Quantile(Level, usize, usize, usize),
    /// Seconds since the session's first event (a session window).
    SessionAge(usize),
    /// The previous session's length (a session window, its gap and cut).
    SessionPrevious(usize, i64, i64),
    /// Sessions in a sliding window, with this gap.
    Sessions(usize, i64),
    ZScore(usize, usize),
    RatioToMean(usize, usize),
    Ewma {
        slot: usize,
        half_life_ms: f64,
        state: usize,
    },
    SinceLast,
}

/// A spec's stateful columns, compiled.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// Distinct windows: (length, span).
    windows: Vec<(i64, Span)>,
    stats: Vec<StatPlan>,
    /// (output column, computation).
    cols: Vec<(usize, Col)>,
    /// Per event scratch: each window's first entry, each statistics' results (full, skip).
    lo: Vec<usize>,
    out: Vec<(Stats, Stats)>,
    /// A late event's quantile values (kept between events: no allocation per event).
    scratch: Vec<f32>,
    /// Quantile caches per key: one per distinct (slot, window).
    n_sorted: usize,
}

/// The quantile caches a spec's keys keep.
pub(crate) fn n_sorted(spec: &Spec) -> usize {
    Plan::new(spec).n_sorted
}

impl Plan {
    pub fn new(spec: &Spec) -> Plan {
        let mut plan = Plan::default();
        // Hashed lookups: a spec of 100,000 features must not cost 10^10 comparisons.
        let mut windows: HashMap<(i64, Span), usize> = HashMap::new();
        let mut stats: HashMap<(usize, usize), usize> = HashMap::new();
        let mut caches: HashMap<(usize, usize), usize> = HashMap::new();
        let mut window = |plan: &mut Plan, ms: i64, span: Span| -> usize {
            *windows.entry((ms, span)).or_insert_with(|| {
                plan.windows.push((ms, span));
                plan.windows.len() - 1
            })
        };
        let mut stat =
            |plan: &mut Plan, slot: usize, window: usize, skip: bool, agg: Agg| -> usize {
                let i = *stats.entry((slot, window)).or_insert_with(|| {
                    plan.stats.push(StatPlan { slot, window, ..Default::default() });
                    plan.stats.len() - 1
                });
                let s = &mut plan.stats[i];
                let std = matches!(agg, Agg::Std);
                if skip {
                    s.skip = true;
                    s.m2_skip |= std;
                } else {
                    s.full = true;
                    s.m2_full |= std;
                    s.minmax |= matches!(agg, Agg::Min | Agg::Max);
                }
                i
            };
        for (c, op) in spec.ops.iter().enumerate() {
            let col = match *op {
                Op::Window { agg, slot, window_ms, span } => {
                    let w = window(&mut plan, window_ms, span);
                    match agg {
                        Agg::Count => Col::Count(w),
                        Agg::Last | Agg::Distinct => Col::Scan(agg, slot, w),
                        Agg::Quantile(q) => {
                            let next = caches.len();
                            Col::Quantile(q, slot, w, *caches.entry((slot, w)).or_insert(next))
                        }
                        _ => Col::Stat(agg, stat(&mut plan, slot, w, false, agg)),
                    }
                }
                Op::SessionAge { gap_ms, window_ms } => {
                    Col::SessionAge(window(&mut plan, window_ms, Span::Session { gap_ms }))
                }
                Op::SessionPrevious { gap_ms, window_ms } => Col::SessionPrevious(
                    window(&mut plan, window_ms, Span::Session { gap_ms }),
                    gap_ms,
                    window_ms,
                ),
                Op::Sessions { gap_ms, window_ms } => {
                    Col::Sessions(window(&mut plan, window_ms, Span::Sliding), gap_ms)
                }
                Op::ZScore { slot, window_ms } => {
                    let w = window(&mut plan, window_ms, Span::Sliding);
                    Col::ZScore(slot, stat(&mut plan, slot, w, true, Agg::Std))
                }
                Op::RatioToMean { slot, window_ms } => {
                    let w = window(&mut plan, window_ms, Span::Sliding);
                    Col::RatioToMean(slot, stat(&mut plan, slot, w, true, Agg::Mean))
                }
                Op::Ewma { slot, half_life_ms, state } => {
                    Col::Ewma { slot, half_life_ms: half_life_ms as f64, state }
                }
                Op::SinceLast => Col::SinceLast,
                _ => continue,
            };
            plan.cols.push((c, col));
        }
        plan.n_sorted = caches.len();
        plan.lo = vec![0; plan.windows.len()];
        plan.out = vec![(Stats::EMPTY, Stats::EMPTY); plan.stats.len()];
        plan
    }

    /// Whether any column is stateful.
    pub fn is_empty(&self) -> bool {
        self.cols.is_empty()
    }

    /// Writes the stateful columns of the event just inserted at `at` (time `t`, values
    /// `vals`) into row `r` of the feature-major `out` (`n` rows), and updates the EWMA
    /// states. `previous` is the key's latest event time before this one.
    #[allow(clippy::too_many_arguments)]
    pub fn eval(
        &mut self,
        state: &KeyState,
        ewma: &mut [(f64, i64)],
        sorted: &mut [Sorted],
        slots: usize,
        vals: &[f32],
        at: usize,
        t: i64,
        previous: Option<i64>,
        out: &mut [f32],
        r: usize,
        n: usize,
    ) {
        let times = &state.times()[..at + 1];
        let values = state.values(slots);
        let hi = at + 1;
        for (lo, &(ms, span)) in self.lo.iter_mut().zip(&self.windows) {
            *lo = match span {
                Span::Tumbling => {
                    let begin = t.div_euclid(ms) * ms;
                    times.partition_point(|&x| x < begin)
                }
                Span::Sliding => {
                    let after = t.saturating_sub(ms);
                    times.partition_point(|&x| x <= after)
                }
                Span::Session { gap_ms } => {
                    let after = t.saturating_sub(ms);
                    session_start(times, times.partition_point(|&x| x <= after), at, gap_ms)
                }
            };
        }
        for (st, p) in self.out.iter_mut().zip(&self.stats) {
            let lo = self.lo[p.window];
            *st = if slots == 1 {
                let xs = &values[lo..hi];
                Stats::both(p, |i| xs[i], hi - lo, at - lo)
            } else {
                let xs = &values[lo * slots + p.slot..(hi - 1) * slots + p.slot + 1];
                Stats::both(p, |i| xs[i * slots], hi - lo, at - lo)
            };
        }
        for &(c, col) in &self.cols {
            let v = match col {
                Col::Count(w) => (hi - self.lo[w]) as f32,
                Col::Stat(agg, s) => self.out[s].0.get(agg),
                Col::Scan(agg, slot, w) => scan(agg, values, self.lo[w], hi, at, slot, slots),
                Col::Quantile(q, slot, w, c) => cached_quantile(
                    &mut sorted[c],
                    state,
                    values,
                    slots,
                    slot,
                    self.lo[w],
                    hi,
                    q.get(),
                    &mut self.scratch,
                ),
                Col::SessionAge(w) => ((t - times[self.lo[w]]) as f64 / 1e3) as f32,
                Col::SessionPrevious(w, gap_ms, ms) => {
                    let start = self.lo[w];
                    let after = t.saturating_sub(ms);
                    let cut = times.partition_point(|&x| x <= after);
                    if start > cut {
                        let end = start - 1;
                        let first = session_start(times, cut, end, gap_ms);
                        ((times[end] - times[first]) as f64 / 1e3) as f32
                    } else {
                        f32::NAN
                    }
                }
                Col::Sessions(w, gap_ms) => {
                    let lo = self.lo[w];
                    let breaks = times[lo..hi].windows(2).filter(|p| p[1] - p[0] > gap_ms).count();
                    (breaks + 1) as f32
                }
                Col::ZScore(slot, s) => {
                    let (x, st) = (f64::from(vals[slot]), &self.out[s].1);
                    let std = st.std();
                    if st.n >= 2.0 && std > 0.0 { ((x - st.mean) / std) as f32 } else { f32::NAN }
                }
                Col::RatioToMean(slot, s) => {
                    let (x, st) = (f64::from(vals[slot]), &self.out[s].1);
                    if st.n >= 1.0 && st.mean != 0.0 { (x / st.mean) as f32 } else { f32::NAN }
                }
                Col::Ewma { slot, half_life_ms, state: e } => {
                    let x = f64::from(vals[slot]);
                    let (value, since) = &mut ewma[e];
                    if !x.is_nan() {
                        if value.is_nan() {
                            *value = x;
                        } else {
                            let dt = (t - *since).max(0) as f64;
                            let alpha = 1.0 - (-dt / half_life_ms).exp2();
                            *value += alpha * (x - *value);
                        }
                        *since = (*since).max(t);
                    }
                    *value as f32
                }
                Col::SinceLast => {
                    let before = if hi == state.times().len() {
                        previous
                    } else {
                        at.checked_sub(1).map(|i| times[i])
                    };
                    before.map_or(f32::NAN, |p| ((t - p) as f64 / 1e3) as f32)
                }
            };
            out[c * n + r] = v;
        }
    }
}

/// A window's non-missing values of one field: what sums, means, extremes and std read, each
/// formed in entry order, exactly as a separate pass would form it.
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
    const EMPTY: Stats =
        Stats { n: 0.0, sum: 0.0, mean: f64::NAN, m2: 0.0, min: f32::NAN, max: f32::NAN };

    /// The statistics `p` asks for over `xs` (every `stride`-th value is one entry's; the
    /// current event's is entry `at`): over all entries, and without entry `at`. Each is formed
    /// in entry order, exactly as a separate pass would form it: count, sum, extremes, the mean
    /// as `sum / n`, then the squared deviations from that mean in a second pass (more accurate
    /// than a running update, and no division in the loop). When the current event is the
    /// newest entry (events in order), one pass serves both: the full sums are the others' sums
    /// plus the last term.
    #[inline(always)]
    fn both(p: &StatPlan, value: impl Fn(usize) -> f32, len: usize, at: usize) -> (Stats, Stats) {
        if at + 1 != len {
            let full = if p.full {
                Stats::over(&value, len, usize::MAX, p.minmax, p.m2_full)
            } else {
                Stats::EMPTY
            };
            let skip =
                if p.skip { Stats::over(&value, len, at, false, p.m2_skip) } else { Stats::EMPTY };
            return (full, skip);
        }
        // The others: count, sum and extremes in one pass; then the current value on top.
        let mut skip = Stats::EMPTY;
        let (mut n, mut sum) = (0usize, 0.0f64);
        if p.minmax {
            // Plain compares (x is never NaN here): one instruction each, not `f32::min`'s
            // NaN handling on the chain.
            let (mut min, mut max) = (f32::INFINITY, f32::NEG_INFINITY);
            for i in 0..at {
                let x = value(i);
                if !x.is_nan() {
                    n += 1;
                    sum += f64::from(x);
                    min = if x < min { x } else { min };
                    max = if x > max { x } else { max };
                }
            }
            if n > 0 {
                (skip.min, skip.max) = (min, max);
            }
        } else {
            for i in 0..at {
                let x = value(i);
                if !x.is_nan() {
                    n += 1;
                    sum += f64::from(x);
                }
            }
        }
        skip.n = n as f64;
        skip.sum = sum;
        let mut full = skip;
        let x = value(at);
        if !x.is_nan() {
            full.n += 1.0;
            full.sum += f64::from(x);
            // `min` and `max` return the other argument when one is NaN (no others).
            full.min = full.min.min(x);
            full.max = full.max.max(x);
        }
        if skip.n > 0.0 {
            skip.mean = skip.sum / skip.n;
        }
        if full.n > 0.0 {
            full.mean = full.sum / full.n;
        }
        let m2_full = p.m2_full && full.n >= 2.0;
        let m2_skip = p.m2_skip && skip.n >= 2.0;
        if m2_full || m2_skip {
            // Both deviations in one pass: two independent chains.
            let (mut a, mut b) = (0.0f64, 0.0f64);
            for i in 0..at {
                let x = value(i);
                if !x.is_nan() {
                    let (da, db) = (f64::from(x) - full.mean, f64::from(x) - skip.mean);
                    a += da * da;
                    b += db * db;
                }
            }
            if !x.is_nan() {
                let d = f64::from(x) - full.mean;
                a += d * d;
            }
            full.m2 = if m2_full { a } else { 0.0 };
            skip.m2 = if m2_skip { b } else { 0.0 };
        }
        (full, skip)
    }

    /// Over entries `0..len` but `skip` (NaN values are missing).
    fn over(
        value: impl Fn(usize) -> f32,
        len: usize,
        skip: usize,
        minmax: bool,
        m2: bool,
    ) -> Stats {
        let mut st = Stats::EMPTY;
        for i in (0..len).filter(|&i| i != skip) {
            let x = value(i);
            if !x.is_nan() {
                st.n += 1.0;
                st.sum += f64::from(x);
                if minmax {
                    st.min = st.min.min(x);
                    st.max = st.max.max(x);
                }
            }
        }
        if st.n > 0.0 {
            st.mean = st.sum / st.n;
            if m2 && st.n >= 2.0 {
                for i in (0..len).filter(|&i| i != skip) {
                    let x = value(i);
                    if !x.is_nan() {
                        let d = f64::from(x) - st.mean;
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

/// The first entry of the session that ends at entry `at`: walking back from it while the
/// step to the entry before is at most `gap_ms`, and not before entry `cut`.
#[inline]
fn session_start(times: &[i64], cut: usize, at: usize, gap_ms: i64) -> usize {
    let mut j = at;
    while j > cut && times[j] - times[j - 1] <= gap_ms {
        j -= 1;
    }
    j
}

/// The `q` quantile of `xs` (no NaN) as NumPy's default computes it (`method="linear"`): the
/// order statistics around `h = (n - 1) q` interpolated as `numpy.lib._function_base_impl._lerp`
/// does, in f64; NaN for no values. `xs` is reordered.
fn quantile(xs: &mut [f32], q: f64) -> f32 {
    let n = xs.len();
    if n == 0 {
        return f32::NAN;
    }
    let (k, t) = rank(n, q);
    let (_, &mut a, rest) = xs.select_nth_unstable_by(k, f32::total_cmp);
    let b = rest.iter().copied().reduce(|x, y| if y.total_cmp(&x).is_lt() { y } else { x });
    lerp(a, b, t)
}

/// The lower order statistic's index of the `q` quantile of `n` values, and the fraction
/// toward the next.
#[inline]
fn rank(n: usize, q: f64) -> (usize, f64) {
    let h = (n - 1) as f64 * q;
    let k = (h.floor() as usize).min(n - 1);
    (k, h - k as f64)
}

/// NumPy's two-sided lerp from `a` toward `b` (none when `a` is the last value), in f64.
#[inline]
fn lerp(a: f32, b: Option<f32>, t: f64) -> f32 {
    let a = f64::from(a);
    let Some(b) = b.filter(|_| t != 0.0) else { return a as f32 };
    let b = f64::from(b);
    let d = b - a;
    (if t >= 0.5 { b - d * (1.0 - t) } else { a + d * t }) as f32
}

/// The total order of f32 (`f32::total_cmp`) as signed integers, and back: every bit but the
/// sign flipped for negative values.
#[inline]
fn order_key(x: f32) -> i32 {
    let b = x.to_bits() as i32;
    b ^ (((b >> 31) as u32) >> 1) as i32
}

#[inline]
fn from_order_key(k: i32) -> f32 {
    f32::from_bits((k ^ (((k >> 31) as u32) >> 1) as i32) as u32)
}

/// Entering or leaving values a cache takes one at a time; beyond, it is rebuilt.
const MAX_CHANGES: u64 = 16;

/// The `q` quantile over entries `lo..hi` of field `slot` through its cache `c`: updated by
/// the entries that left the window and entered it since it was last read when the history
/// has not shifted under it (the current event is the newest entry, and the cache's entries are
/// all still held), else rebuilt by a sort; a late event (not the newest) is answered by a
/// selection and leaves the cache to be rebuilt, since it shifted the entries after it.
#[allow(clippy::too_many_arguments)]
fn cached_quantile(
    c: &mut Sorted,
    state: &KeyState,
    values: &[f32],
    slots: usize,
    slot: usize,
    lo: usize,
    hi: usize,
    q: f64,
    scratch: &mut Vec<f32>,
) -> f32 {
    let value = |i: usize| values[i * slots + slot];
    if hi != state.times().len() {
        c.valid = false;
        scratch.clear();
        scratch.extend((lo..hi).map(value).filter(|x| !x.is_nan()));
        return quantile(scratch, q);
    }
    let base = state.base();
    let (from, to) = (base + lo as u64, base + hi as u64);
    let step = c.valid
        && c.from >= base
        && c.from <= from
        && from <= c.to
        && c.to <= to
        && (from - c.from) + (to - c.to) <= MAX_CHANGES;
    let mut fresh = !step;
    if step {
        // Positions by counting (branch-free compares that vectorize; a binary search's
        // branches mispredict on every other step at these sizes).
        let below = |keys: &[i32], k: i32| keys.iter().map(|&y| usize::from(y < k)).sum::<usize>();
        let (leave, enter) = (from - c.from, to - c.to);
        if leave == 1 && enter == 1 {
            // The steady state: one value out, one in, moved in place.
            let (old, new) = (value((c.from - base) as usize), value((c.to - base) as usize));
            match (old.is_nan(), new.is_nan()) {
                (false, false) => {
                    let (ko, kn) = (order_key(old), order_key(new));
                    let p = below(&c.keys, ko);
                    if c.keys.get(p) != Some(&ko) {
                        fresh = true;
                    } else {
                        let keys = &mut c.keys[..];
                        let mut p = p;
                        // Slide the gap at `p` toward where `kn` belongs, then fill it.
                        while p + 1 < keys.len() && keys[p + 1] < kn {
                            keys[p] = keys[p + 1];
                            p += 1;
                        }
                        while p > 0 && keys[p - 1] > kn {
                            keys[p] = keys[p - 1];
                            p -= 1;
                        }
                        keys[p] = kn;
                    }
                }
                (false, true) => {
                    let ko = order_key(old);
                    let p = below(&c.keys, ko);
                    if c.keys.get(p) == Some(&ko) {
                        c.keys.remove(p);
                    } else {
                        fresh = true;
                    }
                }
                (true, false) => {
                    let kn = order_key(new);
                    let p = below(&c.keys, kn);
                    c.keys.insert(p, kn);
                }
                (true, true) => {}
            }
        } else {
            for i in c.from..from {
                let x = value((i - base) as usize);
                if !x.is_nan() {
                    let k = order_key(x);
                    let p = below(&c.keys, k);
                    if c.keys.get(p) == Some(&k) {
                        c.keys.remove(p);
                    } else {
                        fresh = true;
                    }
                }
            }
            for i in c.to..to {
                let x = value((i - base) as usize);
                if !x.is_nan() {
                    let k = order_key(x);
                    let p = below(&c.keys, k);
                    c.keys.insert(p, k);
                }
            }
        }
    }
    if fresh {
        c.keys.clear();
        c.keys.extend((lo..hi).map(value).filter(|x| !x.is_nan()).map(order_key));
        c.keys.sort_unstable();
    }
    (c.from, c.to, c.valid) = (from, to, true);
    if c.keys.is_empty() {
        return f32::NAN;
    }
    let (k, t) = rank(c.keys.len(), q);
    lerp(from_order_key(c.keys[k]), c.keys.get(k + 1).map(|&y| from_order_key(y)), t)
}

/// `last` or `distinct` over entries `lo..hi` (the current event, at `at`, among them).
fn scan(
    agg: Agg,
    values: &[f32],
    lo: usize,
    hi: usize,
    at: usize,
    slot: usize,
    slots: usize,
) -> f32 {
    let value = |i: usize| values[i * slots + slot];
    match agg {
        Agg::Last => (lo..hi).rev().find(|&i| i != at).map_or(f32::NAN, value),
        _ => {
            let mut seen: Vec<u32> =
                (lo..hi).map(value).filter(|x| !x.is_nan()).map(|x| (x + 0.0).to_bits()).collect();
            seen.sort_unstable();
            seen.dedup();
            seen.len() as f32
        }
    }
}
