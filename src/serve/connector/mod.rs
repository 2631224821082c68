//! Broker connectors: the seam every broker plugs into, and the loop that drives it.
//!
//! A [`Source`] yields batches of raw messages, each with its partition and an opaque
//! position, and can commit positions (tell the broker it may forget those messages); a
//! [`Sink`] publishes answers and returns once the broker has confirmed them. The [`Pump`]
//! between them parses each message as one event (the line-delimited JSON event format of
//! [`JsonlConfig`](super::JsonlConfig)), hands a poll's events to the runtime as one set
//! ([`Runtime::try_submit_many`]), publishes one answer per message (a score, or the
//! message's error: a malformed message is answered, never dropped), and commits.
//!
//! **What is committed when.** Positions are committed only after (a) the answers for every
//! message up to them are confirmed by the sink and (b) with a feature stage and
//! `[checkpoint]`, a feature-state checkpoint covers them. A checkpoint is written with the
//! positions it covers beside it (`positions-<n>.json`, written before `features-<n>.snap`;
//! for Kafka and NATS each partition's keys on their own, stamped with its position: see
//! `partitions`), so after a crash the restored state and the positions agree: the source skips (and
//! commits) the messages the checkpoint already holds, and the broker redelivers the rest,
//! which are scored again. A crash therefore replays, never skips: the answers to messages in
//! flight at the crash may be published twice, recognisable by their `source` (the input's
//! partition and position) and, for the same model version and the same order of each key's
//! events, identical. Without a feature stage nothing needs checkpointing and positions are
//! committed as soon as the answers are confirmed.
//!
//! **A broker that goes away.** A failed poll, publish or commit is logged and counted
//! (`streamscore_connector_broker_errors_total`), the connection is dropped and made again
//! with a backoff (100 ms doubling to 2 s); answers already computed are kept and published
//! once the broker is back, so nothing is lost while it is away.

#[cfg(feature = "kafka")]
pub(crate) mod kafka;
#[cfg(feature = "mqtt")]
pub(crate) mod mqtt;
#[cfg(feature = "nats")]
pub(crate) mod nats;
#[cfg_attr(not(feature = "kafka"), allow(dead_code))]
pub(crate) mod partitions;
#[cfg(feature = "redis")]
pub(crate) mod redis_streams;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use self::partitions::Partitions;
use super::Notice;
use super::checkpoint::{self, CheckpointConfig};
use super::jsonl::{self, At, Chunk, Out};
use crate::error::{Error, Result};
use crate::event::EventBatch;
use crate::ingest::reply::{Scores, Ticket};
use crate::runtime::{MAX_SET, Runtime};

/// One message taken from a broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Message {
    /// The partition (a stream, a topic's partition, a subject) it came from.
    pub partition: String,
    /// Its position within the partition, as the broker names it (opaque to the pump).
    pub position: String,
    /// The event, or why the message holds none.
    pub payload: std::result::Result<Vec<u8>, String>,
    /// The broker's own key for the message, where it has one (its answer gets the same).
    pub key: Option<Vec<u8>>,
}

/// Where messages come from.
pub(crate) trait Source: Send {
    /// Appends up to `max` messages to `into`, waiting at most `wait` for the first.
    fn poll(&mut self, max: usize, wait: Duration, into: &mut Vec<Message>) -> Result<()>;
    /// The broker may forget these messages: they are answered, confirmed and checkpointed.
    fn commit(&mut self, done: &[(String, String)]) -> Result<()>;
    /// Drops the connection after an error; the next call connects again.
    fn reset(&mut self);
}

/// One answer, for the message at `source` (its partition and position).
pub(crate) struct Answer<'a> {
    /// `<partition>/<position>` of the message answered.
    #[cfg_attr(not(any(feature = "redis", feature = "nats", feature = "kafka")), allow(dead_code))]
    pub source: &'a str,
    /// The event's key (0 when the message held none).
    #[cfg_attr(not(any(feature = "redis", feature = "nats", feature = "kafka")), allow(dead_code))]
    pub key: u64,
    /// The message's broker key, where it had one.
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    pub broker_key: Option<&'a [u8]>,
    /// The answer as one JSON object.
    pub json: &'a [u8],
}

