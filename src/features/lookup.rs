//! Enrichment: features read from a lookup table by the event's key or by one of its fields,
//! from a static table (a CSV or, with the `parquet` feature, a Parquet file, loaded when the
//! spec is and reloadable while running) or from Redis
//! as an online store (feature `redis`): one hash per key, read with pipelined `HMGET`s per
//! batch through a local cache with a TTL, with a bounded wait and a policy for a missing key
//! and for a failed lookup.
//!
//! A spec declares the table and the features that read it:
//!
//! ```toml
//! [[lookup]]
//! name = "merchant"
//! csv = "merchants.csv"        # or parquet = "merchants.parquet",
//!                              # or redis = "redis://127.0.0.1:6379", prefix = "merchant:"
//! key_column = "merchant_id"   # csv, parquet: the key's column (default: the spec's key)
//! by = "merchant"              # the event field holding the key (default: the event's key)
//! fields = ["risk", "avg_ticket"]
//! on_missing = "default"       # a key the table lacks: missing (NaN), default, or error
//! on_error = "missing"         # redis: a failed or timed-out lookup, the same choices
//! default = 0.0
//! time_field = "updated_at"    # optional: each row's timestamp (events' time unit), read by
//!                              # `op = "lookup_age"` and by a lookup feature's `max_age`
//!
//! [[feature]]
//! name = "merchant_risk"
//! op = "lookup"
//! table = "merchant"
//! field = "risk"
//! ```

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde::Deserialize;

#[cfg(feature = "parquet")]
mod parquet;

use super::spec::{Spec, parse_duration};
use crate::error::{Error, Result};

/// What a lookup that finds nothing, or fails, gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LookupPolicy {
    /// The table's features are missing (NaN); the event is scored.
    #[default]
    Missing,
    /// The table's features take the lookup's `default`.
    Default,
    /// The event is answered with [`Error::Lookup`].
    Error,
}

/// A `[[lookup]]` as the spec file writes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LookupFile {
    name: String,
    csv: Option<String>,
    parquet: Option<String>,
    redis: Option<String>,
    prefix: Option<String>,
    key_column: Option<String>,
    by: Option<String>,
    fields: Vec<String>,
    time_field: Option<String>,
    #[serde(default)]
    on_missing: LookupPolicy,
    #[serde(default)]
    on_error: LookupPolicy,
    default: Option<f64>,
    cache_ttl: Option<String>,
    timeout: Option<String>,
    retry_after: Option<String>,
    max_cached: Option<usize>,
}

impl LookupFile {
    pub(crate) fn name(&self) -> &str {
        &self.name
    }
}

/// Where a lookup's key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum By {
    /// The event's key.
    Key,
    /// A numeric raw field (its integral value; anything else is a missing key).
    Numeric(usize),
    /// A categorical raw field with a vocabulary: the value, keyed as [`Spec::key_of`] keys it.
    Category(usize, Vec<u64>),
}

/// Where a lookup reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A static table, loaded from this CSV when the spec is.
    Csv(String),
    /// A static table, loaded from this Parquet file when the spec is (feature `parquet`).
    Parquet(String),
    /// Redis: hashes at `prefix + key` (the key in decimal), at this URL.
    Redis {
        /// `redis://host:port[/db]`.
        url: String,
        /// Prefix of every hash's name.
        prefix: String,
    },
}

/// A lookup table's definition.
#[derive(Debug, Clone, PartialEq)]
pub struct LookupDef {
    /// Its name (features name it in `table`).
    pub name: String,
    /// Where it reads.
    pub source: Source,
    /// The key's source.
    pub by: By,
    /// The fields features may read, in order.
    pub fields: Vec<String>,
    /// The column (CSV, Parquet) or hash field (Redis) holding each row's timestamp, in the
    /// events' time unit: what `lookup_age` and a lookup feature's `max_age` read.
    pub time_field: Option<String>,
    /// Milliseconds per unit of the time field (the spec's `time_unit`).
    pub time_scale: f64,
    /// A key the table does not hold.
    pub on_missing: LookupPolicy,
    /// A failed or timed-out read (Redis).
    pub on_error: LookupPolicy,
    /// The value of `default`.
    pub default: f32,
    /// How long a value read from Redis is served from the local cache.
    pub cache_ttl_ms: i64,
    /// The longest a batch waits on Redis (connect, send, receive).
    pub timeout_ms: i64,
    /// After a failure, Redis is not asked again for this long (the policy applies).
    pub retry_after_ms: i64,
    /// Cached keys at most (the cache is emptied when it would grow past).
    pub max_cached: usize,
}

