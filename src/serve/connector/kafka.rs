//! Kafka (`[kafka]`): a consumer group with cooperative rebalancing, answers produced to an
//! output topic keyed as their events were, and feature state that moves with its partitions.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message as _, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{Offset, TopicPartitionList};
use serde::Deserialize;

use super::partitions::Partitions;
use super::{Answer, Message, Shared, Sink, Source};
use crate::error::{Error, Result};

/// `[kafka]`: events from a Kafka topic read by a consumer group, answers to another topic.
///
/// Every instance with the same `group` shares the partitions of `topic` (cooperative-sticky
/// assignment: a rebalance moves only the partitions that change owner). Each message is one
/// event in the line-delimited JSON event format ([`JsonlConfig`](crate::serve::JsonlConfig));
/// the producer keys messages by the event's key, so each key's events land on one partition
/// and reach one instance. Each answer is produced to `output` with the message's own key
/// (so it lands on the same partition number when `output` has as many) and the header
/// `streamscore-source: <topic>/<partition>/<offset>`; its body is the answer line with
/// `"source"` in place of `"line"`.
///
/// Offsets are committed (synchronously) once the answers up to them are acknowledged by the
/// brokers (`acks=all`) and, with a feature stage and `[checkpoint]`, once a checkpoint of
/// their partition covers them. Each partition's keys are checkpointed on their own under
/// `<checkpoint.dir>/partitions/<topic>/<partition>/`: when a partition is revoked its state
/// is checkpointed, its offset committed and its keys dropped here; when one is assigned its
/// newest checkpoint is taken in first, and messages it already holds are skipped. The
/// checkpoint directory must be shared by the group's instances.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// The bootstrap servers, e.g. `127.0.0.1:9092` (comma-separated).
    pub brokers: String,
    /// The consumer group.
    pub group: String,
    /// The topic the events are read from.
    pub topic: String,
    /// The topic the answers are produced to.
    pub output: String,
    /// Messages taken at once (default: the runtime's `max_batch`).
    #[serde(default)]
    pub batch: Option<usize>,
    /// How long the group waits for a silent member before it moves its partitions, ms
    /// (default 10,000).
    #[serde(default = "default_session")]
    pub session_timeout_ms: u64,
    /// The longest wait for a commit or for the answers' acknowledgements, ms (default 10,000).
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// More librdkafka settings for both clients (security, fetch sizes), as `name = "value"`;
    /// the ones this connector sets itself are refused.
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
}

fn default_session() -> u64 {
    10_000
}

fn default_timeout() -> u64 {
    10_000
}

/// Settings the connector's guarantees rest on: not the user's to change.
const OURS: [&str; 9] = [
    "bootstrap.servers",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.offset.reset",
    "partition.assignment.strategy",
    "session.timeout.ms",
    "acks",
    "enable.partition.eof",
];

impl KafkaConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::Config(format!("kafka: {m}")));
        let topic_ok = |t: &str| {
            !t.is_empty()
                && t.len() <= 249
                && t != "."
                && t != ".."
                && t.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        };
        if !topic_ok(&self.topic) || !topic_ok(&self.output) {
            return bad("topic names: 1 to 249 of [a-zA-Z0-9._-], not . or ..");
        }
        if self.topic == self.output {
            return bad("`output` is the input topic");
        }
        if self.brokers.trim().is_empty() || self.group.trim().is_empty() {
            return bad("`brokers` and `group` must be given");
        }
        if self.batch.is_some_and(|b| !(1..=crate::runtime::MAX_SET).contains(&b)) {
            return bad(&format!("batch: 1 to {}", crate::runtime::MAX_SET));
        }
        if !(1_000..=3_600_000).contains(&self.session_timeout_ms) {
            return bad("session_timeout_ms: 1000 to 3600000");
        }
        if !(1..=600_000).contains(&self.timeout_ms) {
            return bad("timeout_ms: 1 to 600000");
        }
        if let Some(k) = self.settings.keys().find(|k| OURS.contains(&k.as_str())) {
            return bad(&format!("settings: `{k}` is the connector's own"));
        }
        Ok(())
    }

    fn client(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        for (k, v) in &self.settings {
            c.set(k, v);
        }
        c
    }
}

const NAME: &str = "kafka";

fn broker(e: impl std::fmt::Display) -> Error {
    Error::Broker { broker: NAME, message: e.to_string() }
}

/// What the consumer's callbacks share with the source.
struct Group {
    topic: String,
    partitions: Option<Arc<Mutex<Partitions>>>,
    shared: Arc<Shared>,
    state: Mutex<GroupState>,
}

#[derive(Default)]
struct GroupState {
    /// The partitions held now.
    assigned: BTreeSet<i32>,
    /// Per partition held, the offset its restored checkpoint covers: messages up to it are
    /// in the state already and skipped.
    covered: HashMap<i32, i64>,
    /// An error the client reported since the last poll.
    error: Option<String>,
    /// Partitions revoked during the current poll: messages of theirs taken before the
    /// revocation are not answered here (their next owner reads them from the commit).
    revoked_now: BTreeSet<i32>,
}

