//! Redis Streams (`[redis_streams]`): a consumer group read with `XREADGROUP`, answers
//! appended to an output stream with `XADD`, messages committed with `XACK`, and, for
//! stateless scoring, a dead consumer's pending entries taken over with `XAUTOCLAIM`.

use std::time::{Duration, Instant};

use serde::Deserialize;

use super::{Answer, Message, Positions, Sink, Source};
use crate::error::{Error, Result};

/// `[redis_streams]`: events from Redis Streams through a consumer group, answers to a stream.
///
/// Each input entry holds the event in its field `event`, as one JSON object in the format of
/// a line-delimited JSON input line ([`JsonlConfig`](crate::serve::JsonlConfig)):
///
/// ```text
/// XADD events * event '{"id":"tx-1","key":42,"timestamp_ms":1700000000000,"fields":{"amount":12.5,"mcc":3}}'
/// ```
///
/// Each answer is an entry of `output` with the fields `source` (`<stream>/<entry id>` of the
/// input), `key` (the event's key) and `answer` (`{"source":...,"id":...,"score":[...],
/// "model_version":...}`, or `"error"` and `"status"` in place of the score). An entry without
/// an `event` field, or whose event does not parse, is answered with its error.
///
/// **Instances.** Every instance names itself `consumer` (stable across its restarts: on a
/// restart it first reads the entries it had taken and not committed, its pending list). With
/// a feature stage, every key's events must reach one instance: put each key's events on one
/// of several streams (partitions, e.g. `events.<key % n>`) and give each instance its own
/// `streams`; its `[checkpoint]` directory holds the state of those streams. Without a feature
/// stage, instances may share streams, and `claim_idle_ms` lets each take over the pending
/// entries of a consumer that has been silent that long (`XAUTOCLAIM`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisStreamsConfig {
    /// The server, e.g. `redis://127.0.0.1:6379`.
    pub url: String,
    /// The streams this instance reads (created empty when missing).
    pub streams: Vec<String>,
    /// The consumer group (default `streamscore`; created at the streams' start when missing).
    #[serde(default = "default_group")]
    pub group: String,
    /// This instance's name in the group.
    pub consumer: String,
    /// The stream answers are appended to.
    pub output: String,
    /// Trim the output stream to about this many entries (`XADD ... MAXLEN ~ n`).
    #[serde(default)]
    pub output_maxlen: Option<u64>,
    /// Entries read at once (default: the runtime's `max_batch`).
    #[serde(default)]
    pub batch: Option<usize>,
    /// Without a feature stage: take over entries other consumers have held this long.
    #[serde(default)]
    pub claim_idle_ms: Option<u64>,
    /// The longest wait for a connection, a write or a reply, ms (default 5,000).
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
}

fn default_group() -> String {
    "streamscore".into()
}

fn default_timeout() -> u64 {
    5_000
}

impl RedisStreamsConfig {
    /// Checks the settings; `keyed` says the model runs a feature stage.
    pub fn validate(&self, keyed: bool) -> Result<()> {
        let bad = |m: &str| Err(Error::Config(format!("redis_streams: {m}")));
        if self.streams.is_empty() {
            return bad("`streams` names no stream");
        }
        if self
            .streams
            .iter()
            .chain([&self.output, &self.group, &self.consumer])
            .any(|s| s.is_empty())
        {
            return bad("stream, group and consumer names must not be empty");
        }
        if self.streams.contains(&self.output) {
            return bad("`output` is also an input stream");
        }
        if self.batch.is_some_and(|b| !(1..=crate::runtime::MAX_SET).contains(&b)) {
            return bad(&format!("batch: 1 to {}", crate::runtime::MAX_SET));
        }
        if !(1..=600_000).contains(&self.timeout_ms) {
            return bad("timeout_ms: 1 to 600000");
        }
        if keyed && self.claim_idle_ms.is_some() {
            return bad(
                "claim_idle_ms takes over another consumer's entries, whose keys' feature state \
                 lives there: it is for stateless scoring (partition the streams instead)",
            );
        }
        redis::Client::open(self.url.as_str()).map(|_| ()).or_else(|e| bad(&format!("url: {e}")))
    }
}

