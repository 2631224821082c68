//! The command line contract: `streamscore score` and `streamscore inspect`.

// The binary is built only with the `cli` feature.
#![cfg(feature = "cli")]

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn streamscore(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_streamscore"))
        .args(args)
        .current_dir(common::root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    if let Some(bytes) = stdin {
        pipe.write_all(bytes).unwrap();
    }
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn lines(out: &Output) -> Vec<Vec<f64>> {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect()
}

fn assert_close(ours: &[Vec<f64>], expected: &[Vec<f64>], what: &str) {
    assert_eq!(ours.len(), expected.len(), "{what}: row count");
    for (r, (a, b)) in ours.iter().zip(expected).enumerate() {
        assert_eq!(a.len(), b.len(), "{what}: width of row {r}");
        for (&x, &y) in a.iter().zip(b) {
            let e = common::rel_err(x, y);
            assert!(e <= common::REL_TOL, "{what} row {r}: {x} vs {y} (rel {e:.2e})");
        }
    }
}

/// `score` reproduces the library on every golden file, from CSV and from .npy.
#[test]
fn score_reproduces_every_golden_file() {
    for case in common::golden_cases() {
        let model = case.model.to_str().unwrap();
        let dir = case.dir.to_str().unwrap();
        let csv = format!("{dir}/input.csv");
        let npy = format!("{dir}/input.npy");
        let pred = lines(&streamscore(&["score", "--model", model, "--input", &csv], None));
        assert_close(&pred, &case.pred, &format!("{} pred", case.name));
        let raw = lines(&streamscore(&["score", "--model", model, "--input", &npy, "--raw"], None));
        assert_close(&raw, &case.raw, &format!("{} raw (npy)", case.name));
    }
}

#[test]
fn score_reproduces_the_real_models() {
    let Some(cases) = common::real_cases() else { return };
    for case in cases {
        let model = case.model.to_str().unwrap();
        let input = format!("{}/input.csv", case.dir.to_str().unwrap());
        let raw =
            lines(&streamscore(&["score", "--model", model, "--input", &input, "--raw"], None));
        assert_close(&raw, &case.raw, &format!("{} raw", case.name));
        let pred = lines(&streamscore(&["score", "--model", model, "--input", &input], None));
        assert_close(&pred, &case.pred, &format!("{} pred", case.name));
    }
}

#[test]
fn stdin_stdout_no_header_and_output_file() {
    let case = common::golden_cases().into_iter().find(|c| c.name == "lgb_multiclass").unwrap();
    let model = case.model.to_str().unwrap().to_owned();
    let csv = std::fs::read_to_string(case.dir.join("input.csv")).unwrap();
    // Positional: drop the header line.
    let body = csv.split_once('\n').unwrap().1;
    let out = streamscore(
        &["score", "--model", &model, "--input", "-", "--no-header"],
        Some(body.as_bytes()),
    );
    let rows = lines(&out);
    assert_close(&rows, &case.pred, "multiclass via stdin");
    assert!(rows.iter().all(|r| r.len() == 3), "multiclass rows hold one value per class");

    // Columns reordered and an extra column: matched by name.
    let mut shuffled = String::new();
    for line in csv.lines() {
        let mut cols: Vec<&str> = line.split(',').collect();
        cols.reverse();
        shuffled += &format!("{},extra\n", cols.join(","));
    }
    let out = streamscore(&["score", "--model", &model, "--input", "-"], Some(shuffled.as_bytes()));
    assert_close(&lines(&out), &case.pred, "reordered columns");

    let path = std::env::temp_dir().join(format!("streamscore-cli-{}.txt", std::process::id()));
    let out = streamscore(
        &["score", "--model", &model, "--input", "-", "--output", path.to_str().unwrap()],
        Some(csv.as_bytes()),
    );
    assert!(out.status.success() && out.stdout.is_empty());
    let written = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(written.lines().count(), case.pred.len());
}

#[test]
fn errors_exit_nonzero_with_a_message() {
    let model = "models/golden/lgb_binary/model.txt";
    // (arguments, stdin, text the error message must contain)
    type Case<'a> = (&'a [&'a str], Option<&'a [u8]>, &'a str);
    let cases: [Case; 6] = [
        (&["score", "--model", "nope.txt", "--input", "-"], Some(b""), "nope.txt"),
        (
            &["score", "--model", model, "--input", "-"],
            Some(b"f0,f1\n1,2\n"),
            "no column named `f2`",
        ),
        (&["score", "--model", model, "--input", "-", "--no-header"], Some(b"1,2\n"), "8"),
        (
            &["score", "--model", model, "--input", "-", "--no-header"],
            Some(b"1,2,3,4,5,6,7,abc\n"),
            "abc",
        ),
        (&["score", "--model", "Cargo.toml", "--input", "-"], Some(b""), "not a LightGBM"),
        (&["inspect", "--model", "rustfmt.toml"], None, "not a LightGBM"),
    ];
    for (args, stdin, needle) in cases {
        let out = streamscore(args, stdin);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(stderr.starts_with("error: ") && stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn inspect_describes_the_model() {
    let out = streamscore(&["inspect", "--model", "models/golden/xgb_multiclass/model.json"], None);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "format: XGBoost JSON",
        "objective: multi:softprob",
        "trees: 60",
        "classes: 3",
        "features: 8",
        "depth: min 5",
    ] {
        assert!(text.contains(needle), "missing `{needle}` in:\n{text}");
    }
}

/// What the library writes for `spec` on `case`'s rows, rendered as `score` renders it.
fn library_scores(spec: &str, case: &common::Case, output: streamscore::Output) -> String {
    let forest = case.forest();
    let batch = case.batch(&forest);
    let backend = spec.parse::<streamscore::BackendSpec>().unwrap().select(forest).unwrap();
    let width = backend.output_width(output);
    let mut out = vec![0.0; batch.n_rows() * width];
    backend.score_batch(&batch, output, &mut out).unwrap();
    let mut text = Vec::new();
    streamscore::io::write_scores(&mut text, &out, width).unwrap();
    String::from_utf8(text).unwrap()
}

/// `score --backend X` gives the library's bits for X on every golden file (auto, cpu and
/// reference), also when the input is read and scored in small chunks.
#[test]
fn score_backends_give_the_library_bits() {
    for case in common::golden_cases() {
        let model = case.model.to_str().unwrap();
        let csv = format!("{}/input.csv", case.dir.to_str().unwrap());
        for spec in ["auto", "cpu", "reference"] {
            for raw in [false, true] {
                let mut args = vec!["score", "--model", model, "--input", &csv, "--backend", spec];
                if raw {
                    args.push("--raw");
                }
                let output =
                    if raw { streamscore::Output::Raw } else { streamscore::Output::Transformed };
                let out = streamscore(&args, None);
                assert!(
                    out.status.success(),
                    "{}: {}",
                    case.name,
                    String::from_utf8_lossy(&out.stderr)
                );
                let want = library_scores(spec, &case, output);
                assert_eq!(
                    String::from_utf8(out.stdout).unwrap(),
                    want,
                    "{} --backend {spec}",
                    case.name
                );
                let expected = if raw { &case.raw } else { &case.pred };
                assert_close(&lines(&streamscore(&args, None)), expected, &case.name);
            }
        }
        let chunked = streamscore(
            &["score", "--model", model, "--input", &csv, "--backend", "cpu", "--chunk-rows", "7"],
            None,
        );
        assert_eq!(
            String::from_utf8(chunked.stdout).unwrap(),
            library_scores("cpu", &case, streamscore::Output::Transformed),
            "{} in chunks of 7",
            case.name
        );
    }
}

/// `--verbose` names the backend; a spec no backend of which can take the model is an error
/// naming each one's reason; `--cpu-threads` reaches the fast CPU path.
#[test]
fn score_names_its_backend_and_explains_refusals() {
    let model = "models/golden/lgb_binary/model.txt";
    let input = "models/golden/lgb_binary/input.csv";
    let out = streamscore(
        &[
            "score",
            "--model",
            model,
            "--input",
            input,
            "--backend",
            "cpu",
            "--cpu-threads",
            "2",
            "--verbose",
        ],
        None,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.contains("backend cpu"), "{stderr}");
    let out =
        streamscore(&["score", "--model", model, "--input", input, "--backend", "onnx"], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("onnx backend runs ONNX files"), "{stderr}");
    let out = streamscore(&["score", "--model", model, "--input", input, "--backend", "tpu"], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("unknown backend `tpu`"), "{stderr}");
    // A fallback list: onnx cannot take trees, so reference scores them.
    let out = streamscore(
        &["score", "--model", model, "--input", input, "--backend", "onnx,reference", "--verbose"],
        None,
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("backend reference"));
    let case = common::golden_cases().into_iter().find(|c| c.name == "lgb_binary").unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        library_scores("reference", &case, streamscore::Output::Transformed)
    );
}

/// `score --backend gpu --gpu-software` on every golden file, within the CPU paths' tolerance
/// of the training library (lavapipe where there is no GPU; SKIP only where no Vulkan device
/// exists at all and STREAMSCORE_REQUIRE_GPU is unset).
#[cfg(feature = "gpu")]
#[test]
fn score_on_the_gpu_matches_the_library() {
    use streamscore::backend::gpu::{AdapterChoice, Context};
    if let Err(e) = Context::new(AdapterChoice::AllowSoftware) {
        assert!(std::env::var("STREAMSCORE_REQUIRE_GPU").is_err(), "no GPU adapter: {e}");
        eprintln!("SKIP: no GPU adapter ({e})");
        return;
    }
    for case in common::golden_cases() {
        let model = case.model.to_str().unwrap();
        let csv = format!("{}/input.csv", case.dir.to_str().unwrap());
        let args = [
            "score",
            "--model",
            model,
            "--input",
            &csv,
            "--backend",
            "gpu",
            "--gpu-software",
            "--verbose",
        ];
        let out = streamscore(&args, None);
        assert!(String::from_utf8_lossy(&out.stderr).contains("backend gpu"), "{}", case.name);
        assert_close(&lines(&out), &case.pred, &format!("{} on the gpu", case.name));
    }
}

/// `score --backend onnx` on the committed ONNX models, against ONNX Runtime's own outputs
/// from Python (models/generate_onnx.py), within 1e-5 relative or 2^-23 absolute.
#[cfg(feature = "onnx")]
#[test]
fn score_on_onnx_runtime_matches_its_python_outputs() {
    for name in
        ["mlp_std_relu_sigmoid", "mlp_matmul_softmax", "mlp_gelu", "mlp_32_256_256_1", "lgb_trees"]
    {
        let dir = format!("models/onnx/{name}");
        let (model, input) = (format!("{dir}/model.onnx"), format!("{dir}/input.npy"));
        let out = streamscore(
            &["score", "--model", &model, "--input", &input, "--backend", "onnx"],
            None,
        );
        let ours = lines(&out);
        let text = std::fs::read_to_string(common::root().join(&dir).join("expected.csv")).unwrap();
        let theirs: Vec<Vec<f64>> =
            text.lines().map(|l| l.split(',').map(|v| v.parse().unwrap()).collect()).collect();
        assert_eq!(ours.len(), theirs.len(), "{name}");
        for (a, b) in ours.iter().flatten().zip(theirs.iter().flatten()) {
            assert!((a - b).abs() <= 1e-5 * b.abs() + 1.0 / (1 << 23) as f64, "{name}: {a} vs {b}");
        }
    }
}

/// `inspect` names ONNX element types (ONNX's names, not raw `TensorProto` codes).
#[test]
fn inspect_names_onnx_element_types() {
    let out = streamscore(&["inspect", "--model", "models/onnx/mlp_gelu/model.onnx"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("format: ONNX") && text.contains("(float)"), "{text}");
    assert!(!text.contains("element type"), "{text}");
}

/// Every failure is one `error:` line and exit status 1: usage errors (clap's own would be
/// several lines and status 2) and flags beyond their stated limits, which used to panic or
/// abort on allocation (`--batch 0`, `--duration NaN`, a `--frame-size` whose byte count
/// overflows, ...). `--help` still succeeds.
#[test]
fn every_failure_is_one_error_line_and_status_1() {
    let model = "models/golden/lgb_binary/model.txt";
    let frames = "models/frames/config.toml";
    let bench = |extra: &[&'static str]| {
        let mut a = vec!["bench", "--model", model, "--duration", "0.1"];
        a.extend_from_slice(extra);
        a
    };
    let framed = |extra: &[&'static str]| {
        let mut a = vec!["bench", "--frames", frames, "--duration", "0.1"];
        a.extend_from_slice(extra);
        a
    };
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["score", "--bogus"], "--bogus"),
        (vec!["score"], "--model"),
        (vec!["frobnicate"], "frobnicate"),
        (bench(&["--batch", "0"]), "--batch 0"),
        (bench(&["--batch", "100000000000"]), "--batch"),
        (bench(&["--rows", "10000000000000"]), "--rows"),
        (bench(&["--rows", "1000000000"]), "--rows"),
        (bench(&["--threads", "0"]), "--threads"),
        (vec!["bench", "--model", model, "--duration", "NaN"], "--duration"),
        (vec!["bench", "--model", model, "--duration", "inf"], "--duration"),
        (vec!["bench", "--model", model, "--duration", "1e30"], "--duration"),
        (vec!["bench", "--model", model, "--duration=-1"], "--duration"),
        (bench(&["--rate", "NaN"]), "--rate"),
        (framed(&["--frame-size", "100000x100000"]), "--frame-size"),
        (framed(&["--frame-size", "4294967296x2"]), "--frame-size"),
        (framed(&["--fps", "NaN"]), "--fps"),
        (framed(&["--motion-threshold", "NaN"]), "--motion-threshold"),
        (
            bench(&[
                "--feature-spec",
                "examples/fraud/spec.toml",
                "--events",
                "examples/fraud/stream.csv",
                "--producers",
                "2",
            ]),
            "--producers",
        ),
    ];
    for (args, needle) in cases {
        let out = streamscore(&args, None);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        let ours: Vec<&&str> = lines.iter().filter(|l| l.starts_with("error: ")).collect();
        assert_eq!(ours.len(), 1, "{args:?}: {stderr}");
        assert!(ours[0].contains(needle), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    let help = streamscore(&["score", "--help"], None);
    assert!(help.status.success() && String::from_utf8_lossy(&help.stdout).contains("--backend"));
}

/// A reader that closes stdout early (`| head -1`) ends `score` quietly: no error line.
#[cfg(unix)]
#[test]
fn a_closed_stdout_ends_quietly() {
    use std::io::Read;
    let mut child = Command::new(env!("CARGO_BIN_EXE_streamscore"))
        .args([
            "score",
            "--model",
            "models/golden/lgb_binary/model.txt",
            "--input",
            "-",
            "--no-header",
        ])
        .current_dir(common::root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        let row = b"0.5,-1,2,0,,1,3,-2\n".repeat(10_000);
        for _ in 0..100 {
            if stdin.write_all(&row).is_err() {
                break;
            }
        }
    });
    let mut first = [0u8; 16];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.trim().is_empty(), "{stderr}");
}

/// `inspect`'s `key: value` lines are a contract: a feature name or objective holding a
/// newline (possible in XGBoost's JSON) is printed escaped, never as a line of its own.
#[test]
fn inspect_escapes_what_it_prints() {
    let text = std::fs::read_to_string(common::root().join("models/golden/xgb_binary/model.json"))
        .unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["learner"]["feature_names"][0] = serde_json::json!("f0\ntrees: 999");
    let path =
        std::env::temp_dir().join(format!("streamscore-inspect-{}.json", std::process::id()));
    std::fs::write(&path, v.to_string()).unwrap();
    let out = streamscore(&["inspect", "--model", path.to_str().unwrap()], None);
    std::fs::remove_file(&path).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().filter(|l| l.starts_with("trees: ")).count(), 1, "{text}");
    assert!(text.contains("f0\\ntrees: 999"), "{text}");
}

/// Each kind of file has a size limit, named in the error with the variable that sets it.
#[test]
fn file_size_limits_are_stated_and_configurable() {
    let out = Command::new(env!("CARGO_BIN_EXE_streamscore"))
        .args(["inspect", "--model", "models/golden/lgb_binary/model.txt"])
        .env("STREAMSCORE_MAX_MODEL_BYTES", "100")
        .current_dir(common::root())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("over the limit of 100") && stderr.contains("STREAMSCORE_MAX_MODEL_BYTES"),
        "{stderr}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_streamscore"))
        .args([
            "features",
            "--spec",
            "examples/fraud/spec.toml",
            "--input",
            "examples/fraud/stream.csv",
        ])
        .env("STREAMSCORE_MAX_CONFIG_BYTES", "10")
        .current_dir(common::root())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("STREAMSCORE_MAX_CONFIG_BYTES"), "{stderr}");
}

