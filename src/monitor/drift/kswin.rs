//! KSWIN (Raab et al., 2020), as River 0.26's `drift.KSWIN`: a two-sample Kolmogorov-Smirnov
//! test between the newest `stat_size` values of a sliding window and as many drawn at random
//! from the rest of it.
//!
//! The draw is CPython's `random.Random(seed).sample`, so with the same seed the detections
//! are River's; without one the seed comes from the process's random state (River's does too).
//! The p-value is SciPy's exact two-sided one for two samples of equal size (`ks_2samp`'s
//! `method="auto"` at these sizes), computed the same way; where SciPy's exact sum leaves
//! [0, 1] (a statistic of a sample or two, p-value near 1) it is clamped to 1, which is on the
//! same side of any `alpha` under 1.

use std::collections::VecDeque;

use super::pyrandom::PyRandom;
use super::{Param, parse_param};
use crate::error::{Error, Result};

/// The most values a KSWIN window may hold (its memory is 8 bytes a value, three times).
pub const MAX_WINDOW: usize = 1 << 20;

/// KSWIN's parameters, named and defaulted as River's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KswinConfig {
    /// Significance of the test (0.005).
    pub alpha: f64,
    /// Values in the sliding window (100).
    pub window_size: usize,
    /// Values in each of the two samples tested (30).
    pub stat_size: usize,
    /// Seed of the draw; `None` takes one from the process (River's default).
    pub seed: Option<u64>,
}

impl Default for KswinConfig {
    fn default() -> Self {
        Self { alpha: 0.005, window_size: 100, stat_size: 30, seed: None }
    }
}

impl KswinConfig {
    pub(super) fn set(&mut self, p: &Param) -> Result<()> {
        match p.name.as_str() {
            "alpha" => self.alpha = parse_param(p)?,
            "window_size" => self.window_size = parse_param(p)?,
            "stat_size" => self.stat_size = parse_param(p)?,
            "seed" => {
                // `random.seed(n)` seeds with |n|, so a negative seed is the positive one.
                self.seed = match p.value.as_str() {
                    "None" | "none" => None,
                    v => Some(match v.parse::<u64>() {
                        Ok(s) => s,
                        Err(_) => parse_param::<i64>(p)?.unsigned_abs(),
                    }),
                }
            }
            _ => return Err(p.unknown("kswin")),
        }
        Ok(())
    }

    fn validate(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.alpha) {
            return Err(Error::Config(format!(
                "kswin: alpha must be in [0, 1], not {}",
                self.alpha
            )));
        }
        if self.stat_size == 0 || self.window_size > MAX_WINDOW {
            return Err(Error::Config(format!(
                "kswin: stat_size must be at least 1 and window_size at most {MAX_WINDOW}"
            )));
        }
        // River draws stat_size values from the window_size - stat_size older ones.
        if self.window_size < 2 * self.stat_size {
            return Err(Error::Config(format!(
                "kswin: window_size ({}) must hold two samples of stat_size ({})",
                self.window_size, self.stat_size
            )));
        }
        Ok(())
    }
}

/// The KSWIN detector. Memory: three buffers of `window_size` values.
#[derive(Clone)]
pub struct Kswin {
    config: KswinConfig,
    seed: u64,
    rng: PyRandom,
    window: VecDeque<f64>,
    p_value: f64,
    drift: bool,
    drawn: Vec<usize>,
    pool: Vec<usize>,
    sample: Vec<f64>,
    recent: Vec<f64>,
}

impl std::fmt::Debug for Kswin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kswin")
            .field("config", &self.config)
            .field("seed", &self.seed)
            .finish_non_exhaustive()
    }
}

