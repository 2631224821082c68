//! Monitoring inside the scoring loop. So far: drift detectors ([`drift`]), River's algorithms
//! with River's decisions, for any stream of numbers.

pub mod drift;
pub(crate) mod stats;
