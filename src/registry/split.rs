//! A/B tests and canaries: traffic split by key hash into weighted variants, each served by a
//! loaded version ([`Split`], [`Runtime::set_split`](crate::Runtime::set_split)).
//!
//! A key's place is a fixed point in [0, 1) (a hash of the key, salted apart from the
//! shadow's choice); variant *i* serves the keys whose place falls in its share of the weights,
//! in the order the variants were given. So the same key always lands in the same variant for
//! the same weights, and when the last variant's weight grows (a canary ramped from 1% to
//! 100%) keys only move into it, never out of it or between the others.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;

use super::{Version, lock};
use crate::error::{Error, Result};
use crate::metrics::VariantSnapshot;

/// The most variants one split holds.
pub const MAX_VARIANTS: usize = 16;

/// How traffic is split between loaded versions: variants with weights, chosen per event by
/// key hash. Events without a key all take the place of key 0.
///
/// # Examples
///
/// ```
/// use streamscore::Split;
///
/// // A canary taking 1% of keys; ramp it with the same split and other weights.
/// let split = Split::new().variant("control", 1, 99).variant("canary", 2, 1);
/// assert_eq!(split.variants().len(), 2);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Split {
    variants: Vec<VariantSpec>,
}

/// One variant of a [`Split`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariantSpec {
    /// Its name in metrics and the audit log.
    pub name: String,
    /// The loaded version serving it ([`Runtime::load`](crate::Runtime::load)).
    pub version: u64,
    /// Its share of keys, relative to the other weights (0 serves no key).
    pub weight: u32,
}

impl Split {
    /// An empty split (add variants with [`variant`](Split::variant)).
    pub fn new() -> Self {
        Split::default()
    }

    /// Adds a variant: keys in its share of the weights are scored by `version`.
    pub fn variant(mut self, name: impl Into<String>, version: u64, weight: u32) -> Self {
        self.variants.push(VariantSpec { name: name.into(), version, weight });
        self
    }

    /// The variants, in order.
    pub fn variants(&self) -> &[VariantSpec] {
        &self.variants
    }

    /// Checks the shape: 1 to [`MAX_VARIANTS`] variants with distinct, non-empty names and
    /// weights that are not all zero and add up to at most 2^31.
    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(format!("split: {m}")));
        let n = self.variants.len();
        if n == 0 || n > MAX_VARIANTS {
            return bad(format!("{n} variants; a split holds 1 to {MAX_VARIANTS}"));
        }
        for (i, v) in self.variants.iter().enumerate() {
            if v.name.is_empty() || v.name.len() > 64 {
                return bad(format!("variant {i} needs a name of 1 to 64 bytes"));
            }
            if self.variants[..i].iter().any(|u| u.name == v.name) {
                return bad(format!("two variants are named `{}`", v.name));
            }
        }
        let total: u64 = self.variants.iter().map(|v| u64::from(v.weight)).sum();
        if total == 0 {
            return bad("every weight is 0".into());
        }
        if total > 1 << 31 {
            return bad(format!("the weights add up to {total}; at most 2^31"));
        }
        Ok(())
    }
}

/// A key's place in [0, 2^32): the split's own hash, so that which keys a shadow takes and
/// which variant they land in are independent.
#[inline]
pub(crate) fn place(key: u64) -> u64 {
    // SplitMix64's finaliser over a salted key.
    let mut z = key ^ 0x5bd1_e995_a5a5_5a5a;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) >> 32
}

/// A split in service: its variants' versions, their cumulative weights and tallies.
pub(crate) struct Active {
    pub arms: Vec<Arm>,
    /// Cumulative weights: arm `i` serves places `p` with `p * total < bound[i] << 32`.
    bounds: Vec<u64>,
    total: u64,
}

/// One variant in service.
pub(crate) struct Arm {
    pub name: Arc<str>,
    pub weight: u32,
    pub version: Arc<Version>,
    tally: Mutex<Tally>,
}

/// What a variant answered.
struct Tally {
    events: u64,
    errors: u64,
    /// Sum of the first output, for the mean.
    score_sum: f64,
    /// End-to-end latency, µs.
    latency: Histogram<u64>,
}

impl Active {
    /// The split `spec` over resolved versions (one per variant, in order).
    pub(crate) fn new(spec: &Split, versions: Vec<Arc<Version>>) -> Self {
        let mut bounds = Vec::with_capacity(versions.len());
        let mut total = 0;
        for v in &spec.variants {
            total += u64::from(v.weight);
            bounds.push(total);
        }
        let arms = spec
            .variants
            .iter()
            .zip(versions)
            .map(|(v, version)| Arm {
                name: v.name.as_str().into(),
                weight: v.weight,
                version,
                tally: Mutex::new(Tally {
                    events: 0,
                    errors: 0,
                    score_sum: 0.0,
                    latency: Histogram::new_with_bounds(1, 60_000_000, 2).expect("valid bounds"),
                }),
            })
            .collect();
        Active { arms, bounds, total }
    }

