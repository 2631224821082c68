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

/// Reads a CSV of numbers (empty cells are missing) into rows.
fn csv_rows(path: &str) -> Vec<Vec<Option<f64>>> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines().skip(1).map(|l| l.split(',').map(|c| c.parse::<f64>().ok()).collect()).collect()
}

/// A sidecar on stdin and stdout: one line in, its answer out before the next is written
/// (the output is flushed whenever the input waits); then a burst with bad lines among good
/// ones; every line answered once, in order, with LightGBM's prediction or a typed error;
/// closing stdin drains and exits 0, the ready line on stderr.
#[test]
fn jsonl_sidecar_on_stdin_and_stdout() {
    use std::io::Write;
    let golden = root("models/golden/lgb_binary");
    let rows = csv_rows(&format!("{golden}/input.csv"));
    let pred: Vec<f64> = std::fs::read_to_string(format!("{golden}/pred.csv"))
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    let mut child = Command::new(env!("CARGO_BIN_EXE_streamscore"))
        .args(["serve", "--model", &format!("{golden}/model.txt"), "--http", "127.0.0.1:0"])
        .args(["--input", "-"])
        .current_dir(common::root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut answers = BufReader::new(child.stdout.take().unwrap());
    let event = |i: usize| {
        let input: Vec<serde_json::Value> = rows[i].iter().map(|v| serde_json::json!(v)).collect();
        serde_json::json!({"id": format!("e{i}"), "input": input}).to_string()
    };
    let next = |answers: &mut BufReader<_>| -> serde_json::Value {
        let mut line = String::new();
        answers.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
    };
    // One at a time: each answer arrives while the input waits.
    for (i, &p) in pred.iter().enumerate().take(3) {
        writeln!(stdin, "{}", event(i)).unwrap();
        stdin.flush().unwrap();
        let a = next(&mut answers);
        assert_eq!(
            (a["line"].as_u64(), a["id"].as_str()),
            (Some(i as u64 + 1), Some(&*format!("e{i}")))
        );
        let got = a["score"][0].as_f64().unwrap();
        assert!(common::rel_err(got, p) < 1e-5, "row {i}: {got} vs LightGBM {p}");
    }
    // A burst: the rest of the rows with bad lines among them.
    let bad = [
        ("", "empty line"),
        ("{\"input\": [1, 2]}", "holds 2 values"),
        ("{\"input\": [1,", "not an event"),
        ("{\"fields\": {\"nope\": 1}}", "no field `nope`"),
        ("{\"input\": [], \"colour\": 1}", "unknown field"),
        ("{\"id\": {}, \"input\": []}", "`id`"),
        (&"x".repeat(2 << 20), "over jsonl.max_line_bytes"),
    ];
    let mut want: Vec<Result<(String, f64), &str>> = Vec::new();
    let mut burst = String::new();
    for i in 3..rows.len() {
        if i % 50 == 0 {
            let (line, why) = bad[(i / 50) % bad.len()];
            burst += line;
            burst.push('\n');
            want.push(Err(why));
        }
        burst += &event(i);
        burst.push('\n');
        want.push(Ok((format!("e{i}"), pred[i])));
    }
    let writer = std::thread::spawn(move || {
        stdin.write_all(burst.as_bytes()).unwrap();
        // Closing stdin ends the input: serve drains and exits.
    });
    for (k, w) in want.iter().enumerate() {
        let a = next(&mut answers);
        assert_eq!(a["line"].as_u64(), Some(k as u64 + 4), "{a}");
        match w {
            Ok((id, p)) => {
                assert_eq!(a["id"].as_str(), Some(id.as_str()), "{a}");
                let got = a["score"][0].as_f64().unwrap_or_else(|| panic!("{a}"));
                assert!(common::rel_err(got, *p) < 1e-5, "{id}: {got} vs LightGBM {p}");
            }
            Err(why) => {
                assert!(a["error"].as_str().unwrap().contains(why), "{a} lacks {why}");
                assert!(matches!(a["status"].as_u64(), Some(400 | 413)), "{a}");
            }
        }
    }
    writer.join().unwrap();
    let mut rest = String::new();
    answers.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "", "answers past the input's lines");
    let status = child.wait().unwrap();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(status.success(), "{err}");
    assert!(err.contains("listening on http://") && err.contains("the input ended"), "{err}");
}

/// Counts the lines of a file (0 when it does not exist yet).
fn count_lines(path: &std::path::Path) -> usize {
    std::fs::read(path).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count())
}

