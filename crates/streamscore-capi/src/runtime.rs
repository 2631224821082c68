//! Runtimes: build one with options, submit events (one or a set), poll or wait for answers,
//! metrics as Prometheus text, model swaps and rollback.

use std::ffi::c_char;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use streamscore::features::{Features, Spec};
use streamscore::{
    BackendSpec, Error, Event, EventBatch, ModelUpdate, NonFinitePolicy, Overload, Runtime,
    RuntimeConfig, Score, Scores, Ticket,
};

use crate::args::{self, count};
use crate::handles::Table;
use crate::status::{Fail, SsStatus, call, call_status, status_of};
use crate::{SsEvents, SsRuntime, SsTicket};

struct Held {
    rt: Runtime,
    width: usize,
    outputs: usize,
}

enum Waiting {
    One(Ticket<Score>),
    Set(Ticket<Scores>),
}

struct Pending {
    /// Events answered and values per event.
    events: usize,
    width: usize,
    /// Taken by the call that collects the answer.
    ticket: Mutex<Option<Waiting>>,
}

static RUNTIMES: LazyLock<Table<Held>> = LazyLock::new(|| Table::new(2, "runtime"));
static TICKETS: LazyLock<Table<Pending>> = LazyLock::new(|| Table::new(3, "ticket"));

fn number<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, Fail> {
    value.parse().map_err(|_| {
        Fail::new(SsStatus::Config, format!("option {key} = {value:?}: expected a number"))
    })
}

/// The runtime `options` describe (see [`ss_runtime_new`]).
fn build(model: &str, options: &[(&str, &str)]) -> Result<Runtime, Fail> {
    let mut c = RuntimeConfig::default();
    let mut spec = BackendSpec::default();
    let mut features = None;
    for &(key, value) in options {
        match key {
            "backend" => spec = value.parse()?,
            "features" => features = Some(Features::new(Spec::from_path(value)?)),
            "max_batch" => c = c.with_max_batch(number(key, value)?),
            "max_delay_us" => c = c.with_max_delay(Duration::from_micros(number(key, value)?)),
            "queue_capacity" => c = c.with_queue_capacity(number(key, value)?),
            "workers" => c = c.with_workers(number(key, value)?),
            "keep_versions" => c = c.with_keep_versions(number(key, value)?),
            "model_version" => c = c.with_model_version(number(key, value)?),
            "overload" => {
                c = c.with_overload(match value {
                    "block" => Overload::Block,
                    "reject" => Overload::Reject,
                    "shed_oldest" => Overload::ShedOldest,
                    other => {
                        return Err(Fail::new(
                            SsStatus::Config,
                            format!("overload {other:?}: expected block, reject or shed_oldest"),
                        ));
                    }
                })
            }
            "non_finite" => {
                c = c.with_non_finite(match value {
                    "missing" => NonFinitePolicy::Missing,
                    "inf_as_missing" => NonFinitePolicy::InfAsMissing,
                    "reject" => NonFinitePolicy::Reject,
                    other => {
                        return Err(Fail::new(
                            SsStatus::Config,
                            format!(
                                "non_finite {other:?}: expected missing, inf_as_missing or reject"
                            ),
                        ));
                    }
                })
            }
            "output" => {
                c = c.with_output(match value {
                    "transformed" => streamscore::Output::Transformed,
                    "raw" => streamscore::Output::Raw,
                    other => {
                        return Err(Fail::new(
                            SsStatus::Config,
                            format!("output {other:?}: expected transformed or raw"),
                        ));
                    }
                })
            }
            other => {
                return Err(Fail::new(
                    SsStatus::Config,
                    format!(
                        "unknown option {other:?} (backend, features, max_batch, max_delay_us, \
                         queue_capacity, workers, keep_versions, model_version, overload, non_finite, \
                         output)"
                    ),
                ));
            }
        }
    }
    let mut b = Runtime::builder().backend_spec(spec).config(c).model_path(model);
    if let Some(f) = features {
        b = b.features(f);
    }
    Ok(b.build()?)
}

