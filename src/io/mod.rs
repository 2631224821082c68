//! Reading input rows (CSV, `.npy`) and writing scores: the command line's plumbing, shared
//! with the tests and benches. Hidden from the docs and not part of the supported API (it may
//! change or move into the binary without notice); embedders hand the runtime rows themselves.
//!
//! Input values travel as f32: f64 `.npy` files are rounded to the nearest f32 on read.

#[cfg(feature = "csv")]
pub(crate) mod csv;
mod npy;
mod synthetic;
pub mod table;

use std::io::{Read, Write};

use crate::batch::Batch;
use crate::error::{Error, Result};

pub use npy::parse as parse_npy;
pub use synthetic::{normal_rows, synthetic_rows};

/// A whole input file (`.npy`, an offline event CSV): a regular file within the input limit
/// (16 GiB, or `STREAMSCORE_MAX_INPUT_BYTES`), checked before it is read.
pub fn read_input(path: &std::path::Path) -> Result<Vec<u8>> {
    crate::files::read(path, &crate::files::INPUT)
}

/// All of a stream read whole (standard input for `-`), within the same input limit: a
/// stream has no size to check first, so reading stops with [`Error::TooLarge`] one byte past
/// the limit.
///
/// [`Error::TooLarge`]: crate::Error::TooLarge
pub fn read_stream(name: &str, stream: impl std::io::Read) -> Result<Vec<u8>> {
    crate::files::read_stream(std::path::Path::new(name), stream, &crate::files::INPUT)
}

/// How CSV columns map to the model's features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Columns {
    /// The first line names the columns; each model feature is looked up by name, extra
    /// columns are ignored, a missing one is an error.
    ByName,
    /// No header line; columns are the model's features in order.
    Positional,
}

/// Reads rows for a model with features `names` from `bytes`: a `.npy` array when the bytes
/// start with numpy's magic, otherwise CSV. `source` names the input in error messages.
///
/// In CSV an empty field or `NaN` (any case) is a missing value.
///
/// # Examples
///
/// ```
/// use streamscore::io::{read_rows, Columns};
/// let names = ["a".to_string(), "b".to_string()];
/// let batch = read_rows(b"b,x,a\n1,9,2\n,9,NaN\n", Columns::ByName, &names, "example").unwrap();
/// assert_eq!((batch.value(0, 0), batch.value(0, 1)), (2.0, 1.0));
/// assert!(batch.value(1, 0).is_nan() && batch.value(1, 1).is_nan());
/// ```
pub fn read_rows(bytes: &[u8], columns: Columns, names: &[String], source: &str) -> Result<Batch> {
    if bytes.starts_with(npy::MAGIC) {
        let array =
            npy::parse(bytes).map_err(|message| Error::Input { at: source.into(), message })?;
        if array.cols != names.len() {
            return Err(Error::WidthMismatch { expected: names.len(), got: array.cols });
        }
        return Batch::from_rows(&array.values, array.cols);
    }
    #[cfg(feature = "csv")]
    return csv::read(bytes, columns, names, source);
    #[cfg(not(feature = "csv"))]
    {
        let _ = columns;
        Err(no_csv(source))
    }
}

/// Rows read a chunk at a time: CSV straight from its reader (never held whole), `.npy` parsed
/// once and cut into chunks. `streamscore score` uses it to score files of any size in bounded
/// memory.
pub struct RowStream {
    inner: Rows,
}

enum Rows {
    #[cfg(feature = "csv")]
    Csv(Box<csv::CsvRows<Box<dyn std::io::Read>>>),
    Npy {
        array: npy::NpyArray,
        next: usize,
    },
}

impl RowStream {
    /// Opens `input` for a model with features `names` (see [`read_rows`] for the formats).
    pub fn new(
        mut input: Box<dyn std::io::Read>,
        columns: Columns,
        names: &[String],
        source: &str,
    ) -> Result<Self> {
        let mut head = Vec::with_capacity(npy::MAGIC.len());
        (&mut input)
            .take(npy::MAGIC.len() as u64)
            .read_to_end(&mut head)
            .map_err(|e| Error::io(source, e))?;
        if head == npy::MAGIC {
            // Parsed whole: bounded like any input read whole, even from a pipe.
            let limit = crate::files::INPUT.limit();
            let mut bytes = head;
            input
                .take(limit.saturating_add(1))
                .read_to_end(&mut bytes)
                .map_err(|e| Error::io(source, e))?;
            if bytes.len() as u64 > limit {
                return Err(Error::TooLarge {
                    path: source.into(),
                    what: "input",
                    size: bytes.len() as u64,
                    limit,
                    env: crate::files::INPUT.env,
                });
            }
            let array = npy::parse(&bytes)
                .map_err(|message| Error::Input { at: source.into(), message })?;
            if array.cols != names.len() {
                return Err(Error::WidthMismatch { expected: names.len(), got: array.cols });
            }
            return Ok(RowStream { inner: Rows::Npy { array, next: 0 } });
        }
        #[cfg(feature = "csv")]
        {
            let chained: Box<dyn std::io::Read> = Box::new(std::io::Cursor::new(head).chain(input));
            let rows = csv::CsvRows::new(chained, columns, names, source)?;
            Ok(RowStream { inner: Rows::Csv(Box::new(rows)) })
        }
        #[cfg(not(feature = "csv"))]
        {
            let _ = columns;
            Err(no_csv(source))
        }
    }

    /// The next batch of at most `max_rows` rows (at least 1); `None` at the end.
    pub fn next_chunk(&mut self, max_rows: usize) -> Result<Option<Batch>> {
        let max_rows = max_rows.max(1);
        match &mut self.inner {
            #[cfg(feature = "csv")]
            Rows::Csv(rows) => rows.next_chunk(max_rows),
            Rows::Npy { array, next } => {
                if *next >= array.rows {
                    return Ok(None);
                }
                let take = max_rows.min(array.rows - *next);
                let values = &array.values[*next * array.cols..(*next + take) * array.cols];
                *next += take;
                Batch::from_rows(values, array.cols).map(Some)
            }
        }
    }
}

#[cfg(not(feature = "csv"))]
fn no_csv(source: &str) -> Error {
    Error::Input {
        at: source.into(),
        message: "reading CSV needs the Cargo feature `csv` (on by default); this input is not \
                  a .npy array"
            .into(),
    }
}

/// Writes `values` (row-major, `width` per row) one row per line, values comma-separated, each
/// in the shortest form that reads back as the same f32.
pub fn write_scores(w: &mut impl Write, values: &[f32], width: usize) -> std::io::Result<()> {
    for row in values.chunks(width.max(1)) {
        for (i, v) in row.iter().enumerate() {
            if i > 0 {
                w.write_all(b",")?;
            }
            write!(w, "{v}")?;
        }
        w.write_all(b"\n")?;
    }
    Ok(())
}
