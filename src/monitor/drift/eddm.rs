//! EDDM, the early drift detection method (Baena-García et al., 2006), as River 0.26's
//! `drift.binary.EDDM`: the distance between errors, its mean plus two deviations against
//! their maximum.

use super::{Param, parse_param};
use crate::error::{Error, Result};
use crate::monitor::stats::Var;

/// EDDM's parameters, named and defaulted as River's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EddmConfig {
    /// Values, and errors, seen before any detection (30).
    pub warm_start: u64,
    /// Under this share of the maximum, a warning (0.95).
    pub alpha: f64,
    /// Under this share of the maximum, drift (0.9).
    pub beta: f64,
}

impl Default for EddmConfig {
    fn default() -> Self {
        Self { warm_start: 30, alpha: 0.95, beta: 0.9 }
    }
}

impl EddmConfig {
    pub(super) fn set(&mut self, p: &Param) -> Result<()> {
        match p.name.as_str() {
            "warm_start" => self.warm_start = parse_param(p)?,
            "alpha" => self.alpha = parse_param(p)?,
            "beta" => self.beta = parse_param(p)?,
            _ => return Err(p.unknown("eddm")),
        }
        Ok(())
    }

    fn validate(&self) -> Result<()> {
        // River's own check; NaN fails it too.
        if self.alpha < self.beta || self.alpha.is_nan() || self.beta.is_nan() {
            return Err(Error::Config(format!(
                "eddm: alpha ({}) must be greater or equal to beta ({})",
                self.alpha, self.beta
            )));
        }
        Ok(())
    }
}

/// The EDDM detector (binary input: 1 for an error). Memory: a few numbers.
#[derive(Clone, Debug)]
pub struct Eddm {
    config: EddmConfig,
    distances: Var,
    n: u64,
    last_error: u64,
    errors: u64,
    max: f64,
    drift: bool,
    warning: bool,
}

impl Eddm {
    /// A detector with these parameters.
    pub fn new(config: EddmConfig) -> Result<Self> {
        config.validate()?;
        let mut eddm = Self {
            config,
            distances: Var::default(),
            n: 0,
            last_error: 0,
            errors: 0,
            max: 0.0,
            drift: false,
            warning: false,
        };
        eddm.reset();
        Ok(eddm)
    }

    pub(super) fn reset(&mut self) {
        self.distances = Var::default();
        self.n = 0;
        self.last_error = 0;
        self.errors = 0;
        self.max = -1.0;
        self.drift = false;
        self.warning = false;
    }

    pub(super) fn drift(&self) -> bool {
        self.drift
    }

    pub(super) fn warning(&self) -> bool {
        self.warning
    }

    pub(super) fn step(&mut self, x: f64) {
        if self.drift {
            self.reset();
        }
        self.n += 1;
        if x != 1.0 {
            return;
        }
        self.errors += 1;
        self.distances.update((self.n - self.last_error) as f64);
        if self.n > self.config.warm_start {
            let level_now = self.distances.mean.get() + 2.0 * self.distances.get().powf(0.5);
            if level_now > self.max {
                self.max = level_now;
            } else if self.errors > self.config.warm_start {
                let level = level_now / self.max;
                // As in River, a drift leaves the warning flag as it was.
                if level < self.config.beta {
                    self.drift = true;
                } else {
                    self.warning = level < self.config.alpha;
                }
            }
        }
        self.last_error = self.n;
    }
}
