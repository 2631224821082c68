//! `streamscore serve`'s configuration file (TOML): the model, an optional feature spec, the
//! runtime's settings and the HTTP listener. Unknown keys are errors, so a typo never turns
//! into a silent default.
//!
//! ```toml
//! [model]
//! path = "models/golden/lgb_binary/model.txt"   # or: dir = "repo" (Triton's layout)
//! name = "model"                                 # the name clients use
//! backend = "auto"                               # or "cpu", "gpu,cpu", "onnx", ...
//! # features = "spec.toml"                       # a feature spec run before the model
//! # version = 3                                  # with dir: serve this version only
//!
//! [runtime]
//! max_batch = 256
//! max_delay_us = 0                              # the default: no waiting for more
//! workers = 1
//! overload = "block"                             # "reject", "shed_oldest"
//!
//! [http]
//! address = "127.0.0.1:8000"
//! threads = 2
//! max_body_bytes = 67108864
//!
//! # [checkpoint]                                 # with features: state survives restarts
//! # dir = "checkpoints"
//! # every_s = 30
//! # keep = 3
//!
//! # [jsonl]                                      # events from a file or stdin as well
//! # input = "events.jsonl"                       # "-": stdin
//! # output = "scores.jsonl"                      # "-": stdout (the default)
//!
//! # [redis_streams]                              # or from Redis Streams (`redis` feature)
//! # url = "redis://127.0.0.1:6379"
//! # streams = ["events.0", "events.1"]           # this instance's partitions
//! # consumer = "scorer-a"                        # stable across restarts
//! # output = "scores"
//!
//! # [kafka]                                      # or from a Kafka consumer group (`kafka`)
//! # brokers = "127.0.0.1:9092"
//! # group = "scorers"                            # every instance of the group the same
//! # topic = "events"                             # keyed by the event key
//! # output = "scores"
//!
//! # [mqtt]                                       # or from MQTT topics, stateless (`mqtt`)
//! # url = "mqtt://127.0.0.1:1883"
//! # client_id = "scorer-a"                       # stable across restarts
//! # topics = ["sensors/+/events"]
//! # output = "scores"
//! ```
//!
//! Relative paths are taken from the config file's directory.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use super::checkpoint::CheckpointConfig;
#[cfg(feature = "kafka")]
pub use super::connector::kafka::KafkaConfig;
#[cfg(feature = "mqtt")]
pub use super::connector::mqtt::MqttConfig;
#[cfg(feature = "nats")]
pub use super::connector::nats::NatsConfig;
#[cfg(feature = "redis")]
pub use super::connector::redis_streams::RedisStreamsConfig;
pub use super::jsonl::JsonlConfig;
use crate::error::{Error, Result};
use crate::runtime::config::{Overload, RuntimeConfig};

/// Everything `serve` needs. Read one with [`ServeConfig::from_path`] or build it in code.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// The model served.
    pub model: ModelConfig,
    /// The runtime's batching and overload settings.
    #[serde(default)]
    pub runtime: RuntimeSection,
    /// The HTTP listener.
    #[serde(default)]
    pub http: HttpConfig,
    /// Feature-state checkpoints (with a feature spec).
    #[serde(default)]
    pub checkpoint: Option<CheckpointConfig>,
    /// A line-delimited JSON input and output beside HTTP (see [`JsonlConfig`]); `serve`
    /// exits at the input's end.
    #[serde(default)]
    pub jsonl: Option<JsonlConfig>,
    /// Data-quality gates and drift monitoring (see [`MonitorSection`]).
    #[serde(default)]
    pub monitor: Option<MonitorSection>,
    /// Events from Redis Streams through a consumer group, answers to a stream (see
    /// [`RedisStreamsConfig`]; the `redis` feature).
    #[cfg(feature = "redis")]
    #[serde(default)]
    pub redis_streams: Option<RedisStreamsConfig>,
    /// Events from NATS JetStream, answers to a subject (see [`NatsConfig`]; the `nats`
    /// feature).
    #[cfg(feature = "nats")]
    #[serde(default)]
    pub nats: Option<NatsConfig>,
    /// Events from a Kafka consumer group, answers to a topic, feature state moved with
    /// partitions (see [`KafkaConfig`]; the `kafka` feature).
    #[cfg(feature = "kafka")]
    #[serde(default)]
    pub kafka: Option<KafkaConfig>,
    /// Events from MQTT topics, answers to a topic, for stateless scoring (see
    /// [`MqttConfig`]; the `mqtt` feature).
    #[cfg(feature = "mqtt")]
    #[serde(default)]
    pub mqtt: Option<MqttConfig>,
}

