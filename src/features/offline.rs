//! Offline mode: raw events from a CSV file, in file order, through the same [`Features`] the
//! runtime uses (`streamscore features`), and the point-in-time join of labels to those features
//! (`streamscore features --labels`).

#[cfg(feature = "csv")]
use super::Spec;
use super::{Features, Output};
use crate::batch::Batch;
use crate::error::{Error, Result};

/// Events read from a file: raw rows (the spec's fields), keys and times, and the lines that
/// could not be read.
#[derive(Debug, Default)]
pub struct Events {
    /// Row-major raw values, `spec.fields.len()` per event.
    pub rows: Vec<f32>,
    /// One key per event.
    pub keys: Vec<u64>,
    /// One event time (ms) per event.
    pub times: Vec<i64>,
    /// Per event, its 1-based line in the file.
    pub lines: Vec<usize>,
    /// Lines refused, with why (a non-numeric value, an unknown category under the `error`
    /// policy, a missing key or time). They never reach the feature stage.
    pub refused: Vec<(usize, Error)>,
}

impl Events {
    /// Number of events read.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no event was read.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Reads a CSV with a header naming the key, the time and every field of `spec` (other
/// columns are ignored). An empty numeric or categorical value is missing (NaN).
#[cfg(feature = "csv")]
pub fn read_csv(spec: &Spec, bytes: &[u8], at: &str) -> Result<Events> {
    crate::io::csv::unterminated(crate::io::csv::quotes(bytes), at)?;
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(bytes);
    let header = reader.headers().map_err(|e| input(at, e.to_string()))?.clone();
    let index = crate::io::csv::header_index(header.iter().map(str::trim));
    let column = |name: &str| crate::io::csv::column(&index, name, at, "the spec needs it");
    let key = column(&spec.key)?;
    let time = column(&spec.time)?;
    let fields: Vec<usize> = spec.fields.iter().map(|f| column(f)).collect::<Result<_>>()?;
    let n_numeric = spec.fields.len() - spec.categorical.len();
    let mut events = Events::default();
    let mut row = vec![0.0f32; fields.len()];
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let record = record.map_err(|e| input(at, e.to_string()))?;
        let get = |c: usize| record.get(c).unwrap_or("").trim();
        let parsed = (|| -> Result<(u64, i64)> {
            let k = get(key);
            if k.is_empty() {
                return Err(input(&format!("{at}:{line}"), format!("no key in `{}`", spec.key)));
            }
            let ms = parse_time(spec, get(time), &format!("{at}:{line}"), "event time")?;
            for (j, &c) in fields.iter().enumerate() {
                let v = get(c);
                row[j] = if j < n_numeric {
                    if v.is_empty() {
                        f32::NAN
                    } else {
                        v.parse().map_err(|_| {
                            input(
                                &format!("{at}:{line}"),
                                format!("`{}` = `{v}` is not a number", spec.fields[j]),
                            )
                        })?
                    }
                } else {
                    spec.categorical[j - n_numeric].code(v)?
                };
            }
            Ok((Spec::key_of(k), ms))
        })();
        match parsed {
            Ok((k, t)) => {
                events.rows.extend_from_slice(&row);
                events.keys.push(k);
                events.times.push(t);
                events.lines.push(line);
            }
            Err(e) => events.refused.push((line, e)),
        }
    }
    Ok(events)
}

/// A CSV time field (`at` names its line; `what` says what it is) in ms: a number in the
/// spec's `time_unit` within [`MAX_EVENT_TIME_MS`](super::MAX_EVENT_TIME_MS); NaN and
/// infinities fail too, so no time is saturated into range.
#[cfg(feature = "csv")]
pub(crate) fn parse_time(spec: &Spec, text: &str, at: &str, what: &str) -> Result<i64> {
    let t: f64 = text.parse().map_err(|_| input(at, format!("time `{text}` is not a number")))?;
    let ms = t * spec.time_scale;
    let range = -(super::MAX_EVENT_TIME_MS as f64)..=super::MAX_EVENT_TIME_MS as f64;
    if !range.contains(&ms) {
        return Err(input(
            at,
            format!("{what} `{text}` is outside the supported range (|t| <= 2^53 ms)"),
        ));
    }
    Ok(ms.round() as i64)
}

/// Features event-major (one row per event), and the events refused (index, why).
pub type Computed = (Vec<f32>, Vec<(usize, Error)>);

/// Computes the features of `events` in order, `chunk` events per batch (the result does not
/// depend on `chunk`). Returns the features event-major (one row per event) and the events
/// the stage refused (by index into `events`).
pub fn run(features: &mut Features, events: &Events, chunk: usize) -> Result<Computed> {
    let width = features.spec().fields.len();
    let n_out = features.spec().names.len();
    let mut rows = vec![f32::NAN; events.len() * n_out];
    let mut refused = Vec::new();
    let mut out = Output::default();
    let mut start = 0;
    while start < events.len() {
        let end = (start + chunk.max(1)).min(events.len());
        let n = end - start;
        let batch = raw_batch(&events.rows[start * width..end * width], n, width)?;
        features.transform(
            &batch,
            &events.keys[start..end],
            &events.times[start..end],
            &mut out,
        )?;
        for r in 0..n {
            for c in 0..n_out {
                rows[(start + r) * n_out + c] = out.values[c * n + r];
            }
        }
        refused.extend(out.errors.drain(..).map(|(r, e)| (start + r, e)));
        start = end;
    }
    Ok((rows, refused))
}

