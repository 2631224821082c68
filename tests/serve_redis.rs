//! `streamscore serve` on Redis Streams, against a real `redis-server` this test starts on a
//! random loopback port: the fraud stream, partitioned by card over two streams, goes through
//! a consumer group with its features; the instance is SIGKILLed mid-stream and restarted,
//! then the broker stops answering for a while (SIGSTOP) and comes back. Every entry is
//! answered, duplicates only for entries after the last checkpoint and identical, and every
//! score equals an uninterrupted line-delimited JSON run's over the same events.

#![cfg(all(feature = "redis", feature = "serve", feature = "csv"))]

mod common;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::redis_server::Server;
use common::serve_child::{
    Serve, fraud_events, fraud_model, metric, temp_dir, uninterrupted_scores,
};

/// The output stream's entries: (source, answer), in order.
fn answers(c: &mut redis::Connection) -> Vec<(String, String)> {
    let reply: Vec<(String, Vec<(String, String)>)> =
        redis::cmd("XRANGE").arg("scores").arg("-").arg("+").query(c).unwrap();
    reply
        .into_iter()
        .map(|(_, fields)| {
            let f: HashMap<String, String> = fields.into_iter().collect();
            (f["source"].clone(), f["answer"].clone())
        })
        .collect()
}

fn xlen(c: &mut redis::Connection) -> usize {
    redis::cmd("XLEN").arg("scores").query(c).unwrap()
}

fn wait(what: &str, secs: u64, done: &mut dyn FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(secs), "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn fraud_stream_on_redis_streams_survives_sigkill_and_a_stalled_broker() {
    let dir = temp_dir("redis-streams");
    let redis = Server::start(None);
    let mut c = redis.conn().unwrap();
    // The events as JSON, by card onto two streams; a few malformed entries among them.
    let lines = fraud_events();
    let n = lines.len();
    // The reference: the same events, uninterrupted, through a line-delimited JSON input.
    let want = uninterrupted_scores(&dir, &lines);
    let model = fraud_model();

    let add = |c: &mut redis::Connection, from: usize, to: usize, ids: &mut Vec<String>| {
        let mut pipe = redis::pipe();
        for (key, event) in &lines[from..to] {
            pipe.cmd("XADD").arg(format!("events.{}", key % 2)).arg("*").arg("event").arg(event);
        }
        let got: Vec<String> = pipe.query(c).unwrap();
        for (id, (key, _)) in got.into_iter().zip(&lines[from..to]) {
            ids.push(format!("events.{}/{id}", key % 2));
        }
    };
    let mut sources = Vec::new();
    // Malformed entries: no `event` field, and an event that is not JSON.
    let bad_a: String =
        redis::cmd("XADD").arg("events.0").arg("*").arg("other").arg("1").query(&mut c).unwrap();
    let bad_b: String = redis::cmd("XADD")
        .arg("events.1")
        .arg("*")
        .arg("event")
        .arg("{not json")
        .query(&mut c)
        .unwrap();
    let bad = [format!("events.0/{bad_a}"), format!("events.1/{bad_b}")];
    let cut = 9_000;
    add(&mut c, 0, cut, &mut sources);

    let ckpt = dir.join("checkpoints");
    let config = dir.join("redis.toml");
    std::fs::write(
        &config,
        format!(
            "{model}[checkpoint]\ndir = \"{}\"\nevery_s = 1\n\
             [redis_streams]\nurl = \"{}\"\nstreams = [\"events.0\", \"events.1\"]\n\
             consumer = \"scorer-a\"\noutput = \"scores\"\ntimeout_ms = 300\n",
            ckpt.display(),
            redis.url()
        ),
    )
    .unwrap();
    // The first instance crashes right after its first checkpoint, before it commits: on the
    // restart every entry it took is still pending, and those the checkpoint holds are skipped.
    let mut crashing = Command::new(env!("CARGO_BIN_EXE_streamscore"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .env("STREAMSCORE_FAILPOINT", "after_checkpoint")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(!crashing.wait().unwrap().success());
    let pending = |c: &mut redis::Connection| -> u64 {
        ["events.0", "events.1"]
            .iter()
            .map(|s| {
                let p: (u64, redis::Value, redis::Value, redis::Value) =
                    redis::cmd("XPENDING").arg(s).arg("streamscore").query(c).unwrap();
                p.0
            })
            .sum()
    };
    assert!(pending(&mut c) > 0, "the crash left nothing pending");
    let crashed_answers = xlen(&mut c);

    let first = Serve::start(&config, dir.join("first.log"));
    // Entries the checkpoint holds are committed unanswered (answered before the crash), the
    // rest scored; then nothing is pending.
    wait("the first part answered", 60, &mut || xlen(&mut c) >= cut + 2 && pending(&mut c) == 0);
    let skipped = metric(&first.metrics(), "skipped_total");
    assert!(skipped > 0 && skipped as usize <= crashed_answers, "{skipped} skipped");
    add(&mut c, cut, n, &mut sources);
    wait("answers past the cut", 60, &mut || xlen(&mut c) > cut + 2 + 1_000);
    drop(first); // SIGKILL

    let second = Serve::start(&config, dir.join("second.log"));
    // The broker stops answering for a while, then comes back.
    redis.signal("-STOP");
    std::thread::sleep(Duration::from_millis(1_500));
    redis.signal("-CONT");
    let mut c = redis.conn().unwrap();
    wait("every entry answered", 120, &mut || {
        if xlen(&mut c) < n + 2 {
            return false;
        }
        let got: std::collections::HashSet<String> =
            answers(&mut c).into_iter().map(|a| a.0).collect();
        sources.iter().chain(&bad).all(|s| got.contains(s))
    });
    let metrics = second.metrics();
    let (ok, log) = second.term();
    assert!(ok, "{log}");
    assert!(log.contains("restored from"), "{log}");
    assert!(log.contains("broker") && log.contains("reachable again"), "{log}");
    assert!(metric(&metrics, "broker_errors_total") > 0, "{metrics}");
    assert!(metric(&metrics, "reconnects_total") > 0, "{metrics}");
    assert_eq!(metric(&metrics, "up"), 1);

    // Every entry answered; a duplicate only repeats the same answer.
    let all = answers(&mut c);
    let mut by_source: HashMap<&str, &str> = HashMap::new();
    let mut duplicates = 0;
    for (source, answer) in &all {
        if let Some(before) = by_source.insert(source, answer) {
            assert_eq!(before, answer, "{source}: a replayed answer differs");
            duplicates += 1;
        }
    }
    assert_eq!(by_source.len(), n + 2);
    assert!(duplicates < crashed_answers + n - cut, "{duplicates} duplicates");
    for s in &bad {
        let a: serde_json::Value = serde_json::from_str(by_source[s.as_str()]).unwrap();
        assert_eq!(a["status"], 400, "{a}");
    }
    // Every score equals the uninterrupted run's: the state came back with the checkpoint.
    for (i, s) in sources.iter().enumerate() {
        let a: serde_json::Value = serde_json::from_str(by_source[s.as_str()]).unwrap();
        assert_eq!(a["source"].as_str(), Some(s.as_str()));
        assert_eq!(a["id"].as_u64(), Some(i as u64));
        assert_eq!(a["score"].to_string(), want[&(i as u64)], "event {i} ({s})");
    }
    // Nothing is left pending: every entry was committed.
    assert_eq!(pending(&mut c), 0, "entries left pending");
    std::fs::remove_dir_all(&dir).ok();
}
