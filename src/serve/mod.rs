//! `streamscore serve`: a runtime behind the Open Inference Protocol (KServe v2) REST
//! endpoints, as a sidecar beside an application in any language.
//!
//! [`Server::start`] builds the runtime a [`ServeConfig`] describes, binds its HTTP listener
//! and answers on a few threads of its own; infer requests become sets of events
//! ([`Runtime::submit_many`]), micro-batched with every other request. [`Server::shutdown`]
//! stops intake, lets requests in flight finish, and drains the runtime (every accepted event
//! answered); [`Server::run_until_signal`] does the same on SIGTERM or SIGINT, and a second
//! signal exits at once.
//!
//! Beside HTTP, a [`JsonlConfig`] reads events as line-delimited JSON from a file or stdin and
//! writes one answer line per input line (replayed exactly from a checkpoint after a crash;
//! the format and guarantees: [`JsonlConfig`]).
//!
//! # Examples
//!
//! ```
//! use streamscore::serve::{ServeConfig, Server};
//!
//! let mut config = ServeConfig::for_model("models/golden/lgb_binary/model.txt");
//! config.http.address = "127.0.0.1:0".parse().unwrap(); // any free port
//! let server = Server::start(&config)?;
//! assert_ne!(server.local_addr().port(), 0);
//! server.shutdown();
//! # Ok::<(), streamscore::Error>(())
//! ```

mod checkpoint;
mod config;
#[cfg_attr(
    not(any(feature = "redis", feature = "nats", feature = "kafka", feature = "mqtt")),
    allow(dead_code)
)]
mod connector;
mod http;
mod jsonl;
mod model;
mod oip;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[cfg(feature = "kafka")]
pub use config::KafkaConfig;
#[cfg(feature = "mqtt")]
pub use config::MqttConfig;
#[cfg(feature = "nats")]
pub use config::NatsConfig;
#[cfg(feature = "redis")]
pub use config::RedisStreamsConfig;
pub use config::{
    CheckpointConfig, HttpConfig, JsonlConfig, ModelConfig, MonitorSection, RuntimeSection,
    ServeConfig,
};
pub use oip::ProtocolError;

use crate::error::{Error, Result};
use crate::registry::{ModelDir, VersionPolicy};
use crate::runtime::Runtime;
use model::{Origin, Served};

/// How long shutdown waits for open connections to finish their requests in flight.
const DRAIN: Duration = Duration::from_secs(10);

/// A running server: its runtime, listener and HTTP threads.
pub struct Server {
    addr: SocketAddr,
    state: Arc<http::State>,
    stop: tokio::sync::watch::Sender<bool>,
    accept: Option<tokio::task::JoinHandle<()>>,
    io: Option<tokio::runtime::Runtime>,
    checkpointer: Option<Checkpointer>,
    source: Option<jsonl::Source>,
    connector: Option<connector::Running>,
    notices: (std::sync::mpsc::Sender<Notice>, std::sync::mpsc::Receiver<Notice>),
}

/// What ends [`Server::run_until_signal`].
pub(crate) enum Notice {
    /// A signal, by name.
    Signal(&'static str),
    /// The line-delimited JSON input ended (or failed).
    InputEnded(Result<()>),
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("addr", &self.addr).finish_non_exhaustive()
    }
}

