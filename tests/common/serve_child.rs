//! A `streamscore serve` child for the broker tests: its stderr in a file, its address, its
//! `/metrics`, and the fraud stream as events with the answers of an uninterrupted run.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A serve child whose stderr goes to a file; the address it printed.
pub struct Serve {
    pub child: Child,
    pub addr: String,
    pub log: PathBuf,
}

impl Serve {
    pub fn start(config: &Path, log: PathBuf) -> Serve {
        let mut child = Command::new(bin())
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

    pub fn metrics(&self) -> String {
        let mut s = std::net::TcpStream::connect(&self.addr).unwrap();
        write!(s, "GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        reply
    }

    /// SIGTERM, and the exit status with what it wrote on stderr.
    pub fn term(mut self) -> (bool, String) {
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

pub fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(&format!("streamscore_connector_{name}{{")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

/// The fraud stream as events (key, JSON line in the jsonl format), ids the row index.
pub fn fraud_events() -> Vec<(u64, String)> {
    let stream = std::fs::read_to_string(super::root().join("examples/fraud/stream.csv")).unwrap();
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
    lines
}

/// The `[model]` and `[http]` sections serving the fraud example with its features.
pub fn fraud_model() -> String {
    let root = super::root();
    format!(
        "[model]\npath = \"{}\"\nname = \"fraud\"\nfeatures = \"{}\"\n[http]\naddress = \"127.0.0.1:0\"\n",
        root.join("examples/fraud/model.txt").display(),
        root.join("examples/fraud/spec.toml").display()
    )
}

/// Every event's score (its JSON text) from an uninterrupted line-delimited JSON run.
pub fn uninterrupted_scores(dir: &Path, lines: &[(u64, String)]) -> HashMap<u64, String> {
    let jsonl = dir.join("events.jsonl");
    let text: Vec<&str> = lines.iter().map(|l| l.1.as_str()).collect();
    std::fs::write(&jsonl, text.join("\n") + "\n").unwrap();
    let config = dir.join("reference.toml");
    std::fs::write(
        &config,
        format!(
            "{}[jsonl]\ninput = \"{}\"\noutput = \"reference.jsonl\"\n",
            fraud_model(),
            jsonl.display()
        ),
    )
    .unwrap();
    let out =
        Command::new(bin()).args(["serve", "--config", config.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut want = HashMap::new();
    for l in std::fs::read_to_string(dir.join("reference.jsonl")).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        want.insert(v["id"].as_u64().unwrap(), v["score"].to_string());
    }
    assert_eq!(want.len(), lines.len());
    want
}

/// The fraud stream repeated up to `total` events, each copy with its own cards (card + c * 10^6)
/// and its times moved past the copy before; ids run on.
pub fn repeated(base: &[(u64, String)], total: usize) -> Vec<(u64, String)> {
    let parse = |l: &str| -> serde_json::Value { serde_json::from_str(l).unwrap() };
    let times: Vec<i64> =
        base.iter().map(|(_, l)| parse(l)["timestamp_ms"].as_i64().unwrap()).collect();
    let span = times.iter().max().unwrap() - times.iter().min().unwrap() + 86_400_000;
    let mut out = Vec::with_capacity(total);
    'copies: for c in 0.. {
        for ((key, line), t) in base.iter().zip(&times) {
            if out.len() == total {
                break 'copies;
            }
            let mut v = parse(line);
            let key = key + c as u64 * 1_000_000;
            v["id"] = out.len().into();
            v["key"] = key.into();
            v["timestamp_ms"] = (t + c * span).into();
            out.push((key, v.to_string()));
        }
    }
    out
}

/// CPU seconds (user and system) a process has used so far, from `/proc/<pid>/stat`.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // After the command's closing parenthesis: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    // SAFETY: sysconf(3) reads a constant of the system.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / tick
}

/// Times a serve child draining a backlog of `total` messages through its connector: from
/// `start` to its first message taken, and from then to the last answer confirmed, with the
/// CPU time the instance (and the broker, `broker` its pid) used meanwhile; then stops it and
/// prints the rates and the connector's lines of `/metrics`.
pub fn drain(s: Serve, start: std::time::Instant, total: usize, first_what: &str, broker: u32) {
    use std::time::Duration;
    while metric(&s.metrics(), "received_total") == 0 {
        assert!(start.elapsed() < Duration::from_secs(60), "nothing received in 60 s");
        std::thread::sleep(Duration::from_millis(1));
    }
    let first = start.elapsed();
    let cpu = (cpu_seconds(s.child.id()), cpu_seconds(broker));
    while metric(&s.metrics(), "answered_total") < total as u64 {
        assert!(start.elapsed() < Duration::from_secs(600), "not drained in 600 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    let took = start.elapsed() - first;
    let cpu = (cpu_seconds(s.child.id()) - cpu.0, cpu_seconds(broker) - cpu.1);
    let metrics = s.metrics();
    let (ok, log) = s.term();
    assert!(ok, "{log}");
    eprintln!(
        "{total} events in {took:?} after {first_what} in {first:?}: {:.0} events/s per instance; \
         CPU: the instance {:.2} s ({:.0} events per CPU second), the broker {:.2} s",
        total as f64 / took.as_secs_f64(),
        cpu.0,
        total as f64 / cpu.0,
        cpu.1
    );
    for l in metrics.lines().filter(|l| l.contains("connector_") && !l.starts_with('#')) {
        eprintln!("{l}");
    }
}

/// A fresh temporary directory for `name`.
pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("streamscore-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The `streamscore` binary under test (`STREAMSCORE_BIN` names another, e.g. a baseline
/// build for the drain measurements).
pub fn bin() -> String {
    std::env::var("STREAMSCORE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_streamscore").into())
}