/// Builds a runtime (queue, micro-batcher, workers, an optional feature stage) for a model file.
///
/// Options are `n_options` pairs of strings, `keys[i] = values[i]`: `backend` (a backend spec,
/// default `auto`), `features` (a feature spec's path: events are then the spec's raw fields),
/// `max_batch`, `max_delay_us`, `queue_capacity`, `workers`, `keep_versions`,
/// `model_version`, `overload` (`block`, `reject` or `shed_oldest`), `non_finite`
/// (`missing`, `inf_as_missing` or `reject`), `output` (`transformed` or `raw`). An unknown key or a bad value is `SS_STATUS_CONFIG`. `keys` and `values` may be
/// null when `n_options` is 0. Free the runtime with [`ss_runtime_free`].
///
/// # Safety
/// `model_path` is a NUL-terminated string; `keys` and `values` point to `n_options`
/// NUL-terminated strings each; `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ss_runtime_new(
    model_path: *const c_char,
    keys: *const *const c_char,
    values: *const *const c_char,
    n_options: usize,
    out: *mut SsRuntime,
) -> SsStatus {
    call(|| {
        // SAFETY: the pointers are as this function's contract states.
        let model = unsafe { args::text(model_path, "model_path") }?;
        // SAFETY: the pointers are as this function's contract states.
        let keys = unsafe { args::slice(keys, n_options, "keys") }?;
        // SAFETY: the pointers are as this function's contract states.
        let values = unsafe { args::slice(values, n_options, "values") }?;
        let mut options = Vec::with_capacity(keys.len());
        for (&k, &v) in keys.iter().zip(values) {
            // SAFETY: the pointers are as this function's contract states.
            options.push((unsafe { args::text(k, "an option key") }?, unsafe {
                args::text(v, "an option value")
            }?));
        }
        if out.is_null() {
            return Err(Fail::null("out"));
        }
        let rt = build(model, &options)?;
        let (width, outputs) = (rt.schema().len(), rt.output_width());
        let id = RUNTIMES.insert(Held { rt, width, outputs });
        // SAFETY: the pointers are as this function's contract states.
        unsafe { args::put(out, SsRuntime { id }, "out") }
    })
}

/// Drains the runtime (every accepted event is answered) and frees it. Tickets still held stay
/// valid and get their answers; calls already running on the runtime finish first.
#[unsafe(no_mangle)]
pub extern "C" fn ss_runtime_free(runtime: SsRuntime) -> SsStatus {
    call(|| {
        let held = RUNTIMES.remove(runtime.id)?;
        held.rt.shutdown();
        Ok(())
    })
}

/// Stops accepting events and drains what is queued; the handle stays valid until freed (its
/// calls then answer `SS_STATUS_CLOSED`).
#[unsafe(no_mangle)]
pub extern "C" fn ss_runtime_shutdown(runtime: SsRuntime) -> SsStatus {
    call(|| {
        RUNTIMES.get(runtime.id)?.rt.shutdown();
        Ok(())
    })
}

/// Values per event (`*n_fields`: the model's width, or the feature stage's raw fields) and per
/// answer (`*n_outputs`). Either pointer may be null.
///
/// # Safety
/// `n_fields` and `n_outputs` are null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ss_runtime_shape(
    runtime: SsRuntime,
    n_fields: *mut usize,
    n_outputs: *mut usize,
) -> SsStatus {
    call(|| {
        let h = RUNTIMES.get(runtime.id)?;
        // SAFETY: the pointers are as this function's contract states.
        unsafe { args::put_optional(n_fields, h.width, "n_fields") }?;
        // SAFETY: the pointers are as this function's contract states.
        unsafe { args::put_optional(n_outputs, h.outputs, "n_outputs") }
    })
}

/// Copies input field `index`'s name into `buf` (see `ss_model_feature_name`).
///
/// # Safety
/// `buf` is null or has `cap` writable bytes; `needed` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ss_runtime_field_name(
    runtime: SsRuntime,
    index: usize,
    buf: *mut c_char,
    cap: usize,
    needed: *mut usize,
) -> SsStatus {
    call(|| {
        let h = RUNTIMES.get(runtime.id)?;
        let names = h.rt.schema().names();
        let name = names.get(index).ok_or_else(|| {
            Fail::argument(format!("field {index}: the runtime has {}", names.len()))
        })?;
        // SAFETY: the pointers are as this function's contract states.
        unsafe { args::copy_text(name, buf, cap, needed) }
    })
}

fn event(h: &Held, values: &[f32], key: u64, timestamp_ms: i64) -> Result<Event<Vec<f32>>, Fail> {
    if values.len() != h.width {
        return Err(Error::WidthMismatch { expected: h.width, got: values.len() }.into());
    }
    Ok(Event::new(values.to_vec()).with_key(key).with_timestamp_ms(timestamp_ms))
}

