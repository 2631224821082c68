//! The stateful columns, compiled once per spec into a [`Plan`]: each distinct window's start
//! and each distinct (field, window, with or without the current event) statistics are computed
//! once per event however many columns read them, and only the parts some column reads (the
//! extremes, the squared deviations) are computed at all.

use super::spec::{Agg, Op, Spec};
use super::state::KeyState;

/// One statistics computation: a field over a window.
#[derive(Debug, Clone, Copy, PartialEq)]
struct StatPlan {
    slot: usize,
    window: usize,
    /// Leaves the current event out (z-scores and ratios compare it with the others).
    skip: bool,
    minmax: bool,
    m2: bool,
}

/// One stateful column.
#[derive(Debug, Clone, Copy)]
enum Col {
    Count(usize),
    Stat(Agg, usize),
    /// `last` or `distinct` over (slot, window).
    Scan(Agg, usize, usize),
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
    /// Distinct windows: (length, tumbling).
    windows: Vec<(i64, bool)>,
    stats: Vec<StatPlan>,
    /// (output column, computation).
    cols: Vec<(usize, Col)>,
    /// Per event scratch: each window's first entry, each statistics' result.
    lo: Vec<usize>,
    out: Vec<Stats>,
}

impl Plan {
    pub fn new(spec: &Spec) -> Plan {
        let mut plan = Plan::default();
        let window = |plan: &mut Plan, ms: i64, tumbling: bool| -> usize {
            plan.windows.iter().position(|&w| w == (ms, tumbling)).unwrap_or_else(|| {
                plan.windows.push((ms, tumbling));
                plan.windows.len() - 1
            })
        };
        let stat = |plan: &mut Plan, slot: usize, window: usize, skip: bool, agg: Agg| -> usize {
            let i = plan
                .stats
                .iter()
                .position(|s| (s.slot, s.window, s.skip) == (slot, window, skip))
                .unwrap_or_else(|| {
                    let s = StatPlan { slot, window, skip, minmax: false, m2: false };
                    plan.stats.push(s);
                    plan.stats.len() - 1
                });
            let s = &mut plan.stats[i];
            s.minmax |= matches!(agg, Agg::Min | Agg::Max);
            s.m2 |= matches!(agg, Agg::Std);
            i
        };
        for (c, op) in spec.ops.iter().enumerate() {
            let col = match *op {
                Op::Window { agg, slot, window_ms, tumbling } => {
                    let w = window(&mut plan, window_ms, tumbling);
                    match agg {
                        Agg::Count => Col::Count(w),
                        Agg::Last | Agg::Distinct => Col::Scan(agg, slot, w),
                        _ => Col::Stat(agg, stat(&mut plan, slot, w, false, agg)),
                    }
                }
                Op::ZScore { slot, window_ms } => {
                    let w = window(&mut plan, window_ms, false);
                    Col::ZScore(slot, stat(&mut plan, slot, w, true, Agg::Std))
                }
                Op::RatioToMean { slot, window_ms } => {
                    let w = window(&mut plan, window_ms, false);
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
        plan.lo = vec![0; plan.windows.len()];
        plan.out = vec![Stats::EMPTY; plan.stats.len()];
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
        for (lo, &(ms, tumbling)) in self.lo.iter_mut().zip(&self.windows) {
            *lo = if tumbling {
                let begin = t.div_euclid(ms) * ms;
                times.partition_point(|&x| x < begin)
            } else {
                let after = t.saturating_sub(ms);
                times.partition_point(|&x| x <= after)
            };
        }
        for (st, p) in self.out.iter_mut().zip(&self.stats) {
            let lo = self.lo[p.window];
            let skip = if p.skip { at } else { usize::MAX };
            *st = if slots == 1 {
                Stats::over(|i| values[i], lo, hi, skip, p.minmax, p.m2)
            } else {
                Stats::over(|i| values[i * slots + p.slot], lo, hi, skip, p.minmax, p.m2)
            };
        }
        for &(c, col) in &self.cols {
            let v = match col {
                Col::Count(w) => (hi - self.lo[w]) as f32,
                Col::Stat(agg, s) => self.out[s].get(agg),
                Col::Scan(agg, slot, w) => scan(agg, values, self.lo[w], hi, at, slot, slots),
                Col::ZScore(slot, s) => {
                    let (x, st) = (f64::from(vals[slot]), &self.out[s]);
                    let std = st.std();
                    if st.n >= 2.0 && std > 0.0 { ((x - st.mean) / std) as f32 } else { f32::NAN }
                }
                Col::RatioToMean(slot, s) => {
                    let (x, st) = (f64::from(vals[slot]), &self.out[s]);
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

    /// Over entries `lo..hi`, skipping `skip`: the count, sum (in entry order), extremes when
    /// asked, and the mean as `sum / n`; then, when asked, the squared deviations from that
    /// mean in a second pass (more accurate than a running update, no division in the loop).
    #[inline(always)]
    fn over(
        value: impl Fn(usize) -> f32,
        lo: usize,
        hi: usize,
        skip: usize,
        minmax: bool,
        m2: bool,
    ) -> Stats {
        let mut st = Stats::EMPTY;
        let (mut n, mut sum) = (0usize, 0.0f64);
        for i in lo..hi {
            let x = value(i);
            if i != skip && !x.is_nan() {
                n += 1;
                sum += f64::from(x);
            }
        }
        if minmax {
            for i in lo..hi {
                let x = value(i);
                if i != skip && !x.is_nan() {
                    st.min = if st.min.is_nan() { x } else { st.min.min(x) };
                    st.max = if st.max.is_nan() { x } else { st.max.max(x) };
                }
            }
        }
        st.n = n as f64;
        st.sum = sum;
        if n > 0 {
            st.mean = sum / st.n;
            if m2 && n >= 2 {
                let mut m2 = 0.0;
                for i in lo..hi {
                    let x = value(i);
                    if i != skip && !x.is_nan() {
                        let d = f64::from(x) - st.mean;
                        m2 += d * d;
                    }
                }
                st.m2 = m2;
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