/// A static table's rows: per key, its fields' values and its timestamp (ms; with a
/// `time_field`, where the row holds one).
#[derive(Debug, Default)]
pub struct Table {
    rows: HashMap<u64, (Box<[f32]>, Option<i64>)>,
}

impl Table {
    /// Keys held.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether it holds no key.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// A key's values, in the lookup's field order.
    pub fn get(&self, key: u64) -> Option<&[f32]> {
        self.rows.get(&key).map(|r| &r.0[..])
    }

    /// A key's row timestamp in ms (none without a `time_field`, or where the row holds none).
    pub fn time(&self, key: u64) -> Option<i64> {
        self.rows.get(&key).and_then(|r| r.1)
    }

    /// Adds a row; false when the key is already held.
    #[cfg_attr(not(any(feature = "csv", feature = "parquet")), allow(dead_code))]
    pub(crate) fn insert(&mut self, key: u64, values: Box<[f32]>, time: Option<i64>) -> bool {
        use std::collections::hash_map::Entry;
        match self.rows.entry(key) {
            Entry::Occupied(_) => false,
            Entry::Vacant(v) => {
                v.insert((values, time));
                true
            }
        }
    }
}

/// A row timestamp as written (`value` in the events' time unit, `scale` ms per unit) in ms,
/// or why not.
#[cfg_attr(not(any(feature = "csv", feature = "parquet", feature = "redis")), allow(dead_code))]
pub(crate) fn row_time(value: f64, scale: f64) -> std::result::Result<i64, String> {
    let ms = value * scale;
    if ms.is_finite() && ms.abs() < 1e15 {
        Ok(ms.round() as i64)
    } else {
        Err(format!("timestamp `{value}` is out of range (at most 1e15 ms from 1970)"))
    }
}

/// A static table shared by every stage built from the spec: [`reload`](Self::reload)
/// replaces it while events flow (the next batch reads the new one; a file that fails to load
/// leaves the old in place).
#[derive(Debug, Clone)]
pub struct TableHandle {
    def: Arc<LookupDef>,
    key_column: String,
    table: Arc<RwLock<Arc<Table>>>,
}

impl TableHandle {
    /// The table now.
    pub fn current(&self) -> Arc<Table> {
        self.table.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Loads `path` (the same columns, in the format the spec declared: CSV or Parquet) and
    /// makes it the table; returns its keys. A file that fails to load changes nothing.
    pub fn reload(&self, path: impl AsRef<std::path::Path>) -> Result<usize> {
        let table = load(&self.def, &self.key_column, path.as_ref())?;
        let n = table.len();
        *self.table.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(table);
        Ok(n)
    }
}

/// A lookup of a compiled spec: its definition and, for a static table, the table.
#[derive(Clone)]
pub struct Lookup {
    /// The definition.
    pub def: Arc<LookupDef>,
    /// The static table (none for Redis).
    pub table: Option<TableHandle>,
}

impl std::fmt::Debug for Lookup {
    // The definition only: the spec's identity must not depend on a table's contents.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.def.fmt(f)
    }
}

impl PartialEq for Lookup {
    fn eq(&self, other: &Self) -> bool {
        self.def == other.def
    }
}

fn bad(message: String) -> Error {
    Error::Config(format!("feature spec: {message}"))
}