const NAME: &str = "redis_streams";

fn broker(e: impl std::fmt::Display) -> Error {
    Error::Broker { broker: NAME, message: e.to_string() }
}

/// A stream entry id, `<ms>-<seq>`, as numbers (to compare).
fn entry_id(s: &str) -> Option<(u64, u64)> {
    let (a, b) = s.split_once('-')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// One connection, made on first use and after [`reset`](Conn::reset).
struct Conn {
    client: redis::Client,
    conn: Option<redis::Connection>,
    timeout: Duration,
}

impl Conn {
    fn new(c: &RedisStreamsConfig) -> Result<Conn> {
        Ok(Conn {
            client: redis::Client::open(c.url.as_str()).map_err(broker)?,
            conn: None,
            timeout: Duration::from_millis(c.timeout_ms),
        })
    }

    /// The connection, made if needed; `fresh` says it was.
    fn get(&mut self) -> Result<(&mut redis::Connection, bool)> {
        let fresh = self.conn.is_none();
        if fresh {
            let conn = self.client.get_connection_with_timeout(self.timeout).map_err(broker)?;
            conn.set_read_timeout(Some(self.timeout)).map_err(broker)?;
            conn.set_write_timeout(Some(self.timeout)).map_err(broker)?;
            self.conn = Some(conn);
        }
        Ok((self.conn.as_mut().expect("connected above"), fresh))
    }
}

/// The input side.
pub(crate) struct StreamsSource {
    conn: Conn,
    config: RedisStreamsConfig,
    /// Per stream: while reading its pending list, the id after which to read on.
    pending: Vec<Option<String>>,
    /// Restored positions: entries at or before them are already in the feature state.
    covered: Positions,
    /// Per stream, the last entry taken (handed to the pump or skipped).
    taken: Positions,
    /// Per stream, XAUTOCLAIM's cursor and when it last ran.
    claim: Vec<(String, Option<Instant>)>,
    shared: std::sync::Arc<super::Shared>,
}

impl StreamsSource {
    pub(crate) fn new(
        config: &RedisStreamsConfig,
        covered: Positions,
        shared: std::sync::Arc<super::Shared>,
    ) -> Result<Self> {
        Ok(StreamsSource {
            conn: Conn::new(config)?,
            pending: vec![Some("0".into()); config.streams.len()],
            covered,
            taken: Positions::new(),
            claim: vec![("0-0".into(), None); config.streams.len()],
            config: config.clone(),
            shared,
        })
    }

    /// Creates the group on every stream (the streams too) where missing.
    fn create_groups(conn: &mut redis::Connection, c: &RedisStreamsConfig) -> Result<()> {
        for s in &c.streams {
            let made: redis::RedisResult<()> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(s)
                .arg(&c.group)
                .arg("0")
                .arg("MKSTREAM")
                .query(conn);
            match made {
                Ok(()) => log::info!("redis_streams: group {} created on {s}", c.group),
                Err(e) if e.code() == Some("BUSYGROUP") => {}
                Err(e) => return Err(broker(e)),
            }
        }
        Ok(())
    }

    /// Adds the entries of an `XREADGROUP`/`XAUTOCLAIM` reply for `stream` to `into`, skipping
    /// (and acknowledging) those the restored checkpoint holds; returns how many it read and
    /// the last id.
    fn take(
        &mut self,
        stream: &str,
        entries: &[redis::Value],
        into: &mut Vec<Message>,
    ) -> Result<(usize, Option<String>)> {
        let covered = self.covered.get(stream).and_then(|p| entry_id(p));
        let mut skipped = Vec::new();
        let mut last = None;
        for e in entries {
            let redis::Value::Array(parts) = e else { continue };
            let Some(id) = parts.first().and_then(text) else { continue };
            last = Some(id.clone());
            if covered.is_some_and(|c| entry_id(&id).is_some_and(|i| i <= c)) {
                skipped.push(id);
                continue;
            }
            let payload = match parts.get(1) {
                Some(redis::Value::Array(fields)) => fields
                    .chunks(2)
                    .find(|kv| kv.first().and_then(text).as_deref() == Some("event"))
                    .and_then(|kv| match kv.get(1) {
                        Some(redis::Value::BulkString(b)) => Some(b.clone()),
                        _ => None,
                    })
                    .ok_or_else(|| "the entry has no `event` field".to_string()),
                _ => Err("the entry was deleted before it was read".to_string()),
            };
            into.push(Message { partition: stream.to_string(), position: id, payload, key: None });
        }
        if let Some(id) = &last {
            self.taken.insert(stream.to_string(), id.clone());
        }
        if !skipped.is_empty() {
            self.shared.counters.skipped(skipped.len() as u64);
            let (conn, _) = self.conn.get()?;
            let _: i64 = redis::cmd("XACK")
                .arg(stream)
                .arg(&self.config.group)
                .arg(&skipped)
                .query(conn)
                .map_err(broker)?;
        }
        Ok((entries.len(), last))
    }
}

fn text(v: &redis::Value) -> Option<String> {
    match v {
        redis::Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        redis::Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

/// The `[stream, entries]` pairs of an `XREADGROUP` reply (RESP2 arrays or a RESP3 map).
fn streams_of(v: redis::Value) -> Vec<(String, Vec<redis::Value>)> {
    let pairs: Vec<(redis::Value, redis::Value)> = match v {
        redis::Value::Array(items) => items
            .into_iter()
            .filter_map(|i| match i {
                redis::Value::Array(mut kv) if kv.len() == 2 => {
                    let entries = kv.pop()?;
                    Some((kv.pop()?, entries))
                }
                _ => None,
            })
            .collect(),
        redis::Value::Map(m) => m,
        _ => Vec::new(),
    };
    pairs
        .into_iter()
        .filter_map(|(k, v)| match v {
            redis::Value::Array(entries) => Some((text(&k)?, entries)),
            _ => None,
        })
        .collect()
}

impl StreamsSource {
    /// One poll; [`Source::poll`] undoes what it moved when it fails.
    fn poll_once(&mut self, max: usize, wait: Duration, into: &mut Vec<Message>) -> Result<()> {
        let c = self.config.clone();
        let (conn, fresh) = self.conn.get()?;
        if fresh {
            Self::create_groups(conn, &c)?;
            // After a reconnect the pending lists are read on from the last entry taken:
            // entries a lost reply delivered to this consumer are not lost, and those already
            // taken (answered, not yet committed) are not taken twice.
            for (p, s) in self.pending.iter_mut().zip(&c.streams) {
                *p = Some(self.taken.get(s).cloned().unwrap_or_else(|| "0".into()));
            }
        }
        // First the entries this consumer took and has not committed (its pending list), to
        // its end, before anything new is read: a new entry read now would be in the pending
        // list too, and taken twice.
        for i in 0..c.streams.len() {
            while let Some(after) = self.pending[i].clone() {
                let (conn, _) = self.conn.get()?;
                let reply: redis::Value = redis::cmd("XREADGROUP")
                    .arg("GROUP")
                    .arg(&c.group)
                    .arg(&c.consumer)
                    .arg("COUNT")
                    .arg(max)
                    .arg("STREAMS")
                    .arg(&c.streams[i])
                    .arg(&after)
                    .query(conn)
                    .map_err(broker)?;
                let entries = streams_of(reply).into_iter().next().map(|s| s.1).unwrap_or_default();
                let (n, last) = self.take(&c.streams[i].clone(), &entries, into)?;
                self.pending[i] = if n == 0 { None } else { last };
                if !into.is_empty() {
                    return Ok(());
                }
            }
        }
        // Other consumers' entries, idle long enough (stateless scoring only).
        if let Some(idle) = c.claim_idle_ms {
            for i in 0..c.streams.len() {
                if self.claim[i]
                    .1
                    .is_some_and(|t| t.elapsed() < Duration::from_millis(idle.min(1_000)))
                {
                    continue;
                }
                let (conn, _) = self.conn.get()?;
                let reply: redis::Value = redis::cmd("XAUTOCLAIM")
                    .arg(&c.streams[i])
                    .arg(&c.group)
                    .arg(&c.consumer)
                    .arg(idle)
                    .arg(&self.claim[i].0)
                    .arg("COUNT")
                    .arg(max)
                    .query(conn)
                    .map_err(broker)?;
                let redis::Value::Array(parts) = reply else { continue };
                let cursor = parts.first().and_then(text).unwrap_or_else(|| "0-0".into());
                self.claim[i] = (cursor, Some(Instant::now()));
                if let Some(redis::Value::Array(entries)) = parts.get(1) {
                    let (n, _) = self.take(&c.streams[i].clone(), entries, into)?;
                    if n > 0 {
                        log::info!("redis_streams: took over {n} entries of {}", c.streams[i]);
                    }
                }
                if !into.is_empty() {
                    return Ok(());
                }
            }
        }
        // New entries.
        let (conn, _) = self.conn.get()?;
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&c.group)
            .arg(&c.consumer)
            .arg("COUNT")
            .arg(max)
            .arg("BLOCK")
            .arg(wait.as_millis().max(1) as u64)
            .arg("STREAMS")
            .arg(&c.streams);
        for _ in &c.streams {
            cmd.arg(">");
        }
        let reply: redis::Value = cmd.query(conn).map_err(broker)?;
        for (stream, entries) in streams_of(reply) {
            self.take(&stream, &entries, into)?;
        }
        Ok(())
    }
}

impl Source for StreamsSource {
    fn poll(&mut self, max: usize, wait: Duration, into: &mut Vec<Message>) -> Result<()> {
        // A failed poll hands nothing over: what it read is read again after the reconnect.
        let (taken, pending) = (self.taken.clone(), self.pending.clone());
        let polled = self.poll_once(max, wait, into);
        if polled.is_err() {
            into.clear();
            (self.taken, self.pending) = (taken, pending);
        }
        polled
    }

    fn commit(&mut self, done: &[(String, String)]) -> Result<()> {
        let (conn, _) = self.conn.get()?;
        let mut pipe = redis::pipe();
        for s in &self.config.streams {
            let ids: Vec<&str> =
                done.iter().filter(|(p, _)| p == s).map(|(_, id)| id.as_str()).collect();
            for ids in ids.chunks(1_000) {
                pipe.cmd("XACK").arg(s).arg(&self.config.group).arg(ids).ignore();
            }
        }
        pipe.query::<()>(conn).map_err(broker)
    }

    fn reset(&mut self) {
        self.conn.conn = None;
    }
}

/// The output side.
pub(crate) struct StreamsSink {
    conn: Conn,
    output: String,
    maxlen: Option<u64>,
}

impl StreamsSink {
    pub(crate) fn new(config: &RedisStreamsConfig) -> Result<Self> {
        Ok(StreamsSink {
            conn: Conn::new(config)?,
            output: config.output.clone(),
            maxlen: config.output_maxlen,
        })
    }
}

impl Sink for StreamsSink {
    fn publish(&mut self, answers: &[Answer<'_>]) -> Result<()> {
        let (conn, _) = self.conn.get()?;
        let mut pipe = redis::pipe();
        for a in answers {
            let cmd = pipe.cmd("XADD").arg(&self.output);
            if let Some(n) = self.maxlen {
                cmd.arg("MAXLEN").arg("~").arg(n);
            }
            cmd.arg("*")
                .arg("source")
                .arg(a.source)
                .arg("key")
                .arg(a.key)
                .arg("answer")
                .arg(a.json)
                .ignore();
        }
        pipe.query::<()>(conn).map_err(broker)
    }

    fn reset(&mut self) {
        self.conn.conn = None;
    }
}
