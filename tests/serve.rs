//! `streamscore serve` as users run it: the binary started on a random loopback port, driven
//! by tritonclient (tests/serve_oip.py; the test Python comes from `scripts/python.sh`, which
//! the README's test command runs), and stopped with a signal.
#![cfg(feature = "serve")]

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `streamscore serve` child process and the address it printed.
struct Serve {
    child: Child,
    addr: String,
}

impl Serve {
    fn start(args: &[&str]) -> Serve {
        let mut child = Command::new(env!("CARGO_BIN_EXE_streamscore"))
            .arg("serve")
            .args(args)
            .current_dir(common::root())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start streamscore serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).unwrap();
        let Some(addr) = line.trim().strip_prefix("listening on http://") else {
            let mut err = String::new();
            let _ = child.stderr.take().expect("stderr").read_to_string(&mut err);
            panic!("serve did not start: {line:?} {err}");
        };
        Serve { addr: addr.to_string(), child }
    }

    /// Sends `signal` and waits for the exit: (status, stderr).
    fn stop(mut self, signal: i32) -> (std::process::ExitStatus, String) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        unsafe { libc::kill(self.child.id() as i32, signal) };
        let start = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "serve did not exit");
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut err = String::new();
        let _ = self.child.stderr.take().expect("stderr").read_to_string(&mut err);
        (status, err)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn python(args: &[&str]) {
    let python = common::root().join("target/py-venv/bin/python");
    assert!(
        python.exists(),
        "no test Python: run scripts/python.sh (the README's test command does)"
    );
    let out = Command::new(python)
        .arg(common::root().join("tests/serve_oip.py"))
        .args(args)
        .output()
        .unwrap();
    let (stdout, stderr) =
        (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "serve_oip.py {args:?} failed:\n{stdout}\n{stderr}");
    eprint!("{stdout}");
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("streamscore-serve-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn root(rel: &str) -> String {
    common::root().join(rel).to_str().unwrap().to_string()
}

/// Every endpoint, JSON and binary tensors, bad requests, concurrency, unload/load: from a
/// config file with a small body limit, stopped by SIGTERM after the drain (exit 0).
#[test]
fn tritonclient_drives_every_endpoint() {
    let dir = temp_dir("plain");
    let config = dir.join("serve.toml");
    let max_body = 1 << 20;
    std::fs::write(
        &config,
        format!(
            "[model]\npath = \"{}\"\n[runtime]\nmax_delay_us = 200\n\
             [http]\naddress = \"127.0.0.1:0\"\nmax_body_bytes = {max_body}\n",
            root("models/golden/lgb_multiclass/model.txt")
        ),
    )
    .unwrap();
    let serve = Serve::start(&["--config", config.to_str().unwrap()]);
    python(&["plain", &serve.addr, &root("models/golden/lgb_multiclass"), &max_body.to_string()]);
    let (status, err) = serve.stop(libc::SIGTERM);
    assert!(status.success(), "exit {status:?}: {err}");
    assert!(err.contains("SIGTERM, draining") && err.contains("drained"), "{err}");
}

/// Keyed events over HTTP: key, event time and raw fields per event; the feature stage runs
/// and the scores equal LightGBM's on the offline features. No config file: flags only.
#[test]
fn keyed_events_run_the_feature_stage() {
    let dir = temp_dir("keyed");
    let config = dir.join("serve.toml");
    std::fs::write(
        &config,
        format!(
            "[model]\npath = \"{}\"\nname = \"fraud\"\nfeatures = \"{}\"\n",
            root("examples/fraud/model.txt"),
            root("examples/fraud/spec.toml")
        ),
    )
    .unwrap();
    let serve = Serve::start(&["--config", config.to_str().unwrap(), "--http", "127.0.0.1:0"]);
    python(&["keyed", &serve.addr, &root("examples/fraud")]);
    let (status, err) = serve.stop(libc::SIGINT);
    assert!(status.success(), "exit {status:?}: {err}");
}

/// `--model` alone serves under the name `model`; a bad model file fails at start with one
/// error line and exit 1, before anything listens.
#[test]
fn flags_alone_and_bad_models() {
    let serve =
        Serve::start(&["--model", "models/golden/lgb_binary/model.txt", "--http", "127.0.0.1:0"]);
    let (status, _) = serve.stop(libc::SIGTERM);
    assert!(status.success());
    let dir = temp_dir("bad");
    let bad = dir.join("model.txt");
    std::fs::write(&bad, "tree\nversion=v3\nnum_class=1\n").unwrap();
    for args in [
        vec!["--model", bad.to_str().unwrap(), "--http", "127.0.0.1:0"],
        vec![
            "--model",
            "models/golden/lgb_binary/model.txt",
            "--http",
            "127.0.0.1:0",
            "--name",
            "a/b",
        ],
        vec!["--config", "/nonexistent/serve.toml"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_streamscore"))
            .arg("serve")
            .args(&args)
            .current_dir(common::root())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}: nothing listened");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("error: "), "{args:?}: {err}");
    }
}

/// Feature state survives SIGKILL: a stream's first `cut` events go in, a checkpoint covers
/// them, the server is killed with SIGKILL and restarted on the same checkpoint directory, and
/// the rest of the stream is replayed from the restored checkpoint's position. Every score
/// after the restart equals, bit for bit, the score of an uninterrupted server for the same
/// event (and, for the fraud example, LightGBM's on the offline features).
fn survives_sigkill(name: &str, stream: &str, n: usize, cut: usize) {
    let dir = temp_dir(name);
    let ckpt = dir.join("checkpoints");
    let config = |file: &str, with_ckpt: bool| {
        let path = dir.join(file);
        let mut text = format!(
            "[model]\npath = \"{}\"\nname = \"fraud\"\nfeatures = \"{}\"\n\
             [http]\naddress = \"127.0.0.1:0\"\n",
            root("examples/fraud/model.txt"),
            root("examples/fraud/spec.toml")
        );
        if with_ckpt {
            text += &format!("[checkpoint]\ndir = \"{}\"\nevery_s = 1\n", ckpt.display());
        }
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let (whole, resumed) = (dir.join("whole.f32"), dir.join("resumed.f32"));
    let (n, cut) = (n.to_string(), cut.to_string());
    let serve = Serve::start(&["--config", &config("plain.toml", false)]);
    python(&["keyed", &serve.addr, stream, "0", &n, whole.to_str().unwrap()]);
    drop(serve);

    let with = config("ckpt.toml", true);
    let serve = Serve::start(&["--config", &with]);
    python(&["keyed", &serve.addr, stream, "0", &cut, "/dev/null"]);
    let want = ckpt.join(format!("features-{cut:0>20}.snap"));
    let start = Instant::now();
    while !want.exists() {
        assert!(start.elapsed() < Duration::from_secs(30), "no checkpoint at {cut}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, _) = serve.stop(libc::SIGKILL);
    assert!(!status.success());

    let serve = Serve::start(&["--config", &with]);
    python(&["keyed", &serve.addr, stream, "restored", &n, resumed.to_str().unwrap()]);
    let (status, err) = serve.stop(libc::SIGTERM);
    assert!(status.success() && err.contains("restored from"), "{err}");
    let read = |p: &PathBuf| -> Vec<u32> {
        std::fs::read(p)
            .unwrap()
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    };
    let (a, b) = (read(&whole), read(&resumed));
    assert_eq!(a.len(), b.len());
    let cut: usize = cut.parse().unwrap();
    for i in cut..a.len() {
        assert_eq!(
            a[i],
            b[i],
            "event {i}: {} after the restart, {} uninterrupted",
            f32::from_bits(b[i]),
            f32::from_bits(a[i])
        );
    }
    // The shutdown checkpoint covers the whole stream.
    assert!(ckpt.join(format!("features-{:020}.snap", a.len())).exists());
}

#[test]
fn fraud_example_features_survive_sigkill() {
    survives_sigkill("restart", &root("examples/fraud"), 15_902, 9_000);
}

/// The same with a million keyed events over 100,000 cards.
#[test]
fn a_million_keyed_events_survive_sigkill() {
    survives_sigkill("restart-1m", "synthetic:1000000", 1_000_000, 600_000);
}
