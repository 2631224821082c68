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

#[cfg(feature = "audit")]
#[test]
fn violations_go_to_the_audit_log() {
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int8Type, UInt64Type};
    use streamscore::audit::{self, AuditConfig};

    let dir = std::env::temp_dir().join(format!("streamscore-gates-audit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let rt = Runtime::builder()
        .model_path(MODEL)
        .gates(GateSpec::from_toml(GATES).unwrap())
        .audit(AuditConfig::new(&dir))
        .build()
        .unwrap();
    let clean = [0.5f32, -1.0, 2.0, 1.0, 0.0, 1.0, 3.0, -2.0];
    let with = |f: usize, v: f32| {
        let mut row = clean;
        row[f] = v;
        row
    };
    // Keys tell the records apart: 1 clean, 2 flagged, 3 imputed and flagged, 4 refused.
    rt.score(Event::new(clean).with_key(1)).unwrap();
    assert_eq!(rt.score(Event::new(with(2, 2.5)).with_key(2)).unwrap().gate_flags, 0b0100);
    let mut both = with(1, f32::NAN);
    both[3] = 7.0;
    assert_eq!(rt.score(Event::new(both).with_key(3)).unwrap().gate_flags, 0b1010);
    assert!(matches!(rt.score(Event::new(with(0, 9.0)).with_key(4)), Err(Error::Gate { .. })));
    // A set: 5 flagged, 6 refused; and a set none of whose events is scored: 7 refused.
    let rows: Vec<f32> = [with(3, 0.5), with(0, -9.0)].concat();
    let set = rt.score_many(EventBatch::rows(&rows).with_keys(&[5, 6])).unwrap();
    assert_eq!(set.gate_flags(0), 0b1000);
    let lone = with(0, 3.0);
    let set = rt.score_many(EventBatch::rows(&lone).with_keys(&[7])).unwrap();
    assert!(matches!(set.get(0), Some(Err(Error::Gate { .. }))));
    rt.shutdown();

    let mut got = std::collections::BTreeMap::new();
    for path in audit::files(&dir).unwrap() {
        for batch in audit::read(&path).unwrap().batches {
            let rules: Vec<String> =
                serde_json::from_str(&batch.schema().metadata()["streamscore.gates"]).unwrap();
            assert_eq!(rules, rt.gate_names());
            let keys = batch.column_by_name("key").unwrap().as_primitive::<UInt64Type>();
            let flags = batch.column_by_name("gate_flags").unwrap().as_primitive::<UInt64Type>();
            let status =
                batch.column_by_name("status").unwrap().as_dictionary::<Int8Type>().clone();
            let labels = status.values().as_string::<i32>().clone();
            let errors = batch.column_by_name("error").unwrap().as_string::<i32>();
            for r in 0..batch.num_rows() {
                let error = errors.is_valid(r).then(|| errors.value(r).to_string());
                let label = labels.value(status.keys().value(r) as usize).to_string();
                let row = (label, flags.value(r), error);
                assert!(got.insert(keys.value(r), row).is_none(), "one record per event");
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let scored = |flags| ("scored".to_string(), flags, None);
    assert_eq!(got[&1], scored(0));
    assert_eq!(got[&2], scored(0b0100));
    assert_eq!(got[&3], scored(0b1010));
    assert_eq!(got[&5], scored(0b1000));
    for key in [4, 6, 7] {
        let (status, flags, error) = &got[&key];
        assert_eq!((status.as_str(), *flags), ("refused", 0), "event {key}");
        assert!(error.as_deref().unwrap().contains("f0 in range"), "event {key}: {error:?}");
    }
    assert_eq!(got.len(), 7);
}