/// Where answers go.
pub(crate) trait Sink: Send {
    /// Publishes every answer; returns once the broker has confirmed them all.
    fn publish(&mut self, answers: &[Answer<'_>]) -> Result<()>;
    /// Drops the connection after an error; the next call connects again.
    fn reset(&mut self);
}

/// A connector's counters, for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    received: AtomicU64,
    answered: AtomicU64,
    refused: AtomicU64,
    committed: AtomicU64,
    skipped: AtomicU64,
    broker_errors: AtomicU64,
    reconnects: AtomicU64,
    checkpoints: AtomicU64,
    /// 1 while the broker answers, 0 after a failure until it answers again.
    up: AtomicU64,
    /// Nanoseconds spent per step of the pump: polling, scoring (parse, runtime, render),
    /// publishing (until confirmed), checkpointing and committing.
    busy: [AtomicU64; 4],
    /// Per set: from its poll's return to its answers confirmed, in nanoseconds.
    latency: Mutex<Option<hdrhistogram::Histogram<u64>>>,
}

/// The pump's steps, as `busy` counts them.
#[derive(Debug, Clone, Copy)]
enum Step {
    Poll = 0,
    Score = 1,
    Publish = 2,
    Commit = 3,
}

const STEPS: [&str; 4] = ["poll", "score", "publish", "commit"];

impl Counters {
    /// The counters as Prometheus text, labelled with the connector's name.
    pub(crate) fn prometheus(&self, connector: &str) -> String {
        let mut s = String::new();
        let rows: [(&str, &str, &AtomicU64, &str); 9] = [
            ("received_total", "counter", &self.received, "messages taken from the broker"),
            ("answered_total", "counter", &self.answered, "answers published and confirmed"),
            ("refused_total", "counter", &self.refused, "answers that are errors"),
            ("committed_total", "counter", &self.committed, "messages committed to the broker"),
            ("skipped_total", "counter", &self.skipped, "redelivered messages a checkpoint held"),
            ("broker_errors_total", "counter", &self.broker_errors, "failed broker calls"),
            ("reconnects_total", "counter", &self.reconnects, "connections made again"),
            ("checkpoints_total", "counter", &self.checkpoints, "checkpoints with positions"),
            ("up", "gauge", &self.up, "1 while the broker answers"),
        ];
        for (name, kind, v, help) in rows {
            s += &format!(
                "# HELP streamscore_connector_{name} {help}\n# TYPE streamscore_connector_{name} {kind}\n\
                 streamscore_connector_{name}{{connector=\"{connector}\"}} {}\n",
                v.load(Ordering::Relaxed)
            );
        }
        s += "# HELP streamscore_connector_busy_seconds_total time the pump spent per step\n\
              # TYPE streamscore_connector_busy_seconds_total counter\n";
        for (step, v) in STEPS.iter().zip(&self.busy) {
            s += &format!(
                "streamscore_connector_busy_seconds_total{{connector=\"{connector}\",step=\"{step}\"}} {}\n",
                v.load(Ordering::Relaxed) as f64 / 1e9
            );
        }
        let latency = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) = latency.as_ref().filter(|h| !h.is_empty()) {
            s += "# HELP streamscore_connector_set_seconds per set of messages, from its poll's \
                  return to its answers confirmed\n# TYPE streamscore_connector_set_seconds summary\n";
            for q in [0.5, 0.99, 0.999, 1.0] {
                s += &format!(
                    "streamscore_connector_set_seconds{{connector=\"{connector}\",quantile=\"{q}\"}} {}\n",
                    h.value_at_quantile(q) as f64 / 1e9
                );
            }
            s += &format!(
                "streamscore_connector_set_seconds_count{{connector=\"{connector}\"}} {}\n",
                h.len()
            );
        }
        s
    }

    fn busy(&self, step: Step, since: Instant) -> Instant {
        let now = Instant::now();
        self.busy[step as usize].fetch_add((now - since).as_nanos() as u64, Ordering::Relaxed);
        now
    }

    fn set_done(&self, polled: Instant) {
        let ns = polled.elapsed().as_nanos() as u64;
        let mut h = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        let _ = h.get_or_insert_with(crate::metrics::latency_histogram).record(ns.max(1));
    }

