//! LightGBM's text model format (`save_model`, versions v2 to v4).
//!
//! A header of `key=value` lines, then one `Tree=N` block per tree, then `end of trees`.
//! Internal nodes are numbered `0..num_leaves-1`; a negative child `c` is the leaf `!c`.
//! `decision_type` packs: bit 0 categorical, bit 1 default-left, bits 2-3 the missing type
//! (0 none, 1 zero, 2 NaN). Categorical splits store `threshold` as an index into
//! `cat_boundaries`, which delimits 32-bit words of `cat_threshold`.
//!
//! Decision rules reproduced (LightGBM `tree.h`, and the dense-row reader of `c_api.cpp`, which
//! turns every `|x| <= 1e-35` into an exact 0 before any tree sees it):
//! - numerical, missing none: NaN is scored as 0;
//! - missing zero: NaN and zero-band values take the default direction;
//! - missing NaN: NaN takes the default direction;
//! - thresholds may be `inf` (LightGBM writes them); NaN thresholds are rejected;
//! - categorical: `static_cast<int>` of the value, below 0 goes right, in the set goes left.
//!   NaN goes right (x86-64 converts NaN to `INT_MIN`).

use std::collections::HashMap;

use super::forest::{
    Accumulation, CategoryRule, Forest, RawNode, Test, ZERO_BAND, build_tree, f32_floor,
};
use crate::error::{Error, ModelFormat, ModelProblem, Result};
use crate::model::transform::Transform;

const FORMAT: ModelFormat = ModelFormat::LightGbm;

/// Most features accepted in one model (bounds per-row buffers).
const MAX_FEATURES: u64 = crate::model::MAX_FEATURES as u64;

fn parse_err(at: impl Into<String>, message: impl Into<String>) -> Error {
    Error::Parse { format: FORMAT, at: at.into(), message: message.into() }
}

fn invalid(at: impl Into<String>, problem: ModelProblem) -> Error {
    Error::InvalidModel { format: FORMAT, at: at.into(), problem }
}

/// Parses a LightGBM text model into a validated forest.
pub fn parse(text: &str) -> Result<Forest> {
    let mut lines = text.lines().enumerate();
    match lines.by_ref().find(|(_, l)| !l.trim().is_empty()) {
        Some((_, l)) if l.trim() == "tree" => {}
        _ => return Err(parse_err("line 1", "expected the header line `tree`")),
    }

    let mut header: HashMap<&str, &str> = HashMap::new();
    let mut blocks: Vec<(usize, HashMap<&str, &str>)> = Vec::new();
    let mut saw_end = false;
    for (no, line) in lines {
        let line = line.trim();
        if line == "end of trees" {
            saw_end = true;
            break;
        }
        if let Some(idx) = line.strip_prefix("Tree=") {
            let idx: usize =
                idx.parse().map_err(|_| parse_err(format!("line {}", no + 1), "bad tree index"))?;
            if idx != blocks.len() {
                let msg = format!("expected Tree={}, found Tree={idx}", blocks.len());
                return Err(parse_err(format!("line {}", no + 1), msg));
            }
            blocks.push((no + 1, HashMap::new()));
            continue;
        }
        if line.is_empty() {
            continue;
        }
        let (key, value) = line.split_once('=').unwrap_or((line, ""));
        match blocks.last_mut() {
            Some((_, block)) => block.insert(key, value),
            None => header.insert(key, value),
        };
    }
    if !saw_end {
        return Err(parse_err("end of file", "truncated: no `end of trees` line"));
    }
    build_forest(&header, &blocks)
}

