//! Data-quality gates in the runtime: a `reject` rule refuses the event with `Error::Gate`
//! (nothing scored, counted), a `flag` rule scores it and sets its bit in the answer, an
//! `impute` rule scores the stated value instead (the same score as submitting it), one
//! event at a time and in sets; counters reach the metrics and the Prometheus text; bad specs
//! are configuration errors.

use streamscore::monitor::gates::GateSpec;
use streamscore::{Error, Event, EventBatch, Runtime};

const MODEL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/golden/lgb_binary/model.txt");

const GATES: &str = r#"
[[gate]]
name = "f0 in range"
field = "f0"
check = "range"
min = -2
max = 2
policy = "reject"

[[gate]]
field = "f1"
check = "required"
policy = "impute"
value = 0.5

[[gate]]
field = "f2"
check = "integer"
policy = "flag"

[[gate]]
field = "f3"
check = "one_of"
values = [0, 1]
policy = "flag"
"#;

fn runtimes() -> (Runtime, Runtime) {
    let gated = Runtime::builder()
        .model_path(MODEL)
        .gates(GateSpec::from_toml(GATES).unwrap())
        .build()
        .unwrap();
    let plain = Runtime::builder().model_path(MODEL).build().unwrap();
    (gated, plain)
}

#[test]
fn reject_flag_and_impute_one_event_at_a_time() {
    let (rt, plain) = runtimes();
    assert_eq!(rt.gate_names(), ["f0 in range", "f1:required", "f2:integer", "f3:one_of"]);
    let clean = vec![0.5, -1.0, 2.0, 1.0, 0.0, 1.0, 3.0, -2.0];
    let s = rt.score(Event::new(clean.clone())).unwrap();
    assert_eq!(s.gate_flags, 0);
    assert_eq!(s.value(), plain.score(Event::new(clean.clone())).unwrap().value());
    // Out of range: refused, typed, nothing scored.
    let mut bad = clean.clone();
    bad[0] = 7.5;
    let err = rt.score(Event::new(bad)).unwrap_err();
    assert!(
        matches!(&err, Error::Gate { rule, field, value } if rule == "f0 in range" && field == "f0" && *value == 7.5),
        "{err}"
    );
    // A missing f1 is imputed: the score is that of the row with 0.5, and the answer says so.
    let mut gap = clean.clone();
    gap[1] = f32::NAN;
    let s = rt.score(Event::new(gap)).unwrap();
    let mut filled = clean.clone();
    filled[1] = 0.5;
    assert_eq!(s.value(), plain.score(Event::new(filled)).unwrap().value());
    assert_eq!(s.gate_flags, 0b0010);
    // Two flags at once; still scored as submitted.
    let mut odd = clean.clone();
    odd[2] = 2.5;
    odd[3] = 7.0;
    let s = rt.score(Event::new(odd.clone())).unwrap();
    assert_eq!(s.gate_flags, 0b1100);
    assert_eq!(s.value(), plain.score(Event::new(odd)).unwrap().value());
    let m = rt.metrics();
    let counts: Vec<(String, &str, u64)> =
        m.gates.iter().map(|g| (g.rule.clone(), g.policy, g.violations)).collect();
    assert_eq!(
        counts,
        [
            ("f0 in range".to_owned(), "reject", 1),
            ("f1:required".to_owned(), "impute", 1),
            ("f2:integer".to_owned(), "flag", 1),
            ("f3:one_of".to_owned(), "flag", 1)
        ]
    );
    assert_eq!(m.rejected, 1);
    let text = m.prometheus();
    assert!(
        text.contains(
            "streamscore_gate_violations_total{rule=\"f0 in range\",policy=\"reject\"} 1"
        ),
        "{text}"
    );
    rt.shutdown();
    plain.shutdown();
}

#[test]
fn sets_answer_each_event_with_its_gate() {
    let (rt, plain) = runtimes();
    let rows: Vec<f32> = vec![
        0.5,
        -1.0,
        2.0,
        1.0,
        0.0,
        1.0,
        3.0,
        -2.0, // clean
        9.0,
        -1.0,
        2.0,
        1.0,
        0.0,
        1.0,
        3.0,
        -2.0, // rejected
        0.5,
        f32::NAN,
        2.0,
        1.0,
        0.0,
        1.0,
        3.0,
        -2.0, // imputed
        0.5,
        -1.0,
        2.2,
        1.0,
        0.0,
        1.0,
        3.0,
        -2.0, // flagged
    ];
    let scores = rt.score_many(EventBatch::rows(&rows)).unwrap();
    assert_eq!(scores.len(), 4);
    assert!(matches!(scores.get(1), Some(Err(Error::Gate { .. }))));
    assert_eq!((0..4).map(|i| scores.gate_flags(i)).collect::<Vec<_>>(), [0, 0, 0b0010, 0b0100]);
    let mut expected = rows.clone();
    expected[17] = 0.5;
    let want = plain.score_many(EventBatch::rows(&expected)).unwrap();
    for i in [0, 2, 3] {
        assert_eq!(scores.get(i).unwrap().unwrap(), want.get(i).unwrap().unwrap(), "event {i}");
    }
    rt.shutdown();
    plain.shutdown();
}

#[test]
fn bad_gate_specs_are_configuration_errors() {
    for (toml, needle) in [
        ("[[gate]]\nfield = \"f0\"\ncheck = \"between\"\npolicy = \"reject\"", "unknown check"),
        ("[[gate]]\nfield = \"f0\"\ncheck = \"range\"\npolicy = \"reject\"", "min and/or max"),
        (
            "[[gate]]\nfield = \"f0\"\ncheck = \"range\"\nmin = 3\nmax = 1\npolicy = \"reject\"",
            "min <= max",
        ),
        (
            "[[gate]]\nfield = \"f0\"\ncheck = \"one_of\"\nvalues = []\npolicy = \"flag\"",
            "non-empty",
        ),
        ("[[gate]]\nfield = \"f0\"\ncheck = \"required\"\npolicy = \"impute\"", "needs a `value`"),
        ("[[gate]]\nfield = \"f0\"\ncheck = \"required\"\npolicy = \"drop\"", "unknown policy"),
        (
            "[[gate]]\nfield = \"f0\"\ncheck = \"required\"\npolicy = \"flag\"\ncolour = 1",
            "unknown field",
        ),
    ] {
        let err = GateSpec::from_toml(toml).unwrap_err();
        assert!(matches!(&err, Error::Config(m) if m.contains(needle)), "{toml}: {err}");
    }
    let spec = GateSpec::from_toml(
        "[[gate]]\nfield = \"amount\"\ncheck = \"required\"\npolicy = \"flag\"",
    )
    .unwrap();
    let err = Runtime::builder().model_path(MODEL).gates(spec).build().unwrap_err();
    assert!(matches!(&err, Error::Config(m) if m.contains("no field `amount`")), "{err}");
}
