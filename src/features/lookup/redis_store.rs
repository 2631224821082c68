//! Redis: pipelined `HMGET`s of the keys a batch misses in the cache, within a timeout;
//! after a failure, the store is left alone for `retry_after` (its lookups fail at once).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::{Found, LookupCounters, LookupDef};

/// A hash's values and its timestamp (ms; with a `time_field`, where the hash holds one).
type Row = (Box<[f32]>, Option<i64>);

/// When a key was read, and its row (none when the store holds no such hash).
type Cached = (Instant, Option<Row>);

pub(crate) struct Store {
    client: Option<redis::Client>,
    conn: Option<redis::Connection>,
    prefix: String,
    fields: Vec<String>,
    /// The hash fields read: `fields`, then the time field if any.
    read: Vec<String>,
    time_scale: f64,
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
            read: def.fields.iter().chain(&def.time_field).cloned().collect(),
            time_scale: def.time_scale,
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
        times: &mut Vec<Option<i64>>,
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
                        log::warn!("redis lookup failed ({e}); retrying in {:?}", self.retry_after);
                        self.conn = None;
                        self.down_until = Some(Instant::now() + self.retry_after);
                        failed = true;
                    }
                }
            }
        }
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
                        Some((v, t)) => {
                            values.extend_from_slice(v);
                            times.push(*t);
                            found.push(Found::Row(times.len() - 1));
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
    ) -> redis::RedisResult<Vec<Option<Row>>> {
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
            pipe.cmd("HMGET").arg(format!("{}{k}", self.prefix)).arg(&self.read);
        }
        let answer: redis::RedisResult<Vec<Vec<Option<String>>>> = pipe.query(conn);
        counters.round_trips += 1;
        counters.record_round_trip(start.elapsed().as_micros() as u64);
        let rows = answer?;
        let width = self.fields.len();
        Ok(rows
            .into_iter()
            .map(|row| {
                if row.iter().all(Option::is_none) {
                    return None;
                }
                let values = (row.iter().take(width))
                    .map(|v| v.as_deref().and_then(|s| s.trim().parse().ok()).unwrap_or(f32::NAN))
                    .collect();
                // A timestamp that does not parse is none: the row cannot show it is fresh.
                let time = row.get(width).and_then(|v| {
                    let v: f64 = v.as_deref()?.trim().parse().ok()?;
                    super::row_time(v, self.time_scale).ok()
                });
                Some((values, time))
            })
            .collect())
    }
}
