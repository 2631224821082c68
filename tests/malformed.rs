//! Malformed and hostile model files and inputs: each gives a typed error, never a panic.
//!
//! Run in debug (overflow checks on) and in release by .ci/run.

mod common;

#[cfg(feature = "csv")]
use streamscore::io::{Columns, read_rows};
use streamscore::model::gbdt::MAX_DEPTH;
use streamscore::{Backend, Batch, Error, Forest, ModelProblem, Output, Reference};

fn golden(name: &str, file: &str) -> String {
    std::fs::read_to_string(common::root().join("models/golden").join(name).join(file)).unwrap()
}

fn lgb() -> String {
    golden("lgb_categorical", "model.txt")
}

fn xgb() -> serde_json::Value {
    serde_json::from_str(&golden("xgb_categorical", "model.json")).unwrap()
}

fn xgb_err(edit: impl FnOnce(&mut serde_json::Value)) -> Error {
    let mut v = xgb();
    edit(&mut v);
    Forest::from_text(&v.to_string()).unwrap_err()
}

/// Replaces the first occurrence of `key=...` after `Tree=<tree>` with `key=<value>`.
fn lgb_edit(text: &str, tree: usize, key: &str, value: &str) -> String {
    let start = text.find(&format!("\nTree={tree}\n")).unwrap();
    let at = start + text[start..].find(&format!("\n{key}=")).unwrap() + 1;
    let end = at + text[at..].find('\n').unwrap();
    format!("{}{key}={value}{}", &text[..at], &text[end..])
}

/// Replaces element `index` of the whitespace-separated list `key` in tree `tree`.
fn lgb_edit_item(text: &str, tree: usize, key: &str, index: usize, value: &str) -> String {
    let start = text.find(&format!("\nTree={tree}\n")).unwrap();
    let at = start + text[start..].find(&format!("\n{key}=")).unwrap() + key.len() + 2;
    let end = at + text[at..].find('\n').unwrap();
    let mut items: Vec<&str> = text[at..end].split(' ').collect();
    items[index] = value;
    format!("{}{}{}", &text[..at], items.join(" "), &text[end..])
}

fn problem(e: Error) -> ModelProblem {
    match e {
        Error::InvalidModel { problem, .. } => problem,
        other => panic!("expected InvalidModel, got {other:?}"),
    }
}

#[test]
fn truncated_files_are_parse_errors() {
    let text = lgb();
    let cut = &text[..text.find("end of trees").unwrap() - 10];
    let e = Forest::from_text(cut).unwrap_err();
    assert!(matches!(e, Error::Parse { .. }), "{e:?}");
    assert!(e.to_string().contains("truncated"), "{e}");

    let json = golden("xgb_binary", "model.json");
    let e = Forest::from_text(&json[..json.len() / 2]).unwrap_err();
    assert!(matches!(e, Error::Parse { .. }), "{e:?}");

    // Every cut point of a small model: always an error or a valid model, never a panic.
    for text in [golden("lgb_single_leaf", "model.txt"), golden("xgb_single_leaf", "model.json")] {
        let n = text.len();
        for cut in (0..n).step_by(n / 400 + 1) {
            if let Some(prefix) = text.get(..cut) {
                let _ = Forest::from_text(prefix);
            }
        }
    }
}

#[test]
fn child_index_out_of_range() {
    let text = lgb_edit_item(&lgb(), 2, "left_child", 0, "9999");
    let e = Forest::from_text(&text).unwrap_err();
    assert!(e.to_string().contains("tree 2, node 0"), "{e}");
    assert!(matches!(problem(e), ModelProblem::ChildOutOfRange { child: 9999, .. }));
    let text = lgb_edit_item(&lgb(), 0, "right_child", 1, "-9999");
    assert!(matches!(
        problem(Forest::from_text(&text).unwrap_err()),
        ModelProblem::ChildOutOfRange { .. }
    ));

    let e = xgb_err(|v| {
        v["learner"]["gradient_booster"]["model"]["trees"][3]["left_children"][0] = 100000.into()
    });
    assert!(e.to_string().contains("tree 3, node 0"), "{e}");
    assert!(matches!(problem(e), ModelProblem::ChildOutOfRange { child: 100000, .. }));
}