impl Kswin {
    /// A detector with these parameters.
    pub fn new(config: KswinConfig) -> Result<Self> {
        config.validate()?;
        let seed = config.seed.unwrap_or_else(|| {
            use std::hash::{BuildHasher, RandomState};
            RandomState::new().hash_one(std::time::SystemTime::now())
        });
        Ok(Self {
            config,
            seed,
            rng: PyRandom::new(seed),
            window: VecDeque::with_capacity(config.window_size),
            p_value: 0.0,
            drift: false,
            drawn: Vec::with_capacity(config.stat_size),
            pool: Vec::with_capacity(config.window_size),
            sample: Vec::with_capacity(config.stat_size),
            recent: Vec::with_capacity(config.stat_size),
        })
    }

    /// The p-value of the last test (0 before the window first fills).
    pub fn p_value(&self) -> f64 {
        self.p_value
    }

    pub(super) fn reset(&mut self) {
        self.rng = PyRandom::new(self.seed);
        self.window.clear();
        self.p_value = 0.0;
        self.drift = false;
    }

    pub(super) fn drift(&self) -> bool {
        self.drift
    }

    pub(super) fn step(&mut self, x: f64) {
        // River keeps the newest values as the window after a detection, but resets the
        // detector (window and draw) at the next update before using it.
        if self.drift {
            self.reset();
        }
        let (size, stat) = (self.config.window_size, self.config.stat_size);
        if self.window.len() == size {
            self.window.pop_front();
        }
        self.window.push_back(x);
        self.drift = false;
        if self.window.len() < size {
            return;
        }
        self.rng.sample(size - stat, stat, &mut self.drawn, &mut self.pool);
        self.sample.clear();
        self.sample.extend(self.drawn.iter().map(|&i| self.window[i]));
        self.recent.clear();
        self.recent.extend(self.window.range(size - stat..));
        let h = statistic(&mut self.sample, &mut self.recent);
        self.p_value = p_value(stat, h);
        self.drift = self.p_value <= self.config.alpha && h as f64 / stat as f64 > 0.1;
    }
}

/// The two-sample KS statistic of equal-size samples, in steps of `1 / n`: the largest gap
/// between the counts of each at or below a value. Sorts both.
fn statistic(a: &mut [f64], b: &mut [f64]) -> usize {
    // Values are finite (checked at the detector's door), so total order is numeric order.
    a.sort_unstable_by(f64::total_cmp);
    b.sort_unstable_by(f64::total_cmp);
    let (mut i, mut j, mut h) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        let v = a[i].min(b[j]);
        while i < a.len() && a[i] <= v {
            i += 1;
        }
        while j < b.len() && b[j] <= v {
            j += 1;
        }
        h = h.max(i.abs_diff(j));
    }
    h
}

/// SciPy's exact two-sided p-value for two samples of `n` values each and statistic `h / n`:
/// the share of lattice paths that leave the band `|x - y| < h`, by its alternating sum
/// evaluated Horner-wise (`scipy.stats._stats_py._compute_prob_outside_square`).
fn p_value(n: usize, h: usize) -> f64 {
    if h == 0 {
        return 1.0;
    }
    let mut p = 0.0;
    for k in (0..=n / h).rev() {
        let mut term = 1.0;
        for j in 0..h {
            // Both factors are exact integers in f64 (n is at most MAX_WINDOW), as in SciPy.
            let up = n as f64 - (k * h) as f64 - j as f64;
            let down = (n + k * h + j + 1) as f64;
            term = up * term / down;
        }
        p = term * (1.0 - p);
    }
    let p = 2.0 * p;
    if (0.0..=1.0).contains(&p) { p } else { 1.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p_values_match_scipy() {
        // python3 -c "from scipy import stats; print(stats.ks_2samp(range(30), range(12, 42)).pvalue)"
        assert_eq!(p_value(30, 12), 0.015_643_390_496_754_332);
        assert_eq!(p_value(30, 0), 1.0);
        assert_eq!(p_value(30, 30), 1.691_123_389_214_474_2e-17);
    }

    #[test]
    fn statistic_counts_ties_on_both_sides() {
        let (mut a, mut b) = ([1.0, 2.0, 2.0, 3.0], [2.0, 2.0, 4.0, 5.0]);
        assert_eq!(statistic(&mut a, &mut b), 2);
    }
}
