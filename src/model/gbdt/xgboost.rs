//! XGBoost's JSON model format (`save_model("*.json")`, 1.x to 3.x).
//!
//! `learner.gradient_booster.model.trees[]` hold parallel arrays per node: `left_children`
//! (-1 for a leaf), `right_children`, `split_indices`, `split_conditions` (the threshold, or the
//! leaf value on a leaf), `default_left`, `split_type` (1 = categorical) and, for categorical
//! nodes, `categories_nodes` / `categories_segments` / `categories_sizes` into `categories`.
//! `tree_info[i]` is tree i's class. `learner_model_param.base_score` is in output space (a
//! scalar string, or from 3.x an array string such as `[5E-1]`).
//!
//! Decision rules reproduced (XGBoost `predict_fn.h`, `categorical.h`): NaN takes the default
//! direction; numerical `x < t` in f32 goes left; categorical: a category in the node's list goes
//! right, anything else (negative, >= 2^24, not listed) goes left. Margins are summed in f32
//! from the base margin, trees in order, as XGBoost's CPU predictor does.

use serde_json::Value;

use super::forest::{Accumulation, CategoryRule, Forest, RawNode, Test, build_tree};
use crate::error::{Error, ModelFormat, ModelProblem, Result};
use crate::model::transform::Transform;

const FORMAT: ModelFormat = ModelFormat::XgboostJson;

/// Largest category XGBoost can represent exactly in f32 (2^24), so the largest bitset needed.
const MAX_CATEGORY: i64 = 1 << 24;

/// Most 32-bit bitset words all categorical splits of a model may take together (64 MiB).
const MAX_CAT_WORDS: usize = 1 << 24;

fn parse_err(at: impl Into<String>, message: impl Into<String>) -> Error {
    Error::Parse { format: FORMAT, at: at.into(), message: message.into() }
}

fn invalid(at: impl Into<String>, problem: ModelProblem) -> Error {
    Error::InvalidModel { format: FORMAT, at: at.into(), problem }
}

fn get<'a>(v: &'a Value, key: &str, at: &str) -> Result<&'a Value> {
    v.get(key).ok_or_else(|| parse_err(at, format!("missing `{key}`")))
}

/// An integer stored as a JSON number or as a string (XGBoost writes parameters as strings).
fn int(v: &Value, at: &str) -> Result<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| parse_err(at, format!("expected an integer, found {v}")))
}

fn array<'a>(v: &'a Value, key: &str, at: &str) -> Result<&'a Vec<Value>> {
    get(v, key, at)?.as_array().ok_or_else(|| parse_err(at, format!("`{key}` is not an array")))
}

fn ints(v: &Value, key: &str, at: &str) -> Result<Vec<i64>> {
    array(v, key, at)?
        .iter()
        .map(|x| match x {
            Value::Bool(b) => Ok(i64::from(*b)),
            _ => x
                .as_i64()
                .ok_or_else(|| parse_err(at, format!("`{key}` holds {x}, not an integer"))),
        })
        .collect()
}

/// Numbers; `null` (a non-finite literal, see [`nonfinite_to_null`]) reads as NaN.
fn floats(v: &Value, key: &str, at: &str) -> Result<Vec<f64>> {
    array(v, key, at)?
        .iter()
        .map(|x| match x {
            Value::Null => Ok(f64::NAN),
            _ => {
                x.as_f64().ok_or_else(|| parse_err(at, format!("`{key}` holds {x}, not a number")))
            }
        })
        .collect()
}