fn build_forest(
    header: &HashMap<&str, &str>,
    blocks: &[(usize, HashMap<&str, &str>)],
) -> Result<Forest> {
    if let Some(v) = header.get("version")
        && !matches!(*v, "v2" | "v3" | "v4")
    {
        return Err(Error::Unsupported { format: FORMAT, what: format!("version={v}") });
    }
    let num: fn(&HashMap<&str, &str>, &str) -> Result<Option<i64>> = |h, k| {
        h.get(k)
            .map(|v| {
                v.trim()
                    .parse::<i64>()
                    .map_err(|_| parse_err(format!("header `{k}`"), "not an integer"))
            })
            .transpose()
    };
    let num_class = num(header, "num_class")?.unwrap_or(1);
    let per_iter = num(header, "num_tree_per_iteration")?.unwrap_or(num_class);
    let max_feature_idx = num(header, "max_feature_idx")?
        .ok_or_else(|| parse_err("header", "missing `max_feature_idx`"))?;
    let range = |what: &str, value: i64, min: i64, max: i64| {
        if (min..=max).contains(&value) {
            return Ok(());
        }
        let problem = ModelProblem::OutOfRange { what: what.into(), value, min, max };
        Err(invalid(format!("header `{what}`"), problem))
    };
    range("num_class", num_class, 1, 1 << 16)?;
    range("num_tree_per_iteration", per_iter, 1, 1 << 16)?;
    // max_feature_idx = -1 is a model of no features.
    range("max_feature_idx", max_feature_idx, -1, MAX_FEATURES as i64 - 1)?;
    let n_features = max_feature_idx + 1;
    let n_features = n_features as usize;
    let feature_names: Vec<String> = match header.get("feature_names") {
        Some(v) => v.split_whitespace().map(str::to_owned).collect(),
        None => (0..n_features).map(|i| format!("Column_{i}")).collect(),
    };
    if feature_names.len() != n_features {
        return Err(invalid(
            "header `feature_names`",
            ModelProblem::LengthMismatch {
                field: "feature_names".into(),
                expected: n_features,
                found: feature_names.len(),
            },
        ));
    }
    super::forest::check_unique_names(&feature_names)
        .map_err(|p| invalid("header `feature_names`", p))?;
    if let Some(sizes) = header.get("tree_sizes") {
        let declared = sizes.split_whitespace().count();
        if declared != blocks.len() {
            let msg = format!(
                "truncated: tree_sizes lists {declared} trees, the file holds {}",
                blocks.len()
            );
            return Err(parse_err("trees", msg));
        }
    }
    if blocks.is_empty() {
        return Err(invalid("trees", ModelProblem::Empty));
    }
    let objective = header.get("objective").copied().unwrap_or("").trim().to_owned();
    let transform = transform_for(&objective, per_iter as usize)?;

    let mut cat_words = Vec::new();
    let mut trees = Vec::with_capacity(blocks.len());
    for (t, (line, block)) in blocks.iter().enumerate() {
        let group = (t % per_iter as usize) as u32;
        let raw = parse_tree(t, *line, block, n_features, &mut cat_words)?;
        let n_internal = raw.len() / 2;
        let tree = build_tree(&raw, group).map_err(|(idx, problem)| {
            let at = if idx < n_internal {
                format!("tree {t}, node {idx}")
            } else {
                format!("tree {t}, leaf {}", idx - n_internal)
            };
            invalid(at, problem)
        })?;
        trees.push(tree);
    }
    Ok(Forest {
        format: FORMAT,
        objective,
        transform,
        n_features,
        feature_names,
        n_groups: per_iter as usize,
        trees,
        cat_words,
        base_margin: vec![0.0; per_iter as usize],
        average_trees: header.contains_key("average_output"),
        accumulation: Accumulation::F64,
    })
}