    /// Messages skipped as already held by the restored checkpoint.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn skipped(&self, n: u64) {
        self.skipped.fetch_add(n, Ordering::Relaxed);
    }
}

/// The positions a checkpoint covers: per partition, the last message it holds.
pub(crate) type Positions = BTreeMap<String, String>;

fn positions_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("positions-{n:020}.json"))
}

/// The positions written beside the checkpoint at `n` (none without one).
#[cfg_attr(not(any(feature = "redis", feature = "nats")), allow(dead_code))]
pub(crate) fn read_positions(dir: &Path, n: u64) -> Result<Positions> {
    let path = positions_path(dir, n);
    let io = |e| Error::Io { path: path.clone(), source: e };
    let len = std::fs::metadata(&path).map_err(io)?.len();
    if len > 64 << 20 {
        return Err(Error::Config(format!(
            "{}: {len} bytes, not a positions file",
            path.display()
        )));
    }
    let text = std::fs::read(&path).map_err(io)?;
    serde_json::from_slice(&text)
        .map_err(|e| Error::Config(format!("{}: not a positions file: {e}", path.display())))
}

/// Writes `positions` for the checkpoint `n` atomically, and deletes positions files of
/// checkpoints no longer kept.
fn write_positions(dir: &Path, n: u64, positions: &Positions) -> Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir).map_err(|e| Error::Io { path: dir.to_path_buf(), source: e })?;
    let path = positions_path(dir, n);
    let tmp = dir.join(format!(".positions-{n:020}.json.tmp"));
    let io = |e| Error::Io { path: tmp.clone(), source: e };
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(&serde_json::to_vec(positions).expect("strings to JSON")).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::Io { path: path.clone(), source: e })?;
    Ok(())
}

/// Positions files whose checkpoint is gone.
fn prune_positions(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(n) = name
            .to_str()
            .and_then(|s| s.strip_prefix("positions-"))
            .and_then(|s| s.strip_suffix(".json"))
            .and_then(|s| s.parse::<u64>().ok())
        else {
            continue;
        };
        if !dir.join(format!("features-{n:020}.snap")).exists() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// What the pump and the server share.
pub(crate) struct Shared {
    stop: AtomicBool,
    /// Set by the checkpoint thread; the pump checkpoints between polls.
    due: AtomicBool,
    pub counters: Counters,
}

impl Shared {
    pub(crate) fn new() -> Arc<Shared> {
        Arc::new(Shared {
            stop: AtomicBool::new(false),
            due: AtomicBool::new(false),
            counters: Counters { up: AtomicU64::new(1), ..Counters::default() },
        })
    }

    /// The checkpoint thread's tick.
    pub(crate) fn tick(&self) {
        self.due.store(true, Ordering::Release);
    }
}

/// A running connector: the pump's thread.
pub(crate) struct Running {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
    name: &'static str,
}

impl Running {
    /// Starts the pump over `source` and `sink` on a thread of its own (`shared` is what the
    /// source counts into; `restored`, the restored checkpoint's number and the positions it
    /// covers); it sends [`Notice::InputEnded`] if it fails for good.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start(
        name: &'static str,
        shared: Arc<Shared>,
        rt: Arc<Runtime>,
        source: Box<dyn Source>,
        sink: Box<dyn Sink>,
        batch: usize,
        checkpoint: Option<CheckpointConfig>,
        restored: Option<(u64, Positions)>,
        partitions: Option<Arc<Mutex<Partitions>>>,
        notices: mpsc::Sender<Notice>,
    ) -> Result<Running> {
        let (sequence, covered) = restored.unwrap_or_default();
        let keyed = rt.feature_counters().is_some();
        let pump = Pump {
            schema: rt.schema().clone(),
            batch: batch.clamp(1, MAX_SET),
            rt,
            source,
            sink,
            shared: shared.clone(),
            checkpoint: checkpoint.filter(|_| keyed),
            partitions: partitions.filter(|_| keyed),
            keyed,
            sequence,
            covered,
            unpublished: false,
            uncommitted: Vec::new(),
            messages: Vec::new(),
            chunk: Chunk::new(0),
            text: Vec::new(),
            ends: Vec::new(),
            sources: String::new(),
            source_ends: Vec::new(),
            keys: Vec::new(),
        };
        let thread = std::thread::Builder::new()
            .name(format!("streamscore-{name}"))
            .spawn(move || {
                // A panic in a broker's client must stop serve, not leave it silently idle.
                let ended = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pump.run()))
                    .unwrap_or_else(|_| {
                        Err(Error::Broker {
                            broker: name,
                            message: "the connector panicked".into(),
                        })
                    });
                let _ = notices.send(Notice::InputEnded(ended));
            })
            .map_err(|e| Error::Config(format!("cannot start the {name} thread: {e}")))?;
        Ok(Running { shared, thread: Some(thread), name })
    }

    /// What the checkpoint thread ticks and `/metrics` reads.
    pub(crate) fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// The connector's name in metrics.
    pub(crate) fn name(&self) -> &'static str {
        self.name
    }

    /// Stops polling: returns once every message taken is answered and confirmed, and
    /// (with checkpoints) a last checkpoint covers them and they are committed.
    pub(crate) fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The loop between a source, the runtime and a sink.