/// XGBoost writes `NaN` and `Infinity` literals (1.x puts `NaN` in the `split_conditions` of
/// categorical nodes), which strict JSON forbids. Outside strings they become `null`, which
/// [`floats`] reads as NaN: where a finite value is required, validation still rejects it.
fn nonfinite_to_null(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains("NaN") && !text.contains("Infinity") {
        return text.into();
    }
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_string {
            in_string = escaped || c != '"';
            escaped = !escaped && c == '\\';
        } else if c == '"' {
            in_string = true;
        } else if let Some(literal) =
            ["NaN", "-Infinity", "Infinity"].into_iter().find(|l| rest.starts_with(l))
        {
            out.push_str("null");
            rest = &rest[literal.len()..];
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out.into()
}

/// Parses an XGBoost JSON model into a validated forest.
pub fn parse(text: &str) -> Result<Forest> {
    let root: Value = serde_json::from_str(&nonfinite_to_null(text)).map_err(|e| {
        let at = format!("line {}, column {}", e.line(), e.column());
        parse_err(at, format!("invalid JSON: {e}"))
    })?;
    let learner = get(&root, "learner", "top level")?;
    let booster = get(learner, "gradient_booster", "learner")?;
    let name = booster.get("name").and_then(Value::as_str).unwrap_or("gbtree");
    if name != "gbtree" {
        return Err(Error::Unsupported {
            format: FORMAT,
            what: format!("booster `{name}` (only gbtree)"),
        });
    }
    let model = get(booster, "model", "gradient_booster")?;
    let params = get(learner, "learner_model_param", "learner")?;
    let n_features = int(get(params, "num_feature", "learner_model_param")?, "num_feature")?;
    if !(0..=1 << 24).contains(&n_features) {
        let problem = ModelProblem::TooLarge {
            what: "num_feature".into(),
            value: n_features as u64,
            max: 1 << 24,
        };
        return Err(invalid("learner_model_param", problem));
    }
    let n_features = n_features as usize;
    let num_class = params.get("num_class").map(|v| int(v, "num_class")).transpose()?.unwrap_or(0);
    let num_target =
        params.get("num_target").map(|v| int(v, "num_target")).transpose()?.unwrap_or(1);
    if num_target != 1 {
        let what = format!("multi-target models (num_target={num_target})");
        return Err(Error::Unsupported { format: FORMAT, what });
    }
    if !(0..=1 << 16).contains(&num_class) {
        let problem = ModelProblem::TooLarge {
            what: "num_class".into(),
            value: num_class as u64,
            max: 1 << 16,
        };
        return Err(invalid("learner_model_param", problem));
    }
    let n_groups = num_class.max(1) as usize;

    let objective = get(learner, "objective", "learner")?
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| parse_err("learner.objective", "missing `name`"))?
        .to_owned();
    let (transform, link) = objective_transform(&objective)?;
    if transform == Transform::Softmax || transform == Transform::ArgMax {
        if n_groups < 2 {
            return Err(parse_err(
                "learner_model_param",
                format!("`{objective}` needs num_class >= 2"),
            ));
        }
    } else if n_groups != 1 {
        return Err(parse_err(
            "learner_model_param",
            format!("`{objective}` with num_class={num_class}"),
        ));
    }
    let base_margin = base_margin(params, n_groups, link)?;

    let feature_names = match learner.get("feature_names").and_then(Value::as_array) {
        Some(names) if !names.is_empty() => names
            .iter()
            .map(|n| {
                n.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| parse_err("feature_names", "not a string"))
            })
            .collect::<Result<Vec<_>>>()?,
        _ => (0..n_features).map(|i| format!("f{i}")).collect(),
    };
    if feature_names.len() != n_features {
        let problem = ModelProblem::LengthMismatch {
            field: "feature_names".into(),
            expected: n_features,
            found: feature_names.len(),
        };
        return Err(invalid("learner", problem));
    }
    super::forest::check_unique_names(&feature_names)
        .map_err(|p| invalid("learner.feature_names", p))?;

    let trees_json = array(model, "trees", "model")?;
    let tree_info = ints(model, "tree_info", "model")?;
    if tree_info.len() != trees_json.len() {
        let problem = ModelProblem::LengthMismatch {
            field: "tree_info".into(),
            expected: trees_json.len(),
            found: tree_info.len(),
        };
        return Err(invalid("model", problem));
    }
    if trees_json.is_empty() {
        return Err(invalid("model", ModelProblem::Empty));
    }
    let mut cat_words = Vec::new();
    let mut trees = Vec::with_capacity(trees_json.len());
    for (t, (tree, &group)) in trees_json.iter().zip(&tree_info).enumerate() {
        if group < 0 || group as usize >= n_groups {
            let msg = format!("tree_info = {group}, but the model has {n_groups} output groups");
            return Err(parse_err(format!("tree {t}"), msg));
        }
        let raw = parse_tree(t, tree, n_features, &mut cat_words)?;
        let tree = build_tree(&raw, group as u32)
            .map_err(|(idx, problem)| invalid(format!("tree {t}, node {idx}"), problem))?;
        trees.push(tree);
    }
    Ok(Forest {
        format: FORMAT,
        objective,
        transform,
        n_features,
        feature_names,
        n_groups,
        trees,
        cat_words,
        base_margin,
        average_trees: false,
        accumulation: Accumulation::F32,
    })
}

/// How an objective maps `base_score` (output space) to a margin (XGBoost's `ProbToMargin`).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Link {
    Identity,
    Logit,
    Log,
}

