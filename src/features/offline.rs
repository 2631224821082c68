//! Offline mode: raw events from a CSV file, in file order, through the same [`Features`] the
//! runtime uses (`streamscore features`).

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
    let column = |name: &str| match index.get(name) {
        Some(&(col, false)) => Ok(col),
        Some(_) => Err(input(at, format!("the header names column `{name}` twice (ambiguous)"))),
        None => Err(input(at, format!("no column `{name}` (the spec needs it)"))),
    };
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
            let t: f64 = get(time).parse().map_err(|_| {
                input(&format!("{at}:{line}"), format!("time `{}` is not a number", get(time)))
            })?;
            let ms = t * spec.time_scale;
            // NaN and infinities fail this too: no time is saturated into range.
            let range = -(super::MAX_EVENT_TIME_MS as f64)..=super::MAX_EVENT_TIME_MS as f64;
            if !range.contains(&ms) {
                return Err(input(
                    &format!("{at}:{line}"),
                    format!(
                        "event time `{}` is outside the supported range (|t| <= 2^53 ms)",
                        get(time)
                    ),
                ));
            }
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
            Ok((Spec::key_of(k), ms.round() as i64))
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
