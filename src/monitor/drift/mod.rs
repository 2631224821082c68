//! Drift detectors on any stream of numbers (a score, a feature, an error indicator), each the
//! algorithm of River 0.26 (`river.drift`, `river.drift.binary`) with its parameter names and
//! defaults, taking the same decisions on the same stream: the golden streams in
//! `tests/drift/` hold River's detection indices, and `tests/drift.rs` compares.
//!
//! [`Detector`] is the one type to hold: built from a [`Kind`] and `NAME=VALUE` parameters
//! (as `streamscore drift --set` takes them) or from a detector's own config, it checks each
//! value (finite; 0 or 1 for the binary detectors) and says per update whether it saw drift
//! or, for DDM, EDDM and the HDDMs, a warning.
//!
//! # Examples
//!
//! ```
//! use streamscore::monitor::drift::{Detector, Kind, Signal};
//!
//! let mut adwin = Detector::new(Kind::Adwin, &[])?;
//! let stream = (0..2000).map(|i| if i < 1000 { (i % 2) as f64 } else { 5.0 + (i % 3) as f64 });
//! let drifts: Vec<usize> = stream
//!     .enumerate()
//!     .filter_map(|(i, x)| (adwin.update(x).ok()? == Signal::Drift).then_some(i))
//!     .collect();
//! assert!(drifts[0] >= 1000 && drifts[0] < 1100);
//! # Ok::<(), streamscore::Error>(())
//! ```

mod adwin;
mod ddm;
mod eddm;
mod hddm_a;
mod hddm_w;
mod kswin;
mod page_hinkley;
mod pyrandom;

use std::fmt;
use std::str::FromStr;

pub use adwin::{Adwin, AdwinConfig};
pub use ddm::{Ddm, DdmConfig};
pub use eddm::{Eddm, EddmConfig};
pub use hddm_a::{HddmA, HddmAConfig};
pub use hddm_w::{HddmW, HddmWConfig};
pub use kswin::{Kswin, KswinConfig, MAX_WINDOW};
pub use page_hinkley::{Mode, PageHinkley, PageHinkleyConfig};

use crate::error::{Error, Result};

/// What one update found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// Nothing.
    Stable,
    /// A warning zone (DDM, EDDM, HDDM_A, HDDM_W): drift may follow.
    Warning,
    /// Drift. The detector starts afresh at the next update, as River's do.
    Drift,
}

/// The detectors, by the names `streamscore drift --detector` takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// ADWIN (`river.drift.ADWIN`).
    Adwin,
    /// Page-Hinkley (`river.drift.PageHinkley`).
    PageHinkley,
    /// DDM (`river.drift.binary.DDM`), binary input.
    Ddm,
    /// EDDM (`river.drift.binary.EDDM`), binary input.
    Eddm,
    /// HDDM_A (`river.drift.binary.HDDMA`), binary input.
    HddmA,
    /// HDDM_W (`river.drift.binary.HDDMW`), binary input.
    HddmW,
    /// KSWIN (`river.drift.KSWIN`).
    Kswin,
}

impl Kind {
    /// Every detector, in the order of the docs.
    pub const ALL: [Kind; 7] = [
        Kind::Adwin,
        Kind::PageHinkley,
        Kind::Ddm,
        Kind::Eddm,
        Kind::HddmA,
        Kind::HddmW,
        Kind::Kswin,
    ];

    /// The name on the command line (`adwin`, `page-hinkley`, `ddm`, `eddm`, `hddm-a`,
    /// `hddm-w`, `kswin`).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Adwin => "adwin",
            Kind::PageHinkley => "page-hinkley",
            Kind::Ddm => "ddm",
            Kind::Eddm => "eddm",
            Kind::HddmA => "hddm-a",
            Kind::HddmW => "hddm-w",
            Kind::Kswin => "kswin",
        }
    }

    /// Whether the detector takes 0/1 values (errors) only.
    pub fn is_binary(self) -> bool {
        matches!(self, Kind::Ddm | Kind::Eddm | Kind::HddmA | Kind::HddmW)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Kind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Kind::ALL.into_iter().find(|k| k.name() == s).ok_or_else(|| {
            let names: Vec<_> = Kind::ALL.iter().map(|k| k.name()).collect();
            Error::Config(format!("unknown drift detector `{s}` (one of {})", names.join(", ")))
        })
    }
}

/// One `NAME=VALUE` parameter, named as River's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param {
    /// River's parameter name (`delta`, `clock`, `warm_start`...).
    pub name: String,
    /// Its value as written.
    pub value: String,
}

impl Param {
    fn unknown(&self, detector: &str) -> Error {
        Error::Config(format!("{detector} has no parameter `{}`", self.name))
    }
}

impl FromStr for Param {
    type Err = Error;

    /// Parses `NAME=VALUE`.
    fn from_str(s: &str) -> Result<Self> {
        let (name, value) = s
            .split_once('=')
            .ok_or_else(|| Error::Config(format!("parameter `{s}` is not NAME=VALUE")))?;
        Ok(Param { name: name.trim().to_owned(), value: value.trim().to_owned() })
    }
}