/// The output transform of a LightGBM objective string such as `binary sigmoid:1`.
fn transform_for(objective: &str, n_groups: usize) -> Result<Transform> {
    let mut tokens = objective.split_whitespace();
    let name = tokens.next().unwrap_or("");
    let mut sqrt = false;
    let mut sigmoid = 1.0;
    for tok in tokens {
        if tok == "sqrt" {
            sqrt = true;
        } else if let Some(v) = tok.strip_prefix("sigmoid:") {
            sigmoid = v
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s > 0.0)
                .ok_or_else(|| parse_err("header `objective`", format!("bad sigmoid `{v}`")))?;
        }
    }
    let single = |t: Transform| -> Result<Transform> {
        if n_groups == 1 {
            Ok(t)
        } else {
            let msg = format!("objective `{name}` with {n_groups} trees per iteration");
            Err(parse_err("header `objective`", msg))
        }
    };
    match name {
        "regression" | "regression_l2" | "regression_l1" | "huber" | "fair" | "quantile"
        | "mape" => single(if sqrt { Transform::SignedSquare } else { Transform::Identity }),
        "binary" => single(Transform::Sigmoid { scale: sigmoid }),
        "cross_entropy" | "xentropy" => single(Transform::Sigmoid { scale: 1.0 }),
        "cross_entropy_lambda" | "xentlambda" => single(Transform::Log1pExp),
        "poisson" | "gamma" | "tweedie" => single(Transform::Exp),
        "multiclass" | "softmax" => Ok(Transform::Softmax),
        "multiclassova" | "multiclass_ova" | "ova" | "ovr" => {
            Ok(Transform::SigmoidEach { scale: sigmoid })
        }
        "lambdarank" | "rank_xendcg" | "custom" | "none" | "" => Ok(Transform::Identity),
        other => Err(Error::Unsupported { format: FORMAT, what: format!("objective `{other}`") }),
    }
}

fn list<T: std::str::FromStr>(
    tree: usize,
    block: &HashMap<&str, &str>,
    key: &str,
    expected: usize,
) -> Result<Vec<T>> {
    let at = || format!("tree {tree}, `{key}`");
    let text = block.get(key).ok_or_else(|| parse_err(at(), "missing"))?;
    let values = text
        .split_whitespace()
        .map(|v| v.parse::<T>().map_err(|_| parse_err(at(), format!("`{v}` is not a number"))))
        .collect::<Result<Vec<T>>>()?;
    if values.len() != expected {
        let problem =
            ModelProblem::LengthMismatch { field: key.into(), expected, found: values.len() };
        return Err(invalid(at(), problem));
    }
    Ok(values)
}