/// `[monitor]`: data-quality gates checked before scoring, and drift profiles against a
/// training reference; their counters and gauges are in `/metrics`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorSection {
    /// A training reference (`streamscore profile`): every scored batch is profiled against it.
    #[serde(default)]
    pub reference: Option<PathBuf>,
    /// A gates file (`[[gate]]` tables, see `monitor::gates::GateSpec::from_toml`).
    #[serde(default)]
    pub gates: Option<PathBuf>,
    /// Window length, ms (default 60,000).
    #[serde(default)]
    pub window_ms: Option<u64>,
    /// Least events in a window for an alert (default 1,000).
    #[serde(default)]
    pub min_events: Option<u64>,
    /// PSI that raises an alert (default 0.2).
    #[serde(default)]
    pub psi_alert: Option<f64>,
    /// Jensen-Shannon distance that raises an alert (default 0.2).
    #[serde(default)]
    pub js_alert: Option<f64>,
    /// Quantiles from a DDSketch per column with this relative accuracy (e.g. 0.01), instead
    /// of from the reference's grid (`MonitorConfig::quantile_sketch`).
    #[serde(default)]
    pub quantile_sketch: Option<f64>,
}

/// `[model]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// A model file (LightGBM text, XGBoost JSON or ONNX).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// A model repository in Triton's layout: `<dir>/<name>/<version>/model.*`, polled.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// With `dir`: serve this version only (default: the latest that loads).
    #[serde(default)]
    pub version: Option<u64>,
    /// The name clients address (default `model`; with `dir`, the model's directory name).
    #[serde(default = "default_name")]
    pub name: String,
    /// Backend spec: comma-separated backends in order of preference (default `auto`).
    #[serde(default = "default_backend")]
    pub backend: String,
    /// A feature spec (TOML) run before the model: requests then carry keys, event times and
    /// raw fields.
    #[serde(default)]
    pub features: Option<PathBuf>,
}

fn default_name() -> String {
    "model".into()
}

fn default_backend() -> String {
    "auto".into()
}

/// `[runtime]`: the runtime's settings (see [`RuntimeConfig`]); absent keys keep its defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeSection {
    /// Events per batch at most.
    #[serde(default)]
    pub max_batch: Option<usize>,
    /// How long a batch waits for more events, in microseconds. `serve` defaults to 0: a
    /// batch is whatever requests queued while the previous one was scored, so a lone request
    /// never waits and batches grow with the load by themselves.
    #[serde(default)]
    pub max_delay_us: Option<u64>,
    /// Queue capacity, in events (a request's events take one place).
    #[serde(default)]
    pub queue_capacity: Option<usize>,
    /// Scoring threads.
    #[serde(default)]
    pub workers: Option<usize>,
    /// `block`, `reject` or `shed_oldest`.
    #[serde(default)]
    pub overload: Option<String>,
    /// Model versions kept for rollback.
    #[serde(default)]
    pub keep_versions: Option<usize>,
}