impl Group {
    fn lock(&self) -> std::sync::MutexGuard<'_, GroupState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A partition's name in messages and checkpoints: `<topic>/<p>`.
    fn name(&self, p: i32) -> String {
        format!("{}/{p}", self.topic)
    }

    /// The partition number a [`name`](Group::name) gives.
    fn number(&self, name: &str) -> Option<i32> {
        name.strip_prefix(self.topic.as_str())?.strip_prefix('/')?.parse().ok()
    }

    /// The partitions of our topic in `tpl`.
    fn ours(&self, tpl: &TopicPartitionList) -> Vec<i32> {
        tpl.elements().iter().filter(|e| e.topic() == self.topic).map(|e| e.partition()).collect()
    }

    /// Partitions revoked: checkpoint their keys, commit what the checkpoints cover, drop
    /// their keys. Runs inside the consumer's poll, between the pump's sets, so every
    /// message taken from them is answered and confirmed.
    fn revoked(&self, consumer: &BaseConsumer<Group>, tpl: &TopicPartitionList) {
        let gone = self.ours(tpl);
        {
            let mut s = self.lock();
            for p in &gone {
                s.assigned.remove(p);
                s.covered.remove(p);
                s.revoked_now.insert(*p);
            }
        }
        let Some(parts) = &self.partitions else { return };
        let names: Vec<String> = gone.iter().map(|&p| self.name(p)).collect();
        let mut parts = parts.lock().unwrap_or_else(|e| e.into_inner());
        match parts.checkpoint(Some(&names)) {
            Ok(written) => {
                let mut commit = TopicPartitionList::new();
                for (name, position) in &written {
                    if let Some(p) = self.number(name) {
                        let _ = commit.add_partition_offset(
                            &self.topic,
                            p,
                            Offset::Offset(*position as i64 + 1),
                        );
                    }
                }
                if commit.count() > 0
                    && let Err(e) = consumer.commit(&commit, CommitMode::Sync)
                {
                    // The checkpoint holds the state: the next owner skips what it covers.
                    log::warn!("commit of revoked partitions failed: {e}");
                }
            }
            Err(e) => {
                // Nothing committed: the next owner replays from the last checkpoint.
                log::error!("checkpoint of revoked partitions failed: {e}");
                eprintln!("streamscore serve: checkpoint of revoked partitions failed: {e}");
            }
        }
        let dropped: usize = names.iter().map(|n| parts.forget(n)).sum();
        log::info!("partitions {names:?} revoked: {dropped} keys handed over");
        eprintln!("streamscore serve: kafka partitions {names:?} revoked ({dropped} keys)");
    }

    /// Partitions assigned: take in their checkpoints before any of their messages is read.
    fn assigned(&self, tpl: &TopicPartitionList) {
        let new = self.ours(tpl);
        for &p in &new {
            let mut covered = None;
            if let Some(parts) = &self.partitions {
                let name = self.name(p);
                let mut parts = parts.lock().unwrap_or_else(|e| e.into_inner());
                match parts.restore(&name) {
                    Ok(Some(r)) => {
                        eprintln!(
                            "streamscore serve: kafka partition {name}: {} keys restored \
                             (offset {}) in {:.1} ms",
                            r.keys,
                            r.position,
                            r.took.as_secs_f64() * 1e3
                        );
                        covered = Some(r.position as i64);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        // Refusing the partition is not ours to do; say loudly that its
                        // keys start from nothing.
                        log::error!("partition {name}: no checkpoint restored: {e}");
                        eprintln!(
                            "streamscore serve: partition {name}: no checkpoint restored: {e}"
                        );
                    }
                }
            }
            let mut s = self.lock();
            s.assigned.insert(p);
            if let Some(c) = covered {
                s.covered.insert(p, c);
            }
        }
        if !new.is_empty() {
            eprintln!("streamscore serve: kafka partitions {new:?} of {} assigned", self.topic);
        }
    }
}

impl ClientContext for Group {
    fn error(&self, error: KafkaError, reason: &str) {
        log::warn!("kafka client: {error}: {reason}");
        self.lock().error = Some(format!("{error}: {reason}"));
    }
}

impl ConsumerContext for Group {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Group>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            self.revoked(consumer, tpl);
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Group>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => self.assigned(tpl),
            Rebalance::Error(e) => {
                log::error!("kafka rebalance failed: {e}");
                self.lock().error = Some(format!("rebalance: {e}"));
            }
            Rebalance::Revoke(_) => {}
        }
    }
}

/// The input side: the group's consumer.
pub(crate) struct KafkaSource {
    consumer: BaseConsumer<Group>,
}