#[test]
fn cycles_are_rejected() {
    // Node 1's left child points back at the root.
    let text = lgb_edit_item(&lgb(), 1, "left_child", 1, "0");
    assert!(matches!(
        problem(Forest::from_text(&text).unwrap_err()),
        ModelProblem::Cycle { node: 0 }
    ));
    let e = xgb_err(|v| {
        v["learner"]["gradient_booster"]["model"]["trees"][0]["right_children"][1] = 0.into()
    });
    assert!(matches!(problem(e), ModelProblem::Cycle { node: 0 }));
    // A self-loop.
    let e = xgb_err(|v| {
        v["learner"]["gradient_booster"]["model"]["trees"][0]["left_children"][0] = 0.into()
    });
    assert!(matches!(problem(e), ModelProblem::Cycle { node: 0 }));
}

#[test]
fn nan_and_infinite_thresholds() {
    let text = lgb_edit_item(&lgb(), 0, "threshold", 0, "nan");
    let e = Forest::from_text(&text).unwrap_err();
    assert!(matches!(problem(e), ModelProblem::NonFiniteThreshold { value } if value.is_nan()));
    // XGBoost thresholds are f32: 1e39 overflows to infinity.
    let e = xgb_err(|v| {
        v["learner"]["gradient_booster"]["model"]["trees"][0]["split_conditions"][0] = 1e39.into()
    });
    assert!(matches!(problem(e), ModelProblem::NonFiniteThreshold { .. }));
    let text = lgb_edit_item(&lgb(), 0, "leaf_value", 0, "inf");
    assert!(matches!(
        problem(Forest::from_text(&text).unwrap_err()),
        ModelProblem::NonFiniteLeaf { .. }
    ));
}

#[test]
fn feature_index_beyond_declared_width() {
    let text = lgb_edit_item(&lgb(), 4, "split_feature", 0, "8");
    let e = problem(Forest::from_text(&text).unwrap_err());
    assert_eq!(e, ModelProblem::FeatureOutOfRange { feature: 8, n_features: 8 });
    let e = xgb_err(|v| {
        v["learner"]["gradient_booster"]["model"]["trees"][0]["split_indices"][0] = (-1).into()
    });
    assert!(matches!(problem(e), ModelProblem::FeatureOutOfRange { feature: -1, .. }));
}

/// A LightGBM model whose one tree is a chain of `k` splits, so `k` levels deep.
fn chain_model(k: usize) -> String {
    let list = |f: &dyn Fn(usize) -> String| (0..k).map(f).collect::<Vec<_>>().join(" ");
    let tree = format!(
        "Tree=0\nnum_leaves={}\nnum_cat=0\nsplit_feature={}\nthreshold={}\ndecision_type={}\n\
         left_child={}\nright_child={}\nleaf_value={}\nshrinkage=1\n\n",
        k + 1,
        list(&|_| "0".into()),
        list(&|i| format!("{i}")),
        list(&|_| "2".into()),
        list(&|i| format!("{}", -(i as i64) - 1)),
        list(&|i| if i + 1 < k { format!("{}", i + 1) } else { format!("{}", -(k as i64) - 1) }),
        (0..=k).map(|i| format!("{i}")).collect::<Vec<_>>().join(" "),
    );
    format!(
        "tree\nversion=v4\nnum_class=1\nnum_tree_per_iteration=1\nmax_feature_idx=0\n\
         objective=regression\n\n{tree}end of trees\n"
    )
}