fn parse_param<T: FromStr>(p: &Param) -> Result<T> {
    p.value.parse().map_err(|_| {
        Error::Config(format!(
            "parameter {}: `{}` is not a valid {}",
            p.name,
            p.value,
            std::any::type_name::<T>()
        ))
    })
}

fn parse_bool(p: &Param) -> Result<bool> {
    match p.value.as_str() {
        "true" | "True" | "1" => Ok(true),
        "false" | "False" | "0" => Ok(false),
        v => Err(Error::Config(format!("parameter {}: `{v}` is not true or false", p.name))),
    }
}

/// A value at which a detector raised a flag ([`Detector::update_many`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Found {
    /// The value's 0-based index in everything the detector has taken.
    pub index: u64,
    /// River's `drift_detected` after it.
    pub drift: bool,
    /// River's `warning_detected` after it.
    pub warning: bool,
}

/// What every detector does; `Detector` dispatches once per call, so a batch runs one
/// monomorphized loop.
trait Step {
    fn step(&mut self, x: f64);
    /// River's `drift_detected` and `warning_detected`.
    fn flags(&self) -> (bool, bool);
    fn restart(&mut self);
}

macro_rules! step {
    ($t:ty, drift only) => {
        impl Step for $t {
            fn step(&mut self, x: f64) {
                <$t>::step(self, x)
            }
            fn flags(&self) -> (bool, bool) {
                (self.drift(), false)
            }
            fn restart(&mut self) {
                self.reset()
            }
        }
    };
    ($t:ty, with warnings) => {
        impl Step for $t {
            fn step(&mut self, x: f64) {
                <$t>::step(self, x)
            }
            fn flags(&self) -> (bool, bool) {
                (self.drift(), self.warning())
            }
            fn restart(&mut self) {
                self.reset()
            }
        }
    };
}
step!(Adwin, drift only);
step!(PageHinkley, drift only);
step!(Kswin, drift only);
step!(Ddm, with warnings);
step!(Eddm, with warnings);
step!(HddmA, with warnings);
step!(HddmW, with warnings);

/// A drift detector of any [`Kind`], checking its input.
#[derive(Clone, Debug)]
pub struct Detector {
    inner: Inner,
    seen: u64,
    /// River's two flags after the last update.
    drift: bool,
    warning: bool,
}

#[derive(Clone, Debug)]
enum Inner {
    Adwin(Adwin),
    PageHinkley(PageHinkley),
    Ddm(Ddm),
    Eddm(Eddm),
    HddmA(HddmA),
    HddmW(Box<HddmW>),
    Kswin(Box<Kswin>),
}

/// `$body` with `$d` bound to the detector inside `$inner`, whatever its kind.
macro_rules! each {
    ($inner:expr, $d:ident => $body:expr) => {
        match $inner {
            Inner::Adwin($d) => $body,
            Inner::PageHinkley($d) => $body,
            Inner::Ddm($d) => $body,
            Inner::Eddm($d) => $body,
            Inner::HddmA($d) => $body,
            Inner::HddmW($d) => {
                let $d = &mut **$d;
                $body
            }
            Inner::Kswin($d) => {
                let $d = &mut **$d;
                $body
            }
        }
    };
}

/// Whether `x` is a value a detector of this input type takes.
#[inline]
fn admissible(x: f64, binary: bool) -> bool {
    if binary { x == 0.0 || x == 1.0 } else { x.is_finite() }
}

/// Feeds `values` until one is refused; the flags after the last one taken, and how many were.
fn run<D: Step>(
    d: &mut D,
    values: &[f64],
    binary: bool,
    first: u64,
    found: &mut Vec<Found>,
) -> (usize, (bool, bool)) {
    let mut flags = (false, false);
    for (i, &x) in values.iter().enumerate() {
        if !admissible(x, binary) {
            return (i, flags);
        }
        d.step(x);
        flags = d.flags();
        if flags.0 || flags.1 {
            found.push(Found { index: first + i as u64, drift: flags.0, warning: flags.1 });
        }
    }
    (values.len(), flags)
}

impl Detector {
    /// A detector of `kind` with River's defaults changed by `params`. An unknown name, a
    /// value that does not parse or a combination River refuses is an [`Error::Config`].
    pub fn new(kind: Kind, params: &[Param]) -> Result<Self> {
        macro_rules! build {
            ($config:ty, $detector:ident, $wrap:expr) => {{
                let mut config = <$config>::default();
                for p in params {
                    config.set(p)?;
                }
                $wrap($detector::new(config)?)
            }};
        }
        let inner = match kind {
            Kind::Adwin => build!(AdwinConfig, Adwin, Inner::Adwin),
            Kind::PageHinkley => build!(PageHinkleyConfig, PageHinkley, Inner::PageHinkley),
            Kind::Ddm => build!(DdmConfig, Ddm, Inner::Ddm),
            Kind::Eddm => build!(EddmConfig, Eddm, Inner::Eddm),
            Kind::HddmA => build!(HddmAConfig, HddmA, Inner::HddmA),
            Kind::HddmW => build!(HddmWConfig, HddmW, |h| Inner::HddmW(Box::new(h))),
            Kind::Kswin => build!(KswinConfig, Kswin, |k| Inner::Kswin(Box::new(k))),
        };
        Ok(Self { inner, seen: 0, drift: false, warning: false })
    }