/// `features` writes one row per input row, in file order, as its docs say: a row it could not
/// read comes with empty features and the reason (it used to be dropped from the output).
#[test]
fn features_writes_every_row_with_its_reason() {
    let dir = std::env::temp_dir().join(format!("streamscore-features-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let spec = dir.join("spec.toml");
    std::fs::write(
        &spec,
        "[events]\nkey = \"k\"\ntime = \"t\"\nnumeric = [\"x\"]\n\n[[feature]]\nname = \"x\"\nop = \"field\"\nfield = \"x\"\n\n[[feature]]\nname = \"n\"\nop = \"count\"\nwindow = \"1h\"\n",
    )
    .unwrap();
    let csv = "k,t,x\n1,1000,5\n1,2000,oops\n,3000,1\n1,4000,7\n1,NaN,2\n";
    let out = streamscore(
        &["features", "--spec", spec.to_str().unwrap(), "--input", "-"],
        Some(csv.as_bytes()),
    );
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 6, "{text}");
    assert_eq!(lines[0], "k,t,x,n,error");
    assert!(lines[1].ends_with(",5,1,"), "{}", lines[1]);
    for bad in [2, 3, 5] {
        let fields: Vec<&str> = lines[bad].split(',').collect();
        assert_eq!(fields.len(), 5, "{}", lines[bad]);
        assert!(
            fields[..4].iter().all(|f| f.is_empty()) && !fields[4].is_empty(),
            "{}",
            lines[bad]
        );
    }
    assert!(lines[4].ends_with(",7,2,"), "{}", lines[4]);
}

/// `features --input -` reads standard input within the input limit, as it does files (it
/// used to read stdin without bound).
#[test]
fn features_stdin_is_bounded() {
    let out = Command::new(env!("CARGO_BIN_EXE_streamscore"))
        .args(["features", "--spec", "examples/fraud/spec.toml", "--input", "-"])
        .current_dir(common::root())
        .env("STREAMSCORE_MAX_INPUT_BYTES", "64")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            let mut pipe = child.stdin.take().unwrap();
            // The child may stop reading at the limit: a broken pipe here is expected.
            let _ = pipe.write_all(&vec![b'1'; 1 << 20]);
            drop(pipe);
            child.wait_with_output()
        })
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("STREAMSCORE_MAX_INPUT_BYTES") && err.lines().count() == 1, "{err}");
}

