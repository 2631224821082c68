//! `streamscore serve` on NATS JetStream, against Debian's `nats-server` (2.9) this test
//! starts with JetStream on a random loopback port (scripts/nats.sh installs it): the fraud
//! stream, partitioned by card over two subjects, goes through per-partition durable pull
//! consumers with its features; an instance aborts between a checkpoint and its acks, another
//! is SIGKILLed mid-stream, and the broker stops answering for a while (SIGSTOP). Every event
//! is answered exactly once in the answers' stream (a replayed answer carries the same
//! `Nats-Msg-Id` and JetStream drops it), and every score equals an uninterrupted
//! line-delimited JSON run's over the same events.

#![cfg(all(feature = "nats", feature = "cli"))]

mod common;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;

use common::process::{Process, free_port};
use common::serve_child::{
    Serve, fraud_events, fraud_model, metric, temp_dir, uninterrupted_scores,
};

/// `nats-server -js` on a free loopback port, its store in `dir`.
struct Nats(Process);

impl std::ops::Deref for Nats {
    type Target = Process;
    fn deref(&self) -> &Process {
        &self.0
    }
}

impl Nats {
    fn start(dir: &std::path::Path) -> Nats {
        let port = free_port();
        let mut command = Command::new("nats-server");
        command
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        Nats(Process::start(command, port, "nats-server (scripts/nats.sh installs it)"))
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

/// A client of `nats` and its JetStream, with the events' stream (`events.*`, `EVENTS`) and
/// the answers' (`scores`, `SCORES`) made.
async fn streams(nats: &Nats) -> (async_nats::Client, jetstream::Context) {
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = jetstream::new(client.clone());
    for (name, subjects) in
        [("EVENTS", vec!["events.*".to_string()]), ("SCORES", vec!["scores".into()])]
    {
        js.create_stream(stream::Config { name: name.into(), subjects, ..Default::default() })
            .await
            .unwrap();
    }
    (client, js)
}

/// `<dir>/<consumer>.toml`: the fraud model with its features (and `runtime`, more sections),
/// checkpoints every `every_s` under `<dir>/checkpoints`, both partition subjects read as
/// `consumer`, answers to `scores` (and `nats_extra`, more `[nats]` lines).
fn config(
    dir: &std::path::Path,
    nats: &Nats,
    consumer: &str,
    runtime: &str,
    every_s: u64,
    nats_extra: &str,
) -> std::path::PathBuf {
    let (subjects, file) = (["events.0", "events.1"], format!("{consumer}.toml"));
    instance(dir, nats, &file, consumer, &subjects, runtime, every_s, nats_extra)
}

/// `<dir>/<file>`: as [`config`], reading `subjects` through consumers named `consumer_...`.
#[allow(clippy::too_many_arguments)]
fn instance(
    dir: &std::path::Path,
    nats: &Nats,
    file: &str,
    consumer: &str,
    subjects: &[&str],
    runtime: &str,
    every_s: u64,
    nats_extra: &str,
) -> std::path::PathBuf {
    let path = dir.join(file);
    let subjects: Vec<String> = subjects.iter().map(|s| format!("{s:?}")).collect();
    std::fs::write(
        &path,
        format!(
            "{}{runtime}[checkpoint]\ndir = \"{}\"\nevery_s = {every_s}\n\
             [nats]\nurl = \"{}\"\nstream = \"EVENTS\"\nsubjects = [{}]\n\
             consumer = \"{consumer}\"\noutput = \"scores\"\n{nats_extra}",
            fraud_model(),
            dir.join("checkpoints").display(),
            nats.url(),
            subjects.join(", ")
        ),
    )
    .unwrap();
    path
}

/// Every answer in the answers' stream: (Nats-Msg-Id, body).
async fn answers(js: &jetstream::Context) -> Vec<(String, String)> {
    let s = js.get_stream("SCORES").await.unwrap();
    let c = s
        .create_consumer(consumer::pull::Config {
            ack_policy: consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut out = Vec::new();
    loop {
        let mut batch = c
            .batch()
            .max_messages(5_000)
            .expires(Duration::from_millis(200))
            .messages()
            .await
            .unwrap();
        let before = out.len();
        while let Some(m) = batch.next().await {
            let m = m.unwrap();
            let id =
                m.headers.as_ref().and_then(|h| h.get("Nats-Msg-Id")).unwrap().as_str().to_string();
            out.push((id, String::from_utf8(m.payload.to_vec()).unwrap()));
        }
        if out.len() == before {
            return out;
        }
    }
}

/// Publishes `lines` onto `events.<card % partitions>`; returns each one's source
/// (`<subject>/<stream sequence>`).
async fn publish(js: &jetstream::Context, lines: &[(u64, String)], partitions: u64) -> Vec<String> {
    // In chunks: an ack not yet awaited holds one of the context's in-flight places.
    let mut sources = Vec::new();
    for chunk in lines.chunks(1_000) {
        let mut acks = Vec::new();
        for (key, event) in chunk {
            let subject = format!("events.{}", key % partitions);
            let ack = js.publish(subject.clone(), event.clone().into()).await.unwrap();
            acks.push((subject, ack));
        }
        for (subject, ack) in acks {
            sources.push(format!("{subject}/{}", ack.await.unwrap().sequence));
        }
    }
    sources
}

async fn count(js: &jetstream::Context, name: &str) -> u64 {
    js.get_stream(name).await.unwrap().info().await.unwrap().state.messages
}

#[test]
fn fraud_stream_on_jetstream_survives_crashes_and_a_stalled_broker() {
    let io = tokio::runtime::Runtime::new().unwrap();
    let dir = temp_dir("nats");
    let nats = Nats::start(&dir.join("js"));
    let lines = fraud_events();
    let n = lines.len();
    let want = uninterrupted_scores(&dir, &lines);
    let (client, js) = io.block_on(streams(&nats));
    // Publishes events [from, to) onto `events.<card % 2>`; returns each one's source.
    let publish = |from: usize, to: usize| io.block_on(publish(&js, &lines[from..to], 2));
    let mut bad = Vec::new();
    for (subject, body) in [("events.0", ""), ("events.1", "{not json")] {
        let ack = io.block_on(async {
            js.publish(subject, body.into()).await.unwrap().await.unwrap().sequence
        });
        bad.push(format!("{subject}/{ack}"));
    }
    let cut = 9_000;
    let mut sources = publish(0, cut);
    let config = config(&dir, &nats, "scorer-a", "", 1, "timeout_ms = 300\n");
    let wait = |what: &str, done: &dyn Fn() -> bool| {
        let start = Instant::now();
        while !done() {
            assert!(start.elapsed() < Duration::from_secs(40), "{what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let scores = || io.block_on(count(&js, "SCORES"));

    // Aborted right after its first checkpoint, before its acks.
    let mut crashing = Command::new(common::serve_child::bin())
        .args(["serve", "--config", config.to_str().unwrap()])
        .env("STREAMSCORE_FAILPOINT", "after_checkpoint")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(!crashing.wait().unwrap().success());
    let first = Serve::start(&config, dir.join("first.log"));
    wait("the first part answered", &|| scores() >= (cut + 2) as u64);
    sources.extend(publish(cut, n));
    wait("answers past the cut", &|| scores() > (cut + 2 + 1_000) as u64);
    drop(first); // SIGKILL

    let second = Serve::start(&config, dir.join("second.log"));
    // The broker stops answering for a while, then comes back.
    nats.signal("-STOP");
    std::thread::sleep(Duration::from_millis(1_500));
    nats.signal("-CONT");
    wait("every event answered", &|| scores() >= (n + 2) as u64);
    let metrics = second.metrics();
    let (ok, log) = second.term();
    assert!(ok, "{log}");
    assert!(log.contains("keys restored"), "{log}");
    assert!(log.contains("reachable again"), "{log}");
    assert!(metric(&metrics, "broker_errors_total") > 0, "{metrics}");
    assert_eq!(metric(&metrics, "up"), 1);

    // Exactly one answer per event (the duplicate window drops replays), each as uninterrupted.
    let all = io.block_on(answers(&js));
    let by_source: HashMap<&str, &str> =
        all.iter().map(|(s, a)| (s.as_str(), a.as_str())).collect();
    assert_eq!(by_source.len(), all.len(), "an answer published twice");
    assert_eq!(all.len(), n + 2);
    for s in &bad {
        let a: serde_json::Value = serde_json::from_str(by_source[s.as_str()]).unwrap();
        assert_eq!(a["status"], 400, "{a}");
    }
    for (i, s) in sources.iter().enumerate() {
        let a: serde_json::Value = serde_json::from_str(by_source[s.as_str()]).unwrap();
        assert_eq!(a["source"].as_str(), Some(s.as_str()));
        assert_eq!(a["id"].as_u64(), Some(i as u64));
        assert_eq!(a["score"].to_string(), want[&(i as u64)], "event {i} ({s})");
    }
    // Everything acked after the last checkpoint.
    io.block_on(async {
        let s = js.get_stream("EVENTS").await.unwrap();
        for p in ["events_0", "events_1"] {
            let info = s.consumer_info(format!("scorer-a_{p}")).await.unwrap();
            assert_eq!((info.num_ack_pending, info.num_pending), (0, 0), "{p}");
        }
    });
    drop(client);
    std::fs::remove_dir_all(&dir).ok();
}

/// Three instances share six partition subjects (static assignment: each reads its own; one
/// consumer prefix and one checkpoint directory for all), each subject's keys checkpointed on
/// their own. The fraud stream (`STREAMSCORE_NATS_GROUP_EVENTS` events, default the stream
/// once; more repeat it with new cards and shifted times) is published over
/// `events.<card % 6>` in thirds: `b` is SIGKILLed mid-stream and restarted, then
/// `events.5` moves from `c` to a new instance `d` (`c` stops cleanly, writing its last
/// checkpoints, and comes back with `events.4` only). Checks: every event answered, a replay
/// identical to its first answer (JetStream's duplicate window drops it), every score equal
/// to an uninterrupted run's (the moved subject's keys restored on `d`, bit for bit), and
/// nothing left unacknowledged.
#[test]
fn three_instances_share_the_subjects_through_a_kill_and_a_move() {
    let io = tokio::runtime::Runtime::new().unwrap();
    let dir = temp_dir("nats-group");
    let nats = Nats::start(&dir.join("js"));
    let base = fraud_events();
    let lines = match std::env::var("STREAMSCORE_NATS_GROUP_EVENTS") {
        Ok(n) => common::serve_child::repeated(&base, n.parse().unwrap()),
        Err(_) => base,
    };
    let n = lines.len();
    let started = Instant::now();
    let want = uninterrupted_scores(&dir, &lines);
    eprintln!("reference run over {n} events: {:?}", started.elapsed());
    let (client, js) = io.block_on(streams(&nats));
    let publish = |from: usize, to: usize| io.block_on(publish(&js, &lines[from..to], 6));
    let start = |name: &str, subjects: &[&str]| {
        let file = format!("{name}.toml");
        let config = instance(&dir, &nats, &file, "scorers", subjects, "", 1, "timeout_ms = 300\n");
        Serve::start(&config, dir.join(format!("{name}.log")))
    };
    let limit = Duration::from_secs(60 + n as u64 / 5_000);
    let wait = |what: &str, done: &dyn Fn() -> bool| {
        let start = Instant::now();
        while !done() {
            assert!(start.elapsed() < limit, "{what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let scores = || io.block_on(count(&js, "SCORES"));
    let answered = |s: &Serve| metric(&s.metrics(), "answered_total");

    let third = n / 3;
    let mut sources = publish(0, third);
    let a = start("a", &["events.0", "events.1"]);
    let b = start("b", &["events.2", "events.3"]);
    let c = start("c", &["events.4", "events.5"]);
    wait("the first third answered", &|| scores() >= third as u64);
    wait("b checkpointed", &|| metric(&b.metrics(), "checkpoints_total") > 0);
    sources.extend(publish(third, 2 * third));
    wait("b answering the second third", &|| answered(&b) > (third / 3 + third / 6) as u64);
    let killed = Instant::now();
    drop(b); // SIGKILL
    let b2 = start("b2", &["events.2", "events.3"]);
    wait("b2 answering", &|| answered(&b2) > 0);
    let served_again = killed.elapsed();
    wait("the second third answered", &|| scores() >= (2 * third) as u64);
    // events.5 moves from c to d: c stops cleanly (its last checkpoints), then comes back
    // with events.4 only.
    let moved = Instant::now();
    let (ok, c_log) = c.term();
    assert!(ok, "{c_log}");
    let c2 = start("c2", &["events.4"]);
    let d = start("d", &["events.5"]);
    sources.extend(publish(2 * third, n));
    wait("every event answered", &|| scores() >= n as u64);
    let finished = started.elapsed();
    let mut logs = String::new();
    for s in [a, b2, c2, d] {
        let (ok, log) = s.term();
        assert!(ok, "{log}");
        logs += &log;
    }
    let restores: Vec<&str> = logs.lines().filter(|l| l.contains("keys restored")).collect();
    eprintln!("kill to answering again (restart included): {served_again:?}");
    eprintln!("move of events.5 (stop, two starts) begun {:?} before the end", moved.elapsed());
    for r in &restores {
        eprintln!("{r}");
    }
    eprintln!("{n} events through the instances in {finished:?} (reference run included)");
    let moved_in = restores.iter().find(|l| l.contains("subject events.5:")).expect("d restored");
    assert!(!moved_in.contains(": 0 keys"), "{moved_in}");
    assert!(restores.iter().any(|l| l.contains("subject events.2:")), "b2 restored");

    let all = io.block_on(answers(&js));
    let mut by_source: HashMap<&str, &str> = HashMap::new();
    for (source, body) in &all {
        if let Some(before) = by_source.insert(source, body) {
            assert_eq!(before, body.as_str(), "{source} answered twice, differently");
        }
    }
    eprintln!("{} answers, {} duplicates, for {n} events", all.len(), all.len() - by_source.len());
    assert_eq!(by_source.len(), n, "every event answered");
    for (i, s) in sources.iter().enumerate() {
        let a: serde_json::Value = serde_json::from_str(by_source[s.as_str()]).unwrap();
        assert_eq!(a["id"].as_u64(), Some(i as u64), "{s}");
        assert_eq!(a["score"].to_string(), want[&(i as u64)], "event {i} ({s})");
    }
    io.block_on(async {
        let s = js.get_stream("EVENTS").await.unwrap();
        for p in 0..6 {
            let info = s.consumer_info(format!("scorers_events_{p}")).await.unwrap();
            assert_eq!((info.num_ack_pending, info.num_pending), (0, 0), "events.{p}");
        }
    });
    drop(client);
    std::fs::remove_dir_all(&dir).ok();
}

/// One instance draining a backlog of the repeated fraud stream with its features over two
/// partition subjects (`STREAMSCORE_NATS_EVENTS` events, default 200,000): events per second
/// from its first message to every answer confirmed, and where the pump's time went. A
/// measurement, not a check of speed: run it with
/// `cargo test --release --features nats --test serve_nats -- --ignored --nocapture drain`.
#[test]
#[ignore = "a measurement: --ignored --nocapture"]
fn one_instance_drains_a_backlog() {
    let total = std::env::var("STREAMSCORE_NATS_EVENTS").map_or(200_000, |v| v.parse().unwrap());
    let batch = std::env::var("STREAMSCORE_NATS_BATCH").unwrap_or_else(|_| "4096".into());
    let io = tokio::runtime::Runtime::new().unwrap();
    let dir = temp_dir("nats-drain");
    let nats = Nats::start(&dir.join("js"));
    let lines = common::serve_child::repeated(&fraud_events(), total);
    let (_client, js) = io.block_on(streams(&nats));
    io.block_on(async {
        let t = Instant::now();
        for chunk in lines.chunks(1_000) {
            let mut acks = Vec::new();
            for (key, event) in chunk {
                acks.push(js.publish(format!("events.{}", key % 2), event.clone().into()).await);
            }
            for ack in acks {
                ack.unwrap().await.unwrap();
            }
        }
        eprintln!("published {total} events in {:?}", t.elapsed());
    });
    let runtime = format!("[runtime]\nmax_batch = {batch}\n");
    let config = config(&dir, &nats, "drain", &runtime, 30, "");
    let start = Instant::now();
    let s = Serve::start(&config, dir.join("drain.log"));
    common::serve_child::drain(s, start, total, "the first", nats.child.id());
    assert_eq!(io.block_on(count(&js, "SCORES")), total as u64);
    std::fs::remove_dir_all(&dir).ok();
}

/// End-to-end latency at a steady rate: one instance (the fraud model with its features) is
/// running when events are published at `STREAMSCORE_NATS_RATE` events/s (default 50,000)
/// for `STREAMSCORE_NATS_EVENTS` events (default 200,000); each event's latency is from the
/// moment the test publishes it to the moment JetStream stored its answer (the answer
/// message's own time stamp; one clock, this machine's), so it includes the broker both
/// ways, the fetch, scoring and the confirmed publish. A measurement:
/// `cargo test --release --features nats --test serve_nats -- --ignored --nocapture open_loop`.
#[test]
#[ignore = "a measurement: --ignored --nocapture"]
fn open_loop_latency_broker_in_to_answer_stored() {
    let env = |name: &str, default: usize| {
        std::env::var(name).map_or(default, |v| v.parse::<usize>().unwrap())
    };
    let (total, rate) =
        (env("STREAMSCORE_NATS_EVENTS", 200_000), env("STREAMSCORE_NATS_RATE", 50_000));
    let io = tokio::runtime::Runtime::new().unwrap();
    let dir = temp_dir("nats-open-loop");
    let nats = Nats::start(&dir.join("js"));
    let lines = common::serve_child::repeated(&fraud_events(), total);
    let (_client, js) = io.block_on(streams(&nats));
    let config = config(&dir, &nats, "open", "", 30, "");
    let s = Serve::start(&config, dir.join("open.log"));
    std::thread::sleep(Duration::from_secs(1));
    let now_ns = || {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
            as i128
    };
    // Published in ticks of 1 ms, as many as the rate says are due.
    let sent: Vec<i128> = io.block_on(async {
        let mut sent = Vec::with_capacity(total);
        let mut acks = std::collections::VecDeque::new();
        let start = Instant::now();
        while sent.len() < total {
            let due = ((start.elapsed().as_secs_f64() * rate as f64) as usize).min(total);
            for (key, event) in &lines[sent.len()..due] {
                sent.push(now_ns());
                acks.push_back(
                    js.publish(format!("events.{}", key % 2), event.clone().into()).await.unwrap(),
                );
                if acks.len() > 1_000 {
                    acks.pop_front().unwrap().await.unwrap();
                }
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        for a in acks {
            a.await.unwrap();
        }
        sent
    });
    let offered = total as f64 / (now_ns() - sent[0]) as f64 * 1e9;
    let deadline = Instant::now() + Duration::from_secs(120);
    while io.block_on(count(&js, "SCORES")) < total as u64 {
        assert!(Instant::now() < deadline, "not every event answered in 120 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    let metrics = s.metrics();
    let (ok, log) = s.term();
    assert!(ok, "{log}");
    // Each answer's latency: its stored time against its event's publish time.
    let mut latency: Vec<i128> = io.block_on(async {
        let c = js
            .get_stream("SCORES")
            .await
            .unwrap()
            .create_consumer(consumer::pull::Config {
                ack_policy: consumer::AckPolicy::None,
                ..Default::default()
            })
            .await
            .unwrap();
        let mut out = Vec::with_capacity(total);
        while out.len() < total {
            let mut batch = c.fetch().max_messages(10_000).messages().await.unwrap();
            while let Some(m) = batch.next().await {
                let m = m.unwrap();
                let stored = m.info().unwrap().published.unix_timestamp_nanos();
                let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
                out.push(stored - sent[v["id"].as_u64().unwrap() as usize]);
            }
        }
        out
    });
    latency.sort_unstable();
    let q = |p: f64| latency[((latency.len() - 1) as f64 * p) as usize] as f64 / 1e6;
    eprintln!(
        "{total} events offered at {offered:.0}/s: broker in to answer stored p50 {:.2} ms, \
         p99 {:.2} ms, p999 {:.2} ms, max {:.2} ms",
        q(0.5),
        q(0.99),
        q(0.999),
        q(1.0)
    );
    for l in metrics.lines().filter(|l| l.contains("busy_seconds") && !l.starts_with('#')) {
        eprintln!("{l}");
    }
    std::fs::remove_dir_all(&dir).ok();
}