impl RuntimeSection {
    /// The runtime configuration these settings describe, over `RuntimeConfig::default()`
    /// with `max_delay` 0.
    pub fn runtime_config(&self) -> Result<RuntimeConfig> {
        let mut c = RuntimeConfig::default().with_max_delay(Duration::ZERO);
        if let Some(n) = self.max_batch {
            c = c.with_max_batch(n);
        }
        if let Some(us) = self.max_delay_us {
            c = c.with_max_delay(Duration::from_micros(us));
        }
        if let Some(n) = self.queue_capacity {
            c = c.with_queue_capacity(n);
        }
        if let Some(n) = self.workers {
            c = c.with_workers(n);
        }
        if let Some(n) = self.keep_versions {
            c = c.with_keep_versions(n);
        }
        if let Some(o) = &self.overload {
            c = c.with_overload(match o.as_str() {
                "block" => Overload::Block,
                "reject" => Overload::Reject,
                "shed_oldest" => Overload::ShedOldest,
                other => {
                    return Err(Error::Config(format!(
                        "runtime.overload `{other}`: expected block, reject or shed_oldest"
                    )));
                }
            });
        }
        c.validate()?;
        Ok(c)
    }
}

/// `[http]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Where to listen (default `127.0.0.1:8000`; port 0 picks a free one).
    #[serde(default = "default_address")]
    pub address: SocketAddr,
    /// Threads answering HTTP (default 2).
    #[serde(default = "default_threads")]
    pub threads: NonZeroUsize,
    /// Largest request body taken, in bytes (default 64 MiB); larger ones get 413.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
}

fn default_address() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8000))
}

fn default_threads() -> NonZeroUsize {
    NonZeroUsize::new(2).expect("nonzero")
}

fn default_max_body() -> usize {
    64 << 20
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            address: default_address(),
            threads: default_threads(),
            max_body_bytes: default_max_body(),
        }
    }
}

/// A config file is read whole; none is anywhere near this.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

impl ServeConfig {
    /// A config serving one model file with every default.
    pub fn for_model(path: impl AsRef<Path>) -> Self {
        ServeConfig {
            model: ModelConfig {
                path: Some(path.as_ref().to_path_buf()),
                dir: None,
                version: None,
                name: default_name(),
                backend: default_backend(),
                features: None,
            },
            runtime: RuntimeSection::default(),
            http: HttpConfig::default(),
            checkpoint: None,
            jsonl: None,
            monitor: None,
            #[cfg(feature = "redis")]
            redis_streams: None,
            #[cfg(feature = "nats")]
            nats: None,
            #[cfg(feature = "kafka")]
            kafka: None,
            #[cfg(feature = "mqtt")]
            mqtt: None,
        }
    }

    /// The sections that give events beside HTTP.
    fn sources(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.jsonl.is_some() {
            v.push("[jsonl]");
        }
        #[cfg(feature = "redis")]
        if self.redis_streams.is_some() {
            v.push("[redis_streams]");
        }
        #[cfg(feature = "nats")]
        if self.nats.is_some() {
            v.push("[nats]");
        }
        #[cfg(feature = "kafka")]
        if self.kafka.is_some() {
            v.push("[kafka]");
        }
        #[cfg(feature = "mqtt")]
        if self.mqtt.is_some() {
            v.push("[mqtt]");
        }
        v
    }

    /// Whether the feature state is restored per partition as a consumer group assigns
    /// them (`[kafka]`), not whole at start.
    pub(crate) fn partitioned_state(&self) -> bool {
        #[cfg(feature = "kafka")]
        if self.kafka.is_some() {
            return true;
        }
        false
    }