/// `features --labels`: the point-in-time training set. Each label gets the features the
/// `features` command gives its card's latest transaction at or before the label's time (or a
/// stated reason); a history cut at time T and the same history with a month of later
/// transactions appended give every label at or before T the same row (no future leakage).
#[test]
fn training_set_is_point_in_time() {
    let dir = std::env::temp_dir().join(format!("streamscore-pit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let stream = std::fs::read_to_string(common::root().join("examples/fraud/stream.csv")).unwrap();
    let (header, body) = stream.split_once('\n').unwrap();
    let events: Vec<(u64, i64, &str)> = body
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].parse().unwrap(), f[1].parse().unwrap(), l)
        })
        .collect();
    // Labels: at a transaction's own time, 10 minutes and 2 days after one, before a card's
    // first transaction, for a card that never transacts, and one unreadable line.
    let mut labels = String::from("ts,card,label,note\n");
    for (i, &(card, t, _)) in events.iter().enumerate().step_by(37) {
        let dt = [0, 600_000, 2 * 86_400_000][i % 3];
        labels += &format!("{},{card},{},x\n", t + dt, i % 2);
    }
    let first = events.iter().map(|e| e.1).min().unwrap();
    labels +=
        &format!("{},{},1,x\n{},9999999,0,x\n{},5,yes,x\n", first - 1, events[0].0, first, first);
    let path = |name: &str| dir.join(name).to_str().unwrap().to_string();
    std::fs::write(path("labels.csv"), &labels).unwrap();
    let spec = "examples/fraud/spec.toml";
    let run = |input: &str, extra: &[&str]| -> Vec<String> {
        let labels = path("labels.csv");
        let mut args = vec!["features", "--spec", spec, "--input", input, "--labels", &labels];
        args.extend_from_slice(extra);
        let out = streamscore(&args, None);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("1 refused at reading"), "{stderr}");
        String::from_utf8(out.stdout).unwrap().lines().map(str::to_string).collect()
    };
    let whole = run("examples/fraud/stream.csv", &[]);
    let n_labels = labels.lines().count() - 2;
    assert_eq!(whole.len(), 1 + n_labels);
    assert!(whole[0].starts_with("card,ts,label,") && whole[0].ends_with(",event_time,error"));
    // Each row's features are those of the card's latest transaction at or before the label.
    let computed =
        streamscore(&["features", "--spec", spec, "--input", "examples/fraud/stream.csv"], None);
    let computed = String::from_utf8(computed.stdout).unwrap();
    let feature_rows: Vec<&str> = computed.lines().skip(1).collect();
    let mut checked = 0;
    for row in &whole[1..] {
        let f: Vec<&str> = row.split(',').collect();
        let (card, t): (u64, i64) = (f[0].parse().unwrap(), f[1].parse().unwrap());
        let latest = (0..events.len())
            .filter(|&i| events[i].0 == card && events[i].1 <= t)
            .max_by_key(|&i| (events[i].1, i));
        match latest {
            Some(i) => {
                assert_eq!(f[f.len() - 2], events[i].1.to_string(), "{row}");
                assert_eq!(f[f.len() - 1], "", "{row}");
                // The features command's row: key, time, features, error.
                let g: Vec<&str> = feature_rows[i].split(',').collect();
                assert_eq!(&f[3..f.len() - 2], &g[2..g.len() - 1], "{row}");
                checked += 1;
            }
            None => assert!(f[f.len() - 1].starts_with("no event of the key"), "{row}"),
        }
    }
    assert!(checked > 400, "{checked}");
    // Stale: labels 2 days after their transaction, with --max-age 1d.
    let aged = run("examples/fraud/stream.csv", &["--max-age", "1d"]);
    let mut stale = 0;
    for (row, plain) in aged.iter().zip(&whole).skip(1) {
        let f: Vec<&str> = plain.split(',').collect();
        let Ok(event_time) = f[f.len() - 2].parse::<i64>() else { continue };
        let age = f[1].parse::<i64>().unwrap() - event_time;
        if age > 86_400_000 {
            assert!(row.ends_with("older than --max-age"), "{row}");
            stale += 1;
        } else {
            assert_eq!(row, plain);
        }
    }
    assert!(stale > 10, "{stale} stale");
    // The history up to T, and the whole history with a month of later events appended.
    let cut = events[events.len() / 2].1;
    let mut upto = format!("{header}\n");
    events.iter().filter(|e| e.1 <= cut).for_each(|e| upto += &format!("{}\n", e.2));
    std::fs::write(path("upto.csv"), upto).unwrap();
    let mut more = stream.clone();
    let last = events.iter().map(|e| e.1).max().unwrap();
    for (card, t, line) in &events {
        let rest = line.split_once(',').unwrap().1.split_once(',').unwrap().1;
        more += &format!("{card},{},{rest}\n", last + 1 + (t - first));
    }
    std::fs::write(path("more.csv"), more).unwrap();
    let (upto, more) = (run(&path("upto.csv"), &[]), run(&path("more.csv"), &[]));
    let mut same = 0;
    for (i, row) in whole.iter().enumerate().skip(1) {
        let t: i64 = row.split(',').nth(1).unwrap().parse().unwrap();
        assert_eq!(more[i], *row, "appended future events changed a label's row");
        if t <= cut {
            assert_eq!(upto[i], *row, "a label at or before the cut differs");
            same += 1;
        }
    }
    assert!(same > 200, "{same}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `features --compare`: backfill validation. The stage's own output, rows reversed, passes;
/// with one value off, one within the tolerance, one emptied, one row dropped and one added,
/// the report names exactly those and the command exits with status 1.
#[test]
fn backfill_validation_names_every_difference() {
    let dir = std::env::temp_dir().join(format!("streamscore-backfill-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let spec = "examples/fraud/spec.toml";
    let stream = "examples/fraud/stream.csv";
    let out = streamscore(&["features", "--spec", spec, "--input", stream], None);
    let ours = String::from_utf8(out.stdout).unwrap();
    let mut lines: Vec<String> = ours.lines().map(str::to_string).collect();
    let header = lines.remove(0);
    let cols: Vec<&str> = header.split(',').collect();
    let col = |name: &str| cols.iter().position(|c| *c == name).unwrap();
    lines.reverse();
    let path = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let write = |name: &str, rows: &[String]| {
        std::fs::write(path(name), format!("{header}\n{}\n", rows.join("\n"))).unwrap();
    };
    write("same.csv", &lines);
    let run = |theirs: &str| {
        let out = streamscore(
            &["features", "--spec", spec, "--input", stream, "--compare", &path(theirs)],
            None,
        );
        (
            out.status.code(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let (code, report, _) = run("same.csv");
    assert_eq!(code, Some(0), "{report}");
    assert!(report.starts_with("rows: 15902 matched, 0 only in"), "{report}");
    assert!(report.contains("ignored columns: error"), "{report}");
    // The edits, on rows of theirs (line numbers: row r is line r + 2).
    let edit = |lines: &mut Vec<String>, r: usize, c: usize, v: &dyn Fn(&str) -> String| {
        let mut f: Vec<String> = lines[r].split(',').map(str::to_string).collect();
        f[c] = v(&f[c]);
        lines[r] = f.join(",");
    };
    let mut changed = lines.clone();
    edit(&mut changed, 10, col("n_1h"), &|v| (v.parse::<f64>().unwrap() + 1.0).to_string());
    edit(&mut changed, 11, col("amount"), &|v| {
        (v.parse::<f64>().unwrap() * (1.0 + 1e-9)).to_string()
    });
    edit(&mut changed, 12, col("sum_1h"), &|_| String::new());
    let dropped = changed.remove(20);
    let mut extra: Vec<String> = dropped.split(',').map(str::to_string).collect();
    extra[0] = "99999999".into();
    changed.push(extra.join(","));
    write("changed.csv", &changed);
    let (code, report, stderr) = run("changed.csv");
    assert_eq!(code, Some(1), "{report}");
    assert!(stderr.contains("2 values beyond the tolerance, 2 rows unmatched"), "{stderr}");
    assert!(report.starts_with("rows: 15901 matched, 1 only in"), "{report}");
    let row = |name: &str| {
        report.lines().find(|l| l.split_whitespace().next() == Some(name)).unwrap().to_string()
    };
    let fields =
        |name: &str| -> Vec<String> { row(name).split_whitespace().map(str::to_string).collect() };
    assert_eq!(fields("n_1h")[1..3], ["15901", "1"], "{report}");
    assert_eq!(fields("amount")[2], "0", "within the relative tolerance: {report}");
    assert_eq!(fields("sum_1h")[2], "1", "{report}");
    assert_eq!(fields("n_24h")[2], "0", "{report}");
    assert!(report.contains("mismatch: n_1h at line 12:"), "{report}");
    assert!(report.contains("mismatch: sum_1h at line 14:"), "{report}");
    assert!(report.contains(&format!("only theirs: line {}", changed.len() + 1)), "{report}");
    assert!(report.contains("only ours: line"), "{report}");
    // A file that names no feature, or lacks the key, is an error up front.
    std::fs::write(path("bad.csv"), "card,ts,nothing\n1,2,3\n").unwrap();
    let (code, _, stderr) = run("bad.csv");
    assert_eq!(code, Some(1));
    assert!(stderr.contains("no column names a feature"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `features --output x.parquet` (and `--format parquet`): pandas reads the feature file and
/// the training set back with the CSV's values, floats bit for bit as float32, nulls where
/// the CSV's fields are empty (an unmatched label), keys and times as integers and labels as
/// float64; an unreadable line is in the CSV only (tests/parquet_read.py).
#[test]
fn feature_files_and_training_sets_as_parquet_read_back_in_pandas() {
    let python = common::root().join("target/py-venv/bin/python");
    assert!(
        python.exists(),
        "no test Python: run scripts/python.sh (the README's test command does)"
    );
    let dir = std::env::temp_dir().join(format!("streamscore-parquet-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let stream = std::fs::read_to_string(common::root().join("examples/fraud/stream.csv")).unwrap();
    let mut lines: Vec<&str> = stream.lines().collect();
    let first: Vec<&str> = lines[1].split(',').collect();
    let unreadable =
        format!("{},{},not-a-number{}", first[0], first[1], ",".repeat(first.len() - 3));
    lines.insert(100, &unreadable);
    std::fs::write(path("events.csv"), lines.join("\n") + "\n").unwrap();
    let mut labels = String::from("card,ts,label\n");
    for l in lines[1..].iter().step_by(53) {
        let f: Vec<&str> = l.split(',').collect();
        labels +=
            &format!("{},{},{}\n", f[0], f[1].parse::<i64>().unwrap_or(0) + 1000, f.len() % 2);
    }
    labels += "424242,1,0.5\n";
    std::fs::write(path("labels.csv"), &labels).unwrap();
    let spec = "examples/fraud/spec.toml";
    let events = path("events.csv");
    let read = |parquet: &str, csv: &str| -> serde_json::Value {
        let out = Command::new(&python)
            .arg(common::root().join("tests/parquet_read.py"))
            .args([parquet, csv, "--drop-unkeyed"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    for (extra, name) in [(vec![], "features"), (vec!["--labels", &path("labels.csv")], "train")] {
        let run = |output: &str, more: &[&str]| {
            let mut args = vec!["features", "--spec", spec, "--input", &events, "--output", output];
            args.extend_from_slice(&extra);
            args.extend_from_slice(more);
            let out = streamscore(&args, None);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        };
        let (csv, parquet, named) = (
            path(&format!("{name}.csv")),
            path(&format!("{name}.parquet")),
            path(&format!("{name}.bin")),
        );
        run(&csv, &[]);
        run(&parquet, &[]);
        run(&named, &["--format", "parquet"]);
        assert_eq!(std::fs::read(&parquet).unwrap(), std::fs::read(&named).unwrap());
        let table = read(&parquet, &csv);
        let rows = table["rows"].as_u64().unwrap() as usize;
        let dtypes = &table["dtypes"];
        assert_eq!(dtypes["n_24h"], "float32", "{table}");
        assert_eq!(dtypes["error"], "object", "{table}");
        if name == "features" {
            // The unreadable line is left out: every row has its key and time, exact integers.
            assert_eq!(rows, lines.len() - 2);
            assert_eq!(dtypes["card"], "uint64", "{table}");
            assert_eq!(dtypes["ts"], "int64", "{table}");
        } else {
            // An unmatched label has no event time: pandas reads it as a float (ms are exact).
            assert_eq!(rows, labels.lines().count() - 1);
            assert_eq!(dtypes["label"], "float64", "{table}");
            assert_eq!(dtypes["event_time"], "float64", "{table}");
        }
    }
    let out = streamscore(
        &[
            "features",
            "--spec",
            spec,
            "--input",
            &events,
            "--output",
            &path("x"),
            "--format",
            "xlsx",
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown output format `xlsx`"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `bench --feature-spec`: the runtime with the fraud example's feature stage over its raw
/// events, several passes (times moved on each), single events and sets: every accepted event
/// scored (none late, none lost), the stage's time in `ns_per_event.prepare`, and a static
/// lookup's counts in `lookups`.
#[test]
fn bench_runs_a_feature_stage_over_raw_events() {
    let dir = std::env::temp_dir().join(format!("streamscore-bench-fs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let table = dir.join("limits.csv");
    std::fs::write(
        &table,
        (0..300).fold("card,limit\n".to_string(), |s, c| s + &format!("{c},{c}\n")),
    )
    .unwrap();
    let spec = std::fs::read_to_string(common::root().join("examples/fraud/spec.toml")).unwrap();
    let since = "[[feature]]\nname = \"since_last\"\nop = \"since_last\"\n";
    assert!(spec.contains(since));
    let spec = spec
        .replace(
            since,
            "[[feature]]\nname = \"limit\"\nop = \"lookup\"\ntable = \"card\"\nfield = \"limit\"\n",
        )
        .replacen(
            "[[feature]]",
            &format!(
                "[[lookup]]\nname = \"card\"\ncsv = \"{}\"\nfields = [\"limit\"]\n\n[[feature]]",
                table.display()
            ),
            1,
        );
    let spec_path = dir.join("spec.toml");
    std::fs::write(&spec_path, spec).unwrap();
    for set in ["1", "256"] {
        let out = streamscore(
            &[
                "bench",
                "--model",
                "examples/fraud/model.txt",
                "--feature-spec",
                spec_path.to_str().unwrap(),
                "--events",
                "examples/fraud/stream.csv",
                "--submit-batch",
                set,
                "--duration",
                "0.5",
                "--json",
            ],
            None,
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let stream = lines.iter().find(|v| v["mode"] == "stream").unwrap();
        let accepted = stream["accepted"].as_u64().unwrap();
        // More than one pass over the 15,902 events, so the times moved on at least once.
        assert!(accepted > 15_902, "{stream}");
        assert_eq!(stream["scored"], stream["accepted"], "{stream}");
        assert_eq!(stream["lost"], 0, "{stream}");
        assert!(stream["ns_per_event"]["prepare"].as_f64().unwrap() > 0.0, "{stream}");
        let card = &stream["lookups"]["card"];
        assert_eq!(card["found"].as_u64().unwrap(), accepted, "{stream}");
        assert_eq!(card["missing"], 0, "{stream}");
        let direct = lines.iter().find(|v| v["mode"] == "direct").unwrap();
        assert!(direct["rows"].as_u64().unwrap() > 0, "{direct}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
