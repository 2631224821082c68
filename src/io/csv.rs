//! CSV input.

use std::collections::HashMap;

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
    let mut rows = CsvRows::new(bytes, columns, names, source)?;
    Ok(rows.next_chunk(usize::MAX)?.unwrap_or_else(|| {
        Batch::from_columns(Vec::new(), 0, names.len()).expect("0 rows of any width")
    }))
}

/// Counts the quote characters that pass through it. In well-formed CSV every quote is paired
/// (enclosing quotes, and `""` inside a quoted field), so an odd count at the end of the input
/// means a quote was never closed: the csv crate would silently take the rest of the input as
/// one field, and every row in it would be lost.
pub(crate) struct QuoteCount<R> {
    inner: R,
    quotes: u64,
}

impl<R> QuoteCount<R> {
    pub(crate) fn new(inner: R) -> Self {
        QuoteCount { inner, quotes: 0 }
    }

    /// An error naming `source` when a quote was left open.
    pub(crate) fn check(&self, source: &str) -> Result<()> {
        unterminated(self.quotes, source)
    }
}

impl<R: std::io::Read> std::io::Read for QuoteCount<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.quotes += quotes(&buf[..n]);
        Ok(n)
    }
}

/// The quote characters in `bytes`.
pub(crate) fn quotes(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'"').count() as u64
}

/// An error naming `source` when `quotes` (the input's whole count) is odd.
pub(crate) fn unterminated(quotes: u64, source: &str) -> Result<()> {
    if quotes % 2 == 1 {
        return Err(Error::Input {
            at: source.to_string(),
            message: "a quoted field is never closed (an odd number of `\"` in the input); \
                      the rows after it would be lost"
                .into(),
        });
    }
    Ok(())
}

/// CSV rows read a chunk at a time from any reader, so a large file is never held whole.
pub(super) struct CsvRows<R> {
    reader: ::csv::Reader<QuoteCount<R>>,
    /// Position in the file of each model feature.
    index: Vec<usize>,
    names: Vec<String>,
    columns: Columns,
    source: String,
    record: ::csv::StringRecord,
    rows: Vec<f32>,
}

impl<R: std::io::Read> CsvRows<R> {
    pub(super) fn new(input: R, columns: Columns, names: &[String], source: &str) -> Result<Self> {
        let mut reader = ::csv::ReaderBuilder::new()
            .has_headers(columns == Columns::ByName)
            .trim(::csv::Trim::All)
            .from_reader(QuoteCount::new(input));
        let index: Vec<usize> = match columns {
            Columns::ByName => {
                let header = reader.headers().map_err(|e| csv_err(source, e))?.clone();
                let at = header_index(header.iter());
                names
                    .iter()
                    .enumerate()
                    .map(|(i, name)| match at.get(name.as_str()) {
                        Some(&(col, false)) => Ok(col),
                        Some(_) => Err(Error::Input {
                            at: source.to_string(),
                            message: format!(
                                "the header names column `{}` twice: which one to read is \
                                 ambiguous",
                                name.escape_debug()
                            ),
                        }),
                        None => Err(Error::MissingColumn { name: name.clone(), index: i }),
                    })
                    .collect::<Result<_>>()?
            }
            Columns::Positional => (0..names.len()).collect(),
        };
        Ok(CsvRows {
            reader,
            index,
            names: names.to_vec(),
            columns,
            source: source.to_string(),
            record: ::csv::StringRecord::new(),
            rows: Vec::new(),
        })
    }

    /// The next batch of at most `max_rows` rows; `None` at the end of the input.
    pub(super) fn next_chunk(&mut self, max_rows: usize) -> Result<Option<Batch>> {
        self.rows.clear();
        let mut n = 0;
        let source = &self.source;
        while n < max_rows
            && self.reader.read_record(&mut self.record).map_err(|e| csv_err(source, e))?
        {
            let record = &self.record;
            if self.columns == Columns::Positional && record.len() != self.names.len() {
                return Err(Error::WidthMismatch { expected: self.names.len(), got: record.len() });
            }
            for (&col, name) in self.index.iter().zip(&self.names) {
                let text = &record[col];
                let value = field(text).ok_or_else(|| {
                    let line = record.position().map_or(0, |p| p.line());
                    Error::Input {
                        at: format!("{source}, line {line}, column `{name}`"),
                        message: format!("`{text}` is not a number"),
                    }
                })?;
                self.rows.push(value);
            }
            n += 1;
        }
        if n < max_rows {
            // The end of the input: the last field may have swallowed it.
            self.reader.get_ref().check(source)?;
        }
        if n == 0 {
            return Ok(None);
        }
        Batch::from_rows(&self.rows, self.names.len()).map(Some)
    }
}

/// Each header name's first position and whether it appears more than once: one hashed pass,
/// for matching names to columns without a scan per name.
pub(crate) fn header_index<'a>(
    header: impl Iterator<Item = &'a str>,
) -> HashMap<&'a str, (usize, bool)> {
    let mut at = HashMap::with_capacity(header.size_hint().0);
    for (i, h) in header.enumerate() {
        at.entry(h).and_modify(|e: &mut (usize, bool)| e.1 = true).or_insert((i, false));
    }
    at
}

/// The column `name` names in a [`header_index`]: an error at `at` when the header names it
/// twice (ambiguous) or not at all (`why` says what needs it).
pub(crate) fn column(
    index: &HashMap<&str, (usize, bool)>,
    name: &str,
    at: &str,
    why: &str,
) -> Result<usize> {
    let input = |message: String| Error::Input { at: at.to_string(), message };
    match index.get(name) {
        Some(&(c, false)) => Ok(c),
        Some(_) => Err(input(format!("the header names column `{name}` twice (ambiguous)"))),
        None => Err(input(format!("no column `{name}` ({why})"))),
    }
}

fn csv_err(source: &str, e: ::csv::Error) -> Error {
    let at = match e.position() {
        Some(p) => format!("{source}, line {}", p.line()),
        None => source.to_string(),
    };
    Error::Input { at, message: e.to_string() }
}