fn objective_transform(name: &str) -> Result<(Transform, Link)> {
    Ok(match name {
        "binary:logistic" | "reg:logistic" => (Transform::Sigmoid { scale: 1.0 }, Link::Logit),
        // logitraw keeps base_score as a margin (checked against XGBoost 3.2's predictions).
        "binary:logitraw" => (Transform::Identity, Link::Identity),
        "binary:hinge" => (Transform::Step, Link::Identity),
        "reg:squarederror"
        | "reg:linear"
        | "reg:squaredlogerror"
        | "reg:pseudohubererror"
        | "reg:absoluteerror"
        | "reg:quantileerror" => (Transform::Identity, Link::Identity),
        "count:poisson" | "reg:gamma" | "reg:tweedie" | "survival:cox" | "survival:aft" => {
            (Transform::Exp, Link::Log)
        }
        "multi:softprob" => (Transform::Softmax, Link::Identity),
        "multi:softmax" => (Transform::ArgMax, Link::Identity),
        "rank:pairwise" | "rank:ndcg" | "rank:map" => (Transform::Identity, Link::Identity),
        other => {
            return Err(Error::Unsupported {
                format: FORMAT,
                what: format!("objective `{other}`"),
            });
        }
    })
}

/// Per-group starting margins from `base_score`: `"5E-1"`, `"[5E-1]"` or `"[a,b,c]"`.
fn base_margin(params: &Value, n_groups: usize, link: Link) -> Result<Vec<f64>> {
    let at = "learner_model_param.base_score";
    let text = match params.get("base_score") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(other) => return Err(parse_err(at, format!("unexpected {other}"))),
        None => "0.5".to_owned(),
    };
    let values: Vec<f64> = text
        .trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .split(',')
        .map(|v| {
            v.trim().parse::<f64>().map_err(|_| parse_err(at, format!("`{v}` is not a number")))
        })
        .collect::<Result<_>>()?;
    let values = match values.len() {
        1 => vec![values[0]; n_groups],
        n if n == n_groups => values,
        n => return Err(parse_err(at, format!("{n} values for {n_groups} output groups"))),
    };
    values
        .into_iter()
        .map(|b| {
            // XGBoost keeps the base score as f32 and converts it in f32.
            let b = b as f32;
            let m = match link {
                Link::Identity => b,
                Link::Logit => -(1.0f32 / b - 1.0).ln(),
                Link::Log => b.ln(),
            };
            if m.is_finite() {
                Ok(f64::from(m))
            } else {
                Err(parse_err(at, format!("base_score {b} gives margin {m}")))
            }
        })
        .collect()
}

