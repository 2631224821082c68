//! Streaming features: one declarative [`Spec`] (a TOML file), evaluated per batch by
//! [`Features`], online inside the runtime and offline over a file through the same code.
//!
//! A raw event is a row of the spec's fields (numeric values, then categorical codes from
//! [`Spec::encode`]) with a key and an event time (ms). Per batch, stateless columns are computed
//! column by column over the whole batch; stateful ones (windows, sessions, quantiles, EWMA,
//! z-scores, time since last) walk the rows in order and update each key's state in event
//! order, so the output does not depend on where batch boundaries fall: a run over a file and
//! a run through the runtime with any batching give bit-identical features.
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

pub mod backfill;
mod eval;
pub mod lookup;
pub mod offline;
mod snapshot;
pub use snapshot::Snapshot;
pub(crate) use snapshot::seal;

/// A compiled spec's identity: FNV-1a of its canonical form (its `Debug` text: fields in
/// order, no maps). The runtime's lineage records it and a snapshot is checked against it.
pub(crate) fn spec_hash(spec: &Spec) -> u64 {
    fnv1a(format!("{spec:?}").as_bytes())
}

mod spec;
mod state;

use std::sync::Arc;

pub use spec::{
    Agg, Categorical, DEFAULT_SESSION_WINDOW_MS, Freshness, LatePolicy, Level, Op, Operand, Span,
    Spec, StalePolicy, UnknownPolicy, fnv1a, parse_duration,
};
use state::Store;

use crate::batch::Batch;
use crate::error::{Error, Result};

/// Rows whose key states are looked up and prefetched together. The stage prefetches where
/// group `g + 3`'s keys are indexed, looks up group `g + 2`'s slots (in cache by then) and
/// prefetches their entries, prefetches group `g + 1`'s histories (their entries are in cache
/// by then), then updates group `g`'s keys in row order.
const GROUP: usize = 16;

/// Event times (ms) the stage takes: `|t| <= 2^53` (about 285,000 years either side of the
/// epoch; every such time is exact in an f64, so a CSV's times read back unchanged). Window
/// arithmetic on them cannot overflow, since windows, lateness and TTLs are below 10^15 ms.
/// A time outside the range is an [`Error::Input`] for its event, never a saturated value.
pub const MAX_EVENT_TIME_MS: i64 = 1 << 53;

/// Checks an event time against [`MAX_EVENT_TIME_MS`].
pub(crate) fn check_time(t: i64) -> Result<()> {
    if t.unsigned_abs() > MAX_EVENT_TIME_MS as u64 {
        return Err(Error::Input {
            at: "event".into(),
            message: format!("event time {t} ms is outside the supported range (|t| <= 2^53 ms)"),
        });
    }
    Ok(())
}

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
    /// Features found stale (older than their `max_age`), under either policy.
    pub stale: u64,
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
    plan: eval::Plan,
    keys: Store,
    /// Largest event time seen.
    clock: i64,
    counters: FeatureCounters,
    vals: Vec<f32>,
    /// Per row of the batch: its key's slot when looked up ahead, and the store's generation
    /// then (a slot looked up before a key was removed is looked up again).
    ahead: Vec<(Option<u32>, u64)>,
    /// Per lookup table: its reader, its counters, and the (field, output column) pairs read.
    lookups: Vec<LookupStage>,
}

impl Features {
    /// A stage with no state yet.
    pub fn new(spec: impl Into<Arc<Spec>>) -> Self {
        let spec: Arc<Spec> = spec.into();
        Features {
            plan: eval::Plan::new(&spec),
            keys: Store::new(spec.n_ewma, eval::n_sorted(&spec)),
            lookups: lookups_of(&spec),
            spec,
            clock: i64::MIN,
            counters: FeatureCounters::default(),
            vals: Vec::new(),
            ahead: Vec::new(),
        }
    }