/// Compiles a `[[lookup]]` against the spec's fields; loads a static table (`base` is the
/// directory relative paths are read from).
pub(crate) fn compile(
    file: LookupFile,
    spec: &Spec,
    index: &HashMap<&str, usize>,
    base: Option<&std::path::Path>,
) -> Result<Lookup> {
    let name = file.name.clone();
    let by = match &file.by {
        None => By::Key,
        Some(f) => {
            let i = *index
                .get(f.as_str())
                .ok_or_else(|| bad(format!("lookup `{name}`: unknown field `{f}` in `by`")))?;
            let n_numeric = spec.fields.len() - spec.categorical.len();
            if i < n_numeric {
                By::Numeric(i)
            } else {
                let cat = &spec.categorical[i - n_numeric];
                if cat.values.is_empty() {
                    return Err(bad(format!(
                        "lookup `{name}`: `by` needs a numeric field or a categorical with values (`{f}` is hashed)"
                    )));
                }
                By::Category(i, cat.values.iter().map(|v| Spec::key_of(v)).collect())
            }
        }
    };
    if file.fields.is_empty() {
        return Err(bad(format!("lookup `{name}` lists no fields")));
    }
    let ms = |s: &Option<String>, default: i64| -> Result<i64> {
        s.as_deref().map(parse_duration).transpose().map(|v| v.unwrap_or(default))
    };
    let source = match (&file.csv, &file.parquet, &file.redis) {
        (Some(path), None, None) => Source::Csv(path.clone()),
        (None, Some(path), None) => Source::Parquet(path.clone()),
        (None, None, Some(url)) => Source::Redis {
            url: url.clone(),
            prefix: file.prefix.clone().unwrap_or_else(|| format!("{name}:")),
        },
        _ => {
            return Err(bad(format!(
                "lookup `{name}`: give exactly one of `csv`, `parquet`, `redis`"
            )));
        }
    };
    if file.prefix.is_some() && file.redis.is_none() {
        return Err(bad(format!("lookup `{name}`: `prefix` is for redis")));
    }
    let def = Arc::new(LookupDef {
        name: name.clone(),
        source,
        by,
        fields: file.fields,
        time_field: file.time_field.clone(),
        time_scale: spec.time_scale,
        on_missing: file.on_missing,
        on_error: file.on_error,
        default: file.default.unwrap_or(0.0) as f32,
        cache_ttl_ms: ms(&file.cache_ttl, 60_000)?,
        timeout_ms: ms(&file.timeout, 50)?.max(1),
        retry_after_ms: ms(&file.retry_after, 1_000)?,
        max_cached: file.max_cached.unwrap_or(1_000_000).max(1),
    });
    let table = match &def.source {
        Source::Csv(path) | Source::Parquet(path) => {
            let key_column = file.key_column.clone().unwrap_or_else(|| spec.key.clone());
            let path = match base {
                Some(dir) if std::path::Path::new(path).is_relative() => dir.join(path),
                _ => std::path::PathBuf::from(path),
            };
            let table = load(&def, &key_column, &path)?;
            Some(TableHandle {
                def: def.clone(),
                key_column,
                table: Arc::new(RwLock::new(Arc::new(table))),
            })
        }
        Source::Redis { .. } => {
            if file.key_column.is_some() {
                return Err(bad(format!("lookup `{name}`: `key_column` is for csv and parquet")));
            }
            if !cfg!(feature = "redis") {
                return Err(bad(format!(
                    "lookup `{name}`: Redis lookups need the `redis` feature of streamscore"
                )));
            }
            None
        }
    };
    Ok(Lookup { def, table })
}

/// The error for a table whose format this build leaves out.
#[cfg(not(all(feature = "csv", feature = "parquet")))]
fn needs(def: &LookupDef, what: &str, feature: &str) -> Error {
    Error::Config(format!(
        "lookup `{}`: {what} tables need the `{feature}` feature of streamscore",
        def.name
    ))
}

/// Reads a static table as its definition's source says (CSV or Parquet) from `path`.
fn load(def: &LookupDef, key_column: &str, path: &std::path::Path) -> Result<Table> {
    match def.source {
        #[cfg(feature = "csv")]
        Source::Csv(_) => load_csv(def, key_column, path),
        #[cfg(not(feature = "csv"))]
        Source::Csv(_) => {
            let _ = (key_column, path);
            Err(needs(def, "CSV", "csv"))
        }
        #[cfg(feature = "parquet")]
        Source::Parquet(_) => parquet::load(def, key_column, path),
        #[cfg(not(feature = "parquet"))]
        Source::Parquet(_) => {
            let _ = (key_column, path);
            Err(needs(def, "Parquet", "parquet"))
        }
        Source::Redis { .. } => Err(Error::Config(format!(
            "lookup `{}`: a Redis lookup has no table to load",
            def.name
        ))),
    }
}

