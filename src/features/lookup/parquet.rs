//! Static lookup tables read from Parquet: the key column (integers or text, keyed as
//! [`Spec::key_of`] keys a CSV's) and every field (any integer or float type, read as f32;
//! nulls are missing).

use arrow_array::{Array, ArrayRef, RecordBatch, cast::AsArray, types};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::{LookupDef, Table};
use crate::error::{Error, Result};
use crate::features::spec::Spec;

/// Reads `path` (within the input file limit) as a lookup table.
pub(super) fn load(def: &LookupDef, key_column: &str, path: &std::path::Path) -> Result<Table> {
    let at = path.display().to_string();
    let bytes = crate::files::read(path, &crate::files::INPUT)?;
    // The file is untrusted: a reader that panics on a malformed file (the parquet crate's
    // fuzzers still find such files) must be an error here, not a crash of the service.
    std::panic::catch_unwind(|| read(def, key_column, bytes, &at)).unwrap_or_else(|_| {
        Err(Error::Input { at: at.clone(), message: "malformed Parquet file".into() })
    })
}

fn read(def: &LookupDef, key_column: &str, bytes: Vec<u8>, at: &str) -> Result<Table> {
    let input = |message: String| Error::Input { at: at.to_string(), message };
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
        .map_err(|e| input(format!("not a Parquet file we can read: {e}")))?;
    let schema = builder.schema().clone();
    let column = |name: &str| -> Result<usize> {
        let mut found = schema.fields().iter().enumerate().filter(|(_, f)| f.name() == name);
        match (found.next(), found.next()) {
            (Some((i, _)), None) => Ok(i),
            (Some(_), Some(_)) => Err(input(format!("the schema names `{name}` twice"))),
            _ => Err(input(format!("no column `{name}` (lookup `{}`)", def.name))),
        }
    };
    let key = column(key_column)?;
    let mut cols: Vec<usize> = def.fields.iter().map(|f| column(f)).collect::<Result<_>>()?;
    let mut names = def.fields.clone();
    // The time field is read like a field (as f64, exact for ms timestamps), after them.
    if let Some(t) = &def.time_field {
        cols.push(column(t)?);
        names.push(t.clone());
    }
    for (&c, f) in cols.iter().zip(&names) {
        if !schema.field(c).data_type().is_numeric() {
            return Err(input(format!(
                "`{f}` is {}, not a number (lookup `{}`)",
                schema.field(c).data_type(),
                def.name
            )));
        }
    }
    let key_type = schema.field(key).data_type().clone();
    if !(key_type.is_integer() || matches!(key_type, DataType::Utf8 | DataType::LargeUtf8)) {
        return Err(input(format!(
            "key column `{key_column}` is {key_type}, not integers or text"
        )));
    }
    let reader = builder.build().map_err(|e| input(e.to_string()))?;
    let mut table = Table::default();
    let mut row = 0usize;
    for batch in reader {
        let batch: RecordBatch = batch.map_err(|e| input(e.to_string()))?;
        let keys = keys(batch.column(key), key_column, row, at)?;
        let fields: Vec<Vec<f64>> = (cols.iter().zip(&names))
            .map(|(&c, f)| floats(batch.column(c), f, at))
            .collect::<Result<_>>()?;
        let width = def.fields.len();
        for (i, k) in keys.into_iter().enumerate() {
            let values: Box<[f32]> = fields[..width].iter().map(|f| f[i] as f32).collect();
            let time = match fields.get(width).map(|f| f[i]) {
                Some(t) if !t.is_nan() => {
                    Some(super::row_time(t, def.time_scale).map_err(|message| Error::Input {
                        at: format!("{at}: row {}", row + i + 1),
                        message,
                    })?)
                }
                _ => None,
            };
            if !table.insert(k.0, values, time) {
                return Err(Error::Input {
                    at: format!("{at}: row {}", row + i + 1),
                    message: format!("key `{}` appears twice", k.1),
                });
            }
        }
        row += batch.num_rows();
    }
    Ok(table)
}

/// Each row's key and its text (for messages).
fn keys(a: &ArrayRef, name: &str, first: usize, at: &str) -> Result<Vec<(u64, String)>> {
    let text: Vec<Option<String>> = match a.data_type() {
        DataType::Utf8 => a.as_string::<i32>().iter().map(|s| s.map(str::to_string)).collect(),
        DataType::LargeUtf8 => a.as_string::<i64>().iter().map(|s| s.map(str::to_string)).collect(),
        _ => integers(a),
    };
    text.into_iter()
        .enumerate()
        .map(|(i, s)| match s {
            Some(s) if !s.trim().is_empty() => Ok((Spec::key_of(&s), s)),
            _ => Err(Error::Input {
                at: format!("{at}: row {}", first + i + 1),
                message: format!("no key in `{name}`"),
            }),
        })
        .collect()
}

/// An integer column's values as decimal text (what a CSV would hold).
fn integers(a: &ArrayRef) -> Vec<Option<String>> {
    macro_rules! each {
        ($($t:ty => $d:ident),*) => {
            match a.data_type() {
                $(DataType::$d => a.as_primitive::<$t>().iter().map(|v| v.map(|v| v.to_string())).collect(),)*
                _ => vec![None; a.len()],
            }
        };
    }
    each!(types::Int8Type => Int8, types::Int16Type => Int16, types::Int32Type => Int32,
        types::Int64Type => Int64, types::UInt8Type => UInt8, types::UInt16Type => UInt16,
        types::UInt32Type => UInt32, types::UInt64Type => UInt64)
}

/// A numeric column as f64 (nulls NaN); fields are then rounded to the nearest f32.
fn floats(a: &ArrayRef, name: &str, at: &str) -> Result<Vec<f64>> {
    macro_rules! each {
        ($($t:ty => $d:ident),*) => {
            match a.data_type() {
                $(DataType::$d => a.as_primitive::<$t>().iter().map(|v| v.map_or(f64::NAN, |v| v as f64)).collect(),)*
                other => {
                    return Err(Error::Input {
                        at: at.to_string(),
                        message: format!("`{name}` is {other}: integers and floats are read"),
                    })
                }
            }
        };
    }
    Ok(each!(types::Float32Type => Float32, types::Float64Type => Float64,
        types::Int8Type => Int8, types::Int16Type => Int16, types::Int32Type => Int32,
        types::Int64Type => Int64, types::UInt8Type => UInt8, types::UInt16Type => UInt16,
        types::UInt32Type => UInt32, types::UInt64Type => UInt64))
}