impl KafkaSource {
    /// Joins the group (the partitions come with the first polls).
    pub(crate) fn new(
        config: &KafkaConfig,
        shared: Arc<Shared>,
        partitions: Option<Arc<Mutex<Partitions>>>,
    ) -> Result<Self> {
        let group =
            Group { topic: config.topic.clone(), partitions, shared, state: Mutex::default() };
        let mut c = config.client();
        c.set("group.id", &config.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("session.timeout.ms", config.session_timeout_ms.to_string())
            .set("heartbeat.interval.ms", (config.session_timeout_ms / 4).max(250).to_string())
            .set("enable.partition.eof", "false");
        let consumer: BaseConsumer<Group> = c.create_with_context(group).map_err(broker)?;
        consumer.subscribe(&[&config.topic]).map_err(broker)?;
        Ok(KafkaSource { consumer })
    }

    fn take(&self, m: &rdkafka::message::BorrowedMessage<'_>, into: &mut Vec<Message>) {
        let (p, offset) = (m.partition(), m.offset());
        let ctx = self.consumer.context();
        if ctx.lock().covered.get(&p).is_some_and(|&c| offset <= c) {
            ctx.shared.counters.skipped(1);
            return;
        }
        let payload = match m.payload() {
            Some(b) => Ok(b.to_vec()),
            None => Err("the message has no value".to_string()),
        };
        into.push(Message {
            partition: ctx.name(p),
            position: offset.to_string(),
            payload,
            key: m.key().map(<[u8]>::to_vec),
        });
    }
}

impl Source for KafkaSource {
    fn poll(&mut self, max: usize, wait: Duration, into: &mut Vec<Message>) -> Result<()> {
        let mut next = self.consumer.poll(wait);
        while let Some(got) = next {
            let m = got.map_err(broker)?;
            self.take(&m, into);
            drop(m);
            if into.len() >= max {
                break;
            }
            next = self.consumer.poll(Duration::ZERO);
        }
        let ctx = self.consumer.context();
        let revoked = std::mem::take(&mut ctx.lock().revoked_now);
        if !revoked.is_empty() {
            into.retain(|m| !ctx.number(&m.partition).is_some_and(|p| revoked.contains(&p)));
        }
        let error = ctx.lock().error.take();
        match error {
            Some(e) if into.is_empty() => Err(broker(e)),
            _ => Ok(()),
        }
    }

    fn commit(&mut self, done: &[(String, String)]) -> Result<()> {
        let ctx = self.consumer.context();
        let assigned = ctx.lock().assigned.clone();
        // Per partition held here, the offset after the last answered message.
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        for (partition, position) in done {
            let Some(p) = ctx.number(partition) else { continue };
            let Ok(offset) = position.parse::<i64>() else { continue };
            if assigned.contains(&p) {
                let e = next.entry(p).or_insert(offset + 1);
                *e = (*e).max(offset + 1);
            }
        }
        if next.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for (p, offset) in next {
            tpl.add_partition_offset(&ctx.topic, p, Offset::Offset(offset)).map_err(broker)?;
        }
        self.consumer.commit(&tpl, CommitMode::Sync).map_err(broker)
    }

    fn reset(&mut self) {
        // librdkafka reconnects by itself; the next poll tries again.
    }
}

/// Counts the answers' delivery reports.
struct Deliveries {
    failed: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.failed.fetch_add(1, Ordering::Relaxed);
            *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
        }
    }
}

/// The output side: a producer with `acks=all`.
pub(crate) struct KafkaSink {
    producer: BaseProducer<Deliveries>,
    output: String,
    timeout: Duration,
    key: String,
}

impl KafkaSink {
    pub(crate) fn new(config: &KafkaConfig) -> Result<Self> {
        let mut c = config.client();
        c.set("acks", "all")
            .set("linger.ms", "1")
            .set("message.timeout.ms", config.timeout_ms.max(1_000).to_string());
        let deliveries = Deliveries { failed: AtomicU64::new(0), last_error: Mutex::new(None) };
        let producer = c.create_with_context(deliveries).map_err(broker)?;
        Ok(KafkaSink {
            producer,
            output: config.output.clone(),
            timeout: Duration::from_millis(config.timeout_ms),
            key: String::new(),
        })
    }
}

impl Sink for KafkaSink {
    fn publish(&mut self, answers: &[Answer<'_>]) -> Result<()> {
        let ctx = self.producer.context();
        ctx.failed.store(0, Ordering::Relaxed);
        for a in answers {
            self.key.clear();
            let key: &[u8] = match a.broker_key {
                Some(k) => k,
                None => {
                    use std::fmt::Write;
                    let _ = write!(self.key, "{}", a.key);
                    self.key.as_bytes()
                }
            };
            let headers = OwnedHeaders::new()
                .insert(Header { key: "streamscore-source", value: Some(a.source) });
            let mut record = BaseRecord::to(&self.output).payload(a.json).key(key).headers(headers);
            loop {
                match self.producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        record = r;
                        self.producer.poll(Duration::from_millis(5));
                    }
                    Err((e, _)) => return Err(broker(e)),
                }
            }
        }
        self.producer.flush(self.timeout).map_err(broker)?;
        let failed = ctx.failed.load(Ordering::Relaxed);
        if failed > 0 {
            let why = ctx.last_error.lock().unwrap_or_else(|p| p.into_inner()).take();
            return Err(broker(format!(
                "{failed} answers not acknowledged: {}",
                why.unwrap_or_default()
            )));
        }
        Ok(())
    }

    fn reset(&mut self) {
        // The producer reconnects by itself; answers are sent again by the pump.
    }
}