    /// Which detector this is.
    pub fn kind(&self) -> Kind {
        match self.inner {
            Inner::Adwin(_) => Kind::Adwin,
            Inner::PageHinkley(_) => Kind::PageHinkley,
            Inner::Ddm(_) => Kind::Ddm,
            Inner::Eddm(_) => Kind::Eddm,
            Inner::HddmA(_) => Kind::HddmA,
            Inner::HddmW(_) => Kind::HddmW,
            Inner::Kswin(_) => Kind::Kswin,
        }
    }

    /// Values taken so far (the index the next one will have).
    pub fn seen(&self) -> u64 {
        self.seen
    }

    fn refused(&self, x: f64) -> Error {
        let kind = self.kind();
        let want = if kind.is_binary() { "0 or 1" } else { "a finite number" };
        Error::Input {
            at: format!("value {}", self.seen),
            message: format!("{x} given to {kind}, which takes {want}"),
        }
    }

    /// Feeds one value. A NaN or an infinity, or for a binary detector anything but 0 and 1,
    /// is an [`Error::Input`] and leaves the detector as it was.
    pub fn update(&mut self, x: f64) -> Result<Signal> {
        if !admissible(x, self.kind().is_binary()) {
            return Err(self.refused(x));
        }
        self.seen += 1;
        let (drift, warning) = each!(&mut self.inner, d => {
            d.step(x);
            d.flags()
        });
        self.drift = drift;
        self.warning = warning;
        Ok(if drift {
            Signal::Drift
        } else if warning {
            Signal::Warning
        } else {
            Signal::Stable
        })
    }

    /// Feeds `values` in order, as many [`update`](Detector::update)s would, and appends to
    /// `found` each value after which a flag was up. At a refused value, it stops with the
    /// [`Error::Input`] that `update` gives: the values before it are taken, it and the rest
    /// are not.
    pub fn update_many(&mut self, values: &[f64], found: &mut Vec<Found>) -> Result<()> {
        let (binary, first) = (self.kind().is_binary(), self.seen);
        let (taken, flags) = each!(&mut self.inner, d => run(d, values, binary, first, found));
        self.seen += taken as u64;
        if taken > 0 {
            (self.drift, self.warning) = flags;
        }
        match values.get(taken) {
            Some(&x) => Err(self.refused(x)),
            None => Ok(()),
        }
    }

    /// River's `drift_detected` after the last update.
    pub fn drift_detected(&self) -> bool {
        self.drift
    }

    /// River's `warning_detected` after the last update. EDDM can hold it on the update that
    /// detects drift (River leaves it as it was), where [`update`](Detector::update) says
    /// [`Signal::Drift`].
    pub fn warning_detected(&self) -> bool {
        self.warning
    }

    /// Forgets everything seen (the parameters stay).
    pub fn reset(&mut self) {
        self.seen = 0;
        self.drift = false;
        self.warning = false;
        each!(&mut self.inner, d => d.restart());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_parameters_and_values_are_typed_errors() {
        let p = |s: &str| s.parse::<Param>().unwrap();
        assert!(matches!(Detector::new(Kind::Adwin, &[p("deltaa=0.1")]), Err(Error::Config(_))));
        assert!(matches!(Detector::new(Kind::Adwin, &[p("clock=0")]), Err(Error::Config(_))));
        assert!(matches!(Detector::new(Kind::Eddm, &[p("alpha=0.5")]), Err(Error::Config(_))));
        assert!(matches!(
            Detector::new(Kind::Kswin, &[p("window_size=40")]),
            Err(Error::Config(_))
        ));
        assert!(matches!(
            Detector::new(Kind::PageHinkley, &[p("mode=sideways")]),
            Err(Error::Config(_))
        ));
        assert!("threshold".parse::<Param>().is_err());
        assert!("adwinn".parse::<Kind>().is_err());
        let mut ddm = Detector::new(Kind::Ddm, &[]).unwrap();
        assert!(matches!(ddm.update(0.5), Err(Error::Input { .. })));
        assert!(matches!(ddm.update(f64::NAN), Err(Error::Input { .. })));
        assert_eq!(ddm.seen(), 0);
        let mut ph = Detector::new(Kind::PageHinkley, &[]).unwrap();
        assert!(ph.update(f64::INFINITY).is_err());
        assert_eq!(ph.update(0.5).unwrap(), Signal::Stable);
    }

    #[test]
    fn every_name_parses_back() {
        for kind in Kind::ALL {
            assert_eq!(kind.name().parse::<Kind>().unwrap(), kind);
            assert_eq!(Detector::new(kind, &[]).unwrap().kind(), kind);
        }
    }
}