/// Queues one event of `n_values` values without blocking; `*out` is its ticket, to poll or
/// wait on. A full queue is `SS_STATUS_QUEUE_FULL` at once (the event is not taken: submit it
/// again later), a shut-down runtime `SS_STATUS_CLOSED`. `key` routes keyed features, splits
/// and shadows; `timestamp_ms` is the event time features use (ms since the epoch).
///
/// # Safety
/// `values` points to `n_values` readable floats; `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ss_runtime_submit(
    runtime: SsRuntime,
    values: *const f32,
    n_values: usize,
    key: u64,
    timestamp_ms: i64,
    out: *mut SsTicket,
) -> SsStatus {
    call(|| {
        let h = RUNTIMES.get(runtime.id)?;
        // SAFETY: the pointers are as this function's contract states.
        let values = unsafe { args::slice(values, n_values, "values") }?;
        if out.is_null() {
            return Err(Fail::null("out"));
        }
        let ticket = h.rt.try_submit(event(&h, values, key, timestamp_ms)?).map_err(|r| r.error)?;
        let pending =
            Pending { events: 1, width: h.outputs, ticket: Mutex::new(Some(Waiting::One(ticket))) };
        let id = TICKETS.insert(pending);
        // SAFETY: the pointers are as this function's contract states.
        unsafe { args::put(out, SsTicket { id }, "out") }
    })
}

/// Scores one event, blocking until its answer: `n_outputs` values (see [`ss_runtime_shape`]) into `out` (`out_len` at
/// least that), the version that scored it into `*model_version` (when not null).
///
/// # Safety
/// `values` points to `n_values` readable floats, `out` to `out_len` writable floats;
/// `model_version` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ss_runtime_score(
    runtime: SsRuntime,
    values: *const f32,
    n_values: usize,
    key: u64,
    timestamp_ms: i64,
    out: *mut f32,
    out_len: usize,
    model_version: *mut u64,
) -> SsStatus {
    call(|| {
        let h = RUNTIMES.get(runtime.id)?;
        // SAFETY: the pointers are as this function's contract states.
        let values = unsafe { args::slice(values, n_values, "values") }?;
        let out = answer_buffer(out, out_len, h.outputs, values)?;
        let score = h.rt.score(event(&h, values, key, timestamp_ms)?)?;
        out[..h.outputs].copy_from_slice(score.values());
        // SAFETY: the pointers are as this function's contract states.
        unsafe { args::put_optional(model_version, score.model_version, "model_version") }
    })
}

fn answer_buffer<'a>(
    out: *mut f32,
    out_len: usize,
    need: usize,
    input: &[f32],
) -> Result<&'a mut [f32], Fail> {
    if out_len < need {
        return Err(Fail::new(
            SsStatus::BufferTooSmall,
            format!("out holds {out_len} values; the answer has {need}"),
        ));
    }
    if out.is_null() && need > 0 {
        return Err(Fail::null("out"));
    }
    // SAFETY: `out_len` writable floats by the callers' contracts.
    unsafe { args::slice_mut(out, need, "out", input) }
}

/// A set of events, row-major, for [`ss_runtime_submit_many`].
fn set<'a>(h: &Held, events: *const SsEvents) -> Result<(EventBatch<'a>, usize), Fail> {
    if events.is_null() {
        return Err(Fail::null("events"));
    }
    // SAFETY: non-null; readable by the caller's contract.
    let e = unsafe { &*events };
    if e.n_cols != h.width {
        return Err(Error::WidthMismatch { expected: h.width, got: e.n_cols }.into());
    }
    let len = count::<f32>(e.n_rows, e.n_cols, "rows")?;
    // SAFETY: the pointers are as this function's contract states.
    let rows = unsafe { args::slice(e.rows, len, "rows") }?;
    let mut set = EventBatch::rows(rows);
    // SAFETY: the pointers are as this function's contract states.
    if let Some(k) = unsafe { args::optional_slice(e.keys, e.n_rows, "keys") }? {
        set = set.with_keys(k);
    }
    // SAFETY: the pointers are as this function's contract states.
    if let Some(t) = unsafe { args::optional_slice(e.timestamps_ms, e.n_rows, "timestamps_ms") }? {
        set = set.with_timestamps_ms(t);
    }
    Ok((set, e.n_rows))
}

