//! NATS JetStream (`[nats]`): one durable pull consumer per partition subject, explicit acks
//! sent when the pump commits, answers published to a subject a stream captures and confirmed
//! by their publish acknowledgements.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::Deserialize;

use super::{Answer, Message, Positions, Sink, Source};
use crate::error::{Error, Result};

/// `[nats]`: events from NATS JetStream, answers to a JetStream subject.
///
/// The events are messages of the JetStream stream `stream`, one event per message in the
/// line-delimited JSON event format ([`JsonlConfig`](crate::serve::JsonlConfig)), on partition
/// subjects (e.g. `events.<key % n>`, put there by the producer or a subject mapping). An
/// instance reads the subjects in `subjects` (its partitions; the assignment is static: give
/// each instance its own, and a restarted instance the same), each through a durable pull
/// consumer `<consumer>_<subject>` with explicit acks. Each answer is published to `output`
/// (which a stream must capture) with the headers `Nats-Msg-Id: <subject>/<stream sequence>`
/// (so JetStream's duplicate window drops a replayed answer) and `Streamscore-Key`; its body is the answer line with
/// `"source"` in place of `"line"`.
///
/// With a feature stage and `[checkpoint]`, each subject's keys are checkpointed on their own
/// (`<checkpoint.dir>/partitions/<subject>/`, stamped with the last stream sequence they
/// hold), so a subject can move to another instance with its state (stop its owner cleanly,
/// start the new owner with it); the positions decide where reading resumes: at start each
/// consumer is created again from the sequence after its subject's position (from the
/// stream's start without one), so the broker's own record of acks never disagrees with the
/// restored state. Acks go out when the pump commits (after the checkpoint); `ack_wait_s` must
/// outlast the checkpoint interval, or the broker would deliver the same messages again
/// meanwhile.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsConfig {
    /// The server, e.g. `nats://127.0.0.1:4222`.
    pub url: String,
    /// The JetStream stream that holds the events.
    pub stream: String,
    /// The partition subjects this instance reads.
    pub subjects: Vec<String>,
    /// This instance's consumer names' prefix.
    pub consumer: String,
    /// The subject answers are published to.
    pub output: String,
    /// Messages fetched at once (default: the runtime's `max_batch`).
    #[serde(default)]
    pub batch: Option<usize>,
    /// How long the broker waits for an ack before it delivers a message again, s (default 600).
    #[serde(default = "default_ack_wait")]
    pub ack_wait_s: u64,
    /// The longest wait for a connection or a reply, ms (default 5,000).
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
}

fn default_ack_wait() -> u64 {
    600
}

fn default_timeout() -> u64 {
    5_000
}

impl NatsConfig {
    /// Checks the settings; `checkpoint_s` is the checkpoint interval when there is one.
    pub fn validate(&self, checkpoint_s: Option<u64>) -> Result<()> {
        let bad = |m: &str| Err(Error::Config(format!("nats: {m}")));
        if self.subjects.is_empty() {
            return bad("`subjects` names no subject");
        }
        let names = self.subjects.iter().chain([&self.output, &self.stream, &self.consumer]);
        if names.clone().any(|s| s.is_empty() || s.chars().any(char::is_whitespace)) {
            return bad("subject, stream and consumer names must be non-empty, without spaces");
        }
        if self.subjects.iter().any(|s| s.contains(['*', '>'])) {
            return bad("`subjects` are single partitions: no wildcards");
        }
        if self.subjects.contains(&self.output) {
            return bad("`output` is also an input subject");
        }
        if self.batch.is_some_and(|b| !(1..=crate::runtime::MAX_SET).contains(&b)) {
            return bad(&format!("batch: 1 to {}", crate::runtime::MAX_SET));
        }
        if !(1..=600_000).contains(&self.timeout_ms) {
            return bad("timeout_ms: 1 to 600000");
        }
        if checkpoint_s.is_some_and(|c| self.ack_wait_s <= 2 * c) || self.ack_wait_s == 0 {
            return bad("ack_wait_s must be over twice checkpoint.every_s");
        }
        Ok(())
    }

    fn consumer_name(&self, subject: &str) -> String {
        let tail: String = subject
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
            .collect();
        format!("{}_{tail}", self.consumer)
    }
}

const NAME: &str = "nats";

fn broker(e: impl std::fmt::Display) -> Error {
    Error::Broker { broker: NAME, message: e.to_string() }
}

/// The connection both sides share, and the async runtime that drives it.
pub(crate) struct Link {
    io: tokio::runtime::Runtime,
    config: NatsConfig,
    client: Option<(async_nats::Client, async_nats::jetstream::Context)>,
}