fn parse_tree(
    t: usize,
    tree: &Value,
    n_features: usize,
    cat_words: &mut Vec<u32>,
) -> Result<Vec<RawNode>> {
    let at = format!("tree {t}");
    if let Some(size) = tree.get("tree_param").and_then(|p| p.get("size_leaf_vector")) {
        let size = int(size, &at)?;
        if size > 1 {
            let what = format!("vector-leaf trees (size_leaf_vector={size} in tree {t})");
            return Err(Error::Unsupported { format: FORMAT, what });
        }
    }
    let left = ints(tree, "left_children", &at)?;
    let n = left.len();
    let right = ints(tree, "right_children", &at)?;
    let feature = ints(tree, "split_indices", &at)?;
    let cond = floats(tree, "split_conditions", &at)?;
    let default_left = ints(tree, "default_left", &at)?;
    let split_type = match tree.get("split_type") {
        Some(_) => ints(tree, "split_type", &at)?,
        None => vec![0; n],
    };
    for (field, len) in [
        ("right_children", right.len()),
        ("split_indices", feature.len()),
        ("split_conditions", cond.len()),
        ("default_left", default_left.len()),
        ("split_type", split_type.len()),
    ] {
        if len != n {
            let problem =
                ModelProblem::LengthMismatch { field: field.into(), expected: n, found: len };
            return Err(invalid(at, problem));
        }
    }
    let categories = categorical_sets(t, tree, n)?;

    let mut raw = Vec::with_capacity(n);
    for i in 0..n {
        let at = || format!("tree {t}, node {i}");
        if left[i] == -1 {
            if right[i] != -1 {
                let problem = ModelProblem::ChildOutOfRange { child: right[i], len: 0 };
                return Err(invalid(format!("{} (a leaf with a right child)", at()), problem));
            }
            raw.push(RawNode::Leaf(f64::from(cond[i] as f32)));
            continue;
        }
        let f = feature[i];
        if f < 0 || f >= n_features as i64 {
            return Err(invalid(at(), ModelProblem::FeatureOutOfRange { feature: f, n_features }));
        }
        let nan_left = default_left[i] != 0;
        let test = match split_type[i] {
            0 => {
                let th = cond[i] as f32;
                if !th.is_finite() {
                    return Err(invalid(at(), ModelProblem::NonFiniteThreshold { value: cond[i] }));
                }
                // x < th in f32 is x <= the next f32 below th, for every non-NaN x.
                Test::Numeric { threshold: th.next_down(), nan_left, zero_left: None }
            }
            1 => {
                let Some(cats) = categories.get(&i) else {
                    let detail = "categorical split without a category list".to_string();
                    return Err(invalid(at(), ModelProblem::BadCategories { detail }));
                };
                let max = cats.iter().copied().max().unwrap_or(0);
                let words = (max / 32 + 1) as usize;
                let offset = cat_words.len();
                // A few large category numbers must not make the bitsets exhaust memory.
                if offset + words > MAX_CAT_WORDS {
                    let problem = ModelProblem::TooLarge {
                        what: "category bitset words".into(),
                        value: (offset + words) as u64,
                        max: MAX_CAT_WORDS as u64,
                    };
                    return Err(invalid(at(), problem));
                }
                cat_words.resize(offset + words, 0);
                for &c in cats {
                    cat_words[offset + (c / 32) as usize] |= 1 << (c % 32);
                }
                Test::Categorical {
                    offset: offset as u32,
                    words: words as u32,
                    in_set_left: false,
                    nan_left,
                    rule: CategoryRule::Xgboost,
                }
            }
            other => return Err(parse_err(at(), format!("unknown split_type {other}"))),
        };
        raw.push(RawNode::Split { feature: f as u32, test, left: left[i], right: right[i] });
    }
    Ok(raw)
}

/// The category list of every categorical node of a tree, keyed by node index.
fn categorical_sets(
    t: usize,
    tree: &Value,
    n: usize,
) -> Result<std::collections::HashMap<usize, Vec<i64>>> {
    let at = format!("tree {t}");
    let mut sets = std::collections::HashMap::new();
    if tree.get("categories_nodes").is_none() {
        return Ok(sets);
    }
    let nodes = ints(tree, "categories_nodes", &at)?;
    let segments = ints(tree, "categories_segments", &at)?;
    let sizes = ints(tree, "categories_sizes", &at)?;
    let cats = ints(tree, "categories", &at)?;
    if segments.len() != nodes.len() || sizes.len() != nodes.len() {
        let problem = ModelProblem::LengthMismatch {
            field: "categories_segments/categories_sizes".into(),
            expected: nodes.len(),
            found: segments.len().min(sizes.len()),
        };
        return Err(invalid(at, problem));
    }
    for ((&node, &seg), &size) in nodes.iter().zip(&segments).zip(&sizes) {
        let bad = |detail: String| {
            invalid(format!("tree {t}, node {node}"), ModelProblem::BadCategories { detail })
        };
        if node < 0 || node as usize >= n {
            return Err(bad(format!("categories_nodes names node {node} of {n}")));
        }
        // Checked: an overflowing sum is out of range, not a wrapped (or -1) end.
        let end =
            seg.checked_add(size).filter(|&e| seg >= 0 && size >= 0 && e <= cats.len() as i64);
        let Some(end) = end else {
            return Err(bad(format!("segment {seg}+{size} outside {} categories", cats.len())));
        };
        let list = cats[seg as usize..end as usize].to_vec();
        if let Some(&c) = list.iter().find(|&&c| !(0..MAX_CATEGORY).contains(&c)) {
            return Err(bad(format!("category {c} outside 0..2^24")));
        }
        sets.insert(node as usize, list);
    }
    Ok(sets)
}

#[cfg(test)]
mod tests {
    use super::nonfinite_to_null;

    #[test]
    fn nonfinite_literals_become_null_outside_strings() {
        let text = r#"{"a": [NaN, -Infinity, 1.5, Infinity], "NaN": "x\"NaN"}"#;
        let fixed = nonfinite_to_null(text);
        assert_eq!(fixed, r#"{"a": [null, null, 1.5, null], "NaN": "x\"NaN"}"#);
        assert!(serde_json::from_str::<serde_json::Value>(&fixed).is_ok());
    }
}