/// Queues a set of events in one call without blocking (one queue place, one ticket for the
/// whole set): the same refusal rules per event as single events, a full queue
/// `SS_STATUS_QUEUE_FULL` for the whole set. Wait on the ticket for every event's answer and
/// status. At most `MAX_SET` events a set.
///
/// # Safety
/// `events` points to a readable [`SsEvents`] whose arrays hold what it says; `out` is
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ss_runtime_submit_many(
    runtime: SsRuntime,
    events: *const SsEvents,
    out: *mut SsTicket,
) -> SsStatus {
    call(|| {
        let h = RUNTIMES.get(runtime.id)?;
        let (set, n) = set(&h, events)?;
        if out.is_null() {
            return Err(Fail::null("out"));
        }
        let ticket = h.rt.try_submit_many(set)?;
        let pending =
            Pending { events: n, width: h.outputs, ticket: Mutex::new(Some(Waiting::Set(ticket))) };
        let id = TICKETS.insert(pending);
        // SAFETY: the pointers are as this function's contract states.
        unsafe { args::put(out, SsTicket { id }, "out") }
    })
}

/// Collects an answer into the caller's buffers; checked before the ticket is taken, so a
/// buffer too small leaves the ticket valid.
struct Collect {
    out: *mut f32,
    out_len: usize,
    statuses: *mut SsStatus,
    statuses_len: usize,
    model_version: *mut u64,
}

impl Collect {
    fn check(&self, p: &Pending) -> Result<(), Fail> {
        let need = count::<f32>(p.events, p.width, "out")?;
        if self.out_len < need {
            return Err(Fail::new(
                SsStatus::BufferTooSmall,
                format!("out holds {} values; the answer has {need}", self.out_len),
            ));
        }
        if !self.statuses.is_null() && self.statuses_len < p.events {
            return Err(Fail::new(
                SsStatus::BufferTooSmall,
                format!("statuses holds {}; the ticket has {} events", self.statuses_len, p.events),
            ));
        }
        Ok(())
    }

    /// Writes the answer; a single event's error is the call's status.
    fn write(&self, p: &Pending, answer: Answer) -> Result<(), Fail> {
        let need = p.events * p.width;
        let out = answer_buffer(self.out, self.out_len, need, &[])?;
        let statuses = if self.statuses.is_null() {
            None
        } else {
            // SAFETY: the pointers are as this function's contract states.
            Some(unsafe { args::slice_mut(self.statuses, p.events, "statuses", &[0f32; 0]) }?)
        };
        match answer {
            Answer::One(Ok(score)) => {
                out.copy_from_slice(score.values());
                if let Some(s) = statuses {
                    s[0] = SsStatus::Ok;
                }
                // SAFETY: the pointers are as this function's contract states.
                unsafe { args::put_optional(self.model_version, score.model_version, "version") }
            }
            Answer::One(Err(e)) | Answer::Set(Err(e)) => {
                out.fill(f32::NAN);
                if let Some(s) = statuses {
                    s.fill(status_of(&e));
                }
                Err(e.into())
            }
            Answer::Set(Ok(scores)) => {
                out.copy_from_slice(scores.values());
                if let Some(s) = statuses {
                    s.fill(SsStatus::Ok);
                    for (i, e) in scores.errors() {
                        s[*i] = status_of(e);
                    }
                }
                // SAFETY: the pointers are as this function's contract states.
                unsafe { args::put_optional(self.model_version, scores.model_version, "version") }
            }
        }
    }
}

enum Answer {
    One(streamscore::Result<Score>),
    Set(streamscore::Result<Scores>),
}

fn taken(ticket: SsTicket) -> Fail {
    Fail::new(SsStatus::InvalidHandle, format!("ticket {:#x} was answered already", ticket.id))
}

/// Waits for a ticket's answer and frees the ticket: `out` gets `events x n_outputs` values
/// (NaN for a refused event), `statuses` (when not null, `statuses_len` at least the events)
/// each event's status, `*model_version` (when not null) the version that scored it. For a
/// single event, its error is the call's status; for a set, the call is `SS_STATUS_OK` and
/// each event's status says. A buffer too small is `SS_STATUS_BUFFER_TOO_SMALL` and leaves the
/// ticket valid.
///
/// # Safety
/// `out` points to `out_len` writable floats, `statuses` is null or points to `statuses_len`
/// writable statuses, `model_version` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ss_ticket_wait(
    ticket: SsTicket,
    out: *mut f32,
    out_len: usize,
    statuses: *mut SsStatus,
    statuses_len: usize,
    model_version: *mut u64,
) -> SsStatus {
    call(|| {
        let c = Collect { out, out_len, statuses, statuses_len, model_version };
        let p = TICKETS.get(ticket.id)?;
        c.check(&p)?;
        let waiting = lock(&p).take().ok_or_else(|| taken(ticket))?;
        let _ = TICKETS.remove(ticket.id);
        let answer = match waiting {
            Waiting::One(t) => Answer::One(t.wait()),
            Waiting::Set(t) => Answer::Set(t.wait()),
        };
        c.write(&p, answer)
    })
}

