//! River parity of the drift detectors: on every golden stream (`tests/drift/streams/`, made
//! with known change points by `tests/drift/generate.py`), every detector and parameter set
//! finds drift, and raises warnings, at exactly the indices River 0.26 did
//! (`tests/drift/expected.json`). The `streamscore drift` command's output is checked against
//! the same files.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;
use streamscore::Error;
use streamscore::monitor::drift::{Detector, Kind, Param, Signal};

#[derive(Deserialize)]
struct Golden {
    river: String,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    stream: String,
    detector: String,
    params: HashMap<String, String>,
    drift: Vec<u64>,
    warning: Vec<u64>,
}

impl Case {
    fn params(&self) -> Vec<Param> {
        let mut params: Vec<Param> =
            self.params.iter().map(|(k, v)| Param { name: k.clone(), value: v.clone() }).collect();
        params.sort_by(|a, b| a.name.cmp(&b.name));
        params
    }

    fn label(&self) -> String {
        format!("{} {} {:?}", self.stream, self.detector, self.params())
    }
}

fn dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/drift"))
}

fn golden() -> Golden {
    let text = std::fs::read_to_string(dir().join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn stream(name: &str) -> Vec<f64> {
    let text = std::fs::read_to_string(dir().join("streams").join(format!("{name}.csv"))).unwrap();
    text.lines().map(|l| l.parse().unwrap()).collect()
}

#[test]
fn every_detector_matches_river_on_every_golden_stream() {
    let golden = golden();
    assert_eq!(golden.river, "0.26.0");
    let mut streams = HashMap::new();
    let (mut failures, mut detections) = (Vec::new(), 0);
    let mut kinds = std::collections::HashSet::new();
    for case in &golden.cases {
        let values = streams.entry(case.stream.clone()).or_insert_with(|| stream(&case.stream));
        let kind: Kind = case.detector.parse().unwrap();
        kinds.insert(kind);
        let mut detector = Detector::new(kind, &case.params()).unwrap();
        let (mut drift, mut warning) = (Vec::new(), Vec::new());
        for (i, &x) in values.iter().enumerate() {
            let signal = detector.update(x).unwrap();
            assert_eq!(signal == Signal::Drift, detector.drift_detected());
            assert_eq!(
                signal == Signal::Warning,
                detector.warning_detected() && !detector.drift_detected()
            );
            if detector.drift_detected() {
                drift.push(i as u64);
            }
            if detector.warning_detected() {
                warning.push(i as u64);
            }
        }
        // The batch call takes the same decisions, in chunks of any size.
        let mut batched = Detector::new(kind, &case.params()).unwrap();
        let mut found = Vec::new();
        for chunk in values.chunks(777) {
            batched.update_many(chunk, &mut found).unwrap();
        }
        let flagged = |f: fn(&streamscore::monitor::drift::Found) -> bool| {
            found.iter().filter(|x| f(x)).map(|x| x.index).collect::<Vec<_>>()
        };
        assert_eq!(flagged(|f| f.drift), drift, "{}", case.label());
        assert_eq!(flagged(|f| f.warning), warning, "{}", case.label());
        assert_eq!(batched.seen(), values.len() as u64);
        detections += drift.len();
        if drift != case.drift || warning != case.warning {
            failures.push(format!(
                "{}:\n  drift   ours {drift:?}\n          river {:?}\n  warnings ours {} river {} (first difference at {:?})",
                case.label(),
                case.drift,
                warning.len(),
                case.warning.len(),
                warning.iter().zip(&case.warning).position(|(a, b)| a != b)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from River:\n{}",
        failures.len(),
        golden.cases.len(),
        failures.join("\n")
    );
    // The goldens are not vacuous: every detector ran, and they fired hundreds of times.
    assert_eq!(kinds.len(), Kind::ALL.len());
    assert!(detections > 300, "{detections}");
}

// The binary is built only with the `cli` feature.
#[cfg(feature = "cli")]
fn cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_streamscore")).args(args).output().unwrap()
}

#[cfg(feature = "cli")]
#[test]
fn the_drift_command_prints_rivers_indices() {
    let golden = golden();
    // A binary detector with warnings and a non-default parameter set, and KSWIN's seeded draw.
    for (stream_name, detector) in
        [("bern_abrupt", "hddm-w"), ("gauss_multi", "kswin"), ("bern_gradual", "ddm")]
    {
        for case in
            golden.cases.iter().filter(|c| c.stream == stream_name && c.detector == detector)
        {
            let input = dir().join("streams").join(format!("{stream_name}.csv"));
            let mut args =
                vec!["drift".to_owned(), "--detector".into(), detector.into(), "--warnings".into()];
            for p in case.params() {
                args.push("--set".into());
                args.push(format!("{}={}", p.name, p.value));
            }
            args.push("--input".into());
            args.push(input.display().to_string());
            let out = cli(&args.iter().map(String::as_str).collect::<Vec<_>>());
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let (mut drift, mut warning) = (Vec::new(), Vec::new());
            for line in String::from_utf8(out.stdout).unwrap().lines() {
                match line.strip_prefix("warning ") {
                    Some(i) => warning.push(i.parse::<u64>().unwrap()),
                    None => drift.push(line.parse::<u64>().unwrap()),
                }
            }
            assert_eq!(
                (drift, warning),
                (case.drift.clone(), case.warning.clone()),
                "{}",
                case.label()
            );
        }
    }
}

#[cfg(feature = "cli")]
#[test]
fn bad_input_to_the_drift_command_is_one_error_line() {
    let tmp = std::env::temp_dir().join(format!("streamscore-drift-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let write = |name: &str, text: &str| {
        let p = tmp.join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let cases = [
        (vec!["--detector", "ddm"], write("half.csv", "0\n1\n0.5\n"), "line 3"),
        (vec!["--detector", "adwin"], write("nan.csv", "1\nnan\n"), "line 2"),
        (
            vec!["--detector", "adwin"],
            write("word.csv", "1\n2\nthree\n"),
            "`three` is not a number",
        ),
        (vec!["--detector", "adwin"], write("long.csv", &"1".repeat(5000)), "longer than"),
        (vec!["--detector", "adwinn"], write("ok.csv", "1\n"), "unknown drift detector"),
        (vec!["--detector", "adwin", "--set", "delta"], write("ok2.csv", "1\n"), "NAME=VALUE"),
        (
            vec!["--detector", "kswin", "--set", "window_size=10"],
            write("ok3.csv", "1\n"),
            "two samples",
        ),
    ];
    for (flags, input, needle) in cases {
        let mut args = vec!["drift"];
        args.extend(flags);
        args.extend(["--input", &input]);
        let out = cli(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: ") && stderr.contains(needle), "{args:?}: {stderr}");
    }
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn a_refused_value_leaves_the_detector_as_it_was() {
    let values = stream("gauss_abrupt");
    let (mut clean, mut poked) =
        (Detector::new(Kind::Adwin, &[]).unwrap(), Detector::new(Kind::Adwin, &[]).unwrap());
    for (i, &x) in values.iter().enumerate() {
        if i % 100 == 7 {
            assert!(matches!(poked.update(f64::NAN), Err(Error::Input { .. })));
            assert!(matches!(poked.update(f64::NEG_INFINITY), Err(Error::Input { .. })));
        }
        assert_eq!(clean.update(x).unwrap(), poked.update(x).unwrap(), "at {i}");
    }
    assert_eq!(clean.seen(), poked.seen());
    // A batch stops at a refused value: those before it are taken, it and the rest are not.
    let mut ddm = Detector::new(Kind::Ddm, &[]).unwrap();
    let mut found = Vec::new();
    let err = ddm.update_many(&[0.0, 1.0, 0.0, 2.0, 1.0], &mut found).unwrap_err();
    assert!(matches!(&err, Error::Input { at, .. } if at == "value 3"), "{err}");
    assert_eq!(ddm.seen(), 3);
}