impl Link {
    pub(crate) fn new(config: &NatsConfig) -> Result<Arc<std::sync::Mutex<Link>>> {
        let io = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("streamscore-nats")
            .enable_all()
            .build()
            .map_err(|e| Error::Config(format!("cannot start the NATS thread: {e}")))?;
        Ok(Arc::new(std::sync::Mutex::new(Link { io, config: config.clone(), client: None })))
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.config.timeout_ms)
    }

    /// The client, connected if needed; `fresh` says it was.
    fn get(&mut self) -> Result<(async_nats::Client, async_nats::jetstream::Context, bool)> {
        if let Some((c, js)) = &self.client {
            return Ok((c.clone(), js.clone(), false));
        }
        let t = self.timeout();
        let url = self.config.url.clone();
        let client = self
            .io
            .block_on(async {
                tokio::time::timeout(
                    t,
                    async_nats::ConnectOptions::new()
                        .connection_timeout(t)
                        .request_timeout(Some(t))
                        // After the first connection, reconnects are the client's own.
                        .max_reconnects(None)
                        .connect(url),
                )
                .await
            })
            .map_err(|_| broker("connect timed out"))?
            .map_err(broker)?;
        // The context spawns its acker task: it must be made inside the runtime.
        let _inside = self.io.enter();
        let mut js = async_nats::jetstream::new(client.clone());
        js.set_timeout(t);
        self.client = Some((client.clone(), js.clone()));
        Ok((client, js, true))
    }

    fn run<T>(&self, what: &str, f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        let t = self.timeout() * 2;
        self.io
            .block_on(async { tokio::time::timeout(t, f).await })
            .map_err(|_| broker(format!("{what}: no reply in {t:?}")))?
    }
}

type Consumer = async_nats::jetstream::consumer::PullConsumer;

/// The input side.
pub(crate) struct NatsSource {
    link: Arc<std::sync::Mutex<Link>>,
    config: NatsConfig,
    /// Where each subject resumes: after the restored checkpoint's position (`None`: from the
    /// stream's start), used when the consumers are made.
    resume: Vec<Option<u64>>,
    /// Whether the consumers are made again from `resume` whenever they are made (a feature
    /// stage: its checkpoints and the messages taken decide the positions), or kept as the
    /// broker has them (stateless).
    recreate: bool,
    consumers: Vec<Consumer>,
    /// Per subject, the reply subject of every message taken and not yet committed (by its
    /// stream sequence), for its ack.
    acks: HashMap<String, std::collections::BTreeMap<u64, async_nats::Subject>>,
    next: usize,
}

impl NatsSource {
    pub(crate) fn new(
        link: Arc<std::sync::Mutex<Link>>,
        config: &NatsConfig,
        covered: &Positions,
        stateful: bool,
    ) -> Self {
        let resume = config
            .subjects
            .iter()
            .map(|s| covered.get(s).and_then(|p| p.parse::<u64>().ok()))
            .collect();
        NatsSource {
            link,
            config: config.clone(),
            resume,
            recreate: stateful,
            consumers: Vec::new(),
            acks: HashMap::new(),
            next: 0,
        }
    }

    /// Makes the consumers (on first use, and after a reconnect). With a feature stage they
    /// are made again from the sequence after the last message taken (or the restored
    /// position): a fetch whose reply a failure lost is delivered again at once, and nothing
    /// taken is delivered twice.
    fn consumers(&mut self) -> Result<()> {
        let mut link = self.link.lock().unwrap_or_else(|p| p.into_inner());
        let (_, js, fresh) = link.get()?;
        if !fresh && self.consumers.len() == self.config.subjects.len() {
            return Ok(());
        }
        self.consumers.clear();
        let c = &self.config;
        let mut made = Vec::new();
        for (subject, resume) in c.subjects.iter().zip(&self.resume) {
            let name = c.consumer_name(subject);
            use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
            let config = pull::Config {
                durable_name: Some(name.clone()),
                filter_subject: subject.clone(),
                ack_policy: AckPolicy::Explicit,
                ack_wait: Duration::from_secs(c.ack_wait_s),
                max_ack_pending: -1,
                deliver_policy: match resume {
                    Some(p) => DeliverPolicy::ByStartSequence { start_sequence: p + 1 },
                    None => DeliverPolicy::All,
                },
                ..Default::default()
            };
            let (stream_name, js, recreate) = (c.stream.clone(), js.clone(), self.recreate);
            let consumer = link.run("making the consumers", async move {
                let stream = js.get_stream(&stream_name).await.map_err(broker)?;
                if recreate {
                    // Where to resume is ours to say, not the broker's old cursor.
                    let _ = stream.delete_consumer(&name).await;
                }
                stream.get_or_create_consumer::<pull::Config>(&name, config).await.map_err(broker)
            })?;
            made.push(consumer);
        }
        self.consumers = made;
        Ok(())
    }
}