/// Builds the runtime a config describes, its feature stage restored from the latest good
/// checkpoint when there is one (and that checkpoint's position).
fn runtime(c: &ServeConfig) -> Result<(Runtime, Origin, Option<u64>)> {
    let m = &c.model;
    let mut b = Runtime::builder()
        .backend_spec(m.backend.parse::<crate::BackendSpec>()?)
        .config(c.runtime.runtime_config()?);
    let mut restored = None;
    if let Some(spec) = &m.features {
        let spec = crate::features::Spec::from_path(spec)?;
        let from = match &c.checkpoint {
            // A consumer group's state is restored per partition as partitions are assigned.
            Some(_) if c.partitioned_state() => None,
            Some(k) => checkpoint::restore_latest(&k.dir, &spec)?,
            None => None,
        };
        let stage = match from {
            Some((stage, position, path)) => {
                log::info!("feature state restored from {} (position {position})", path.display());
                eprintln!(
                    "streamscore serve: feature state restored from {} (position {position})",
                    path.display()
                );
                restored = Some(position);
                stage
            }
            None => crate::features::Features::new(spec),
        };
        b = b.features(stage);
    }
    if let Some(mon) = &c.monitor {
        if let Some(path) = &mon.gates {
            b = b.gates(crate::monitor::gates::GateSpec::from_path(path)?);
        }
        if let Some(path) = &mon.reference {
            use crate::monitor::profile::{Monitor, MonitorConfig};
            let reference = crate::monitor::reference::Reference::from_path(path)?;
            let d = MonitorConfig::new(std::sync::Arc::new(reference));
            let config = MonitorConfig {
                window_ms: mon.window_ms.unwrap_or(d.window_ms),
                min_events: mon.min_events.unwrap_or(d.min_events),
                psi_alert: mon.psi_alert.unwrap_or(d.psi_alert),
                js_alert: mon.js_alert.unwrap_or(d.js_alert),
                quantile_sketch: mon.quantile_sketch,
                ..d
            };
            b = b.monitor(Monitor::new(config)?);
        }
    }
    let origin = match (&m.path, &m.dir) {
        (Some(path), _) => {
            b = b.model_path(path);
            Origin::File(path.clone())
        }
        (None, Some(dir)) => {
            let policy = m.version.map_or(VersionPolicy::Latest, VersionPolicy::Specific);
            b = b.model_dir(ModelDir::new(dir, &m.name).with_policy(policy));
            Origin::Dir
        }
        (None, None) => return Err(Error::Config("[model] needs `path` or `dir`".into())),
    };
    Ok((b.build()?, origin, restored))
}

/// With a feature stage and `[checkpoint]`, the per-partition checkpoints of a source whose
/// partitions can move between instances (Kafka, NATS).
#[cfg(any(feature = "kafka", feature = "nats"))]
fn partitioned_state(
    config: &ServeConfig,
    rt: &Arc<Runtime>,
) -> Option<Arc<std::sync::Mutex<connector::partitions::Partitions>>> {
    let k = config.checkpoint.as_ref().filter(|_| rt.feature_counters().is_some())?;
    Some(Arc::new(std::sync::Mutex::new(connector::partitions::Partitions::new(rt.clone(), k))))
}

/// Takes in each of `c`'s subjects' newest checkpoint (`<checkpoint.dir>/partitions/<subject>/`)
/// and returns where each resumes.
#[cfg(feature = "nats")]
fn restore_subjects(
    p: &mut connector::partitions::Partitions,
    c: &connector::nats::NatsConfig,
) -> Result<connector::Positions> {
    let mut positions = connector::Positions::new();
    for subject in &c.subjects {
        if let Some(r) = p.restore(subject)? {
            eprintln!(
                "streamscore serve: nats subject {subject}: {} keys restored (sequence {}) in {:.1} ms",
                r.keys,
                r.position,
                r.took.as_secs_f64() * 1e3
            );
            positions.insert(subject.clone(), r.position.to_string());
        }
    }
    Ok(positions)
}

