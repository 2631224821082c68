//! The row flow's records for the audit log: each scored batch's answers (and the refusals
//! inside its sets), and each event answered with an error (methods of `RowFlow`, kept apart
//! from its scoring path).

use std::sync::Arc;
use std::time::Instant;

use super::pipeline::{Flow, Job};
use super::rows::{RowFlow, RowValues, Rows, Set};
use crate::audit::{AuditLog, Inputs, Meta, Records};
use crate::batch::Batch;
use crate::error::Error;
use crate::registry::Version;
use crate::registry::split::Active;

impl RowFlow {
    /// Records a scored batch: `out` holds `ow` values per batch row, in job order; `arms` the
    /// variant of each row under `split`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn audit_scored(
        &self,
        log: &AuditLog,
        jobs: &[Job<RowFlow>],
        batch: &Batch,
        out: &[f32],
        ow: usize,
        version: &Version,
        split: Option<&Active>,
        arms: &[u8],
        answered: Instant,
    ) {
        let n = batch.n_rows();
        let mut keep = Vec::new();
        log.sample(n, &mut keep);
        let mut records = log.records(n);
        let cols = batch.as_slice();
        let featured = log.raw_width > 0;
        let who = |r: usize| -> (u64, Option<&Arc<str>>) {
            match split {
                Some(a) => {
                    let arm = &a.arms[usize::from(arms[r])];
                    (arm.version.id(), Some(&arm.name))
                }
                None => (version.id(), None),
            }
        };
        let push = |records: &mut Records, r: usize, event, raw: Option<&[f32]>, flags| {
            if !keep[r] {
                return;
            }
            let (version, variant) = who(r);
            let meta = Meta::scored(event, answered, version, variant).with_flags(flags);
            let inputs = Inputs::Column { values: cols, n, row: r };
            let raw = if featured { raw } else { None };
            log.push(records, meta, inputs, raw, Some(&out[r * ow..(r + 1) * ow]));
        };
        let mut r = 0;
        for job in jobs {
            match &job.payload {
                Rows::One(row) => {
                    let raw = self.submitted(&row.values);
                    push(&mut records, r, (row.key, row.time_ms, job.accepted), raw, row.flags);
                    r += 1;
                }
                Rows::Many(set) => {
                    let w = self.width;
                    let mut refused = set.errors.iter().peekable();
                    for i in 0..set.n {
                        let (key, time_ms) = set.key_time(i);
                        let event = (key, time_ms, job.accepted);
                        let values = set.values.get(i * w..(i + 1) * w);
                        if let Some((_, e)) = refused.next_if(|(at, _)| *at == i) {
                            unscored(log, &mut records, Meta::failed(event, answered, e), values);
                            continue;
                        }
                        let flags = set.flags.get(i).copied().unwrap_or(0);
                        push(&mut records, r, event, values, flags);
                        r += 1;
                    }
                }
            }
        }
        log.send(records);
    }

    /// Records a job answered with `error` (for a set: its events still to score; its events
    /// refused on their own with their own errors).
    pub(super) fn audit_failed(&self, log: &AuditLog, job: &Job<RowFlow>, error: Option<&Error>) {
        let answered = Instant::now();
        let mut records = log.records(<RowFlow as Flow>::events(&job.payload));
        match &job.payload {
            Rows::One(row) => {
                if let Some(e) = error {
                    let meta = Meta::failed((row.key, row.time_ms, job.accepted), answered, e);
                    unscored(log, &mut records, meta, self.submitted(&row.values));
                }
            }
            Rows::Many(set) => {
                self.set_failures(log, &mut records, set, (job.accepted, answered), error)
            }
        }
        log.send(records);
    }

    /// Records a set's events refused on their own (with their own errors) and, given
    /// `error`, its events still to score as answered with it.
    fn set_failures(
        &self,
        log: &AuditLog,
        records: &mut Records,
        set: &Set,
        (accepted, answered): (Instant, Instant),
        error: Option<&Error>,
    ) {
        let w = self.width;
        let mut refused = set.errors.iter().peekable();
        for i in 0..set.n {
            let own = refused.next_if(|(at, _)| *at == i).map(|(_, e)| e);
            let Some(e) = own.or(error) else { continue };
            let (key, time_ms) = set.key_time(i);
            let meta = Meta::failed((key, time_ms, accepted), answered, e);
            unscored(log, records, meta, set.values.get(i * w..(i + 1) * w));
        }
    }

    /// Records the refusals of a set none of whose events was left to score (it was never
    /// queued, so no batch records them).
    pub(super) fn audit_refused_set(&self, log: &AuditLog, set: &Set) {
        let now = Instant::now();
        let mut records = log.records(set.errors.len());
        self.set_failures(log, &mut records, set, (now, now), None);
        log.send(records);
    }

    /// Records an event refused by a data-quality gate at submission (the one refusal at
    /// submission the log keeps: a violation is what an auditor looks for), with the values
    /// it was submitted with.
    pub(super) fn audit_gate_refusal(
        &self,
        log: &AuditLog,
        (key, time_ms): (u64, i64),
        values: &[f32],
        error: &Error,
    ) {
        let now = Instant::now();
        let mut records = log.records(1);
        let meta = Meta::failed((key, time_ms, now), now, error);
        unscored(log, &mut records, meta, (values.len() == self.width).then_some(values));
        log.send(records);
    }

    /// The values an event was submitted with, while its job still holds them (a pooled row's
    /// buffer goes back to its pool when the batch is laid out).
    fn submitted<'a>(&self, values: &'a RowValues) -> Option<&'a [f32]> {
        match values {
            RowValues::Inline(v) => Some(&v[..self.width]),
            RowValues::Pooled(v) if v.len() == self.width => Some(v),
            RowValues::Pooled(_) => None,
        }
    }
}

/// Records an unscored event: its submitted values are the model's inputs, or the raw fields
/// when a feature stage runs.
fn unscored(log: &AuditLog, records: &mut Records, meta: Meta<'_>, values: Option<&[f32]>) {
    if log.raw_width > 0 {
        log.push(records, meta, Inputs::None, values, None);
    } else {
        let inputs = values.map_or(Inputs::None, Inputs::Row);
        log.push(records, meta, inputs, None, None);
    }
}
