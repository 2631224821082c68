//! MQTT (`[mqtt]`): QoS 1 messages from a persistent session, answers published with QoS 1 to
//! an output topic, each input message acknowledged (`PUBACK`) only once its answer is
//! confirmed by the broker. For stateless scoring of sensor streams: at least once.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use rumqttc::{
    Client, Connection, ConnectionError, Event, MqttOptions, Outgoing, Packet, Publish, QoS,
    RecvTimeoutError, SubscribeFilter, SubscribeReasonCode,
};
use serde::Deserialize;

use super::{Answer, Message, Sink, Source};
use crate::error::{Error, Result};

/// `[mqtt]`: events from MQTT topics (QoS 1, a persistent session), answers to a topic.
///
/// Each message's payload is one event as one JSON object, in the format of a line-delimited
/// JSON input line ([`JsonlConfig`](crate::serve::JsonlConfig)); each answer is published
/// with QoS 1 to `output` as one JSON object (`{"source":...,"id":...,"score":[...],
/// "model_version":...}`, or `"error"` and `"status"` in place of the score). A payload that
/// does not parse, or is over `max_message_bytes`, is answered with its error (status 400).
///
/// **At least once.** The instance subscribes with QoS 1 under its `client_id` in a
/// persistent session (clean session off, manual acknowledgements), and acknowledges a
/// message only after its answer's publication is acknowledged by the broker. A message taken
/// and not acknowledged when the instance dies, or when its connection breaks, is sent again
/// by the broker when the same `client_id` connects, and answered again; MQTT messages have
/// no id of their own, so an answer's `source` is `<topic>/<n>` (the instance's own count of
/// messages taken) and a replay is recognised by the event's `id`. Publishers must use QoS 1
/// (a QoS 0 message is answered but can be lost). The broker's own limits decide what it
/// keeps for a session: in mosquitto, raise `max_inflight_messages` (default 20 unacknowledged
/// messages per client) to at least `batch`, and `max_queued_messages` (default 1,000 queued
/// beyond those; the rest are dropped by the broker) to what a restart must not lose. The
/// instance reads every packet the broker sends whole (up to MQTT's 256 MiB: one it refused
/// would be sent again forever), so the broker's `message_size_limit` is what bounds the
/// memory one message can take; set it.
///
/// **No feature stage.** MQTT keeps no log to read again from a position and has no
/// partitions, so a key's window state could not be checkpointed consistently with what the
/// broker redelivers, nor follow its key to another instance: `[mqtt]` with a feature stage
/// is refused (use `[kafka]`, `[nats]` or `[redis_streams]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// The broker, `mqtt://host:port` (port 1883 when left out); TLS is not supported yet.
    pub url: String,
    /// This instance's client id, stable across its restarts (the broker keeps its session).
    /// Answers are published from a second connection, `<client_id>-answers`.
    pub client_id: String,
    /// Topic filters read (`+` and `#` wildcards allowed).
    pub topics: Vec<String>,
    /// The topic answers are published to (no wildcards; matched by no filter in `topics`).
    pub output: String,
    /// Messages taken at once (default: the runtime's `max_batch`).
    #[serde(default)]
    pub batch: Option<usize>,
    /// The longest payload scored, bytes (default 1 MiB); a longer one is answered with an
    /// error.
    #[serde(default = "default_max_message")]
    pub max_message_bytes: usize,
    /// MQTT keep-alive, seconds (default 30): a broker silent for 1.5 times this is gone.
    #[serde(default = "default_keep_alive")]
    pub keep_alive_s: u64,
    /// The longest wait for a connection or an acknowledgement, ms (default 5,000).
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// User name, for a broker that asks for one.
    #[serde(default)]
    pub username: Option<String>,
    /// Password, with `username`.
    #[serde(default)]
    pub password: Option<String>,
}

fn default_max_message() -> usize {
    1 << 20
}

fn default_keep_alive() -> u64 {
    30
}

fn default_timeout() -> u64 {
    5_000
}

const NAME: &str = "mqtt";

/// The largest packet MQTT can carry (a 4-byte remaining length), bytes.
const MQTT_MAX_PACKET: usize = 268_435_455;

fn broker(e: impl std::fmt::Display) -> Error {
    Error::Broker { broker: NAME, message: e.to_string() }
}

/// Whether `name` is a topic a message can be published to: not empty, no wildcards, no NUL.
fn valid_topic(name: &str) -> bool {
    !name.is_empty() && name.len() <= 65_535 && !name.contains(['+', '#', '\0'])
}

/// Whether `filter` is a topic filter: `+` only as a whole level, `#` only as the last one.
fn valid_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.len() > 65_535 || filter.contains('\0') {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    levels.iter().enumerate().all(|(i, l)| match *l {
        "+" => true,
        "#" => i == levels.len() - 1,
        l => !l.contains(['+', '#']),
    })
}

