//! Backfill validation: the features the stage computes over a historical file, compared with
//! a features file computed elsewhere (a Spark job, a warehouse query), row by row and feature
//! by feature, within tolerances (`streamscore features --input events.csv --compare
//! theirs.csv`).
//!
//! Rows are matched by key and time: the n-th row of a (key, time) in one file with the n-th
//! in the other, so neither file's order matters. Values match when both are missing, or
//! when `|ours - theirs| <= atol + rtol * |theirs|` (NumPy's `isclose`).

use std::collections::HashMap;

use super::Spec;
use super::offline::Events;
#[cfg(feature = "csv")]
use crate::error::{Error, Result};

/// Features computed elsewhere, read from a CSV whose header names the spec's key and time
/// and some of its features.
#[derive(Debug, Default)]
pub struct Theirs {
    /// The spec's output columns the file has, by index into `spec.names`.
    pub columns: Vec<usize>,
    /// Header columns that are no feature of the spec (ignored).
    pub ignored: Vec<String>,
    /// Spec features the file lacks (not compared).
    pub absent: Vec<String>,
    /// Per row: key ([`Spec::key_of`]), time (ms), 1-based line.
    pub rows: Vec<(u64, i64, usize)>,
    /// `columns.len()` values per row (empty fields are missing, NaN).
    pub values: Vec<f32>,
}

/// Reads the other side's features.
#[cfg(feature = "csv")]
pub fn read(spec: &Spec, bytes: &[u8], at: &str) -> Result<Theirs> {
    crate::io::csv::unterminated(crate::io::csv::quotes(bytes), at)?;
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(bytes);
    let header = reader.headers().map_err(|e| input(at, e.to_string()))?.clone();
    let names: Vec<&str> = header.iter().map(str::trim).collect();
    let index = crate::io::csv::header_index(names.iter().copied());
    if let Some((dup, _)) = index.iter().find(|(_, (_, twice))| *twice) {
        return Err(input(at, format!("the header names column `{dup}` twice (ambiguous)")));
    }
    let col = |name: &str| {
        index
            .get(name)
            .map(|&(c, _)| c)
            .ok_or_else(|| input(at, format!("no column `{name}` (rows are matched by it)")))
    };
    let (key, time) = (col(&spec.key)?, col(&spec.time)?);
    let mut theirs = Theirs::default();
    let mut file_cols = Vec::new();
    for (i, name) in spec.names.iter().enumerate() {
        match index.get(name.as_str()) {
            Some(&(c, _)) => {
                theirs.columns.push(i);
                file_cols.push(c);
            }
            None => theirs.absent.push(name.clone()),
        }
    }
    if theirs.columns.is_empty() {
        return Err(input(at, "no column names a feature of the spec: nothing to compare".into()));
    }
    theirs.ignored = names
        .iter()
        .filter(|n| **n != spec.key && **n != spec.time && !spec.names.iter().any(|s| s == *n))
        .map(|n| n.to_string())
        .collect();
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let here = || format!("{at}:{line}");
        let record = record.map_err(|e| input(at, e.to_string()))?;
        let get = |c: usize| record.get(c).unwrap_or("").trim();
        if get(key).is_empty() {
            return Err(input(&here(), format!("no key in `{}`", spec.key)));
        }
        let ms = super::offline::parse_time(spec, get(time), &here(), "time")?;
        theirs.rows.push((Spec::key_of(get(key)), ms, line));
        for (&c, &f) in file_cols.iter().zip(&theirs.columns) {
            let v = get(c);
            theirs.values.push(if v.is_empty() || v.eq_ignore_ascii_case("nan") {
                f32::NAN
            } else {
                v.parse().map_err(|_| {
                    input(&here(), format!("`{}` = `{v}` is not a number", spec.names[f]))
                })?
            });
        }
    }
    Ok(theirs)
}

/// Tolerances: values match when `|ours - theirs| <= atol + rtol * |theirs|`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    /// Absolute.
    pub atol: f64,
    /// Relative.
    pub rtol: f64,
}

/// One feature's comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureReport {
    /// The feature.
    pub name: String,
    /// Values compared.
    pub compared: usize,
    /// Beyond the tolerance (a missing value against a present one counts).
    pub mismatches: usize,
    /// The largest absolute difference between present values.
    pub max_abs: f64,
    /// The largest relative difference (over `|theirs|`) between present values.
    pub max_rel: f64,
    /// The first mismatches: (their line, ours, theirs).
    pub first: Vec<(usize, f32, f32)>,
}

/// The whole comparison.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Report {
    /// Rows matched by key and time.
    pub matched: usize,
    /// Their rows with no row of ours (their line).
    pub only_theirs: Vec<usize>,
    /// Our rows (events computed) with none of theirs (index into the events).
    pub only_ours: Vec<usize>,
    /// Per compared feature.
    pub features: Vec<FeatureReport>,
}

impl Report {
    /// Mismatching values over every feature.
    pub fn mismatches(&self) -> usize {
        self.features.iter().map(|f| f.mismatches).sum()
    }
}

/// Mismatches each feature's report keeps.
const FIRST: usize = 5;

/// Compares our features (`rows`, event-major, `spec.names.len()` per event; events in
/// `refused` have none) with theirs.
pub fn compare(
    spec: &Spec,
    events: &Events,
    rows: &[f32],
    refused: &[usize],
    theirs: &Theirs,
    tol: Tolerance,
) -> Report {
    let n_out = spec.names.len();
    let mut skip = vec![false; events.len()];
    for &i in refused {
        if let Some(s) = skip.get_mut(i) {
            *s = true;
        }
    }
    // Our events per (key, time), in file order.
    let mut ours: HashMap<(u64, i64), std::collections::VecDeque<usize>> = HashMap::new();
    for i in (0..events.len()).filter(|&i| !skip[i]) {
        ours.entry((events.keys[i], events.times[i])).or_default().push_back(i);
    }
    let mut report = Report {
        features: theirs
            .columns
            .iter()
            .map(|&c| FeatureReport {
                name: spec.names[c].clone(),
                compared: 0,
                mismatches: 0,
                max_abs: 0.0,
                max_rel: 0.0,
                first: Vec::new(),
            })
            .collect(),
        ..Report::default()
    };
    let width = theirs.columns.len();
    for (r, &(key, time, line)) in theirs.rows.iter().enumerate() {
        let Some(i) = ours.get_mut(&(key, time)).and_then(|q| q.pop_front()) else {
            report.only_theirs.push(line);
            continue;
        };
        report.matched += 1;
        for (j, (&c, f)) in theirs.columns.iter().zip(&mut report.features).enumerate() {
            let (a, b) = (rows[i * n_out + c], theirs.values[r * width + j]);
            f.compared += 1;
            let ok = match (a.is_nan(), b.is_nan()) {
                (true, true) => true,
                (false, false) => {
                    let d = (f64::from(a) - f64::from(b)).abs();
                    f.max_abs = f.max_abs.max(d);
                    if b != 0.0 {
                        f.max_rel = f.max_rel.max(d / f64::from(b).abs());
                    }
                    d <= tol.atol + tol.rtol * f64::from(b).abs()
                }
                _ => false,
            };
            if !ok {
                f.mismatches += 1;
                if f.first.len() < FIRST {
                    f.first.push((line, a, b));
                }
            }
        }
    }
    let mut left: Vec<usize> = ours.into_values().flatten().collect();
    left.sort_unstable();
    report.only_ours = left;
    report
}

#[cfg(feature = "csv")]
fn input(at: &str, message: String) -> Error {
    Error::Input { at: at.to_string(), message }
}