    /// Parses a TOML config. Relative paths in it are taken relative to `base` (the config
    /// file's directory).
    pub fn from_toml(text: &str, base: &Path) -> Result<Self> {
        let mut c: ServeConfig =
            toml::from_str(text).map_err(|e| Error::Config(format!("serve config: {e}")))?;
        let mut paths = [&mut c.model.path, &mut c.model.dir, &mut c.model.features];
        let mut rest: Vec<&mut PathBuf> = Vec::new();
        if let Some(k) = &mut c.checkpoint {
            rest.push(&mut k.dir);
        }
        if let Some(j) = &mut c.jsonl {
            rest.extend([&mut j.input, &mut j.output].into_iter().filter(|p| p.as_os_str() != "-"));
        }
        if let Some(m) = &mut c.monitor {
            rest.extend([&mut m.reference, &mut m.gates].into_iter().flatten());
        }
        for p in paths.iter_mut().filter_map(|p| p.as_mut()).chain(rest) {
            if p.is_relative() {
                *p = base.join(&**p);
            }
        }
        c.validate()?;
        Ok(c)
    }

    /// Reads and parses a TOML config file.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let io = |e: std::io::Error| Error::Io { path: path.to_path_buf(), source: e };
        let len = std::fs::metadata(path).map_err(io)?.len();
        if len > MAX_CONFIG_BYTES {
            return Err(Error::Config(format!(
                "{}: {len} bytes; a serve config holds at most {MAX_CONFIG_BYTES}",
                path.display()
            )));
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        Self::from_toml(&text, path.parent().unwrap_or(Path::new(".")))
    }

