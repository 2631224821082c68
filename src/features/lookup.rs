//! Enrichment: features read from a lookup table by the event's key or by one of its fields,
//! from a static table (a CSV loaded when the spec is, reloadable while running) or from Redis
//! as an online store (feature `redis`): one hash per key, read with pipelined `HMGET`s per
//! batch through a local cache with a TTL, with a bounded wait and a policy for a missing key
//! and for a failed lookup.
//!
//! A spec declares the table and the features that read it:
//!
//! ```toml
//! [[lookup]]
//! name = "merchant"
//! csv = "merchants.csv"        # or redis = "redis://127.0.0.1:6379", prefix = "merchant:"
//! key_column = "merchant_id"   # csv: the column holding the key (default: the spec's key)
//! by = "merchant"              # the event field holding the key (default: the event's key)
//! fields = ["risk", "avg_ticket"]
//! on_missing = "default"       # a key the table lacks: missing (NaN), default, or error
//! on_error = "missing"         # redis: a failed or timed-out lookup, the same choices
//! default = 0.0
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
    redis: Option<String>,
    prefix: Option<String>,
    key_column: Option<String>,
    by: Option<String>,
    fields: Vec<String>,
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

/// A static table's rows: per key, its fields' values.
#[derive(Debug, Default)]
pub struct Table {
    rows: HashMap<u64, Box<[f32]>>,
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
        self.rows.get(&key).map(|r| &r[..])
    }
}

/// A static table shared by every stage built from the spec: [`reload_csv`](Self::reload_csv)
/// replaces it while events flow (the next batch reads the new one; a file that fails to load
/// leaves the old in place).
#[derive(Debug, Clone)]
pub struct TableHandle {
    #[cfg_attr(not(feature = "csv"), allow(dead_code))]
    def: Arc<LookupDef>,
    #[cfg_attr(not(feature = "csv"), allow(dead_code))]
    key_column: String,
    table: Arc<RwLock<Arc<Table>>>,
}

