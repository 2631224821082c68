//! Events, the schema that names their fields, and the checks an event passes before it is
//! queued.
//!
//! An [`Event`] is one row of f32 features in the model's feature order, with an optional key,
//! event time and deadline. Its values are any `AsRef<[f32]>`: a `Vec<f32>` is simplest, while a
//! borrowed `&[f32]` or an array lets a hot producer loop submit without allocating (the runtime
//! copies the row into a recycled buffer).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// One row to score.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use streamscore::Event;
///
/// let row = [0.5_f32, 1.0, f32::NAN];
/// let event = Event::new(&row[..]).with_key(42).with_timeout(Duration::from_millis(5));
/// assert_eq!(event.values().len(), 3);
/// assert_eq!(event.key, Some(42));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Event<R = Vec<f32>> {
    /// Feature values in the model's order; NaN is a missing value.
    pub values: R,
    /// Optional entity key (card, user, camera); carried through for per-key features.
    pub key: Option<u64>,
    /// Optional event time in milliseconds since the Unix epoch.
    pub timestamp_ms: Option<i64>,
    /// Optional event id (a transaction id): a runtime with a feedback join
    /// ([`RuntimeBuilder::feedback`](crate::RuntimeBuilder::feedback)) keeps the prediction
    /// under it until its label arrives ([`Runtime::feedback`](crate::Runtime::feedback)).
    pub id: Option<u64>,
    /// When the answer stops being useful. An event still queued at its deadline is answered
    /// with [`Error::Expired`] and never reaches the model.
    pub deadline: Option<Instant>,
}

impl<R: AsRef<[f32]>> Event<R> {
    /// An event with these values and no key, timestamp or deadline.
    pub fn new(values: R) -> Self {
        Event { values, key: None, timestamp_ms: None, id: None, deadline: None }
    }

    /// Sets the key.
    pub fn with_key(mut self, key: u64) -> Self {
        self.key = Some(key);
        self
    }

    /// Sets the event id (see [`Event::id`]).
    pub fn with_id(mut self, id: u64) -> Self {
        self.id = Some(id);
        self
    }

    /// Sets the event time (ms since the Unix epoch).
    pub fn with_timestamp_ms(mut self, t: i64) -> Self {
        self.timestamp_ms = Some(t);
        self
    }

    /// Sets an absolute deadline.
    pub fn with_deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Sets the deadline to `timeout` from now.
    pub fn with_timeout(self, timeout: Duration) -> Self {
        self.with_deadline(Instant::now() + timeout)
    }

    /// The feature values.
    pub fn values(&self) -> &[f32] {
        self.values.as_ref()
    }
}

/// What the runtime does with NaN and infinite feature values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NonFinitePolicy {
    /// NaN is a missing value (the model's default direction); ±inf are ordinary values,
    /// compared as the training library compares them, so scores match its `predict`.
    #[default]
    Missing,
    /// NaN and ±inf are both missing values.
    InfAsMissing,
    /// Any NaN or infinity rejects the event with [`Error::NonFinite`].
    Reject,
}

/// Many events handed over together (a broker poll, an HTTP body of rows) with
/// [`Runtime::try_submit_many`](crate::Runtime::try_submit_many): one queue place, one
/// ticket, one answer per event, and no per-event hand-off. The set shares one deadline and is
/// never split across batches.
///
/// # Examples
///
/// ```
/// use streamscore::{EventBatch, Runtime, RuntimeConfig};
///
/// let rt = Runtime::builder()
///     .model_path("models/golden/lgb_binary/model.txt")
///     .config(RuntimeConfig::default())
///     .build()?;
/// let rows = [0.5f32; 8 * 3]; // three events of 8 features, row after row
/// let scores = rt.score_many(EventBatch::rows(&rows))?;
/// assert_eq!(scores.len(), 3);
/// assert!(scores.iter().all(|s| s.is_ok()));
/// # Ok::<(), streamscore::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct EventBatch<'a> {
    pub(crate) values: Values<'a>,
    pub(crate) keys: Option<&'a [u64]>,
    pub(crate) times: Option<&'a [i64]>,
    pub(crate) ids: Option<&'a [u64]>,
    pub(crate) deadline: Option<Instant>,
}

/// Where an [`EventBatch`]'s values are.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Values<'a> {
    /// Row after row, the runtime's width each.
    Rows(&'a [f32]),
    /// A columnar batch.
    Columns(&'a crate::Batch),
}

impl<'a> EventBatch<'a> {
    /// Events laid out row after row (`width` values each, the runtime's input width).
    pub fn rows(values: &'a [f32]) -> Self {
        EventBatch {
            values: Values::Rows(values),
            keys: None,
            times: None,
            ids: None,
            deadline: None,
        }
    }

    /// Events from a columnar batch (one column per feature, as Arrow holds them).
    pub fn columns(batch: &'a crate::Batch) -> Self {
        EventBatch {
            values: Values::Columns(batch),
            keys: None,
            times: None,
            ids: None,
            deadline: None,
        }
    }

    /// One key per event (needed by a runtime with a feature stage).
    pub fn with_keys(mut self, keys: &'a [u64]) -> Self {
        self.keys = Some(keys);
        self
    }

    /// One event time per event, in milliseconds since the Unix epoch (needed by a runtime
    /// with a feature stage).
    pub fn with_timestamps_ms(mut self, times: &'a [i64]) -> Self {
        self.times = Some(times);
        self
    }

    /// One event id per event (see [`Event::id`]).
    pub fn with_ids(mut self, ids: &'a [u64]) -> Self {
        self.ids = Some(ids);
        self
    }

    /// When the set's answers stop being useful: a set still queued at its deadline is
    /// answered with [`Error::Expired`] as a whole.
    pub fn with_deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }
}

