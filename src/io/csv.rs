//! CSV input.

use super::Columns;
use crate::batch::Batch;
use crate::error::{Error, Result};

/// Parses one CSV field: empty or NaN is missing.
fn field(text: &str) -> Option<f32> {
    let t = text.trim();
    if t.is_empty() || t.eq_ignore_ascii_case("nan") {
        return Some(f32::NAN);
    }
    t.parse::<f32>().ok()
}

pub(super) fn read(
    bytes: &[u8],
    columns: Columns,
    names: &[String],
    source: &str,
) -> Result<Batch> {
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(columns == Columns::ByName)
        .trim(::csv::Trim::All)
        .from_reader(bytes);
    let csv_err = |e: ::csv::Error| {
        let at = match e.position() {
            Some(p) => format!("{source}, line {}", p.line()),
            None => source.to_string(),
        };
        Error::Input { at, message: e.to_string() }
    };
    // Position in the file of each model feature.
    let index: Vec<usize> = match columns {
        Columns::ByName => {
            let header = reader.headers().map_err(csv_err)?.clone();
            names
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    header
                        .iter()
                        .position(|h| h == name)
                        .ok_or_else(|| Error::MissingColumn { name: name.clone(), index: i })
                })
                .collect::<Result<_>>()?
        }
        Columns::Positional => (0..names.len()).collect(),
    };
    let mut rows = Vec::new();
    let mut record = ::csv::StringRecord::new();
    while reader.read_record(&mut record).map_err(csv_err)? {
        if columns == Columns::Positional && record.len() != names.len() {
            return Err(Error::WidthMismatch { expected: names.len(), got: record.len() });
        }
        for (&col, name) in index.iter().zip(names) {
            let text = &record[col];
            let value = field(text).ok_or_else(|| {
                let line = record.position().map_or(0, |p| p.line());
                Error::Input {
                    at: format!("{source}, line {line}, column `{name}`"),
                    message: format!("`{text}` is not a number"),
                }
            })?;
            rows.push(value);
        }
    }
    Batch::from_rows(&rows, names.len())
}