    /// The split as it was given.
    pub(crate) fn spec(&self) -> Split {
        let variants = self.arms.iter().map(|a| VariantSpec {
            name: a.name.to_string(),
            version: a.version.id(),
            weight: a.weight,
        });
        Split { variants: variants.collect() }
    }

    /// The arm serving `key`.
    #[inline]
    pub(crate) fn arm_of(&self, key: u64) -> usize {
        let p = place(key) * self.total;
        // The first arm whose cumulative share lies above the place; weight-0 arms are empty.
        self.bounds.iter().position(|&b| p < b << 32).unwrap_or(self.arms.len() - 1)
    }

    /// Records an arm's share of a batch: its events, the sum of their first outputs and each
    /// one's end-to-end latency.
    pub(crate) fn record(&self, arm: usize, score_sum: f64, latencies: &[Duration]) {
        let mut t = lock(&self.arms[arm].tally);
        t.events += latencies.len() as u64;
        t.score_sum += score_sum;
        for l in latencies {
            t.latency.saturating_record((l.as_micros() as u64).max(1));
        }
    }

    /// Records events of an arm that failed in its backend.
    pub(crate) fn record_errors(&self, arm: usize, n: u64) {
        lock(&self.arms[arm].tally).errors += n;
    }

    /// Every arm's report.
    pub(crate) fn snapshot(&self) -> Vec<VariantSnapshot> {
        self.arms
            .iter()
            .map(|a| {
                let t = lock(&a.tally);
                let q = |q: f64| (t.events > 0).then(|| t.latency.value_at_quantile(q));
                VariantSnapshot {
                    name: a.name.to_string(),
                    version: a.version.id(),
                    weight: a.weight,
                    events: t.events,
                    errors: t.errors,
                    mean_score: (t.events > 0).then(|| t.score_sum / t.events as f64),
                    p50_us: q(0.5),
                    p99_us: q(0.99),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(weights: &[u32], keys: u64) -> Vec<Vec<u64>> {
        let mut spec = Split::new();
        for (i, &w) in weights.iter().enumerate() {
            spec = spec.variant(format!("v{i}"), i as u64, w);
        }
        spec.validate().unwrap();
        let mut bounds = Vec::new();
        let mut total = 0;
        for &w in weights {
            total += u64::from(w);
            bounds.push(total);
        }
        let active = Active { arms: Vec::new(), bounds, total };
        let mut out = vec![Vec::new(); weights.len()];
        for k in 0..keys {
            let p = place(k) * active.total;
            let arm = active.bounds.iter().position(|&b| p < b << 32).unwrap();
            out[arm].push(k);
        }
        out
    }

    #[test]
    fn shares_follow_the_weights() {
        let arms = share(&[70, 20, 10], 100_000);
        let got: Vec<f64> = arms.iter().map(|a| a.len() as f64 / 100_000.0).collect();
        for (g, want) in got.iter().zip([0.7, 0.2, 0.1]) {
            assert!((g - want).abs() < 0.01, "{got:?}");
        }
        assert!(share(&[0, 5], 1000)[0].is_empty(), "a weight of 0 serves no key");
    }

    #[test]
    fn ramping_a_canary_only_moves_keys_into_it() {
        let mut before: Vec<u64> = Vec::new();
        for pct in [1, 5, 25, 50, 100] {
            let arms = share(&[100 - pct, pct], 20_000);
            assert!(before.iter().all(|k| arms[1].contains(k)), "a key left the canary at {pct}%");
            before = arms[1].clone();
        }
        assert_eq!(before.len(), 20_000);
        // Sticky: the same weights give the same keys.
        assert_eq!(share(&[90, 10], 5000), share(&[90, 10], 5000));
        // Totals need not be 100: 9:1 is 90:10.
        assert_eq!(share(&[9, 1], 5000), share(&[90, 10], 5000));
    }

    #[test]
    fn bad_splits_are_refused() {
        assert!(Split::new().validate().is_err());
        assert!(Split::new().variant("a", 1, 0).validate().is_err());
        assert!(Split::new().variant("a", 1, 1).variant("a", 2, 1).validate().is_err());
        assert!(Split::new().variant("", 1, 1).validate().is_err());
    }
}
