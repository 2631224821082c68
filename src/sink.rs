//! Where answers are recorded beyond the caller: the audit log with the `audit` feature, and
//! a type that cannot be made without it, so that the runtime and the shadow carry one
//! `Option<Arc<Audit>>` whatever the features.

#[cfg(not(feature = "audit"))]
use crate::error::Result;

/// The audit log a runtime writes, if any (nothing without the `audit` feature).
#[cfg(feature = "audit")]
pub(crate) type Audit = crate::audit::AuditLog;
/// The audit log a runtime writes, if any (nothing without the `audit` feature).
#[cfg(not(feature = "audit"))]
pub(crate) type Audit = NoAudit;

/// Stands in for the audit log without the `audit` feature: never made.
#[cfg(not(feature = "audit"))]
pub(crate) enum NoAudit {}

#[cfg(not(feature = "audit"))]
impl NoAudit {
    pub(crate) fn start(
        never: &std::convert::Infallible,
        _: &[String],
        _: &[String],
        _: usize,
        _: &[String],
    ) -> Result<Self> {
        match *never {}
    }
    pub(crate) fn snapshot(&self) -> crate::metrics::AuditSnapshot {
        match *self {}
    }
    pub(crate) fn close(&self) {
        match *self {}
    }
}