impl TableHandle {
    /// The table now.
    pub fn current(&self) -> Arc<Table> {
        self.table.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Loads `path` (the same columns) and makes it the table; returns its keys.
    #[cfg(feature = "csv")]
    pub fn reload_csv(&self, path: impl AsRef<std::path::Path>) -> Result<usize> {
        let table = load_csv(&self.def, &self.key_column, path.as_ref())?;
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
    let source = match (&file.csv, &file.redis) {
        (Some(path), None) => Source::Csv(path.clone()),
        (None, Some(url)) => Source::Redis {
            url: url.clone(),
            prefix: file.prefix.clone().unwrap_or_else(|| format!("{name}:")),
        },
        _ => return Err(bad(format!("lookup `{name}`: give exactly one of `csv`, `redis`"))),
    };
    if file.prefix.is_some() && file.redis.is_none() {
        return Err(bad(format!("lookup `{name}`: `prefix` is for redis")));
    }
    let def = Arc::new(LookupDef {
        name: name.clone(),
        source,
        by,
        fields: file.fields,
        on_missing: file.on_missing,
        on_error: file.on_error,
        default: file.default.unwrap_or(0.0) as f32,
        cache_ttl_ms: ms(&file.cache_ttl, 60_000)?,
        timeout_ms: ms(&file.timeout, 50)?.max(1),
        retry_after_ms: ms(&file.retry_after, 1_000)?,
        max_cached: file.max_cached.unwrap_or(1_000_000).max(1),
    });
    let table = match &def.source {
        Source::Csv(path) => {
            let key_column = file.key_column.clone().unwrap_or_else(|| spec.key.clone());
            let path = match base {
                Some(dir) if std::path::Path::new(path).is_relative() => dir.join(path),
                _ => std::path::PathBuf::from(path),
            };
            #[cfg(not(feature = "csv"))]
            {
                let _ = (path, key_column);
                return Err(bad(format!("lookup `{name}`: CSV tables need the `csv` feature")));
            }
            #[cfg(feature = "csv")]
            let table = load_csv(&def, &key_column, &path)?;
            #[cfg(feature = "csv")]
            Some(TableHandle {
                def: def.clone(),
                key_column,
                table: Arc::new(RwLock::new(Arc::new(table))),
            })
        }
        Source::Redis { .. } => {
            if file.key_column.is_some() {
                return Err(bad(format!("lookup `{name}`: `key_column` is for csv")));
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
    let column = |name: &str| match index.get(name) {
        Some(&(c, false)) => Ok(c),
        Some(_) => Err(input(at.clone(), format!("the header names `{name}` twice"))),
        None => Err(input(at.clone(), format!("no column `{name}` (lookup `{}`)", def.name))),
    };
    let key = column(key_column)?;
    let cols: Vec<usize> = def.fields.iter().map(|f| column(f)).collect::<Result<_>>()?;
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
        if table.rows.insert(Spec::key_of(get(key)), values).is_some() {
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
    /// Per batch: the values found, `fields` per entry, and each row's result.
    values: Vec<f32>,
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
                Source::Csv(_) => None,
            },
            values: Vec::new(),
            found: Vec::new(),
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
        self.found.clear();
        if let Some(handle) = &self.table {
            let table = handle.current();
            for k in &row_keys {
                self.found.push(match k.and_then(|k| table.get(k)) {
                    Some(v) => {
                        self.values.extend_from_slice(v);
                        Found::Row(self.values.len() / width - 1)
                    }
                    None => Found::Missing,
                });
            }
        } else {
            #[cfg(feature = "redis")]
            if let Some(store) = &mut self.redis {
                store.resolve(&row_keys, &mut self.values, &mut self.found, counters);
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
mod redis_store {
    //! Redis: pipelined `HMGET`s of the keys a batch misses in the cache, within a timeout;
    //! after a failure, the store is left alone for `retry_after` (its lookups fail at once).

    use std::collections::HashMap;
    use std::time::{Duration, Instant};

    use super::{Found, LookupCounters, LookupDef};

    /// When a key was read, and its values (none when the store holds no such hash).
    type Cached = (Instant, Option<Box<[f32]>>);

    pub(crate) struct Store {
        client: Option<redis::Client>,
        conn: Option<redis::Connection>,
        prefix: String,
        fields: Vec<String>,
        timeout: Duration,
        retry_after: Duration,
        ttl: Duration,
        max_cached: usize,
        /// Key to (read at, values; none when the store holds no such hash).
        cache: HashMap<u64, Cached>,
        down_until: Option<Instant>,
    }

    impl Store {
        pub fn new(url: &str, prefix: &str, def: &LookupDef) -> Store {
            let ms = |v: i64| Duration::from_millis(v.max(0) as u64);
            Store {
                // A URL that does not parse fails every lookup (the policy applies), stated
                // in the log once.
                client: redis::Client::open(url)
                    .map_err(|e| log::error!("lookup `{}`: redis URL `{url}`: {e}", def.name))
                    .ok(),
                conn: None,
                prefix: prefix.to_string(),
                fields: def.fields.clone(),
                timeout: ms(def.timeout_ms),
                retry_after: ms(def.retry_after_ms),
                ttl: ms(def.cache_ttl_ms),
                max_cached: def.max_cached,
                cache: HashMap::new(),
                down_until: None,
            }
        }

        pub fn resolve(
            &mut self,
            keys: &[Option<u64>],
            values: &mut Vec<f32>,
            found: &mut Vec<Found>,
            counters: &mut LookupCounters,
        ) {
            let now = Instant::now();
            let ttl = self.ttl;
            let fresh = |at: &Instant| now.duration_since(*at) < ttl;
            let mut wanted: Vec<u64> = keys
                .iter()
                .flatten()
                .copied()
                .filter(|k| !self.cache.get(k).is_some_and(|(at, _)| fresh(at)))
                .collect();
            wanted.sort_unstable();
            wanted.dedup();
            let mut failed = false;
            if !wanted.is_empty() {
                if self.down_until.is_some_and(|t| now < t) {
                    failed = true;
                } else {
                    match self.fetch(&wanted, counters) {
                        Ok(rows) => {
                            if self.cache.len() + rows.len() > self.max_cached {
                                self.cache.clear();
                            }
                            let at = Instant::now();
                            counters.fetched += rows.len() as u64;
                            for (k, v) in wanted.iter().zip(rows) {
                                self.cache.insert(*k, (at, v));
                            }
                            self.down_until = None;
                        }
                        Err(e) => {
                            counters.store_errors += 1;
                            log::warn!(
                                "redis lookup failed ({e}); retrying in {:?}",
                                self.retry_after
                            );
                            self.conn = None;
                            self.down_until = Some(Instant::now() + self.retry_after);
                            failed = true;
                        }
                    }
                }
            }
            let width = self.fields.len();
            for k in keys {
                let Some(k) = k else {
                    found.push(Found::Missing);
                    continue;
                };
                match self.cache.get(k) {
                    // A failed batch still answers what the cache holds fresh; stale
                    // entries are not served.
                    Some((at, v)) if fresh(at) || !failed => {
                        if failed || wanted.binary_search(k).is_err() {
                            counters.cache_hits += 1;
                        }
                        match v {
                            Some(v) => {
                                values.extend_from_slice(v);
                                found.push(Found::Row(values.len() / width - 1));
                            }
                            None => found.push(Found::Missing),
                        }
                    }
                    _ => found.push(Found::Failed),
                }
            }
        }

        /// One pipeline of `HMGET`s, within the timeout.
        fn fetch(
            &mut self,
            keys: &[u64],
            counters: &mut LookupCounters,
        ) -> redis::RedisResult<Vec<Option<Box<[f32]>>>> {
            let start = Instant::now();
            if self.conn.is_none() {
                let client = self.client.as_ref().ok_or_else(|| {
                    redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, "bad URL"))
                })?;
                let conn = client.get_connection_with_timeout(self.timeout)?;
                conn.set_read_timeout(Some(self.timeout))?;
                conn.set_write_timeout(Some(self.timeout))?;
                self.conn = Some(conn);
            }
            let conn = self.conn.as_mut().expect("connected above");
            let mut pipe = redis::pipe();
            for k in keys {
                pipe.cmd("HMGET").arg(format!("{}{k}", self.prefix)).arg(&self.fields);
            }
            let answer: redis::RedisResult<Vec<Vec<Option<String>>>> = pipe.query(conn);
            counters.round_trips += 1;
            counters.record_round_trip(start.elapsed().as_micros() as u64);
            let rows = answer?;
            Ok(rows
                .into_iter()
                .map(|row| {
                    if row.iter().all(Option::is_none) {
                        return None;
                    }
                    Some(
                        row.iter()
                            .map(|v| {
                                v.as_deref().and_then(|s| s.trim().parse().ok()).unwrap_or(f32::NAN)
                            })
                            .collect(),
                    )
                })
                .collect())
        }
    }
}