/// Starts the broker connector the config names, if any: with a restored checkpoint, from
/// the positions written beside it.
#[cfg_attr(not(any(feature = "redis", feature = "nats")), allow(unused_variables))]
fn start_connector(
    config: &ServeConfig,
    rt: &Arc<Runtime>,
    restored: Option<u64>,
    notices: &std::sync::mpsc::Sender<Notice>,
) -> Result<Option<connector::Running>> {
    #[cfg(any(feature = "redis", feature = "nats"))]
    let positions = || match (restored, &config.checkpoint) {
        (Some(n), Some(k)) => match connector::read_positions(&k.dir, n) {
            Ok(p) => p,
            Err(e) => {
                log::warn!("no positions beside checkpoint {n} ({e}): read from the start");
                eprintln!(
                    "streamscore serve: no positions beside checkpoint {n} ({e}); read from the start"
                );
                Default::default()
            }
        },
        _ => Default::default(),
    };
    #[cfg(feature = "kafka")]
    if let Some(c) = &config.kafka {
        use connector::kafka::{KafkaSink, KafkaSource};
        let shared = connector::Shared::new();
        let partitions = partitioned_state(config, rt);
        let source = KafkaSource::new(c, shared.clone(), partitions.clone())?;
        let sink = KafkaSink::new(c)?;
        let running = connector::Running::start(
            "kafka",
            shared,
            rt.clone(),
            Box::new(source),
            Box::new(sink),
            c.batch.unwrap_or(rt.config().max_batch.get()),
            None,
            None,
            partitions,
            notices.clone(),
        )?;
        return Ok(Some(running));
    }
    #[cfg(feature = "nats")]
    if let Some(c) = &config.nats {
        use connector::nats::{Link, NatsSink, NatsSource};
        let link = Link::new(c)?;
        let stateful = rt.feature_counters().is_some() && config.checkpoint.is_some();
        // With a feature stage each subject's keys are checkpointed on their own, so a
        // subject can move to another instance with its state. An instance that restored a
        // whole checkpoint (written by an earlier version) keeps writing whole ones.
        let partitions = partitioned_state(config, rt).filter(|_| restored.is_none());
        let positions: connector::Positions = match &partitions {
            Some(p) => restore_subjects(&mut p.lock().unwrap_or_else(|e| e.into_inner()), c)?,
            None => positions(),
        };
        let source = NatsSource::new(link.clone(), c, &positions, stateful);
        let sink = NatsSink::new(link, c);
        let whole = partitions.is_none();
        let running = connector::Running::start(
            "nats",
            connector::Shared::new(),
            rt.clone(),
            Box::new(source),
            Box::new(sink),
            c.batch.unwrap_or(rt.config().max_batch.get()),
            config.checkpoint.clone().filter(|_| whole),
            restored.filter(|_| whole).map(|n| (n, positions)),
            partitions,
            notices.clone(),
        )?;
        return Ok(Some(running));
    }
    #[cfg(feature = "mqtt")]
    if let Some(c) = &config.mqtt {
        use connector::mqtt::{MqttSink, MqttSource};
        let running = connector::Running::start(
            "mqtt",
            connector::Shared::new(),
            rt.clone(),
            Box::new(MqttSource::new(c)),
            Box::new(MqttSink::new(c)),
            c.batch.unwrap_or(rt.config().max_batch.get()),
            None,
            None,
            None,
            notices.clone(),
        )?;
        return Ok(Some(running));
    }
    #[cfg(feature = "redis")]
    if let Some(r) = &config.redis_streams {
        use connector::redis_streams::{StreamsSink, StreamsSource};
        let positions: connector::Positions = positions();
        let shared = connector::Shared::new();
        let source = StreamsSource::new(r, positions.clone(), shared.clone())?;
        let sink = StreamsSink::new(r)?;
        let running = connector::Running::start(
            "redis_streams",
            shared,
            rt.clone(),
            Box::new(source),
            Box::new(sink),
            r.batch.unwrap_or(rt.config().max_batch.get()),
            config.checkpoint.clone(),
            restored.map(|n| (n, positions)),
            None,
            notices.clone(),
        )?;
        return Ok(Some(running));
    }
    Ok(None)
}

/// The thread that calls `tick` every `every_s` (writes a checkpoint, or with a
/// line-delimited JSON source asks for one); dropping the sender stops it.
struct Checkpointer {
    stop: Option<crossbeam_channel::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    config: CheckpointConfig,
}

impl Checkpointer {
    fn start(config: CheckpointConfig, tick: impl Fn() + Send + 'static) -> Result<Self> {
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let every = Duration::from_secs(config.every_s);
        let thread = std::thread::Builder::new()
            .name("streamscore-checkpoint".into())
            .spawn(move || {
                while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(every)
                {
                    tick();
                }
            })
            .map_err(|e| Error::Config(format!("cannot start the checkpoint thread: {e}")))?;
        Ok(Checkpointer { stop: Some(stop), thread: Some(thread), config })
    }