impl Source for NatsSource {
    fn poll(&mut self, max: usize, wait: Duration, into: &mut Vec<Message>) -> Result<()> {
        self.consumers()?;
        let n = self.consumers.len();
        let link = self.link.lock().unwrap_or_else(|p| p.into_inner());
        // Round robin over the partitions: whatever one has ready at once; when none has
        // anything, again after a pause (1 ms doubling to 10 ms) until `wait` is over. No
        // waiting pulls: one the server lets expire without its 408 status holds the client
        // for 5 s more (nats.rs #860), and what it collects waits until it is full.
        let deadline = std::time::Instant::now() + wait;
        let mut pause = Duration::from_millis(1);
        loop {
            for _ in 0..n {
                let i = self.next;
                self.next = (self.next + 1) % n;
                let consumer = self.consumers[i].clone();
                let got = link.run("a fetch", async move {
                    let mut out = Vec::new();
                    // A no-wait fetch: the server ends it itself, at once.
                    let mut batch =
                        consumer.fetch().max_messages(max).messages().await.map_err(broker)?;
                    while let Some(m) = batch.next().await {
                        out.push(m.map_err(broker)?);
                    }
                    Ok(out)
                })?;
                if got.is_empty() {
                    continue;
                }
                let mut seqs = Vec::with_capacity(got.len());
                for m in &got {
                    seqs.push(m.info().map_err(broker)?.stream_sequence);
                }
                for (m, seq) in got.into_iter().zip(seqs) {
                    self.resume[i] = Some(seq);
                    let partition = m.subject.to_string();
                    let position = seq.to_string();
                    if let Some(reply) = &m.reply {
                        let acks = match self.acks.get_mut(partition.as_str()) {
                            Some(a) => a,
                            None => self.acks.entry(partition.clone()).or_default(),
                        };
                        acks.insert(seq, reply.clone());
                    }
                    into.push(Message {
                        partition,
                        position,
                        payload: Ok(m.payload.to_vec()),
                        key: None,
                    });
                }
                return Ok(());
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Ok(());
            }
            std::thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(Duration::from_millis(10));
        }
    }

    fn commit(&mut self, done: &[(String, String)]) -> Result<()> {
        let link = self.link.lock().unwrap_or_else(|p| p.into_inner());
        let Some((client, _)) = link.client.clone() else { return Err(broker("not connected")) };
        let reply = |(p, n): &(String, String)| {
            let seq = n.parse::<u64>().ok()?;
            self.acks.get(p.as_str())?.get(&seq).cloned()
        };
        let replies: Vec<async_nats::Subject> = done.iter().filter_map(reply).collect();
        link.run("acks", async move {
            for r in replies {
                client.publish(r, bytes::Bytes::new()).await.map_err(broker)?;
            }
            client.flush().await.map_err(broker)
        })?;
        drop(link);
        for (p, n) in done {
            if let (Some(a), Ok(seq)) = (self.acks.get_mut(p.as_str()), n.parse::<u64>()) {
                a.remove(&seq);
            }
        }
        Ok(())
    }

    fn reset(&mut self) {
        // The client reconnects by itself (async-nats keeps trying in the background, and
        // calls meanwhile fail by their timeout); the consumers are made again once it answers.
        self.consumers.clear();
    }
}

/// Answers published and not yet confirmed, at most.
const IN_FLIGHT: usize = 1_000;

/// The output side.
pub(crate) struct NatsSink {
    link: Arc<std::sync::Mutex<Link>>,
    output: String,
}

impl NatsSink {
    pub(crate) fn new(link: Arc<std::sync::Mutex<Link>>, config: &NatsConfig) -> Self {
        NatsSink { link, output: config.output.clone() }
    }
}

impl Sink for NatsSink {
    fn publish(&mut self, answers: &[Answer<'_>]) -> Result<()> {
        let mut link = self.link.lock().unwrap_or_else(|p| p.into_inner());
        let (_, js, _) = link.get()?;
        let msgs: Vec<(String, u64, bytes::Bytes)> = answers
            .iter()
            .map(|a| (a.source.to_string(), a.key, bytes::Bytes::copy_from_slice(a.json)))
            .collect();
        let output = self.output.clone();
        link.run("publishing answers", async move {
            // An ack not yet awaited holds one of the context's in-flight places (5,000), and
            // a publish past them waits for one: a window of IN_FLIGHT, the oldest awaited as
            // the next goes out, so the connection never drains between chunks.
            let mut acks = std::collections::VecDeque::with_capacity(IN_FLIGHT);
            for (source, key, body) in msgs {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("Nats-Msg-Id", source.as_str());
                headers.insert("Streamscore-Key", key.to_string().as_str());
                let ack = js.publish_with_headers(output.clone(), headers, body);
                acks.push_back(ack.await.map_err(broker)?);
                if acks.len() == IN_FLIGHT {
                    acks.pop_front().expect("full").await.map_err(broker)?;
                }
            }
            for ack in acks {
                ack.await.map_err(broker)?;
            }
            Ok(())
        })
    }

    fn reset(&mut self) {
        // As for the source: the client reconnects by itself.
    }
}