/// Reads one tree into file numbering: internal nodes `0..n-1`, then leaves `n-1..2n-1`.
fn parse_tree(
    t: usize,
    line: usize,
    block: &HashMap<&str, &str>,
    n_features: usize,
    cat_words: &mut Vec<u32>,
) -> Result<Vec<RawNode>> {
    if block.get("is_linear").is_some_and(|v| v.trim() != "0") {
        let what = format!("linear trees (`is_linear=1` in tree {t}); retrain without linear_tree");
        return Err(Error::Unsupported { format: FORMAT, what });
    }
    let num_leaves: usize = block
        .get("num_leaves")
        .ok_or_else(|| parse_err(format!("tree {t} (line {line})"), "missing `num_leaves`"))?
        .trim()
        .parse()
        .map_err(|_| parse_err(format!("tree {t}, `num_leaves`"), "not a count"))?;
    if num_leaves == 0 || num_leaves > 1 << 24 {
        let problem = ModelProblem::TooLarge {
            what: "num_leaves".into(),
            value: num_leaves as u64,
            max: 1 << 24,
        };
        return Err(invalid(format!("tree {t}"), problem));
    }
    let leaf_value: Vec<f64> = list(t, block, "leaf_value", num_leaves)?;
    let n = num_leaves - 1;
    if n == 0 {
        return Ok(vec![RawNode::Leaf(leaf_value[0])]);
    }
    let split_feature: Vec<i64> = list(t, block, "split_feature", n)?;
    let threshold: Vec<f64> = list(t, block, "threshold", n)?;
    let decision_type: Vec<i64> = list(t, block, "decision_type", n)?;
    let left_child: Vec<i64> = list(t, block, "left_child", n)?;
    let right_child: Vec<i64> = list(t, block, "right_child", n)?;
    let num_cat: usize = match block.get("num_cat") {
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| parse_err(format!("tree {t}, `num_cat`"), "not a count"))?,
        None => 0,
    };
    let mut boundaries: Vec<i64> = Vec::new();
    let base = cat_words.len();
    if num_cat > 0 {
        if num_cat > n {
            let problem = ModelProblem::TooLarge {
                what: "num_cat".into(),
                value: num_cat as u64,
                max: n as u64,
            };
            return Err(invalid(format!("tree {t}"), problem));
        }
        boundaries = list(t, block, "cat_boundaries", num_cat + 1)?;
        let words = *boundaries.last().unwrap_or(&0);
        let monotone = boundaries[0] == 0 && boundaries.windows(2).all(|w| w[0] <= w[1]);
        if !monotone || words < 0 {
            let detail = "`cat_boundaries` must start at 0 and never decrease".to_string();
            return Err(invalid(format!("tree {t}"), ModelProblem::BadCategories { detail }));
        }
        let words: Vec<u32> = list(t, block, "cat_threshold", words as usize)?;
        cat_words.extend_from_slice(&words);
    }

    let child = |i: usize, c: i64| -> Result<i64> {
        let (ok, len) =
            if c >= 0 { (c < n as i64, n) } else { (!c < num_leaves as i64, num_leaves) };
        if ok {
            Ok(if c >= 0 { c } else { n as i64 + !c })
        } else {
            Err(invalid(
                format!("tree {t}, node {i}"),
                ModelProblem::ChildOutOfRange { child: c, len },
            ))
        }
    };
    let mut raw = Vec::with_capacity(2 * n + 1);
    for i in 0..n {
        let at = || format!("tree {t}, node {i}");
        let feature = split_feature[i];
        if feature < 0 || feature >= n_features as i64 {
            return Err(invalid(at(), ModelProblem::FeatureOutOfRange { feature, n_features }));
        }
        let dt = decision_type[i];
        if !(0..=15).contains(&dt) || (dt >> 2) == 3 {
            return Err(parse_err(at(), format!("bad decision_type {dt}")));
        }
        let (categorical, default_left, missing) = (dt & 1 == 1, dt & 2 == 2, dt >> 2);
        let th = threshold[i];
        // LightGBM writes `inf` for a split that only separates missing values; the f32 rule
        // `x <= inf` keeps its meaning, so only NaN is rejected.
        if th.is_nan() || (categorical && !th.is_finite()) {
            return Err(invalid(at(), ModelProblem::NonFiniteThreshold { value: th }));
        }
        let test = if categorical {
            let idx = th as i64;
            if idx as f64 != th || idx < 0 || idx as usize >= num_cat {
                let detail = format!("category set {th} does not exist (num_cat={num_cat})");
                return Err(invalid(at(), ModelProblem::BadCategories { detail }));
            }
            let (b0, b1) =
                (boundaries[idx as usize] as usize, boundaries[idx as usize + 1] as usize);
            Test::Categorical {
                offset: (base + b0) as u32,
                words: (b1 - b0) as u32,
                in_set_left: true,
                nan_left: false,
                rule: CategoryRule::LightGbm,
            }
        } else {
            numeric_test(th, default_left, missing)
        };
        let (left, right) = (child(i, left_child[i])?, child(i, right_child[i])?);
        raw.push(RawNode::Split { feature: feature as u32, test, left, right });
    }
    raw.extend(leaf_value.into_iter().map(RawNode::Leaf));
    Ok(raw)
}

/// LightGBM's numerical decision as one f32 test (see the module docs for the rules).
fn numeric_test(t: f64, default_left: bool, missing: i64) -> Test {
    // The reader maps the zero band to an exact 0, so every value in it must go where 0 goes:
    // widen or narrow the threshold to put the whole band on 0's side.
    let zero_goes_left = 0.0 <= t;
    let mut threshold = f32_floor(t);
    threshold = if zero_goes_left {
        threshold.max(ZERO_BAND)
    } else {
        threshold.min((-ZERO_BAND).next_down())
    };
    match missing {
        // Zero as missing: NaN becomes 0, and zero-band values take the default side.
        1 => Test::Numeric { threshold, nan_left: default_left, zero_left: Some(default_left) },
        2 => Test::Numeric { threshold, nan_left: default_left, zero_left: None },
        // No missing handling: NaN is scored as 0.
        _ => Test::Numeric { threshold, nan_left: zero_goes_left, zero_left: None },
    }
}
