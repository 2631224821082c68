//! `streamscore serve` on Redis Streams, against a real `redis-server` this test starts on a
//! random loopback port: the fraud stream, partitioned by card over two streams, goes through
//! a consumer group with its features; the instance is SIGKILLed mid-stream and restarted,
//! then the broker stops answering for a while (SIGSTOP) and comes back. Every entry is
//! answered, duplicates only for entries after the last checkpoint and identical, and every
//! score equals an uninterrupted line-delimited JSON run's over the same events.

#![cfg(all(feature = "redis", feature = "serve", feature = "csv"))]

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::redis_server::Server;

fn root(rel: &str) -> String {
    common::root().join(rel).to_str().unwrap().to_string()
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("streamscore-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A serve child whose stderr goes to a file; the address it printed.
struct Serve {
    child: Child,
    addr: String,
    log: PathBuf,
}

impl Serve {
    fn start(config: &Path, log: PathBuf) -> Serve {
        let mut child = Command::new(env!("CARGO_BIN_EXE_streamscore"))
            .args(["serve", "--config", config.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let addr = line.trim().strip_prefix("listening on http://").map(str::to_string);
        let addr = addr.unwrap_or_else(|| {
            panic!("serve did not start: {line:?} {}", std::fs::read_to_string(&log).unwrap())
        });
        Serve { child, addr, log }
    }

    fn metrics(&self) -> String {
        let mut s = std::net::TcpStream::connect(&self.addr).unwrap();
        write!(s, "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        reply
    }

    /// SIGTERM, and the exit status with what it wrote on stderr.
    fn term(mut self) -> (bool, String) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let ok = self.child.wait().unwrap().success();
        (ok, std::fs::read_to_string(&self.log).unwrap())
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(&format!("streamscore_connector_{name}{{")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

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
    let stream = std::fs::read_to_string(root("examples/fraud/stream.csv")).unwrap();
    let mcc = ["grocery", "fuel", "restaurant", "travel", "online", "atm"];
    let mut lines = Vec::new();
    for (i, row) in stream.lines().skip(1).enumerate() {
        let f: Vec<&str> = row.split(',').collect();
        let code = mcc.iter().position(|m| *m == f[3]).unwrap();
        lines.push((
            f[0].parse::<u64>().unwrap(),
            format!(
                "{{\"id\":{i},\"key\":{},\"timestamp_ms\":{},\"fields\":{{\"amount\":{},\"mcc\":{code}}}}}",
                f[0], f[1], f[2]
            ),
        ));
    }
    let n = lines.len();
    // The reference: the same events, uninterrupted, through a line-delimited JSON input.
    let jsonl = dir.join("events.jsonl");
    let text: Vec<&str> = lines.iter().map(|l| l.1.as_str()).collect();
    std::fs::write(&jsonl, text.join("\n") + "\n").unwrap();
    let model = format!(
        "[model]\npath = \"{}\"\nname = \"fraud\"\nfeatures = \"{}\"\n[http]\naddress = \"127.0.0.1:0\"\n",
        root("examples/fraud/model.txt"),
        root("examples/fraud/spec.toml")
    );
    let reference = dir.join("reference.toml");
    std::fs::write(
        &reference,
        format!("{model}[jsonl]\ninput = \"{}\"\noutput = \"reference.jsonl\"\n", jsonl.display()),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_streamscore"))
        .args(["serve", "--config", reference.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut want: HashMap<u64, String> = HashMap::new();
    for l in std::fs::read_to_string(dir.join("reference.jsonl")).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        want.insert(v["id"].as_u64().unwrap(), v["score"].to_string());
    }
    assert_eq!(want.len(), n);

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
