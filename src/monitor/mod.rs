//! Monitoring inside the scoring loop: data-quality gates on every event before it is queued
//! ([`gates`]); profiles of every scored batch against a training
//! reference, with drift alerts ([`profile`], [`reference`](mod@reference); a runtime takes one through
//! `RuntimeBuilder::monitor`); drift detectors ([`drift`]), River's algorithms with River's
//! decisions, for any stream of numbers; and delayed labels joined back to their predictions,
//! with online metrics per model version and window ([`feedback`]).

mod bins;
pub mod drift;
pub mod feedback;
pub mod gates;
pub mod profile;
pub mod reference;
pub(crate) mod stats;