#[test]
fn depth_cap() {
    let deepest = Forest::from_text(&chain_model(MAX_DEPTH)).unwrap();
    assert_eq!(deepest.max_depth(), MAX_DEPTH);
    // x = 100.5 passes every split `x <= i` for i < 100 to the right, then goes left at 101.
    let scorer = Reference::new(deepest);
    let mut out = [0.0];
    scorer.score_batch(&Batch::from_rows(&[100.5], 1).unwrap(), Output::Raw, &mut out).unwrap();
    assert_eq!(out[0], 101.0);
    let e = problem(Forest::from_text(&chain_model(MAX_DEPTH + 1)).unwrap_err());
    assert_eq!(e, ModelProblem::TooDeep { max: MAX_DEPTH });
}

#[test]
fn bad_category_sets() {
    let text = lgb_edit(&lgb(), 0, "cat_boundaries", "0 5 2");
    let e = Forest::from_text(&text).unwrap_err();
    assert!(matches!(
        problem(e),
        ModelProblem::BadCategories { .. } | ModelProblem::LengthMismatch { .. }
    ));
    let e = xgb_err(|v| {
        let t = &mut v["learner"]["gradient_booster"]["model"]["trees"][0];
        t["categories_sizes"][0] = 100000.into();
    });
    assert!(matches!(problem(e), ModelProblem::BadCategories { .. }));
    let e = xgb_err(|v| {
        v["learner"]["gradient_booster"]["model"]["trees"][0]["categories"][0] = (-3).into()
    });
    assert!(matches!(problem(e), ModelProblem::BadCategories { .. }));
    // Every categorical node naming the largest category: bitsets over the memory cap.
    let e = xgb_err(|v| {
        for tree in v["learner"]["gradient_booster"]["model"]["trees"].as_array_mut().unwrap() {
            for c in tree["categories"].as_array_mut().unwrap() {
                *c = ((1 << 24) - 1).into();
            }
        }
    });
    assert!(matches!(problem(e), ModelProblem::TooLarge { .. }), "bitset cap");
}

#[test]
fn length_mismatches_and_missing_keys() {
    let text = lgb_edit(&lgb(), 0, "leaf_value", "1 2 3");
    assert!(matches!(
        problem(Forest::from_text(&text).unwrap_err()),
        ModelProblem::LengthMismatch { .. }
    ));
    let text = lgb_edit(&lgb(), 0, "threshold", "0.5 x");
    assert!(matches!(Forest::from_text(&text).unwrap_err(), Error::Parse { .. }));
    let e = xgb_err(|v| {
        v["learner"]["gradient_booster"]["model"]["trees"][0]["split_conditions"] =
            serde_json::json!([1.0])
    });
    assert!(matches!(problem(e), ModelProblem::LengthMismatch { .. }));
    let e = xgb_err(|v| {
        v["learner"].as_object_mut().unwrap().remove("objective");
    });
    assert!(matches!(e, Error::Parse { .. }), "{e:?}");
    let e = xgb_err(|v| v["learner"]["gradient_booster"]["model"]["tree_info"][0] = 7.into());
    assert!(matches!(e, Error::Parse { .. }), "{e:?}");
}

#[test]
fn unsupported_features_are_named() {
    let text = lgb_edit(&lgb(), 0, "is_linear", "1");
    let e = Forest::from_text(&text).unwrap_err();
    assert!(matches!(e, Error::Unsupported { .. }) && e.to_string().contains("linear"), "{e}");
    let e = xgb_err(|v| v["learner"]["gradient_booster"]["name"] = "gblinear".into());
    assert!(matches!(e, Error::Unsupported { .. }) && e.to_string().contains("gblinear"), "{e}");
    let e = xgb_err(|v| v["learner"]["objective"]["name"] = "reg:mystery".into());
    assert!(matches!(e, Error::Unsupported { .. }), "{e}");
    assert!(matches!(Forest::from_text("hello"), Err(Error::UnknownFormat { .. })));
}