struct Pump {
    rt: Arc<Runtime>,
    schema: crate::event::Schema,
    source: Box<dyn Source>,
    sink: Box<dyn Sink>,
    shared: Arc<Shared>,
    batch: usize,
    checkpoint: Option<CheckpointConfig>,
    /// With a source whose partitions move between instances: each partition's state is
    /// checkpointed on its own (instead of the stage's whole state with positions beside it).
    partitions: Option<Arc<Mutex<Partitions>>>,
    keyed: bool,
    /// The last checkpoint's number.
    sequence: u64,
    /// Per partition, the last message answered and confirmed.
    covered: Positions,
    /// Answered and confirmed, not yet committed.
    uncommitted: Vec<(String, String)>,
    /// Set when a stopping pump gave up publishing: the feature state then holds events whose
    /// answers are not out, so no checkpoint may be written.
    unpublished: bool,
    messages: Vec<Message>,
    chunk: Chunk,
    text: Vec<u8>,
    /// Where each answer ends in `text`.
    ends: Vec<usize>,
    /// Each answer's `<partition>/<position>`, one after another, and where each ends.
    sources: String,
    source_ends: Vec<usize>,
    /// Each answer's event key (`None` for a message without one).
    keys: Vec<Option<u64>>,
}

/// The longest a stopping pump keeps trying a broker that is away.
const STOP_PATIENCE: Duration = Duration::from_secs(10);

impl Pump {
    fn run(mut self) -> Result<()> {
        let mut backoff = Backoff::default();
        loop {
            let stopping = self.shared.stop.load(Ordering::SeqCst);
            if stopping {
                break;
            }
            let shared = self.shared.clone();
            let c = &shared.counters;
            let mut t = Instant::now();
            if self.shared.due.swap(false, Ordering::AcqRel) {
                self.checkpoint_and_commit(&mut backoff, false);
                t = c.busy(Step::Commit, t);
            }
            self.messages.clear();
            let polled =
                self.source.poll(self.batch, Duration::from_millis(100), &mut self.messages);
            let t = c.busy(Step::Poll, t);
            if let Err(e) = polled {
                self.broker_error("poll", &e, &mut backoff);
                self.source.reset();
                continue;
            }
            backoff.ok(&self.shared.counters);
            if self.messages.is_empty() {
                continue;
            }
            self.shared.counters.received.fetch_add(self.messages.len() as u64, Ordering::Relaxed);
            self.answer()?;
            let scored = c.busy(Step::Score, t);
            self.publish(&mut backoff);
            let published = c.busy(Step::Publish, scored);
            c.set_done(t);
            if self.checkpoint.is_none() && self.partitions.is_none() {
                self.commit(&mut backoff, false);
                c.busy(Step::Commit, published);
            }
        }
        // Everything taken is answered and published; a last checkpoint, then commit.
        self.checkpoint_and_commit(&mut backoff, true);
        Ok(())
    }

    fn broker_error(&self, what: &str, e: &Error, backoff: &mut Backoff) {
        let c = &self.shared.counters;
        c.broker_errors.fetch_add(1, Ordering::Relaxed);
        if c.up.swap(0, Ordering::Relaxed) == 1 {
            log::error!("broker {what} failed: {e}; reconnecting");
            eprintln!("streamscore serve: broker {what} failed: {e}; reconnecting");
        } else {
            log::warn!("broker {what} failed again: {e}");
        }
        backoff.wait();
    }

