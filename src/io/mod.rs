//! Reading input rows (CSV, `.npy`) and writing scores, for the CLI and offline tools.
//!
//! Input values travel as f32: f64 `.npy` files are rounded to the nearest f32 on read.

mod csv;
mod npy;
mod synthetic;

use std::io::Write;

use crate::batch::Batch;
use crate::error::{Error, Result};

pub use npy::parse as parse_npy;
pub use synthetic::{normal_rows, synthetic_rows};

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
    csv::read(bytes, columns, names, source)
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