/// Deterministic byte-level mutations of real model files: any outcome but a panic is fine.
#[test]
fn mutated_models_never_panic() {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let noise = b"0123456789-.e []{},:\"=\n nanTree";
    for text in
        [lgb(), golden("xgb_categorical", "model.json"), golden("lgb_multiclass", "model.txt")]
    {
        let bytes = text.as_bytes();
        for _ in 0..300 {
            let mut m = bytes.to_vec();
            for _ in 0..1 + next() % 4 {
                let at = (next() % m.len() as u64) as usize;
                match next() % 3 {
                    0 => m[at] = noise[(next() % noise.len() as u64) as usize],
                    1 => {
                        m.remove(at);
                    }
                    _ => m.insert(at, noise[(next() % noise.len() as u64) as usize]),
                }
            }
            let Ok(text) = std::str::from_utf8(&m) else { continue };
            let Ok(forest) = Forest::from_text(text) else { continue };
            // A model that still loads must also score without panicking.
            let width = forest.n_features();
            let rows: Vec<f32> = [f32::NAN, 0.0, 1.5, -3.0, 1e30, 40.0]
                .iter()
                .flat_map(|&v| std::iter::repeat_n(v, width))
                .collect();
            if let Ok(batch) = Batch::from_rows(&rows, width) {
                let scorer = Reference::new(forest);
                let mut out = vec![0.0; batch.n_rows() * scorer.output_width(Output::Transformed)];
                scorer.score_batch(&batch, Output::Transformed, &mut out).unwrap();
            }
        }
    }
}

#[test]
#[cfg(feature = "csv")]
fn wrong_feature_count_in_input() {
    let forest = Forest::from_text(&lgb()).unwrap();
    let names = forest.feature_names().to_vec();
    let scorer = Reference::new(forest);
    let batch = Batch::from_rows(&[0.0; 14], 7).unwrap();
    let mut out = vec![0.0; 2];
    let e = scorer.score_batch(&batch, Output::Raw, &mut out).unwrap_err();
    assert!(matches!(e, Error::WidthMismatch { expected: 8, got: 7 }), "{e:?}");
    let batch = Batch::from_rows(&[0.0; 16], 8).unwrap();
    let e = scorer.score_batch(&batch, Output::Raw, &mut out[..1]).unwrap_err();
    assert!(matches!(e, Error::OutputLength { expected: 2, got: 1 }), "{e:?}");

    let e = read_rows(b"1,2,3\n", Columns::Positional, &names, "t").unwrap_err();
    assert!(matches!(e, Error::WidthMismatch { expected: 8, got: 3 }), "{e:?}");
    let e = read_rows(b"f0,f1\n1,2\n", Columns::ByName, &names, "t").unwrap_err();
    assert!(matches!(e, Error::MissingColumn { ref name, index: 2 } if name == "f2"), "{e:?}");
    let header = names.join(",");
    let e =
        read_rows(format!("{header}\n1,2,3,4,5,6,7,x\n").as_bytes(), Columns::ByName, &names, "t")
            .unwrap_err();
    assert!(matches!(e, Error::Input { .. }) && e.to_string().contains("f7"), "{e}");
    let e =
        read_rows(format!("{header}\n1,2\n").as_bytes(), Columns::ByName, &names, "t").unwrap_err();
    assert!(matches!(e, Error::Input { .. }), "{e:?}");
}

/// A model that names two features alike would have both read one column when rows are
/// matched by name: refused at load, naming the duplicate (LightGBM and XGBoost).
#[test]
fn duplicate_feature_names_are_refused() {
    let text = lgb();
    let line = text.lines().find(|l| l.starts_with("feature_names=")).unwrap();
    let names: Vec<&str> = line["feature_names=".len()..].split_whitespace().collect();
    let mut dup = names.clone();
    dup[2] = names[0];
    let edited = text.replacen(line, &format!("feature_names={}", dup.join(" ")), 1);
    let e = Forest::from_text(&edited).unwrap_err();
    assert!(e.to_string().contains(&format!("`{}`", names[0])), "{e}");
    assert!(e.to_string().contains("twice"), "{e}");
    let e = xgb_err(|v| {
        let names = v["learner"]["feature_names"].as_array_mut().unwrap();
        names[1] = names[0].clone();
    });
    assert!(e.to_string().contains("twice"), "{e}");
}

