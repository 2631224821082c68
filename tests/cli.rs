//! The command line contract: `streamscore score` and `streamscore inspect`.

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