impl NonFinitePolicy {
    /// Position of the first value this policy refuses, if any (only `Reject` refuses).
    pub(crate) fn refused(self, values: &[f32]) -> Option<usize> {
        match self {
            NonFinitePolicy::Reject => values.iter().position(|v| !v.is_finite()),
            NonFinitePolicy::Missing | NonFinitePolicy::InfAsMissing => None,
        }
    }

    /// True when the policy rewrites some of `values` (infinities under `InfAsMissing`).
    pub(crate) fn rewrites(self, values: &[f32]) -> bool {
        self == NonFinitePolicy::InfAsMissing && values.iter().any(|v| v.is_infinite())
    }

    /// The value the model sees for an accepted `v`.
    #[inline]
    pub(crate) fn clean(self, v: f32) -> f32 {
        if self == NonFinitePolicy::InfAsMissing && v.is_infinite() { f32::NAN } else { v }
    }
}

/// The model's feature names and their positions, for building events by name.
///
/// # Examples
///
/// ```
/// use streamscore::Schema;
///
/// let schema = Schema::new(["amount", "age", "hour"]);
/// let event = schema.event([("hour", 13.0), ("amount", 9.5)])?;
/// assert_eq!(event.values()[0], 9.5);
/// assert!(event.values()[1].is_nan()); // not given: missing
/// assert!(schema.event([("colour", 1.0)]).is_err());
/// # Ok::<(), streamscore::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schema {
    names: Vec<String>,
    index: HashMap<String, usize>,
}

impl Schema {
    /// A schema with these feature names, in the model's order.
    pub fn new<S: Into<String>>(names: impl IntoIterator<Item = S>) -> Self {
        let names: Vec<String> = names.into_iter().map(Into::into).collect();
        // The first occurrence wins if a model repeats a name; lookups stay deterministic.
        let mut index = HashMap::with_capacity(names.len());
        for (i, n) in names.iter().enumerate() {
            index.entry(n.clone()).or_insert(i);
        }
        Schema { names, index }
    }

    /// Number of features.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when the schema has no features.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Feature names in order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Position of a feature, if the schema has it.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// Writes named values into `row` (which must be `len()` long); unnamed features are left
    /// as they are. Errors on the first unknown name.
    pub fn fill<'a>(
        &self,
        fields: impl IntoIterator<Item = (&'a str, f32)>,
        row: &mut [f32],
    ) -> Result<()> {
        if row.len() != self.len() {
            return Err(Error::WidthMismatch { expected: self.len(), got: row.len() });
        }
        for (name, v) in fields {
            let i = self
                .position(name)
                .ok_or_else(|| Error::UnknownField { name: name.to_string() })?;
            row[i] = v;
        }
        Ok(())
    }

    /// An event from named values; features not named are missing (NaN).
    pub fn event<'a>(&self, fields: impl IntoIterator<Item = (&'a str, f32)>) -> Result<Event> {
        let mut row = vec![f32::NAN; self.len()];
        self.fill(fields, &mut row)?;
        Ok(Event::new(row))
    }
}

/// Checks a row against the model's width and the non-finite policy, copying it into `dst`
/// (cleared first). On error `dst` holds nothing useful and the caller hands the event back.
pub(crate) fn copy_checked(
    src: &[f32],
    width: usize,
    policy: NonFinitePolicy,
    dst: &mut Vec<f32>,
) -> Result<()> {
    check_row(src, width, policy)?;
    dst.clear();
    if policy.rewrites(src) {
        dst.extend(src.iter().map(|&v| policy.clean(v)));
    } else {
        dst.extend_from_slice(src);
    }
    Ok(())
}

/// Checks a row's width and, under `reject`, its values.
pub(crate) fn check_row(src: &[f32], width: usize, policy: NonFinitePolicy) -> Result<()> {
    if src.len() != width {
        return Err(Error::WidthMismatch { expected: width, got: src.len() });
    }
    if let Some(feature) = policy.refused(src) {
        return Err(Error::NonFinite { feature, value: src[feature] });
    }
    Ok(())
}

/// Now, in milliseconds since the Unix epoch, as event times are (0 before 1970).
pub(crate) fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies() {
        let mut dst = Vec::new();
        let row = [1.0, f32::INFINITY, f32::NAN];
        copy_checked(&row, 3, NonFinitePolicy::Missing, &mut dst).unwrap();
        assert_eq!(dst[0], 1.0);
        assert!(dst[1] == f32::INFINITY && dst[2].is_nan());
        copy_checked(&row, 3, NonFinitePolicy::InfAsMissing, &mut dst).unwrap();
        assert!(dst[1].is_nan() && dst[2].is_nan());
        let err = copy_checked(&row, 3, NonFinitePolicy::Reject, &mut dst).unwrap_err();
        assert!(matches!(err, Error::NonFinite { feature: 1, .. }), "{err}");
        let err = copy_checked(&row, 4, NonFinitePolicy::Missing, &mut dst).unwrap_err();
        assert!(matches!(err, Error::WidthMismatch { expected: 4, got: 3 }));
    }
}