    /// Scores the polled messages and renders one answer per message into `text`.
    fn answer(&mut self) -> Result<()> {
        self.chunk.reset(0);
        for m in &self.messages {
            let out = match &m.payload {
                Ok(bytes) => {
                    jsonl::parse(&mut self.chunk, &self.schema, self.keyed, usize::MAX, Ok(bytes))
                }
                Err(why) => Out::Refused { id: None, status: 400, message: why.clone() },
            };
            self.chunk.outs.push(out);
        }
        let ticket = if self.chunk.events() == 0 { None } else { Some(self.submit()?) };
        let answer = ticket.map(|t| t.and_then(Ticket::wait));
        self.text.clear();
        self.ends.clear();
        self.sources.clear();
        self.source_ends.clear();
        self.keys.clear();
        let mut event = 0;
        for (m, out) in self.messages.iter().zip(&self.chunk.outs) {
            let start = self.sources.len();
            self.sources.push_str(&m.partition);
            self.sources.push('/');
            self.sources.push_str(&m.position);
            self.source_ends.push(self.sources.len());
            let source = &self.sources[start..];
            self.keys.push(match out {
                Out::Event { .. } => Some(self.chunk.keys[event]),
                Out::Refused { .. } => None,
            });
            let at = At::Source(source);
            if jsonl::render(&mut self.text, at, out, answer.as_ref(), &mut event) {
                self.shared.counters.refused.fetch_add(1, Ordering::Relaxed);
            }
            // The rendered line ends with `\n`: the answer is the object before it.
            self.ends.push(self.text.len());
        }
        Ok(())
    }

    /// Hands the chunk's events to the runtime as one set, waiting for room.
    fn submit(&mut self) -> Result<Result<Ticket<Scores>>> {
        loop {
            let mut set = EventBatch::rows(&self.chunk.rows).with_keys(&self.chunk.keys);
            if self.keyed {
                set = set.with_timestamps_ms(&self.chunk.times);
            }
            match self.rt.try_submit_many(set) {
                Err(Error::QueueFull) => std::thread::sleep(Duration::from_micros(100)),
                Err(Error::Closed) => {
                    return Err(Error::Config(
                        "the runtime closed while the broker was read".into(),
                    ));
                }
                other => return Ok(other),
            }
        }
    }

    /// Publishes the rendered answers, retrying while the broker is away (nothing taken is
    /// dropped), then records them as confirmed.
    fn publish(&mut self, backoff: &mut Backoff) {
        let (mut start, mut from) = (0, 0);
        let answers: Vec<Answer<'_>> = self
            .ends
            .iter()
            .zip(&self.source_ends)
            .zip(&self.keys)
            .zip(&self.messages)
            .map(|(((&end, &to), &key), m)| {
                let json = &self.text[start..end - 1];
                let source = &self.sources[from..to];
                (start, from) = (end, to);
                Answer { source, key: key.unwrap_or(0), broker_key: m.key.as_deref(), json }
            })
            .collect();
        let since = Instant::now();
        loop {
            match self.sink.publish(&answers) {
                Ok(()) => break,
                Err(e) => {
                    let c = &self.shared.counters;
                    c.broker_errors.fetch_add(1, Ordering::Relaxed);
                    if c.up.swap(0, Ordering::Relaxed) == 1 {
                        log::error!("broker publish failed: {e}; retrying");
                        eprintln!("streamscore serve: broker publish failed: {e}; retrying");
                    }
                    self.sink.reset();
                    if self.shared.stop.load(Ordering::SeqCst) && since.elapsed() > STOP_PATIENCE {
                        // Not committed: the broker redelivers them to the next run.
                        log::error!("stopping: {} answers not published", answers.len());
                        self.unpublished = true;
                        return;
                    }
                    backoff.wait();
                }
            }
        }
        backoff.ok(&self.shared.counters);
        self.shared.counters.answered.fetch_add(answers.len() as u64, Ordering::Relaxed);
        drop(answers);
        if let Some(p) = &self.partitions {
            let answered = self
                .messages
                .iter()
                .zip(&self.keys)
                .map(|(m, &k)| (m.partition.as_str(), m.position.as_str(), k));
            p.lock().unwrap_or_else(|e| e.into_inner()).published(answered);
        }
        // The messages are done with: their names move to what is committed next.
        for m in self.messages.drain(..) {
            match self.covered.get_mut(&m.partition) {
                Some(last) => last.clone_from(&m.position),
                None => {
                    self.covered.insert(m.partition.clone(), m.position.clone());
                }
            }
            self.uncommitted.push((m.partition, m.position));
        }
    }

