//! ADWIN, adaptive windowing (Bifet and Gavaldà, 2007), as River 0.26's `drift.ADWIN`: an
//! exponential histogram of buckets (row `i` holds up to `max_buckets + 1` summaries of `2^i`
//! values each), every `clock` values each cut of the window into an older and a newer part is
//! tested, and the oldest bucket is dropped while a cut shows their means differ. As in River,
//! the update after a detection starts from an empty window.

use super::{Param, parse_param};
use crate::error::{Error, Result};

/// ADWIN's parameters, named and defaulted as River's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdwinConfig {
    /// Significance of the test between two sub-windows (0.002).
    pub delta: f64,
    /// Test every this many values (32).
    pub clock: u32,
    /// Buckets of one size kept before two are merged (5).
    pub max_buckets: usize,
    /// The smallest sub-window a cut may leave (5).
    pub min_window_length: u32,
    /// No test before the window holds more than this many values (10).
    pub grace_period: u32,
}

impl Default for AdwinConfig {
    fn default() -> Self {
        Self { delta: 0.002, clock: 32, max_buckets: 5, min_window_length: 5, grace_period: 10 }
    }
}

impl AdwinConfig {
    pub(super) fn set(&mut self, p: &Param) -> Result<()> {
        match p.name.as_str() {
            "delta" => self.delta = parse_param(p)?,
            "clock" => self.clock = parse_param(p)?,
            "max_buckets" => self.max_buckets = parse_param(p)?,
            "min_window_length" => self.min_window_length = parse_param(p)?,
            "grace_period" => self.grace_period = parse_param(p)?,
            _ => return Err(p.unknown("adwin")),
        }
        Ok(())
    }

    fn validate(&self) -> Result<()> {
        if !(self.delta > 0.0 && self.delta < 1.0) {
            return Err(Error::Config(format!(
                "adwin: delta must be in (0, 1), not {}",
                self.delta
            )));
        }
        if self.clock == 0 || self.max_buckets == 0 {
            return Err(Error::Config("adwin: clock and max_buckets must be at least 1".into()));
        }
        if self.max_buckets > 1 << 16 {
            return Err(Error::Config(format!(
                "adwin: max_buckets {} is over 65536",
                self.max_buckets
            )));
        }
        Ok(())
    }
}

/// One row of the histogram: summaries of `2^row` values each, oldest first, in a ring of a
/// power-of-two capacity (dropping the oldest moves nothing).
#[derive(Clone, Debug)]
struct Row {
    /// (total, variance) pairs.
    ring: Box<[(f64, f64)]>,
    start: usize,
    len: usize,
}

