//! A table of named columns, written as CSV or as Parquet: how `streamscore features` writes
//! feature files and point-in-time training sets, so either format holds the same values.
//!
//! Missing values are empty CSV fields and Parquet nulls (pandas reads both as NaN in a float
//! column). Text in CSV has its separators and quotes replaced by `;`, so every row keeps its
//! columns; Parquet keeps text as written.

use std::io::Write;

use crate::error::{Error, Result};

/// One column's values.
#[derive(Debug, Clone)]
pub enum Values {
    /// Unsigned integers (keys), `None` missing.
    UInt64(Vec<Option<u64>>),
    /// Integers (times), `None` missing.
    Int64(Vec<Option<i64>>),
    /// Floats, NaN missing (feature values).
    Float32(Vec<f32>),
    /// Numbers kept as written (labels): CSV writes the text, Parquet the parsed f64 (text that
    /// does not parse is an error when writing Parquet).
    Number(Vec<String>),
    /// Text, `None` (or empty) missing.
    Text(Vec<Option<String>>),
}

impl Values {
    fn len(&self) -> usize {
        match self {
            Values::UInt64(v) => v.len(),
            Values::Int64(v) => v.len(),
            Values::Float32(v) => v.len(),
            Values::Number(v) => v.len(),
            Values::Text(v) => v.len(),
        }
    }
}

/// Named columns of equal length.
#[derive(Debug, Clone, Default)]
pub struct Table {
    names: Vec<String>,
    columns: Vec<Values>,
}

/// A file format for [`Table::write`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A header line, then one line per row.
    Csv,
    /// Apache Parquet (snappy-compressed, row groups of 65,536 rows); needs the `parquet`
    /// feature.
    Parquet,
}

impl Format {
    /// The format `name` names (`csv`, `parquet`), or for `None` the one `path`'s extension
    /// says (`.parquet` or `.pq`: Parquet; anything else: CSV).
    pub fn choose(name: Option<&str>, path: &str) -> Result<Format> {
        match name.map(str::to_ascii_lowercase).as_deref() {
            Some("csv") => Ok(Format::Csv),
            Some("parquet") => Ok(Format::Parquet),
            Some(other) => {
                Err(Error::Config(format!("unknown output format `{other}` (csv or parquet)")))
            }
            None => {
                let ext = std::path::Path::new(path)
                    .extension()
                    .map(|e| e.to_string_lossy().to_ascii_lowercase());
                Ok(match ext.as_deref() {
                    Some("parquet" | "pq") => Format::Parquet,
                    _ => Format::Csv,
                })
            }
        }
    }
}

impl Table {
    /// An empty table.
    pub fn new() -> Table {
        Table::default()
    }

    /// Appends a column; every column must have as many values as the first.
    pub fn push(&mut self, name: impl Into<String>, values: Values) -> Result<()> {
        if let Some(first) = self.columns.first()
            && first.len() != values.len()
        {
            return Err(Error::Config(format!(
                "column `{}` has {} values, the table {} rows",
                name.into(),
                values.len(),
                first.len()
            )));
        }
        self.names.push(name.into());
        self.columns.push(values);
        Ok(())
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.columns.first().map_or(0, Values::len)
    }

    /// Column names, in order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Writes the table to `w` in `format`; `at` names the destination in errors.
    pub fn write<W: Write + Send>(&self, format: Format, w: W, at: &str) -> Result<()> {
        match format {
            Format::Csv => self.write_csv(w, at),
            Format::Parquet => self.write_parquet(w, at),
        }
    }

    /// Writes a header line, then one line per row; floats in the shortest form that reads
    /// back to the same f32.
    pub fn write_csv<W: Write>(&self, w: W, at: &str) -> Result<()> {
        let io = |e| Error::io(at, e);
        let mut w = std::io::BufWriter::with_capacity(1 << 16, w);
        let clean = |s: &str| s.replace([',', '"', '\n', '\r'], ";");
        let header: Vec<String> = self.names.iter().map(|n| clean(n)).collect();
        writeln!(w, "{}", header.join(",")).map_err(io)?;
        for r in 0..self.rows() {
            for (c, col) in self.columns.iter().enumerate() {
                if c > 0 {
                    w.write_all(b",").map_err(io)?;
                }
                match col {
                    Values::UInt64(v) => match v[r] {
                        Some(x) => write!(w, "{x}"),
                        None => Ok(()),
                    },
                    Values::Int64(v) => match v[r] {
                        Some(x) => write!(w, "{x}"),
                        None => Ok(()),
                    },
                    Values::Float32(v) if v[r].is_nan() => Ok(()),
                    Values::Float32(v) => write!(w, "{}", v[r]),
                    Values::Number(v) => w.write_all(clean(&v[r]).as_bytes()),
                    Values::Text(v) => match &v[r] {
                        Some(s) => w.write_all(clean(s).as_bytes()),
                        None => Ok(()),
                    },
                }
                .map_err(io)?;
            }
            w.write_all(b"\n").map_err(io)?;
        }
        w.flush().map_err(io)
    }

