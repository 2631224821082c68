//! HDDM_W (Frías-Blanco et al., 2014), as River 0.26's `drift.binary.HDDMW`: McDiarmid's bound
//! on exponentially weighted means before and after the best cut point.

use super::{Param, parse_bool, parse_param};
use crate::error::{Error, Result};
use crate::monitor::drift::hddm_a::HddmAConfig;
use crate::monitor::stats::EwMean;

/// HDDM_W's parameters, named and defaulted as River's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HddmWConfig {
    /// Confidence level of the drift test (0.001).
    pub drift_confidence: f64,
    /// Confidence level of the warning test (0.005).
    pub warning_confidence: f64,
    /// Weight of the newest value in the weighted means (0.05).
    pub lambda_val: f64,
    /// Also look for a decrease of the mean (false).
    pub two_sided_test: bool,
}

impl Default for HddmWConfig {
    fn default() -> Self {
        Self {
            drift_confidence: 0.001,
            warning_confidence: 0.005,
            lambda_val: 0.05,
            two_sided_test: false,
        }
    }
}

impl HddmWConfig {
    pub(super) fn set(&mut self, p: &Param) -> Result<()> {
        match p.name.as_str() {
            "drift_confidence" => self.drift_confidence = parse_param(p)?,
            "warning_confidence" => self.warning_confidence = parse_param(p)?,
            "lambda_val" => self.lambda_val = parse_param(p)?,
            "two_sided_test" => self.two_sided_test = parse_bool(p)?,
            _ => return Err(p.unknown("hddm-w")),
        }
        Ok(())
    }

    fn validate(&self) -> Result<()> {
        let confidences = HddmAConfig {
            drift_confidence: self.drift_confidence,
            warning_confidence: self.warning_confidence,
            two_sided_test: self.two_sided_test,
        };
        confidences.validate("hddm-w")?;
        if !(0.0..=1.0).contains(&self.lambda_val) {
            return Err(Error::Config(format!(
                "hddm-w: lambda_val must be in [0, 1], not {}",
                self.lambda_val
            )));
        }
        Ok(())
    }
}

/// A weighted sample: its mean and its independent bounded conditions (the bound's weight).
#[derive(Clone, Copy, Debug)]
struct Sample {
    ewma: EwMean,
    init: bool,
    ibc: f64,
    lambda_sq: f64,
    rest_sq: f64,
}

impl Sample {
    fn new(lambda: f64) -> Self {
        Self {
            ewma: EwMean::new(lambda),
            init: false,
            ibc: 1.0,
            lambda_sq: lambda * lambda,
            rest_sq: (1.0 - lambda).powf(2.0),
        }
    }

    fn update(&mut self, x: f64) {
        self.ewma.update(x);
        self.init = true;
        self.ibc = self.lambda_sq + self.rest_sq * self.ibc;
    }
}

/// McDiarmid's bound for a weight `ibc` at a confidence `c`, given `ln(1 / c)` (River takes
/// the logarithm on every update; of the same number, so the same bits).
fn bound(ibc: f64, ln_confidence: f64) -> f64 {
    (ibc * ln_confidence / 2.0).sqrt()
}

/// Whether `late`'s weighted mean exceeds `early`'s by McDiarmid's bound.
fn rises(early: &Sample, late: &Sample, ln_confidence: f64) -> bool {
    early.init
        && late.init
        && late.ewma.get() - early.ewma.get() > bound(early.ibc + late.ibc, ln_confidence)
}

/// The HDDM_W detector (binary input). Memory: a few numbers.
#[derive(Clone, Debug)]
pub struct HddmW {
    config: HddmWConfig,
    /// `ln(1 / drift_confidence)` and `ln(1 / warning_confidence)`.
    ln_drift: f64,
    ln_warning: f64,
    total: Sample,
    s1_incr: Sample,
    s2_incr: Sample,
    s1_decr: Sample,
    s2_decr: Sample,
    incr_cut: f64,
    decr_cut: f64,
    drift: bool,
    warning: bool,
}

impl HddmW {
    /// A detector with these parameters.
    pub fn new(config: HddmWConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self::fresh(config))
    }

    fn fresh(config: HddmWConfig) -> Self {
        let fresh = Sample::new(config.lambda_val);
        Self {
            config,
            ln_drift: (1.0 / config.drift_confidence).ln(),
            ln_warning: (1.0 / config.warning_confidence).ln(),
            total: fresh,
            s1_incr: fresh,
            s2_incr: fresh,
            s1_decr: fresh,
            s2_decr: fresh,
            incr_cut: f64::INFINITY,
            decr_cut: f64::NEG_INFINITY,
            drift: false,
            warning: false,
        }
    }

    pub(super) fn reset(&mut self) {
        *self = Self::fresh(self.config);
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
        let (lambda, drift, warning) = (self.config.lambda_val, self.ln_drift, self.ln_warning);
        self.total.update(x);
        let eps = bound(self.total.ibc, drift);
        if self.total.ewma.get() + eps < self.incr_cut {
            self.incr_cut = self.total.ewma.get() + eps;
            self.s1_incr = self.total;
            self.s2_incr = Sample::new(lambda);
        } else {
            self.s2_incr.update(x);
        }
        if rises(&self.s1_incr, &self.s2_incr, drift) {
            self.warning = false;
            self.drift = true;
        } else {
            self.warning = rises(&self.s1_incr, &self.s2_incr, warning);
            self.drift = false;
        }
        let eps = bound(self.total.ibc, drift);
        if self.total.ewma.get() - eps > self.decr_cut {
            self.decr_cut = self.total.ewma.get() - eps;
            self.s1_decr = self.total;
            self.s2_decr = Sample::new(lambda);
        } else {
            self.s2_decr.update(x);
        }
        if self.config.two_sided_test {
            if rises(&self.s2_decr, &self.s1_decr, drift) {
                self.drift = true;
            } else if rises(&self.s2_decr, &self.s1_decr, warning) {
                self.warning = true;
            }
        }
    }
}