    /// Each lookup table's counts, by name.
    pub fn lookup_counters(&self) -> Vec<(String, lookup::LookupCounters)> {
        self.spec
            .lookups
            .iter()
            .zip(&self.lookups)
            .map(|(l, (_, c, _, _))| (l.def.name.clone(), *c))
            .collect()
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

    /// Approximate bytes of per-key state (the key map, the slab of key states, the EWMA
    /// states and every key's history buffers).
    pub fn state_bytes(&self) -> usize {
        self.keys.bytes()
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
            if !op.is_stateful() && !matches!(op, Op::Lookup { .. } | Op::LookupAge { .. }) {
                stateless(op, raw, &mut out.values[c * n..(c + 1) * n]);
            }
        }
        for (t, (reader, counters, cols, ages)) in self.lookups.iter_mut().enumerate() {
            if cols.is_empty() && ages.is_empty() {
                continue;
            }
            let values = &mut out.values;
            reader.resolve(
                raw,
                keys,
                counters,
                |field, r, v| {
                    for &(f, c) in cols.iter() {
                        if f == field {
                            values[c * n + r] = v;
                        }
                    }
                },
                &mut out.errors,
            );
            // The rows' ages: `lookup_age` columns and lookup features with a `max_age`.
            let fresh: Vec<&Freshness> =
                spec.freshness.iter().filter(|f| f.lookup == Some(t)).collect();
            if ages.is_empty() && fresh.is_empty() {
                continue;
            }
            for (r, (&key, &time)) in keys.iter().zip(times).enumerate() {
                let found = reader.row_time(r);
                let age = found.flatten().map(|at| time.saturating_sub(at));
                for &c in ages.iter() {
                    out.values[c * n + r] = age.map_or(f32::NAN, |a| (a as f64 / 1e3) as f32);
                }
                // A key the table lacks (or a failed read) has had its policy applied.
                if found.is_none() {
                    continue;
                }
                // A row without a timestamp cannot show it is fresh.
                let age = age.unwrap_or(i64::MAX);
                for f in fresh.iter().filter(|f| age > f.max_age_ms) {
                    self.counters.stale += 1;
                    match f.policy {
                        StalePolicy::Missing => out.values[f.column * n + r] = f32::NAN,
                        StalePolicy::Error => out.errors.push((
                            r,
                            Error::Stale {
                                key,
                                feature: spec.names[f.column].clone(),
                                age_ms: age,
                                max_age_ms: f.max_age_ms,
                            },
                        )),
                    }
                }
            }
        }
        if !self.plan.is_empty() {
            // The batch's keys are known up front: look up and prefetch two groups ahead
            // (independent lookups, whose cache misses overlap), then update in row order.
            self.ahead.clear();
            self.ahead.resize(n, (None, 0));
            let slots = spec.slots.len();
            let look = |this: &mut Self, g: usize| {
                let generation = this.keys.generation();
                let end = (g + GROUP).min(n);
                for (ahead, &key) in this.ahead[g.min(end)..end].iter_mut().zip(&keys[g.min(end)..])
                {
                    let slot = this.keys.slot(key);
                    if let Some(s) = slot {
                        this.keys.prefetch(s);
                    }
                    *ahead = (slot, generation);
                }
            };
            let warm = |this: &Self, g: usize| {
                for r in g..(g + GROUP).min(n) {
                    if let (Some(s), generation) = this.ahead[r]
                        && generation == this.keys.generation()
                    {
                        this.keys.get(s).prefetch_history(slots);
                        this.keys.prefetch_sorted(s);
                    }
                }
            };
            let hint = |this: &Self, g: usize| {
                for &key in &keys[g.min(n)..(g + GROUP).min(n)] {
                    this.keys.prefetch_key(key);
                }
            };
            hint(self, 0);
            hint(self, GROUP);
            look(self, 0);
            hint(self, 2 * GROUP);
            look(self, GROUP);
            warm(self, 0);
            for g in (0..n).step_by(GROUP) {
                hint(self, g + 3 * GROUP);
                look(self, g + 2 * GROUP);
                warm(self, g + GROUP);
                for r in g..(g + GROUP).min(n) {
                    if let Err(e) = self.row(&spec, raw, r, keys[r], times[r], &mut out.values, n) {
                        out.errors.push((r, e));
                    }
                }
            }
        }
        if !self.lookups.is_empty() {
            // One answer per event: a row a lookup refused may be refused again later.
            out.errors.sort_by_key(|e| e.0);
            out.errors.dedup_by_key(|e| e.0);
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
        // Before any state moves: a refused time must not advance the clock either.
        check_time(t)?;
        self.clock = self.clock.max(t);
        self.counters.events += 1;
        if self.counters.events.is_multiple_of(SWEEP_EVERY) {
            self.sweep();
        }
        let slot = match self.ahead.get(r) {
            Some(&(Some(s), generation)) if generation == self.keys.generation() => Some(s),
            _ => self.keys.slot(key),
        };
        // Expiry is the key's own affair: its event more than `ttl` after its latest. (Not the
        // stage's clock, which other keys move: so a key's features do not depend on how its
        // events interleave with other keys', as they do differently on each replay of
        // several partitions.)
        let slot = match slot {
            Some(s)
                if spec
                    .ttl_ms
                    .is_some_and(|ttl| self.keys.get(s).watermark < t.saturating_sub(ttl)) =>
            {
                self.keys.remove(s);
                self.counters.expired_keys += 1;
                None
            }
            s => s,
        };
        let slot = match slot {
            Some(s) => s,
            None => {
                if self.keys.len() >= spec.max_keys {
                    self.make_room();
                }
                self.keys.insert(key, t)
            }
        };
        let (state, ewma, sorted) = self.keys.get_mut(slot);
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
        let previous = state.previous();
        let at = state.insert(t, &self.vals);
        self.plan.eval(state, ewma, sorted, slots, &self.vals, at, t, previous, out, r, n);
        // Freshness: how old the history these features read is (the key's previous event).
        let mut stale = None;
        if let Some(p) = previous {
            let age = t.saturating_sub(p);
            for f in spec.freshness.iter().filter(|f| f.lookup.is_none() && age > f.max_age_ms) {
                self.counters.stale += 1;
                match f.policy {
                    StalePolicy::Missing => out[f.column * n + r] = f32::NAN,
                    StalePolicy::Error => {
                        stale.get_or_insert(Error::Stale {
                            key,
                            feature: spec.names[f.column].clone(),
                            age_ms: age,
                            max_age_ms: f.max_age_ms,
                        });
                    }
                }
            }
        }
        state.seen(t);
        let before = state
            .watermark
            .saturating_sub(spec.retention_ms.saturating_add(spec.allowed_lateness_ms));
        let dropped_by_cap = state.times().len().saturating_sub(spec.max_events_per_key);
        state.evict(before, spec.max_events_per_key, slots);
        self.counters.dropped_events += dropped_by_cap as u64;
        stale.map_or(Ok(()), Err)
    }

    /// Forgets keys idle past the TTL.
    /// Frees the keys idle for twice the TTL behind the stage's clock. A key's next event
    /// more than `ttl` after its latest starts it afresh anyway (see `row`); the second `ttl`
    /// is the slack for keys whose events lag the clock (another partition, replayed later),
    /// so that freeing memory does not change a feature unless keys lag by more than `ttl`.
    fn sweep(&mut self) {
        if let Some(ttl) = self.spec.ttl_ms {
            let expired = self.keys.remove_idle(self.clock.saturating_sub(ttl.saturating_mul(2)));
            self.counters.expired_keys += expired as u64;
        }
    }

    /// Makes room for a new key: idle keys go first, then the sixteenth of keys seen least
    /// recently (oldest watermark; ties by key, so the choice is deterministic).
    fn make_room(&mut self) {
        self.sweep();
        let len = self.keys.len();
        if len < self.spec.max_keys {
            return;
        }
        let drop = (len / 16).max(1 + len - self.spec.max_keys);
        self.keys.remove_oldest(drop);
        self.counters.evicted_keys += drop as u64;
    }
}

/// A lookup table's reader in a stage, its counters, the (field, output column) pairs its
/// features read, and its `lookup_age` columns.
type LookupStage = (lookup::Reader, lookup::LookupCounters, Vec<(usize, usize)>, Vec<usize>);

fn lookups_of(spec: &Spec) -> Vec<LookupStage> {
    (spec.lookups.iter().enumerate())
        .map(|(t, l)| {
            let cols = (spec.ops.iter().enumerate())
                .filter_map(|(c, op)| match *op {
                    Op::Lookup { table, field } if table == t => Some((field, c)),
                    _ => None,
                })
                .collect();
            let ages = (spec.ops.iter().enumerate())
                .filter_map(|(c, op)| match *op {
                    Op::LookupAge { table } if table == t => Some(c),
                    _ => None,
                })
                .collect();
            (lookup::Reader::new(l), lookup::LookupCounters::default(), cols, ages)
        })
        .collect()
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