/// A file input and output survive SIGKILL exactly: the fraud stream (with bad lines among the
/// events) goes in through a FIFO, a checkpoint covers its first 9,000 lines, 3,000 more are
/// answered, the server is killed; restarted on the whole file with the same checkpoint
/// directory, it skips the lines the checkpoint covers, cuts the output back to them and
/// goes on. The output file is then byte for byte that of an uninterrupted run, whose
/// held-out scores match LightGBM's on the offline features.
#[test]
fn jsonl_files_survive_sigkill_exactly() {
    use std::io::Write;
    let dir = temp_dir("jsonl-restart");
    let stream = std::fs::read_to_string(root("examples/fraud/stream.csv")).unwrap();
    let mcc = ["grocery", "fuel", "restaurant", "travel", "online", "atm"];
    let (mut lines, mut index_of_line) = (Vec::new(), Vec::new());
    for (i, row) in stream.lines().skip(1).enumerate() {
        let c: Vec<&str> = row.split(',').collect();
        if i % 997 == 500 {
            lines.push("{\"key\": 1}".to_string()); // no time, no fields: refused
            index_of_line.push(None);
        }
        let code = mcc.iter().position(|m| *m == c[3]).unwrap();
        lines.push(format!(
            "{{\"id\":{i},\"key\":{},\"timestamp_ms\":{},\"fields\":{{\"amount\":{},\"mcc\":{code}}}}}",
            c[0], c[1], c[2]
        ));
        index_of_line.push(Some(i));
    }
    let input = dir.join("stream.jsonl");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let ckpt = dir.join("checkpoints");
    let config = |file: &str, input: &std::path::Path, output: &str, with_ckpt: bool| {
        let mut text = format!(
            "[model]\npath = \"{}\"\nname = \"fraud\"\nfeatures = \"{}\"\n\
             [http]\naddress = \"127.0.0.1:0\"\n[jsonl]\ninput = \"{}\"\noutput = \"{}\"\n",
            root("examples/fraud/model.txt"),
            root("examples/fraud/spec.toml"),
            input.display(),
            dir.join(output).display()
        );
        if with_ckpt {
            text += &format!("[checkpoint]\ndir = \"{}\"\nevery_s = 1\n", ckpt.display());
        }
        let path = dir.join(file);
        std::fs::write(&path, text).unwrap();
        path
    };
    let run_to_end = |config: &std::path::Path| -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_streamscore"))
            .args(["serve", "--config", config.to_str().unwrap()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{err}");
        err
    };
    run_to_end(&config("whole.toml", &input, "whole.jsonl", false));
    let whole = std::fs::read_to_string(dir.join("whole.jsonl")).unwrap();

    // The interrupted run reads a FIFO, so the test decides what it has seen.
    let fifo = dir.join("fifo");
    let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo(3) on a NUL-terminated path we own.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    let mut child = Command::new(env!("CARGO_BIN_EXE_streamscore"))
        .args(["serve", "--config"])
        .arg(config("fifo.toml", &fifo, "resumed.jsonl", true))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut feed = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    let (cut, more) = (9_000, 3_000);
    let wait = |what: &str, done: &dyn Fn() -> bool| {
        let start = Instant::now();
        while !done() {
            assert!(start.elapsed() < Duration::from_secs(60), "{what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    feed.write_all((lines[..cut].join("\n") + "\n").as_bytes()).unwrap();
    let covering = ckpt.join(format!("features-{cut:020}.snap"));
    wait("no checkpoint at the cut", &|| covering.exists());
    feed.write_all((lines[cut..cut + more].join("\n") + "\n").as_bytes()).unwrap();
    let resumed = dir.join("resumed.jsonl");
    wait("no answers past the cut", &|| count_lines(&resumed) >= cut + more);
    child.kill().unwrap();
    child.wait().unwrap();
    drop(feed);

    let err = run_to_end(&config("restart.toml", &input, "resumed.jsonl", true));
    assert!(err.contains("restored from"), "{err}");
    let resumed = std::fs::read_to_string(&resumed).unwrap();
    assert_eq!(resumed.lines().count(), lines.len());
    for (k, (a, b)) in whole.lines().zip(resumed.lines()).enumerate() {
        assert_eq!(a, b, "line {}: uninterrupted vs after SIGKILL and restart", k + 1);
    }
    assert_eq!(whole, resumed);
    assert!(ckpt.join(format!("features-{:020}.snap", lines.len())).exists());

    // The uninterrupted run against LightGBM on the offline features.
    let expected = std::fs::read_to_string(root("examples/fraud/expected.csv")).unwrap();
    let expected: std::collections::HashMap<usize, f64> = expected
        .lines()
        .skip(1)
        .map(|l| {
            let (i, p) = l.split_once(',').unwrap();
            (i.parse().unwrap(), p.parse().unwrap())
        })
        .collect();
    let mut checked = 0;
    for (line, answer) in whole.lines().enumerate() {
        let a: serde_json::Value = serde_json::from_str(answer).unwrap();
        assert_eq!(a["line"].as_u64(), Some(line as u64 + 1));
        match index_of_line[line] {
            None => assert!(a["error"].as_str().unwrap().contains("timestamp_ms"), "{a}"),
            Some(i) => {
                assert_eq!(a["id"].as_u64(), Some(i as u64));
                if let Some(&p) = expected.get(&i) {
                    let got = a["score"][0].as_f64().unwrap();
                    assert!(common::rel_err(got, p) < 1e-5, "event {i}: {got} vs LightGBM {p}");
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, expected.len());
}

/// A client that hangs up (a reset) while its answer is being written is a write error for
/// that connection, not the end of the server: `serve` keeps SIGPIPE ignored (it died of it,
/// exit 141, before).
#[test]
fn a_client_hanging_up_mid_answer_does_not_stop_the_server() {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    let model = root("models/golden/lgb_binary_sigmoid/model.txt");
    let mut serve = Serve::start(&["--model", &model, "--http", "127.0.0.1:0"]);
    let rows = 20_000;
    let data = vec!["0.5"; rows * 8].join(",");
    let body = format!(
        "{{\"inputs\":[{{\"name\":\"input\",\"shape\":[{rows},8],\"datatype\":\"FP32\",\"data\":[{data}]}}]}}"
    );
    for _ in 0..30 {
        let mut s = std::net::TcpStream::connect(&serve.addr).unwrap();
        write!(
            s,
            "POST /v2/models/model/infer HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        // Closed with a reset (linger 0) while the server writes the answer.
        let linger = libc::linger { l_onoff: 1, l_linger: 0 };
        // SAFETY: setsockopt(2) on our own open socket with a correctly sized value.
        let rc = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0);
        std::thread::sleep(Duration::from_millis(2));
        drop(s);
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(serve.child.try_wait().unwrap().is_none(), "serve exited");
    assert_eq!(http(&serve.addr, "GET", "/v2/health/ready", "").0, 200);
    let (status, err) = serve.stop(libc::SIGTERM);
    assert!(status.success(), "exit {status:?}: {err}");
}

/// One HTTP/1.1 request over a fresh connection: (status, body).
fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    let status = reply.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = reply.split_once("\r\n\r\n").map_or("", |b| b.1).to_owned();
    (status, body)
}

#[test]
fn the_config_s_monitor_section_gates_and_profiles_requests() {
    let dir = temp_dir("monitor");
    let golden = root("models/golden/lgb_binary");
    let reference = dir.join("ref.json");
    let out = Command::new(env!("CARGO_BIN_EXE_streamscore"))
        .args([
            "profile",
            "--model",
            &format!("{golden}/model.txt"),
            "--input",
            &format!("{golden}/input.csv"),
        ])
        .arg("--output")
        .arg(&reference)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(
        dir.join("gates.toml"),
        "[[gate]]\nfield = \"f0\"\ncheck = \"range\"\nmin = -5\nmax = 5\npolicy = \"reject\"\n",
    )
    .unwrap();
    let config = dir.join("serve.toml");
    std::fs::write(
        &config,
        format!(
            "[model]\npath = \"{golden}/model.txt\"\n\n[http]\naddress = \"127.0.0.1:0\"\n\n[monitor]\nreference = \"ref.json\"\ngates = \"gates.toml\"\nwindow_ms = 3600000\n"
        ),
    )
    .unwrap();
    let serve = Serve::start(&["--config", config.to_str().unwrap()]);
    let infer = |row: &[f32]| {
        let body = serde_json::json!({"inputs": [{"name": "input", "shape": [1, 8], "datatype": "FP32", "data": row}]});
        http(&serve.addr, "POST", "/v2/models/model/infer", &body.to_string())
    };
    let clean = [0.5, -1.0, 2.0, 0.0, 0.1, 1.0, 3.0, -2.0];
    let (status, body) = infer(&clean);
    assert_eq!(status, 200, "{body}");
    let mut gated = clean;
    gated[0] = 9.0;
    let (status, body) = infer(&gated);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("gate `f0:range`"), "{body}");
    let (status, metrics) = http(&serve.addr, "GET", "/metrics", "");
    assert_eq!(status, 200);
    assert!(
        metrics
            .contains("streamscore_gate_violations_total{rule=\"f0:range\",policy=\"reject\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("streamscore_drift_alerts_total 0"), "{metrics}");
    let (status, err) = serve.stop(libc::SIGTERM);
    assert!(status.success(), "{err}");
    // A config naming a reference for another model does not start.
    let other = root("models/golden/lgb_regression/model.txt");
    std::fs::write(
        &config,
        format!("[model]\npath = \"{other}\"\n\n[monitor]\nreference = \"ref.json\"\n"),
    )
    .unwrap();
    // (Its features have the golden model's names: the file's SHA-256 tells them apart.)
    let mut child = Command::new(env!("CARGO_BIN_EXE_streamscore"))
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("serve started with a reference for another model");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("another model"), "{err}");
}