/// A CSV header that repeats a column the model reads is ambiguous: an error naming it (it used
/// to resolve silently to the first occurrence). Repeats of columns nobody reads are fine.
#[cfg(feature = "csv")]
#[test]
fn duplicate_csv_columns_are_refused() {
    let names: Vec<String> = ["a", "b"].iter().map(|s| s.to_string()).collect();
    let e = read_rows(b"a,b,a\n1,2,3\n", Columns::ByName, &names, "t.csv").unwrap_err();
    assert!(e.to_string().contains("`a`") && e.to_string().contains("twice"), "{e}");
    let ok = read_rows(b"a,x,b,x\n1,9,2,9\n", Columns::ByName, &names, "t.csv").unwrap();
    assert_eq!((ok.value(0, 0), ok.value(0, 1)), (1.0, 2.0));
}

/// `categories_segments + categories_sizes` that overflow i64 are a typed error, not a slice
/// to `usize::MAX` (a panic before).
#[test]
fn overflowing_category_segments_are_an_error() {
    let e = xgb_err(|v| {
        let trees = v["learner"]["gradient_booster"]["model"]["trees"].as_array_mut().unwrap();
        let tree = trees.iter_mut().find(|t| !t["categories_nodes"].as_array().unwrap().is_empty());
        let tree = tree.expect("a tree with a categorical split");
        tree["categories_segments"][0] = serde_json::json!(i64::MAX);
        tree["categories_sizes"][0] = serde_json::json!(2);
    });
    assert!(matches!(e, Error::InvalidModel { .. }), "{e}");
    assert!(e.to_string().contains("categor"), "{e}");
}

/// Out-of-range header counts are reported as the value the file holds, not a derived one
/// (`num_class=0` used to read "1 exceeds the limit", a negative `max_feature_idx` "2^64-1
/// features").
#[test]
fn header_counts_are_reported_as_written() {
    let text = lgb();
    let e = Forest::from_text(&text.replacen("num_class=1", "num_class=0", 1)).unwrap_err();
    assert!(e.to_string().contains("num_class = 0"), "{e}");
    let line = text.lines().find(|l| l.starts_with("max_feature_idx=")).unwrap();
    let e = Forest::from_text(&text.replacen(line, "max_feature_idx=-5", 1)).unwrap_err();
    assert!(e.to_string().contains("max_feature_idx = -5"), "{e}");
    assert!(!e.to_string().contains("18446744073709551"), "{e}");
}

/// Protobuf, minimally: a varint, and a length-delimited field.
fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn field(number: u64, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    varint(number << 3 | 2, &mut out);
    varint(body.len() as u64, &mut out);
    out.extend_from_slice(body);
    out
}

/// A float tensor's ValueInfoProto with these dimensions.
fn value_info(name: &str, dims: &[u64]) -> Vec<u8> {
    let mut shape = Vec::new();
    for &d in dims {
        let mut dim = Vec::new();
        varint(1 << 3, &mut dim); // dim_value, varint
        varint(d, &mut dim);
        shape.extend(field(1, &dim));
    }
    let mut tensor = vec![1 << 3, 1]; // elem_type = FLOAT
    tensor.extend(field(2, &shape));
    [field(1, name.as_bytes()), field(2, &field(1, &tensor))].concat()
}

/// A tiny ONNX file whose input declares 2^40 values per row is refused at load, before
/// anything is sized by that width (it used to pass, then abort building 2^40 names).
#[test]
fn onnx_widths_beyond_the_limit_are_refused() {
    let graph =
        [field(11, &value_info("x", &[1, 1 << 40])), field(12, &value_info("y", &[1, 1]))].concat();
    let mut model = vec![1 << 3, 8]; // ir_version = 8
    model.extend(field(7, &graph));
    assert!(model.len() < 100, "{} bytes", model.len());
    let e = streamscore::Model::from_bytes(model, std::path::Path::new("wide.onnx")).unwrap_err();
    assert!(e.to_string().contains("2^24") || e.to_string().contains("16777216"), "{e}");
}