/// Whether the topic `name` matches `filter` (MQTT 3.1.1, 4.7; topics starting with `$` are
/// not matched by a filter starting with a wildcard).
fn matches(filter: &str, name: &str) -> bool {
    if name.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut f = filter.split('/');
    let mut n = name.split('/');
    loop {
        match (f.next(), n.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

impl MqttConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::Config(format!("mqtt: {m}")));
        self.address()?;
        if self.client_id.is_empty() || self.client_id.len() > 1_000 {
            return bad("client_id: 1 to 1000 bytes (the broker keeps the session under it)");
        }
        if self.topics.is_empty() {
            return bad("`topics` names no topic");
        }
        if let Some(t) = self.topics.iter().find(|t| !valid_filter(t)) {
            return bad(&format!(
                "{t:?} is not a topic filter (`+` is one whole level, `#` only the last)"
            ));
        }
        if !valid_topic(&self.output) {
            return bad("output: a topic name, without wildcards");
        }
        if let Some(t) = self.topics.iter().find(|t| matches(t, &self.output)) {
            return bad(&format!("output {:?} is read again through {t:?}", self.output));
        }
        if self.batch.is_some_and(|b| !(1..=crate::runtime::MAX_SET).contains(&b)) {
            return bad(&format!("batch: 1 to {}", crate::runtime::MAX_SET));
        }
        if !(1..=MQTT_MAX_PACKET).contains(&self.max_message_bytes) {
            return bad(&format!("max_message_bytes: 1 to {MQTT_MAX_PACKET}"));
        }
        if !(1..=65_535).contains(&self.keep_alive_s) {
            return bad("keep_alive_s: 1 to 65535");
        }
        if !(1..=600_000).contains(&self.timeout_ms) {
            return bad("timeout_ms: 1 to 600000");
        }
        if self.password.is_some() && self.username.is_none() {
            return bad("a password needs a username");
        }
        Ok(())
    }

    /// The broker's host and port, from `url`.
    fn address(&self) -> Result<(String, u16)> {
        let bad = |m: String| Err(Error::Config(format!("mqtt: url {:?}: {m}", self.url)));
        let Some(rest) = self.url.strip_prefix("mqtt://").or(self.url.strip_prefix("tcp://"))
        else {
            return bad("not mqtt://host:port (TLS, mqtts://, is not supported yet)".into());
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => match p.parse::<u16>() {
                Ok(p) if p > 0 => (h, p),
                _ => return bad(format!("port {p:?}")),
            },
            _ => (rest, 1883),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains(['/', '?', '@']) {
            return bad("no host, or not a bare host".into());
        }
        Ok((host.to_string(), port))
    }

    /// Connection options for the client `id`.
    fn options(&self, id: &str, clean: bool, channel: usize) -> Result<MqttOptions> {
        let (host, port) = self.address()?;
        let mut o = MqttOptions::new(id, host, port);
        o.set_keep_alive(Duration::from_secs(self.keep_alive_s))
            .set_clean_session(clean)
            .set_manual_acks(true)
            .set_inflight(1_024)
            .set_request_channel_capacity(channel)
            // What the broker sends is read whole (it bounds its own messages); payloads
            // over max_message_bytes are answered with an error, not parsed.
            .set_max_packet_size(MQTT_MAX_PACKET, self.max_message_bytes.max(64 << 10) + 65_600);
        if let Some(u) = &self.username {
            o.set_credentials(u, self.password.as_deref().unwrap_or(""));
        }
        Ok(o)
    }
}

/// One connection, made on first use and after a reset.
struct Conn {
    client: Client,
    connection: Connection,
}

impl Conn {
    /// A client `id` (its session kept by the broker unless `clean`); it connects when its
    /// events are first read.
    fn new(config: &MqttConfig, id: &str, clean: bool) -> Result<Conn> {
        let channel = crate::runtime::MAX_SET + 64;
        let (client, mut connection) = Client::new(config.options(id, clean, channel)?, channel);
        let mut network = connection.eventloop.network_options();
        network.set_connection_timeout(config.timeout_ms.div_ceil(1000).max(1));
        connection.eventloop.set_network_options(network);
        Ok(Conn { client, connection })
    }
}

/// Waits up to `wait` for the connection's next event; `None` when none came in time.
fn next(c: &mut Connection, wait: Duration) -> Result<Option<Event>> {
    match c.recv_timeout(wait) {
        Ok(Ok(e)) => Ok(Some(e)),
        Ok(Err(e)) => Err(connection_error(e)),
        Err(RecvTimeoutError::Timeout) => Ok(None),
        Err(RecvTimeoutError::Disconnected) => Err(broker("the connection's requests ended")),
    }
}

fn connection_error(e: ConnectionError) -> Error {
    broker(match e {
        ConnectionError::ConnectionRefused(code) => format!("the broker refused us: {code:?}"),
        e => e.to_string(),
    })
}

/// The input side: one persistent session reading `topics`.
pub(crate) struct MqttSource {
    config: MqttConfig,
    conn: Option<Conn>,
    /// Messages taken so far (this run): the next one's position.
    taken: u64,
    /// Messages of this connection taken and not yet acknowledged, by position.
    unacked: HashMap<u64, Publish>,
    /// Messages read while acknowledging, for the next poll.
    early: VecDeque<Message>,
    /// Whether the subscription is confirmed on this connection.
    subscribed: bool,
}

impl MqttSource {
    pub(crate) fn new(config: &MqttConfig) -> Self {
        MqttSource {
            config: config.clone(),
            conn: None,
            taken: 0,
            unacked: HashMap::new(),
            early: VecDeque::new(),
            subscribed: false,
        }
    }

    fn connect(&mut self) -> Result<()> {
        if self.conn.is_some() {
            return Ok(());
        }
        let conn = Conn::new(&self.config, &self.config.client_id, false)?;
        let filters =
            self.config.topics.iter().map(|t| SubscribeFilter::new(t.clone(), QoS::AtLeastOnce));
        conn.client.try_subscribe_many(filters).map_err(broker)?;
        self.conn = Some(conn);
        self.subscribed = false;
        Ok(())
    }

    /// Handles one event: a message is kept (in `into`), a refused subscription is an error.
    fn event(&mut self, e: Event, into: &mut Vec<Message>) -> Result<()> {
        match e {
            Event::Incoming(Packet::Publish(p)) => {
                let n = self.taken;
                self.taken += 1;
                let payload = if p.payload.len() > self.config.max_message_bytes {
                    Err(format!(
                        "a message of {} bytes: over max_message_bytes ({})",
                        p.payload.len(),
                        self.config.max_message_bytes
                    ))
                } else {
                    Ok(p.payload.to_vec())
                };
                into.push(Message {
                    partition: p.topic.clone(),
                    position: n.to_string(),
                    payload,
                    key: None,
                });
                if p.qos != QoS::AtMostOnce {
                    self.unacked.insert(n, p);
                }
            }
            Event::Incoming(Packet::ConnAck(a)) if !a.session_present => {
                log::info!(
                    "mqtt: new session for {} (messages published while it had none are not \
                     kept by the broker)",
                    self.config.client_id
                );
            }
            Event::Incoming(Packet::SubAck(s)) => {
                if let Some(i) =
                    s.return_codes.iter().position(|c| *c == SubscribeReasonCode::Failure)
                {
                    let topic = self.config.topics.get(i).map_or("?", String::as_str);
                    return Err(Error::Config(format!(
                        "mqtt: the broker refused the subscription to {topic:?}"
                    )));
                }
                if !self.subscribed {
                    eprintln!(
                        "streamscore serve: mqtt: subscribed to {:?} as {}",
                        self.config.topics, self.config.client_id
                    );
                }
                self.subscribed = true;
            }
            _ => {}
        }
        Ok(())
    }
}

impl Source for MqttSource {
    fn poll(&mut self, max: usize, wait: Duration, into: &mut Vec<Message>) -> Result<()> {
        let start = into.len();
        while into.len() - start < max {
            match self.early.pop_front() {
                Some(m) => into.push(m),
                None => break,
            }
        }
        self.connect()?;
        let deadline = Instant::now() + wait;
        while into.len() - start < max {
            let now = Instant::now();
            // Once a message is in hand, only what is already arriving joins it.
            let left = if into.len() > start {
                Duration::from_millis(1)
            } else if now < deadline {
                deadline - now
            } else {
                break;
            };
            let conn = self.conn.as_mut().expect("connected above");
            match next(&mut conn.connection, left)? {
                Some(e) => self.event(e, into)?,
                None if into.len() > start || Instant::now() >= deadline => break,
                None => {}
            }
        }
        Ok(())
    }

    fn commit(&mut self, done: &[(String, String)]) -> Result<()> {
        let Some(conn) = self.conn.as_mut() else { return Ok(()) };
        let mut acks = 0usize;
        for (_, position) in done {
            // Messages of an earlier connection are not acknowledged on this one: the broker
            // sent them again after the reconnection, and their new copies are acknowledged.
            let Some(p) = position.parse::<u64>().ok().and_then(|n| self.unacked.remove(&n)) else {
                continue;
            };
            conn.client.try_ack(&p).map_err(broker)?;
            acks += 1;
        }
        // Until every acknowledgement is written out; messages read meanwhile wait in `early`.
        let timeout = Duration::from_millis(self.config.timeout_ms);
        let mut last = Instant::now();
        let mut early = Vec::new();
        while acks > 0 {
            let conn = self.conn.as_mut().expect("checked above");
            match next(&mut conn.connection, timeout.saturating_sub(last.elapsed()))? {
                Some(Event::Outgoing(Outgoing::PubAck(_))) => {
                    acks -= 1;
                    last = Instant::now();
                }
                Some(e) => self.event(e, &mut early)?,
                None => return Err(broker("acknowledgements not written in timeout_ms")),
            }
        }
        self.early.extend(early);
        Ok(())
    }

    fn reset(&mut self) {
        self.conn = None;
        self.unacked.clear();
        self.early.clear();
    }
}

/// The output side: answers published with QoS 1, each acknowledged by the broker.
pub(crate) struct MqttSink {
    config: MqttConfig,
    conn: Option<Conn>,
}

impl MqttSink {
    pub(crate) fn new(config: &MqttConfig) -> Self {
        MqttSink { config: config.clone(), conn: None }
    }
}

impl Sink for MqttSink {
    fn publish(&mut self, answers: &[Answer<'_>]) -> Result<()> {
        if self.conn.is_none() {
            let id = format!("{}-answers", self.config.client_id);
            self.conn = Some(Conn::new(&self.config, &id, true)?);
        }
        let conn = self.conn.as_mut().expect("connected above");
        let timeout = Duration::from_millis(self.config.timeout_ms);
        let mut queued = 0;
        let mut acked = 0;
        let mut last = Instant::now();
        while acked < answers.len() {
            // Queue what the request channel takes; the event loop sends it.
            while queued < answers.len() {
                let a = &answers[queued];
                match conn.client.try_publish(&self.config.output, QoS::AtLeastOnce, false, a.json)
                {
                    Ok(()) => queued += 1,
                    Err(rumqttc::ClientError::TryRequest(_)) => break,
                    Err(e) => return Err(broker(e)),
                }
            }
            match next(&mut conn.connection, timeout.saturating_sub(last.elapsed()))? {
                Some(Event::Incoming(Packet::PubAck(_))) => {
                    acked += 1;
                    last = Instant::now();
                }
                Some(_) => {}
                None => {
                    return Err(broker(format!(
                        "{} of {} answers unacknowledged after timeout_ms",
                        answers.len() - acked,
                        answers.len()
                    )));
                }
            }
        }
        Ok(())
    }

    fn reset(&mut self) {
        self.conn = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> MqttConfig {
        MqttConfig {
            url: url.into(),
            client_id: "scorer-a".into(),
            topics: vec!["sensors/+/events".into()],
            output: "scores".into(),
            batch: None,
            max_message_bytes: default_max_message(),
            keep_alive_s: 30,
            timeout_ms: 5_000,
            username: None,
            password: None,
        }
    }

    #[test]
    fn urls_give_a_host_and_port_or_a_clear_error() {
        assert_eq!(config("mqtt://127.0.0.1:1884").address().unwrap(), ("127.0.0.1".into(), 1884));
        assert_eq!(config("tcp://broker").address().unwrap(), ("broker".into(), 1883));
        assert_eq!(config("mqtt://[::1]:1885/").address().unwrap(), ("::1".into(), 1885));
        for bad in ["mqtts://b:8883", "b:1883", "mqtt://", "mqtt://b:0", "mqtt://b:x", "mqtt://u@b"]
        {
            let e = config(bad).validate().unwrap_err().to_string();
            assert!(e.contains("mqtt: url"), "{bad}: {e}");
        }
    }

    #[test]
    fn filters_match_as_mqtt_says_and_a_loop_is_refused() {
        assert!(matches("sensors/+/events", "sensors/a/events"));
        assert!(!matches("sensors/+/events", "sensors/a/b/events"));
        assert!(matches("sensors/#", "sensors"));
        assert!(matches("sensors/#", "sensors/a/b"));
        assert!(matches("#", "scores"));
        assert!(!matches("#", "$SYS/broker"));
        assert!(!matches("a/b", "a/b/c"));
        for bad in ["a/#/b", "a+/b", "", "a/b#"] {
            assert!(!valid_filter(bad), "{bad}");
        }
        let mut c = config("mqtt://b");
        c.validate().unwrap();
        c.output = "sensors/x/events".into();
        assert!(c.validate().unwrap_err().to_string().contains("read again"));
        c.output = "scores/+".into();
        assert!(c.validate().unwrap_err().to_string().contains("without wildcards"));
        c.output = "scores".into();
        c.topics = vec!["a/#/b".into()];
        assert!(c.validate().unwrap_err().to_string().contains("not a topic filter"));
    }
}
