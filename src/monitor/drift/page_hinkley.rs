//! The Page-Hinkley test (Page, 1954), as River 0.26's `drift.PageHinkley`: cumulative
//! deviations from the running mean, faded by `alpha`, against their running extremes.

use super::{Param, parse_param};
use crate::error::{Error, Result};
use crate::monitor::stats::Mean;

/// Which direction of change Page-Hinkley looks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// An increase of the mean.
    Up,
    /// A decrease of the mean.
    Down,
    /// Either (River's default).
    Both,
}

/// Page-Hinkley's parameters, named and defaulted as River's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PageHinkleyConfig {
    /// Values seen before any detection (30).
    pub min_instances: u64,
    /// Magnitude of change tolerated (0.005).
    pub delta: f64,
    /// Detection threshold on the cumulative deviation (50).
    pub threshold: f64,
    /// Fading factor of the cumulative sums (1 - 0.0001).
    pub alpha: f64,
    /// Direction (`up`, `down` or `both`).
    pub mode: Mode,
}

impl Default for PageHinkleyConfig {
    fn default() -> Self {
        Self {
            min_instances: 30,
            delta: 0.005,
            threshold: 50.0,
            alpha: 1.0 - 0.0001,
            mode: Mode::Both,
        }
    }
}

impl PageHinkleyConfig {
    pub(super) fn set(&mut self, p: &Param) -> Result<()> {
        match p.name.as_str() {
            "min_instances" => self.min_instances = parse_param(p)?,
            "delta" => self.delta = parse_param(p)?,
            "threshold" => self.threshold = parse_param(p)?,
            "alpha" => self.alpha = parse_param(p)?,
            "mode" => {
                self.mode = match p.value.as_str() {
                    "up" => Mode::Up,
                    "down" => Mode::Down,
                    "both" => Mode::Both,
                    other => {
                        return Err(Error::Config(format!(
                            "page-hinkley: mode must be up, down or both, not `{other}`"
                        )));
                    }
                }
            }
            _ => return Err(p.unknown("page-hinkley")),
        }
        Ok(())
    }

    fn validate(&self) -> Result<()> {
        for (name, v) in
            [("delta", self.delta), ("threshold", self.threshold), ("alpha", self.alpha)]
        {
            if !v.is_finite() {
                return Err(Error::Config(format!("page-hinkley: {name} must be finite, not {v}")));
            }
        }
        Ok(())
    }
}

/// The Page-Hinkley detector. Memory: a few numbers.
#[derive(Clone, Debug)]
pub struct PageHinkley {
    config: PageHinkleyConfig,
    mean: Mean,
    sum_increase: f64,
    sum_decrease: f64,
    min_increase: f64,
    max_decrease: f64,
    drift: bool,
}

impl PageHinkley {
    /// A detector with these parameters.
    pub fn new(config: PageHinkleyConfig) -> Result<Self> {
        config.validate()?;
        let mut ph = Self {
            config,
            mean: Mean::default(),
            sum_increase: 0.0,
            sum_decrease: 0.0,
            min_increase: 0.0,
            max_decrease: 0.0,
            drift: false,
        };
        ph.reset();
        Ok(ph)
    }

    pub(super) fn reset(&mut self) {
        self.mean = Mean::default();
        self.sum_increase = 0.0;
        self.sum_decrease = 0.0;
        self.min_increase = f64::INFINITY;
        self.max_decrease = -1.0;
        self.drift = false;
    }

    pub(super) fn drift(&self) -> bool {
        self.drift
    }

    pub(super) fn step(&mut self, x: f64) {
        if self.drift {
            self.reset();
        }
        let c = &self.config;
        self.mean.update(x);
        let dev = x - self.mean.get();
        self.sum_increase = c.alpha * self.sum_increase + dev - c.delta;
        self.sum_decrease = c.alpha * self.sum_decrease + dev + c.delta;
        if self.sum_increase < self.min_increase {
            self.min_increase = self.sum_increase;
        }
        if self.sum_decrease > self.max_decrease {
            self.max_decrease = self.sum_decrease;
        }
        if self.mean.n >= c.min_instances as f64 {
            let up = self.sum_increase - self.min_increase > c.threshold;
            let down = self.max_decrease - self.sum_decrease > c.threshold;
            self.drift = match c.mode {
                Mode::Up => up,
                Mode::Down => down,
                Mode::Both => up || down,
            };
        }
    }
}