    fn stop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Server {
    /// Builds the runtime, binds the listener and starts answering.
    pub fn start(config: &ServeConfig) -> Result<Server> {
        config.validate()?;
        let (rt, origin, restored) = runtime(config)?;
        let rt = Arc::new(rt);
        let io = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.http.threads.get())
            .thread_name("streamscore-http")
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| Error::Config(format!("cannot start the HTTP threads: {e}")))?;
        let addr = config.http.address;
        let listener = io.block_on(tokio::net::TcpListener::bind(addr)).map_err(|e| {
            rt.shutdown();
            Error::Config(format!("cannot listen on {addr}: {e}"))
        })?;
        let addr = listener.local_addr().map_err(|e| Error::Config(format!("{addr}: {e}")))?;
        let notices = std::sync::mpsc::channel();
        let source = match &config.jsonl {
            Some(j) => Some(
                jsonl::Source::start(
                    rt.clone(),
                    j,
                    restored,
                    config.checkpoint.clone(),
                    notices.0.clone(),
                )
                .inspect_err(|_| rt.shutdown())?,
            ),
            None => None,
        };
        let connector =
            start_connector(config, &rt, restored, &notices.0).inspect_err(|_| rt.shutdown())?;
        let checkpointer = match (&config.checkpoint, &source) {
            (Some(c), Some(s)) => {
                let s = s.shared();
                Some(Checkpointer::start(c.clone(), move || s.tick()))
            }
            (Some(c), None) if connector.is_some() => {
                let s = connector.as_ref().expect("matched").shared();
                Some(Checkpointer::start(c.clone(), move || s.tick()))
            }
            (Some(c), None) => {
                let (rt, k) = (rt.clone(), c.clone());
                Some(Checkpointer::start(c.clone(), move || {
                    checkpoint::checkpoint_or_log(&rt, &k, None)
                }))
            }
            (None, _) => None,
        };
        let checkpointer = checkpointer.transpose().inspect_err(|_| rt.shutdown())?;
        let served = Arc::new(Served::new(rt, config.model.name.clone(), origin, restored));
        let state = Arc::new(http::State {
            served,
            max_body: config.http.max_body_bytes,
            accepting: AtomicBool::new(true),
            connector: connector.as_ref().map(|c| (c.name(), c.shared())),
        });
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let accept = io.spawn(http::accept_loop(listener, state.clone(), stopped, DRAIN));
        Ok(Server {
            addr,
            state,
            stop,
            accept: Some(accept),
            io: Some(io),
            checkpointer,
            source,
            connector,
            notices,
        })
    }

    /// The address the listener is bound to (the chosen port when the config said 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The runtime behind the endpoints.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.state.served.rt
    }

    /// Stops intake (readiness turns false, the listener closes, a line-delimited JSON source
    /// stops reading), lets open connections finish the requests they have in flight (at most
    /// 10 s), then drains the runtime: every accepted event is answered before this returns;
    /// with checkpoints, a last one is written covering them all.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        self.state.accepting.store(false, Ordering::Release);
        let _ = self.stop.send(true);
        if let (Some(io), Some(accept)) = (self.io.as_ref(), self.accept.take()) {
            let _ = io.block_on(accept);
        }
        if let Some(s) = self.source.as_mut() {
            s.stop();
        }
        // The connector's pump answers what it took, checkpoints and commits before it ends.
        if let Some(c) = self.connector.as_mut() {
            c.stop();
        }
        self.state.served.rt.shutdown();
        // Every accepted event has its features computed: the last checkpoint covers them all.
        if let Some(mut c) = self.checkpointer.take() {
            c.stop();
            match (&self.source, &self.connector) {
                (Some(s), _) => s.final_checkpoint(),
                (None, Some(_)) => {}
                (None, None) => {
                    checkpoint::checkpoint_or_log(&self.state.served.rt, &c.config, None)
                }
            }
        }
        if let Some(io) = self.io.take() {
            io.shutdown_timeout(Duration::from_secs(1));
        }
    }

    /// Serves until SIGTERM or SIGINT (or the end of a line-delimited JSON input), then shuts
    /// down as [`Server::shutdown`] does. A second signal while draining exits the process at
    /// once (status 130). `ready` is called once the signal handlers are in place (announce
    /// readiness there: a signal sent before it would find the default handlers and kill the
    /// process without a drain). An input or output error of the source is returned after the
    /// drain.
    pub fn run_until_signal(mut self, ready: impl FnOnce(&Server)) -> Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let io = self.io.as_ref().expect("running");
        let first_tx = self.notices.0.clone();
        let listen = |kind: SignalKind| {
            io.block_on(async { signal(kind) })
                .map_err(|e| Error::Config(format!("cannot listen for signals: {e}")))
        };
        let (mut term, mut int) =
            (listen(SignalKind::terminate())?, listen(SignalKind::interrupt())?);
        io.spawn(async move {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            let _ = first_tx.send(Notice::Signal(name));
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            eprintln!("streamscore serve: second signal, exiting without draining");
            std::process::exit(130);
        });
        ready(&self);
        let ended = match self.notices.1.recv() {
            Ok(Notice::Signal(name)) => {
                eprintln!("streamscore serve: {name}, draining");
                Ok(())
            }
            Ok(Notice::InputEnded(Ok(()))) => {
                eprintln!("streamscore serve: the input ended, draining");
                Ok(())
            }
            Ok(Notice::InputEnded(Err(e))) => {
                eprintln!("streamscore serve: the input failed ({e}), draining");
                Err(e)
            }
            Err(_) => Ok(()),
        };
        self.stop_now();
        ended
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.io.is_some() {
            self.stop_now();
        }
    }
}