    /// Checks what a runtime's own validation does not see.
    pub fn validate(&self) -> Result<()> {
        let m = &self.model;
        match (&m.path, &m.dir) {
            (None, None) => return Err(Error::Config("[model] needs `path` or `dir`".into())),
            (Some(_), Some(_)) => {
                return Err(Error::Config("[model] takes `path` or `dir`, not both".into()));
            }
            (Some(_), None) if m.version.is_some() => {
                return Err(Error::Config("[model] `version` pins a version of a `dir`".into()));
            }
            _ => {}
        }
        let name_ok = !m.name.is_empty()
            && m.name.len() <= 128
            && m.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !name_ok {
            return Err(Error::Config(format!(
                "model name `{}`: 1 to 128 characters of A-Z, a-z, 0-9, '-', '_' and '.'",
                m.name
            )));
        }
        if self.http.max_body_bytes == 0 {
            return Err(Error::Config("http.max_body_bytes must be at least 1".into()));
        }
        if self.http.threads.get() > 256 {
            return Err(Error::Config("http.threads: at most 256".into()));
        }
        if let Some(k) = &self.checkpoint {
            if m.features.is_none() {
                return Err(Error::Config(
                    "[checkpoint] keeps a feature stage's state: [model] has no `features`".into(),
                ));
            }
            if !(1..=86_400).contains(&k.every_s) {
                return Err(Error::Config("checkpoint.every_s: 1 to 86400".into()));
            }
        }
        if let Some(j) = &self.jsonl {
            j.validate()?;
        }
        let sources = self.sources();
        if sources.len() > 1 {
            return Err(Error::Config(format!(
                "{}: one source of events (and of positions) at a time",
                sources.join(" and ")
            )));
        }
        #[cfg(feature = "nats")]
        if let Some(n) = &self.nats {
            n.validate(self.checkpoint.as_ref().map(|k| k.every_s))?;
        }
        #[cfg(feature = "redis")]
        if let Some(r) = &self.redis_streams {
            r.validate(m.features.is_some())?;
        }
        #[cfg(feature = "kafka")]
        if let Some(k) = &self.kafka {
            k.validate()?;
            if m.features.is_some() && self.checkpoint.is_none() {
                return Err(Error::Config(
                    "[kafka] with a feature stage needs [checkpoint]: the state moves with \
                     its partitions through it"
                        .into(),
                ));
            }
        }
        #[cfg(feature = "mqtt")]
        if let Some(q) = &self.mqtt {
            q.validate()?;
            if m.features.is_some() {
                return Err(Error::Config(
                    "[mqtt] is for stateless scoring and [model] has `features`: MQTT keeps no \
                     log to replay from a checkpoint's position and no partitions for a key's \
                     state to follow; use [kafka], [nats] or [redis_streams]"
                        .into(),
                ));
            }
        }
        self.runtime.runtime_config()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_full_config_and_resolves_paths() {
        let c = ServeConfig::from_toml(
            "[model]\npath = \"m.txt\"\nname = \"fraud\"\nbackend = \"cpu\"\n\
             [runtime]\nmax_batch = 64\noverload = \"reject\"\n\
             [http]\naddress = \"127.0.0.1:0\"\nthreads = 1\n\
             [jsonl]\ninput = \"-\"\noutput = \"out.jsonl\"\n",
            Path::new("/etc/ss"),
        )
        .unwrap();
        let j = c.jsonl.as_ref().unwrap();
        assert_eq!((j.input.to_str(), j.output.to_str()), (Some("-"), Some("/etc/ss/out.jsonl")));
        assert_eq!(c.model.path.as_deref(), Some(Path::new("/etc/ss/m.txt")));
        assert_eq!(c.model.name, "fraud");
        assert_eq!(c.http.address.port(), 0);
        let rc = c.runtime.runtime_config().unwrap();
        assert_eq!(rc.max_batch.get(), 64);
        assert_eq!(rc.overload, Overload::Reject);
    }

    #[test]
    fn refuses_what_it_does_not_know() {
        for (text, needle) in [
            ("[model]\npath = \"m\"\ncolour = 1\n", "unknown field"),
            ("[model]\n", "needs `path` or `dir`"),
            ("[model]\npath = \"a\"\ndir = \"b\"\n", "not both"),
            ("[model]\npath = \"a\"\nversion = 2\n", "pins a version"),
            ("[model]\npath = \"a\"\nname = \"a/b\"\n", "model name"),
            ("[model]\npath = \"a\"\n[runtime]\noverload = \"drop\"\n", "shed_oldest"),
            ("[model]\npath = \"a\"\n[runtime]\nmax_batch = 0\n", "max_batch"),
            ("[model]\npath = \"a\"\n[http]\naddress = \"nowhere\"\n", "address"),
            ("[model]\npath = \"a\"\n[http]\nmax_body_bytes = 0\n", "max_body_bytes"),
            ("[model\n", "serve config"),
            ("[model]\npath = \"a\"\n[jsonl]\ninput = \"x\"\noutput = \"x\"\n", "both"),
            ("[model]\npath = \"a\"\n[jsonl]\ninput = \"x\"\nmax_line_bytes = 0\n", "max_line"),
            ("[model]\npath = \"a\"\n[jsonl]\ninput = \"x\"\nbatch = 0\n", "jsonl.batch"),
            ("[model]\npath = \"a\"\n[jsonl]\noutput = \"x\"\n", "input"),
        ] {
            let e = ServeConfig::from_toml(text, Path::new(".")).expect_err(text).to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
    #[cfg(feature = "mqtt")]
    #[test]
    fn mqtt_is_checked_and_refuses_a_feature_stage() {
        let mqtt = "[mqtt]\nurl = \"mqtt://127.0.0.1:1883\"\nclient_id = \"a\"\n\
                    topics = [\"sensors/#\"]\noutput = \"scores\"\n";
        let ok = format!("[model]\npath = \"m.txt\"\n{mqtt}");
        let c = ServeConfig::from_toml(&ok, Path::new(".")).unwrap();
        assert_eq!(c.mqtt.as_ref().unwrap().keep_alive_s, 30);
        for (text, needle) in [
            (format!("[model]\npath = \"m\"\nfeatures = \"s.toml\"\n{mqtt}"), "stateless"),
            (ok.replace("scores", "sensors/x"), "read again"),
            (ok.replace("mqtt://", "mqtts://"), "TLS"),
            (format!("{ok}batch = 0\n"), "batch"),
            (format!("{ok}qos = 2\n"), "unknown field"),
            (format!("{ok}[jsonl]\ninput = \"x\"\n"), "one source"),
        ] {
            let e = ServeConfig::from_toml(&text, Path::new(".")).expect_err(&text).to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }
}
