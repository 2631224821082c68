//! HDDM_A (Frías-Blanco et al., 2014), as River 0.26's `drift.binary.HDDMA`: Hoeffding's
//! bound on the difference between the running mean and the mean at its best cut point.

use super::{Param, parse_bool, parse_param};
use crate::error::{Error, Result};
use crate::monitor::stats::Mean;

/// HDDM_A's parameters, named and defaulted as River's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HddmAConfig {
    /// Confidence level of the drift test (0.001).
    pub drift_confidence: f64,
    /// Confidence level of the warning test (0.005).
    pub warning_confidence: f64,
    /// Also look for a decrease of the mean (false).
    pub two_sided_test: bool,
}

impl Default for HddmAConfig {
    fn default() -> Self {
        Self { drift_confidence: 0.001, warning_confidence: 0.005, two_sided_test: false }
    }
}

impl HddmAConfig {
    pub(super) fn set(&mut self, p: &Param) -> Result<()> {
        match p.name.as_str() {
            "drift_confidence" => self.drift_confidence = parse_param(p)?,
            "warning_confidence" => self.warning_confidence = parse_param(p)?,
            "two_sided_test" => self.two_sided_test = parse_bool(p)?,
            _ => return Err(p.unknown("hddm-a")),
        }
        Ok(())
    }

    pub(super) fn validate(&self, name: &str) -> Result<()> {
        for (what, c) in [
            ("drift_confidence", self.drift_confidence),
            ("warning_confidence", self.warning_confidence),
        ] {
            if !(c > 0.0 && c < 1.0) {
                return Err(Error::Config(format!("{name}: {what} must be in (0, 1), not {c}")));
            }
        }
        Ok(())
    }
}

/// The HDDM_A detector (binary input). Memory: a few numbers.
#[derive(Clone, Debug)]
pub struct HddmA {
    config: HddmAConfig,
    /// `ln(1 / drift_confidence)`, `ln(2 / drift_confidence)`, `ln(2 / warning_confidence)`:
    /// River takes these logarithms on every update; of the same numbers, so the same bits.
    ln_bound: f64,
    ln_drift: f64,
    ln_warning: f64,
    z: Mean,
    x_min: Mean,
    x_max: Mean,
    drift: bool,
    warning: bool,
}

impl HddmA {
    /// A detector with these parameters.
    pub fn new(config: HddmAConfig) -> Result<Self> {
        config.validate("hddm-a")?;
        Ok(Self {
            config,
            ln_bound: (1.0 / config.drift_confidence).ln(),
            ln_drift: (2.0 / config.drift_confidence).ln(),
            ln_warning: (2.0 / config.warning_confidence).ln(),
            z: Mean::default(),
            x_min: Mean::default(),
            x_max: Mean::default(),
            drift: false,
            warning: false,
        })
    }

    pub(super) fn reset(&mut self) {
        self.z = Mean::default();
        self.x_min = Mean::default();
        self.x_max = Mean::default();
        self.drift = false;
        self.warning = false;
    }

    pub(super) fn drift(&self) -> bool {
        self.drift
    }

    pub(super) fn warning(&self) -> bool {
        self.warning
    }

    fn bound(&self, n: f64) -> f64 {
        (1.0 / (2.0 * n) * self.ln_bound).sqrt()
    }

    /// Whether `high`'s mean exceeds `low`'s by Hoeffding's bound at a confidence whose
    /// `ln(2 / confidence)` is `ln_confidence`, where `cut` is the earlier of the two (the one
    /// with fewer values).
    fn exceeds(&self, cut: &Mean, low: f64, high: f64, ln_confidence: f64) -> bool {
        if cut.n == self.z.n {
            return false;
        }
        let m = (self.z.n - cut.n) / cut.n * (1.0 / self.z.n);
        let eps = (m / 2.0 * ln_confidence).sqrt();
        high - low >= eps
    }

    pub(super) fn step(&mut self, x: f64) {
        if self.drift {
            self.reset();
        }
        self.z.update(x);
        if self.x_min.n == 0.0 {
            self.x_min = self.z;
        }
        if self.x_max.n == 0.0 {
            self.x_max = self.z;
        }
        let eps_z = self.bound(self.z.n);
        if self.x_min.get() + self.bound(self.x_min.n) >= self.z.get() + eps_z {
            self.x_min = self.z;
        }
        if self.x_max.get() - self.bound(self.x_max.n) <= self.z.get() - eps_z {
            self.x_max = self.z;
        }
        let (z, min, max) = (self.z.get(), self.x_min.get(), self.x_max.get());
        let (drift, warning) = (self.ln_drift, self.ln_warning);
        if self.exceeds(&self.x_min, min, z, drift) {
            self.warning = false;
            self.drift = true;
        } else {
            self.warning = self.exceeds(&self.x_min, min, z, warning);
            self.drift = false;
        }
        if self.config.two_sided_test {
            if self.exceeds(&self.x_max, z, max, drift) {
                self.drift = true;
            } else if self.exceeds(&self.x_max, z, max, warning) {
                self.warning = true;
            }
        }
    }
}