/// Reads a static table: a CSV with the key column and every field (empty values missing).
#[cfg(feature = "csv")]
fn load_csv(def: &LookupDef, key_column: &str, path: &std::path::Path) -> Result<Table> {
    let at = path.display().to_string();
    let bytes = crate::files::read(path, &crate::files::INPUT)?;
    crate::io::csv::unterminated(crate::io::csv::quotes(&bytes), &at)?;
    let input = |at: String, message: String| Error::Input { at, message };
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(&bytes[..]);
    let header = reader.headers().map_err(|e| input(at.clone(), e.to_string()))?.clone();
    let index = crate::io::csv::header_index(header.iter().map(str::trim));
    let why = format!("lookup `{}`", def.name);
    let column = |name: &str| crate::io::csv::column(&index, name, &at, &why);
    let key = column(key_column)?;
    let cols: Vec<usize> = def.fields.iter().map(|f| column(f)).collect::<Result<_>>()?;
    let time = def.time_field.as_deref().map(column).transpose()?;
    let mut table = Table::default();
    for (i, record) in reader.records().enumerate() {
        let here = format!("{at}:{}", i + 2);
        let record = record.map_err(|e| input(at.clone(), e.to_string()))?;
        let get = |c: usize| record.get(c).unwrap_or("").trim();
        if get(key).is_empty() {
            return Err(input(here, format!("no key in `{key_column}`")));
        }
        let values = cols
            .iter()
            .zip(&def.fields)
            .map(|(&c, f)| {
                let v = get(c);
                if v.is_empty() {
                    Ok(f32::NAN)
                } else {
                    v.parse()
                        .map_err(|_| input(here.clone(), format!("`{f}` = `{v}` is not a number")))
                }
            })
            .collect::<Result<Box<[f32]>>>()?;
        let t = match time.map(get) {
            None | Some("") => None,
            Some(v) => Some(
                v.parse::<f64>()
                    .map_err(|_| format!("`{v}` is not a timestamp"))
                    .and_then(|v| row_time(v, def.time_scale))
                    .map_err(|m| input(here.clone(), m))?,
            ),
        };
        if !table.insert(Spec::key_of(get(key)), values, t) {
            return Err(input(here, format!("key `{}` appears twice", get(key))));
        }
    }
    Ok(table)
}

/// Counts of a stage's lookups.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LookupCounters {
    /// Keys found (in the table, the cache or Redis).
    pub found: u64,
    /// Keys the table or store does not hold.
    pub missing: u64,
    /// Answered from the local cache (Redis).
    pub cache_hits: u64,
    /// Keys read from Redis.
    pub fetched: u64,
    /// Lookups that failed (an error, a timeout, or while Redis is waited out after one).
    pub failed: u64,
    /// Round trips to Redis that failed or timed out.
    pub store_errors: u64,
    /// Round trips to Redis (one pipeline per batch), failed and timed-out ones included.
    pub round_trips: u64,
    /// The slowest round trip, in microseconds.
    pub max_round_trip_us: u64,
    /// All round trips' durations added up, in microseconds.
    pub round_trip_us_sum: u64,
    /// Round trips (and failed ones) by duration: bucket `i` counts those of `2^(i-1)` to
    /// `2^i` microseconds (bucket 0: under 1 µs; the last: over 2^22 µs).
    pub round_trip_us_log2: [u64; 24],
}

impl LookupCounters {
    /// An upper bound of the `q` quantile of the round trips' durations (µs): the top of the
    /// histogram bucket that holds it (within a factor of two), 0 before any round trip.
    pub fn round_trip_quantile_us(&self, q: f64) -> u64 {
        let total: u64 = self.round_trip_us_log2.iter().sum();
        if total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &n) in self.round_trip_us_log2.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return (1u64 << i).min(self.max_round_trip_us.max(1));
            }
        }
        self.max_round_trip_us
    }

    #[cfg(feature = "redis")]
    pub(crate) fn record_round_trip(&mut self, us: u64) {
        let bucket = (64 - us.leading_zeros() as usize).min(23);
        self.round_trip_us_log2[bucket] += 1;
        self.max_round_trip_us = self.max_round_trip_us.max(us);
        self.round_trip_us_sum = self.round_trip_us_sum.saturating_add(us);
    }
}

/// One row's lookup result.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Found {
    Row(usize),
    Missing,
    Failed,
}