    /// Writes the table as Parquet: u64 keys as `UInt64`, times as `Int64`, features as
    /// `Float32`, labels as `Float64`, text as UTF-8; missing values as nulls.
    #[cfg(feature = "parquet")]
    pub fn write_parquet<W: Write + Send>(&self, w: W, at: &str) -> Result<()> {
        use std::sync::Arc;

        use arrow_array::{
            ArrayRef, Float32Array, Float64Array, Int64Array, RecordBatch, StringArray, UInt64Array,
        };
        use arrow_schema::{DataType, Field, Schema};
        use parquet::arrow::ArrowWriter;
        use parquet::basic::Compression;
        use parquet::file::properties::WriterProperties;

        const GROUP: usize = 65_536;
        let fail = |e: &dyn std::fmt::Display| Error::io(at, std::io::Error::other(e.to_string()));
        let fields: Vec<Field> = self
            .names
            .iter()
            .zip(&self.columns)
            .map(|(name, col)| match col {
                Values::UInt64(_) => Field::new(name, DataType::UInt64, true),
                Values::Int64(_) => Field::new(name, DataType::Int64, true),
                Values::Float32(_) => Field::new(name, DataType::Float32, true),
                Values::Number(_) => Field::new(name, DataType::Float64, true),
                Values::Text(_) => Field::new(name, DataType::Utf8, true),
            })
            .collect();
        let schema = Arc::new(Schema::new(fields));
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(GROUP))
            .build();
        let mut writer =
            ArrowWriter::try_new(w, schema.clone(), Some(props)).map_err(|e| fail(&e))?;
        let rows = self.rows();
        // One record batch per row group; an empty table still writes its schema.
        for start in (0..rows.max(1)).step_by(GROUP) {
            let end = (start + GROUP).min(rows);
            let range = start..end;
            let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.columns.len());
            for (name, col) in self.names.iter().zip(&self.columns) {
                arrays.push(match col {
                    Values::UInt64(v) => Arc::new(UInt64Array::from(v[range.clone()].to_vec())),
                    Values::Int64(v) => Arc::new(Int64Array::from(v[range.clone()].to_vec())),
                    Values::Float32(v) => Arc::new(Float32Array::from_iter(
                        v[range.clone()].iter().map(|&x| (!x.is_nan()).then_some(x)),
                    )),
                    Values::Number(v) => {
                        let mut out = Vec::with_capacity(range.len());
                        for (i, s) in v[range.clone()].iter().enumerate() {
                            let s = s.trim();
                            out.push(if s.is_empty() {
                                None
                            } else {
                                Some(s.parse::<f64>().map_err(|_| Error::Input {
                                    at: format!("{at}: column `{name}`, row {}", start + i + 1),
                                    message: format!("`{s}` is not a number"),
                                })?)
                            });
                        }
                        Arc::new(Float64Array::from(out))
                    }
                    Values::Text(v) => Arc::new(StringArray::from_iter(
                        v[range.clone()].iter().map(|s| s.as_deref().filter(|s| !s.is_empty())),
                    )),
                });
            }
            let batch = RecordBatch::try_new(schema.clone(), arrays).map_err(|e| fail(&e))?;
            writer.write(&batch).map_err(|e| fail(&e))?;
        }
        writer.close().map_err(|e| fail(&e))?;
        Ok(())
    }

    /// Without the `parquet` feature: an error naming it.
    #[cfg(not(feature = "parquet"))]
    pub fn write_parquet<W: Write + Send>(&self, _w: W, at: &str) -> Result<()> {
        Err(Error::Config(format!(
            "{at}: Parquet output needs streamscore built with the `parquet` feature"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_marks_missing_values_empty_and_keeps_columns() {
        let mut t = Table::new();
        t.push("key", Values::UInt64(vec![Some(7), Some(8)])).unwrap();
        t.push("t", Values::Int64(vec![Some(1), None])).unwrap();
        t.push("f", Values::Float32(vec![0.1, f32::NAN])).unwrap();
        t.push("err", Values::Text(vec![None, Some("a,b\n\"c\"".into())])).unwrap();
        let mut out = Vec::new();
        t.write_csv(&mut out, "x").unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "key,t,f,err\n7,1,0.1,\n8,,,a;b;;c;\n");
        assert!(t.push("short", Values::UInt64(vec![None])).is_err());
    }

    #[test]
    fn formats_come_from_the_name_or_the_extension() {
        assert_eq!(Format::choose(None, "a/train.parquet").unwrap(), Format::Parquet);
        assert_eq!(Format::choose(None, "train.csv").unwrap(), Format::Csv);
        assert_eq!(Format::choose(None, "-").unwrap(), Format::Csv);
        assert_eq!(Format::choose(Some("PARQUET"), "-").unwrap(), Format::Parquet);
        assert!(Format::choose(Some("xlsx"), "-").is_err());
    }
}