fn lock(p: &Pending) -> std::sync::MutexGuard<'_, Option<Waiting>> {
    p.ticket.lock().unwrap_or_else(|e| e.into_inner())
}

/// As [`ss_ticket_wait`], without blocking: `SS_STATUS_PENDING` (the ticket stays valid) while
/// the answer is not ready.
///
/// # Safety
/// As [`ss_ticket_wait`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ss_ticket_poll(
    ticket: SsTicket,
    out: *mut f32,
    out_len: usize,
    statuses: *mut SsStatus,
    statuses_len: usize,
    model_version: *mut u64,
) -> SsStatus {
    call_status(|| {
        let c = Collect { out, out_len, statuses, statuses_len, model_version };
        let p = TICKETS.get(ticket.id)?;
        c.check(&p)?;
        let answer = {
            let mut slot = lock(&p);
            let answer = match slot.as_mut().ok_or_else(|| taken(ticket))? {
                Waiting::One(t) => t.try_take().map(Answer::One),
                Waiting::Set(t) => t.try_take().map(Answer::Set),
            };
            match answer {
                None => return Ok(SsStatus::Pending),
                Some(a) => {
                    *slot = None;
                    a
                }
            }
        };
        let _ = TICKETS.remove(ticket.id);
        c.write(&p, answer).map(|()| SsStatus::Ok)
    })
}

/// Frees a ticket without collecting its answer (the event is still scored).
#[unsafe(no_mangle)]
pub extern "C" fn ss_ticket_free(ticket: SsTicket) -> SsStatus {
    call(|| TICKETS.remove(ticket.id).map(drop))
}

/// Copies the runtime's metrics as Prometheus text into `buf` (see `ss_model_feature_name` for
/// the size protocol). The text changes while events are scored, so it can outgrow the size
/// just asked for: on `SS_STATUS_BUFFER_TOO_SMALL`, grow the buffer to the new `*needed` and
/// call again.
///
/// # Safety
/// `buf` is null or has `cap` writable bytes; `needed` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ss_runtime_prometheus(
    runtime: SsRuntime,
    buf: *mut c_char,
    cap: usize,
    needed: *mut usize,
) -> SsStatus {
    call(|| {
        let text = RUNTIMES.get(runtime.id)?.rt.metrics().prometheus();
        // SAFETY: the pointers are as this function's contract states.
        unsafe { args::copy_text(&text, buf, cap, needed) }
    })
}

/// Replaces the runtime's model while events flow: the file is loaded, validated and warmed off
/// the hot path, then goes live at a batch boundary; `*version` (when not null) is its version
/// (`version`, or a hash of the file when 0). A file that fails leaves the serving version in
/// place; a changed input schema is `SS_STATUS_CONFIG` unless `allow_schema_change` is 1.
///
/// # Safety
/// `path` is a NUL-terminated string; `out_version` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ss_runtime_swap(
    runtime: SsRuntime,
    path: *const c_char,
    version: u64,
    allow_schema_change: u32,
    out_version: *mut u64,
) -> SsStatus {
    call(|| {
        let h = RUNTIMES.get(runtime.id)?;
        // SAFETY: the pointers are as this function's contract states.
        let path = unsafe { args::text(path, "path") }?;
        let mut update = ModelUpdate::path(path);
        if version != 0 {
            update = update.with_version(version);
        }
        match allow_schema_change {
            0 => {}
            1 => update = update.allow_schema_change(),
            other => return Err(Fail::argument(format!("allow_schema_change {other}: 0 or 1"))),
        }
        let live = h.rt.swap(update)?;
        // SAFETY: the pointers are as this function's contract states.
        unsafe { args::put_optional(out_version, live, "out_version") }
    })
}

/// Makes a kept version live again.
#[unsafe(no_mangle)]
pub extern "C" fn ss_runtime_rollback(runtime: SsRuntime, version: u64) -> SsStatus {
    call(|| Ok(RUNTIMES.get(runtime.id)?.rt.rollback(version)?))
}

/// The live model version.
///
/// # Safety
/// `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ss_runtime_live_version(runtime: SsRuntime, out: *mut u64) -> SsStatus {
    call(|| {
        let h = RUNTIMES.get(runtime.id)?;
        // SAFETY: the pointers are as this function's contract states.
        unsafe { args::put(out, h.rt.live_version(), "out") }
    })
}

// A held runtime is shared by every thread that calls on it.
const _: fn() = || {
    fn shared<T: Send + Sync>() {}
    shared::<Arc<Held>>();
};