impl Row {
    /// A row that holds at least `capacity` summaries.
    fn new(capacity: usize) -> Self {
        Self {
            ring: vec![(0.0, 0.0); capacity.next_power_of_two()].into_boxed_slice(),
            start: 0,
            len: 0,
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    /// The `k`-th oldest summary.
    fn get(&self, k: usize) -> (f64, f64) {
        self.ring[(self.start + k) & (self.ring.len() - 1)]
    }

    /// Adds the newest summary; the row is never over `max_buckets + 1`, its capacity.
    fn push(&mut self, total: f64, variance: f64) {
        let at = (self.start + self.len) & (self.ring.len() - 1);
        self.ring[at] = (total, variance);
        self.len += 1;
    }

    fn drop_oldest(&mut self, n: usize) {
        self.start = (self.start + n) & (self.ring.len() - 1);
        self.len -= n;
    }
}

/// The sub-window sizes and sums at every cut of one pass, oldest cut first, in the order
/// and arithmetic of River's scan (so the same sums, bit for bit); kept between passes so
/// that a pass allocates nothing once warm.
#[derive(Clone, Debug, Default)]
struct Cuts {
    n0: Vec<f64>,
    n1: Vec<f64>,
    u0: Vec<f64>,
    u1: Vec<f64>,
}

/// What ADWIN's bound needs besides a cut's sizes and sums.
struct Bound {
    min: f64,
    /// `ln(2 ln(width) / delta)`.
    dp: f64,
    /// The window's variance per value.
    vw: f64,
    /// `2 / 3 * dp`.
    linear: f64,
}

impl Cuts {
    /// Moves buckets from the newer sub-window to the older one, oldest first, recording
    /// each cut; the last (an empty newer sub-window) is not a cut.
    fn collect(&mut self, rows: &[Row], width: f64, total: f64) {
        self.n0.clear();
        self.n1.clear();
        self.u0.clear();
        self.u1.clear();
        let (mut n0, mut n1, mut u0, mut u1) = (0.0, width, 0.0, total);
        for (row, bucket) in rows.iter().enumerate().rev() {
            let size = (1u64 << row) as f64;
            for k in 0..bucket.len() {
                let t = bucket.get(k).0;
                n0 += size;
                n1 -= size;
                u0 += t;
                u1 -= t;
                if row == 0 && k == bucket.len() - 1 {
                    return;
                }
                self.n0.push(n0);
                self.n1.push(n1);
                self.u0.push(u0);
                self.u1.push(u1);
            }
        }
    }

    /// The first cut whose sub-windows' means differ by more than the bound allows. Cuts are
    /// tested eight at a time without branches, so the divisions and square roots run in
    /// SIMD lanes (IEEE division and square root round the same in every lane).
    fn first_change(&self, b: &Bound) -> Option<usize> {
        const LANES: usize = 8;
        let len = self.n0.len();
        let mut at = 0;
        while at < len {
            let end = (at + LANES).min(len);
            let mut mask = 0u32;
            for i in at..end {
                let (n0, n1) = (self.n0[i], self.n1[i]);
                let dm = self.u0[i] / n0 - self.u1[i] / n1;
                let m = 1.0 / (n0 - b.min + 1.0) + 1.0 / (n1 - b.min + 1.0);
                let epsilon = (2.0 * m * b.vw * b.dp).sqrt() + b.linear * m;
                let fires = (n1 >= b.min) & (n0 >= b.min) & (dm.abs() > epsilon);
                mask |= u32::from(fires) << (i - at);
            }
            if mask != 0 {
                return Some(at + mask.trailing_zeros() as usize);
            }
            at = end;
        }
        None
    }
}

/// The ADWIN detector. Memory: `O(max_buckets * log2(window))` summaries.
#[derive(Clone, Debug)]
pub struct Adwin {
    config: AdwinConfig,
    rows: Vec<Row>,
    /// Values in the window (a float, as the test's arithmetic uses it).
    width: f64,
    total: f64,
    /// The window's sum of squared deviations.
    variance: f64,
    tick: u64,
    drift: bool,
    cuts: Cuts,
}

impl Adwin {
    /// A detector with these parameters.
    pub fn new(config: AdwinConfig) -> Result<Self> {
        config.validate()?;
        let mut adwin = Self {
            config,
            rows: Vec::new(),
            width: 0.0,
            total: 0.0,
            variance: 0.0,
            tick: 0,
            drift: false,
            cuts: Cuts::default(),
        };
        adwin.reset();
        Ok(adwin)
    }

    /// Values in the current window.
    pub fn width(&self) -> f64 {
        self.width
    }

    /// The mean of the current window (0 when empty).
    pub fn estimation(&self) -> f64 {
        if self.width == 0.0 { 0.0 } else { self.total / self.width }
    }

    pub(super) fn reset(&mut self) {
        self.rows.clear();
        self.rows.push(Row::new(self.config.max_buckets + 1));
        self.width = 0.0;
        self.total = 0.0;
        self.variance = 0.0;
        self.tick = 0;
        self.drift = false;
    }

    pub(super) fn drift(&self) -> bool {
        self.drift
    }

    pub(super) fn step(&mut self, x: f64) {
        if self.drift {
            self.reset();
        }
        self.insert(x);
        self.drift = self.test();
    }

    fn insert(&mut self, x: f64) {
        self.rows[0].push(x, 0.0);
        self.width += 1.0;
        if self.width > 1.0 {
            let d = x - self.total / (self.width - 1.0);
            self.variance += (self.width - 1.0) * d * d / self.width;
        }
        self.total += x;
        self.merge();
    }

    /// Where a row holds `max_buckets + 1` summaries, its two oldest become one of the next
    /// row, which may overflow in turn.
    fn merge(&mut self) {
        let full = self.config.max_buckets + 1;
        let mut row = 0;
        while self.rows[row].len() == full {
            let n = (1u64 << row) as f64;
            let ((t0, v0), (t1, v1)) = (self.rows[row].get(0), self.rows[row].get(1));
            let d = t0 / n - t1 / n;
            let variance = v0 + v1 + n * n * d * d / (n + n);
            if row + 1 == self.rows.len() {
                self.rows.push(Row::new(full));
            }
            self.rows[row + 1].push(t0 + t1, variance);
            self.rows[row].drop_oldest(2);
            row += 1;
        }
    }

    /// Tests every cut, oldest buckets first, dropping the oldest bucket while one shows a
    /// change. True if any did.
    fn test(&mut self) -> bool {
        self.tick += 1;
        if !self.tick.is_multiple_of(u64::from(self.config.clock))
            || self.width <= f64::from(self.config.grace_period)
        {
            return false;
        }
        let mut detected = false;
        loop {
            self.cuts.collect(&self.rows, self.width, self.total);
            let min = f64::from(self.config.min_window_length);
            // Constant over a pass (the width changes only when a bucket is dropped, which
            // ends the pass), and computed as River computes it at every cut: the same bits.
            let dp = (2.0 * self.width.ln() / self.config.delta).ln();
            let bound = Bound { min, dp, vw: self.variance / self.width, linear: 2.0 / 3.0 * dp };
            if self.cuts.first_change(&bound).is_none() {
                return detected;
            }
            detected = true;
            self.drop_oldest();
        }
    }

    fn drop_oldest(&mut self) {
        let last = self.rows.len() - 1;
        let n = (1u64 << last) as f64;
        let (u, v) = self.rows[last].get(0);
        let mu = u / n;
        self.width -= n;
        self.total -= u;
        let mu_window = self.total / self.width;
        self.variance -=
            v + n * self.width * (mu - mu_window) * (mu - mu_window) / (n + self.width);
        self.rows[last].drop_oldest(1);
        if self.rows[last].len() == 0 && last > 0 {
            self.rows.pop();
        }
    }
}