/// A batch of `n` row-major raw rows (zero-width rows are allowed: a spec may use only the
/// key and time).
pub(crate) fn raw_batch(rows: &[f32], n: usize, width: usize) -> Result<Batch> {
    if width == 0 { Batch::from_columns(Vec::new(), n, 0) } else { Batch::from_rows(rows, width) }
}

#[cfg(feature = "csv")]
fn input(at: &str, message: String) -> Error {
    Error::Input { at: at.to_string(), message }
}

/// Labels for a point-in-time training set: per label, the key (as written and as the stage
/// keys it), the label's time and its value as written (a number).
#[derive(Debug, Default)]
pub struct Labels {
    /// The key as the file writes it.
    pub key_text: Vec<String>,
    /// The key as events travel with it ([`Spec::key_of`]).
    pub keys: Vec<u64>,
    /// The label's time (ms).
    pub times: Vec<i64>,
    /// The label as written (checked to be a number).
    pub values: Vec<String>,
    /// Per label, its 1-based line in the file.
    pub lines: Vec<usize>,
    /// Lines refused, with why.
    pub refused: Vec<(usize, Error)>,
}

/// Reads labels: a CSV whose header names the spec's key and time columns and `label_column`
/// (other columns are ignored), one label per row; times in the spec's `time_unit`.
#[cfg(feature = "csv")]
pub fn read_labels(spec: &Spec, bytes: &[u8], at: &str, label_column: &str) -> Result<Labels> {
    crate::io::csv::unterminated(crate::io::csv::quotes(bytes), at)?;
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(bytes);
    let header = reader.headers().map_err(|e| input(at, e.to_string()))?.clone();
    let index = crate::io::csv::header_index(header.iter().map(str::trim));
    let column = |name: &str| crate::io::csv::column(&index, name, at, "a label needs it");
    let (key, time, label) = (column(&spec.key)?, column(&spec.time)?, column(label_column)?);
    let mut labels = Labels::default();
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let record = record.map_err(|e| input(at, e.to_string()))?;
        let get = |c: usize| record.get(c).unwrap_or("").trim();
        let here = || format!("{at}:{line}");
        let parsed = (|| -> Result<i64> {
            if get(key).is_empty() {
                return Err(input(&here(), format!("no key in `{}`", spec.key)));
            }
            let ms = parse_time(spec, get(time), &here(), "time")?;
            if !get(label).parse::<f64>().is_ok_and(|v| !v.is_nan()) {
                return Err(input(
                    &here(),
                    format!("label `{}` = `{}` is not a number", label_column, get(label)),
                ));
            }
            Ok(ms)
        })();
        match parsed {
            Ok(t) => {
                labels.key_text.push(get(key).to_string());
                labels.keys.push(Spec::key_of(get(key)));
                labels.times.push(t);
                labels.values.push(get(label).to_string());
                labels.lines.push(line);
            }
            Err(e) => labels.refused.push((line, e)),
        }
    }
    Ok(labels)
}

/// Why a label has no features in a point-in-time join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmatched {
    /// The key has no event (that the stage computed) at or before the label's time.
    NoEvent,
    /// The key's latest such event is older than the join's `max_age`.
    TooOld,
}

/// The point-in-time join: for each label, the event whose features it gets, which is its
/// key's latest event at or before the label's time (latest by event time; of events at the
/// same time, the last in file order), of those the stage computed (`refused` are skipped,
/// by index into `events`), and not older than `max_age_ms` when given.
///
/// The stage computes an event's features from the events of its key at or before its time
/// that arrived before it, so no label's features depend on any event after the label's time:
/// the training set holds the features as the online stage gave them then.
pub fn point_in_time(
    events: &Events,
    refused: &[usize],
    labels: &Labels,
    max_age_ms: Option<i64>,
) -> Vec<std::result::Result<usize, Unmatched>> {
    let mut skip = vec![false; events.len()];
    for &i in refused {
        if let Some(s) = skip.get_mut(i) {
            *s = true;
        }
    }
    let mut by_key: std::collections::HashMap<u64, Vec<(i64, usize)>> = Default::default();
    for (i, (&k, &t)) in events.keys.iter().zip(&events.times).enumerate() {
        if !skip[i] {
            by_key.entry(k).or_default().push((t, i));
        }
    }
    for list in by_key.values_mut() {
        list.sort_unstable();
    }
    labels
        .keys
        .iter()
        .zip(&labels.times)
        .map(|(k, &t)| {
            let list = by_key.get(k).map_or(&[][..], Vec::as_slice);
            let before = list.partition_point(|&(te, _)| te <= t);
            let &(te, i) = before.checked_sub(1).map(|b| &list[b]).ok_or(Unmatched::NoEvent)?;
            if max_age_ms.is_some_and(|age| t - te > age) {
                return Err(Unmatched::TooOld);
            }
            Ok(i)
        })
        .collect()
}