    /// With a feature stage: a checkpoint with the positions it covers, then commits them.
    fn checkpoint_and_commit(&mut self, backoff: &mut Backoff, last: bool) {
        if self.checkpoint.is_some() || self.partitions.is_some() {
            if (self.uncommitted.is_empty() && !last) || self.unpublished {
                return;
            }
            match self.write_checkpoint() {
                Ok(wrote) => {
                    if wrote {
                        self.shared.counters.checkpoints.fetch_add(1, Ordering::Relaxed);
                    }
                    if failpoint("after_checkpoint") {
                        // The crash this ordering is for: checkpointed, not yet committed.
                        eprintln!("streamscore serve: failpoint after_checkpoint: aborting");
                        std::process::abort();
                    }
                }
                Err(e) => {
                    // Nothing is committed: the broker keeps the messages for a replay.
                    log::error!("checkpoint failed: {e}; positions not committed");
                    eprintln!("streamscore serve: checkpoint failed: {e}; positions not committed");
                    return;
                }
            }
        }
        self.commit(backoff, last);
    }

    /// Writes the checkpoint: each partition's keys on their own (a source whose partitions
    /// move), or the stage's whole state with the positions it covers beside it. Whether
    /// anything was written.
    fn write_checkpoint(&mut self) -> Result<bool> {
        if let Some(p) = &self.partitions {
            let written = p.lock().unwrap_or_else(|e| e.into_inner()).checkpoint(None)?;
            return Ok(!written.is_empty());
        }
        let Some(c) = &self.checkpoint else { return Ok(false) };
        let n = self.sequence + 1;
        write_positions(&c.dir, n, &self.covered)?;
        checkpoint::checkpoint(&self.rt, c, Some(n))?;
        self.sequence = n;
        prune_positions(&c.dir);
        Ok(true)
    }

    fn commit(&mut self, backoff: &mut Backoff, last: bool) {
        if self.uncommitted.is_empty() {
            return;
        }
        let since = Instant::now();
        loop {
            match self.source.commit(&self.uncommitted) {
                Ok(()) => break,
                Err(e) => {
                    self.broker_error("commit", &e, backoff);
                    self.source.reset();
                    if (last || self.shared.stop.load(Ordering::SeqCst))
                        && since.elapsed() > STOP_PATIENCE
                    {
                        return;
                    }
                }
            }
        }
        let n = self.uncommitted.len() as u64;
        self.shared.counters.committed.fetch_add(n, Ordering::Relaxed);
        self.uncommitted.clear();
    }
}

/// Whether the failpoint `name` is armed: `STREAMSCORE_FAILPOINT=<name>` in the environment
/// makes the process abort there, so tests can crash it at the one moment a kill cannot be
/// timed to (`after_checkpoint`: a checkpoint written, its positions not yet committed).
fn failpoint(name: &str) -> bool {
    std::env::var_os("STREAMSCORE_FAILPOINT").is_some_and(|v| v == name)
}

/// Waits between tries while a broker is away: 100 ms, doubling to 2 s.
#[derive(Default)]
struct Backoff {
    next: Option<Duration>,
}

impl Backoff {
    fn wait(&mut self) {
        let d = self.next.unwrap_or(Duration::from_millis(100));
        std::thread::sleep(d);
        self.next = Some((d * 2).min(Duration::from_secs(2)));
    }

    fn ok(&mut self, counters: &Counters) {
        if self.next.take().is_some() {
            counters.reconnects.fetch_add(1, Ordering::Relaxed);
            log::info!("broker reachable again");
            eprintln!("streamscore serve: broker reachable again");
        }
        counters.up.store(1, Ordering::Relaxed);
    }
}
