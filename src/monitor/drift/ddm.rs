//! DDM, the drift detection method (Gama et al., 2004), as River 0.26's `drift.binary.DDM`:
//! the error rate and its standard deviation against their lowest sum so far.

use super::{Param, parse_param};
use crate::error::{Error, Result};
use crate::monitor::stats::Mean;

/// DDM's parameters, named and defaulted as River's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DdmConfig {
    /// Values seen before any detection (30).
    pub warm_start: u64,
    /// Standard deviations above the minimum that raise a warning (2).
    pub warning_threshold: f64,
    /// Standard deviations above the minimum that signal drift (3).
    pub drift_threshold: f64,
}

impl Default for DdmConfig {
    fn default() -> Self {
        Self { warm_start: 30, warning_threshold: 2.0, drift_threshold: 3.0 }
    }
}

impl DdmConfig {
    pub(super) fn set(&mut self, p: &Param) -> Result<()> {
        match p.name.as_str() {
            "warm_start" => self.warm_start = parse_param(p)?,
            "warning_threshold" => self.warning_threshold = parse_param(p)?,
            "drift_threshold" => self.drift_threshold = parse_param(p)?,
            _ => return Err(p.unknown("ddm")),
        }
        Ok(())
    }

    fn validate(&self) -> Result<()> {
        if !(self.warning_threshold.is_finite() && self.drift_threshold.is_finite()) {
            return Err(Error::Config("ddm: thresholds must be finite".into()));
        }
        Ok(())
    }
}

/// The DDM detector (binary input: 1 for an error). Memory: a few numbers.
#[derive(Clone, Debug)]
pub struct Ddm {
    config: DdmConfig,
    p: Mean,
    p_min: f64,
    s_min: f64,
    ps_min: f64,
    drift: bool,
    warning: bool,
}

impl Ddm {
    /// A detector with these parameters.
    pub fn new(config: DdmConfig) -> Result<Self> {
        config.validate()?;
        let mut ddm = Self {
            config,
            p: Mean::default(),
            p_min: 0.0,
            s_min: 0.0,
            ps_min: 0.0,
            drift: false,
            warning: false,
        };
        ddm.reset();
        Ok(ddm)
    }

    pub(super) fn reset(&mut self) {
        self.p = Mean::default();
        // River starts these at None; they are always set before they are read.
        self.p_min = 0.0;
        self.s_min = 0.0;
        self.ps_min = f64::INFINITY;
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
        self.p.update(x);
        let p = self.p.get();
        let n = self.p.n;
        let s = (p * (1.0 - p) / n).sqrt();
        if n > self.config.warm_start as f64 {
            if p + s <= self.ps_min {
                self.p_min = p;
                self.s_min = s;
                self.ps_min = self.p_min + self.s_min;
            }
            self.warning = p + s > self.p_min + self.config.warning_threshold * self.s_min;
            if p + s > self.p_min + self.config.drift_threshold * self.s_min {
                self.drift = true;
                self.warning = false;
            }
        }
    }
}
