//! Monitoring inside the scoring loop: drift detectors ([`drift`]), River's algorithms with
//! River's decisions, for any stream of numbers; and delayed labels joined back to their
//! predictions, with online metrics per model version and window ([`feedback`]).

pub mod drift;
pub mod feedback;
pub(crate) mod stats;