/// A stage's state for one lookup: for Redis, the connection and the cache.
pub(crate) struct Reader {
    def: Arc<LookupDef>,
    table: Option<TableHandle>,
    #[cfg(feature = "redis")]
    redis: Option<redis_store::Store>,
    /// Per batch: the values found, `fields` per entry, each entry's row timestamp, and each
    /// row's result.
    values: Vec<f32>,
    times: Vec<Option<i64>>,
    found: Vec<Found>,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader").field("lookup", &self.def.name).finish_non_exhaustive()
    }
}

impl Reader {
    pub fn new(lookup: &Lookup) -> Reader {
        Reader {
            def: lookup.def.clone(),
            table: lookup.table.clone(),
            #[cfg(feature = "redis")]
            redis: match &lookup.def.source {
                Source::Redis { url, prefix } => {
                    Some(redis_store::Store::new(url, prefix, &lookup.def))
                }
                Source::Csv(_) | Source::Parquet(_) => None,
            },
            values: Vec::new(),
            times: Vec::new(),
            found: Vec::new(),
        }
    }

    /// After [`resolve`](Self::resolve): row `r`'s table row timestamp (ms) when the table held
    /// its key (`Some(None)`: a row without one), `None` when it did not or the read failed.
    pub fn row_time(&self, r: usize) -> Option<Option<i64>> {
        match self.found.get(r)? {
            Found::Row(i) => Some(self.times.get(*i).copied().flatten()),
            _ => None,
        }
    }

    /// The key of row `r`, or none when the field does not hold one.
    fn key(&self, raw: &crate::batch::Batch, keys: &[u64], r: usize) -> Option<u64> {
        match &self.def.by {
            By::Key => Some(keys[r]),
            By::Numeric(f) => {
                let v = raw.value(r, *f);
                (v >= 0.0 && v.fract() == 0.0 && v < 1.8e19).then_some(v as u64)
            }
            By::Category(f, codes) => {
                let v = raw.value(r, *f);
                (v >= 0.0 && v.fract() == 0.0).then(|| codes.get(v as usize).copied()).flatten()
            }
        }
    }

    /// Looks up every row of a batch; `column(field, r, value)` receives the values, and rows
    /// whose policy refuses them come back as errors.
    pub fn resolve(
        &mut self,
        raw: &crate::batch::Batch,
        keys: &[u64],
        counters: &mut LookupCounters,
        mut column: impl FnMut(usize, usize, f32),
        errors: &mut Vec<(usize, Error)>,
    ) {
        let n = raw.n_rows();
        let width = self.def.fields.len();
        let row_keys: Vec<Option<u64>> = (0..n).map(|r| self.key(raw, keys, r)).collect();
        self.values.clear();
        self.times.clear();
        self.found.clear();
        if let Some(handle) = &self.table {
            let table = handle.current();
            for k in &row_keys {
                self.found.push(match k.and_then(|k| table.rows.get(&k)) {
                    Some((v, t)) => {
                        self.values.extend_from_slice(v);
                        self.times.push(*t);
                        Found::Row(self.times.len() - 1)
                    }
                    None => Found::Missing,
                });
            }
        } else {
            #[cfg(feature = "redis")]
            if let Some(store) = &mut self.redis {
                store.resolve(
                    &row_keys,
                    &mut self.values,
                    &mut self.times,
                    &mut self.found,
                    counters,
                );
            }
        }
        for (r, key) in row_keys.iter().enumerate() {
            let policy = match self.found.get(r).copied().unwrap_or(Found::Failed) {
                Found::Row(i) => {
                    counters.found += 1;
                    for f in 0..width {
                        column(f, r, self.values[i * width + f]);
                    }
                    continue;
                }
                Found::Missing => {
                    counters.missing += 1;
                    self.def.on_missing
                }
                Found::Failed => {
                    counters.failed += 1;
                    self.def.on_error
                }
            };
            match policy {
                LookupPolicy::Missing => (0..width).for_each(|f| column(f, r, f32::NAN)),
                LookupPolicy::Default => (0..width).for_each(|f| column(f, r, self.def.default)),
                LookupPolicy::Error => errors.push((
                    r,
                    Error::Lookup {
                        table: self.def.name.clone(),
                        message: match (self.found.get(r), key) {
                            (Some(Found::Missing), Some(k)) => format!("no row for key {k}"),
                            (Some(Found::Missing), None) => "the event holds no key for it".into(),
                            _ => "the store did not answer (failed or timed out)".into(),
                        },
                    },
                )),
            }
        }
    }
}

#[cfg(feature = "redis")]
mod redis_store;