/// Model files are read as untrusted: a device (which never ends) or a FIFO is refused before
/// a byte is read, and a file whose first bytes rule out every format is refused without
/// reading the rest.
#[cfg(unix)]
#[test]
fn model_reads_are_bounded() {
    for path in ["/dev/zero", "/dev/null"] {
        let e = streamscore::load_model(path).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{path}: {e}");
    }
    let e = streamscore::load_model("models").unwrap_err();
    assert!(!e.to_string().is_empty());
    let path = std::env::temp_dir().join(format!("streamscore-junk-{}.txt", std::process::id()));
    std::fs::write(&path, vec![b'x'; 1 << 20]).unwrap();
    let e = streamscore::load_model(&path).unwrap_err();
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(e, Error::UnknownFormat { .. }), "{e}");
}

/// A quote that is never closed used to swallow the rest of the input into one field of a
/// column nobody reads: the rows after it were silently lost. Now a typed error, from both
/// CSV readers (model rows and offline feature events).
#[cfg(feature = "csv")]
#[test]
fn unterminated_quotes_are_refused() {
    let names: Vec<String> = ["a", "b"].iter().map(|s| s.to_string()).collect();
    let csv = b"a,b,note\n1,2,\"open\n3,4,x\n5,6,y\n";
    let e = read_rows(csv, Columns::ByName, &names, "t.csv").unwrap_err();
    assert!(e.to_string().contains("never closed"), "{e}");
    // Paired and escaped quotes are fine.
    let ok =
        read_rows(b"a,b,note\n1,2,\"a \"\"b\"\", c\"\n3,4,x\n", Columns::ByName, &names, "t.csv")
            .unwrap();
    assert_eq!(ok.n_rows(), 2);
    let spec = streamscore::features::Spec::from_toml(
        "[events]\nkey = \"k\"\ntime = \"t\"\nnumeric = [\"x\"]\n\n[[feature]]\nname = \"x\"\nop = \"field\"\nfield = \"x\"\n",
    )
    .unwrap();
    let events = b"k,t,x,note\n1,1,1,\"open\n1,2,2,y\n";
    let e = streamscore::features::offline::read_csv(&spec, events, "e.csv").unwrap_err();
    assert!(e.to_string().contains("never closed"), "{e}");
}

/// A 4.9 MB LightGBM file with 65,536 classes (one single-leaf tree each): the bitvector
/// scorer summed class by class with a scan over every tree per class (2^32 steps per 16
/// rows: 46 s for 300 rows). Every CPU algorithm now takes time linear in the trees, and
/// agrees with the reference.
#[test]
fn a_model_with_65536_classes_scores_in_linear_time() {
    use streamscore::backend::cpu::{Algorithm, Cpu};
    let k = 65_536;
    let mut text = format!(
        "tree\nversion=v4\nnum_class={k}\nnum_tree_per_iteration={k}\nlabel_index=0\n\
         max_feature_idx=0\nobjective=multiclass num_class:{k}\nfeature_names=f0\n\
         feature_infos=none\n\n"
    );
    for i in 0..k {
        let v = (i % 97) as f64 / 97.0;
        text.push_str(&format!(
            "Tree={i}\nnum_leaves=1\nnum_cat=0\nleaf_value={v}\nis_linear=0\nshrinkage=1\n\n\n"
        ));
    }
    text.push_str("end of trees\n");
    let forest = Forest::from_text(&text).unwrap();
    let batch = Batch::from_rows(&[0.5; 20], 1).unwrap();
    let mut want = vec![0.0; 20 * k];
    Reference::new(forest.clone()).score_batch(&batch, Output::Raw, &mut want).unwrap();
    for algorithm in [Algorithm::Bitvector, Algorithm::Masked, Algorithm::Traverse] {
        let cpu = Cpu::new(forest.clone()).unwrap().with_algorithm(algorithm).unwrap();
        let mut got = vec![0.0; 20 * k];
        cpu.score_batch(&batch, Output::Raw, &mut got).unwrap();
        assert_eq!(got, want, "{algorithm:?}");
    }
}
