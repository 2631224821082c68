//! Parity of every tree backend with the libraries that trained the models.
//!
//! One suite for all paths: each backend is one line in `parity_suite!` and runs the same golden
//! files (models/golden, made by models/generate.py) and real models (../shared/data, expected
//! outputs in models/real, made by models/real_expected.py).

mod common;

use common::{Case, golden_cases, parity, real_cases};
use streamscore::{Backend, Forest, Reference};

/// Runs `make`'s backend over `cases`. With `exact`, every raw margin must also equal the
/// library's value rounded to f32 (the reference scorer's promise: same branches, same sums).
fn run_suite(label: &str, cases: &[Case], make: &dyn Fn(Forest) -> Box<dyn Backend>, exact: bool) {
    // One table per suite, printed at once so parallel tests do not interleave rows.
    let mut table = format!(
        "{:<28} {:>5} {:>12} {:>12} {:>10}\n",
        label, "rows", "max rel raw", "max rel out", "identical"
    );
    let mut inexact = Vec::new();
    for case in cases {
        let forest = case.forest();
        let batch = case.batch(&forest);
        let backend = make(forest);
        let p = parity(backend.as_ref(), case, &batch);
        table += &format!(
            "{:<28} {:>5} {:>12.3e} {:>12.3e} {:>9.1}%\n",
            case.name,
            p.rows,
            p.max_rel_raw,
            p.max_rel_pred,
            100.0 * p.identical_rows as f64 / p.rows as f64
        );
        if p.identical_rows != p.rows {
            inexact.push(case.name.clone());
        }
    }
    eprint!("{table}");
    assert!(!exact || inexact.is_empty(), "{label}: raw margins not bit-identical for {inexact:?}");
}

macro_rules! parity_suite {
    ($($name:ident => $make:expr, exact: $exact:expr);* $(;)?) => {$(
        mod $name {
            use super::*;

            #[test]
            fn golden_files() {
                run_suite(stringify!($name), &golden_cases(), &$make, $exact);
            }

            #[test]
            fn real_models() {
                if let Some(cases) = real_cases() {
                    run_suite(stringify!($name), &cases, &$make, $exact);
                }
            }
        }
    )*};
}

parity_suite! {
    reference => |f: Forest| Box::new(Reference::new(f)) as Box<dyn Backend>, exact: true;
}

/// The .npy copy of every input gives the same rows as the CSV (NaN included).
#[test]
fn npy_and_csv_inputs_agree() {
    for case in golden_cases() {
        let forest = case.forest();
        let csv = case.batch(&forest);
        let bytes = std::fs::read(case.dir.join("input.npy")).unwrap();
        let npy = streamscore::io::read_rows(
            &bytes,
            streamscore::io::Columns::ByName,
            &forest.feature_names,
            "npy",
        )
        .unwrap();
        let same =
            csv.as_slice().iter().zip(npy.as_slice()).all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same && csv.n_rows() == npy.n_rows(), "{}: npy and csv rows differ", case.name);
    }
}

/// The golden inputs really exercise the hard cases: missing values, categorical splits,
/// multiclass, and rows built on the models' own thresholds.
#[test]
fn golden_files_cover_the_hard_cases() {
    let cases = golden_cases();
    let forests: Vec<Forest> = cases.iter().map(Case::forest).collect();
    let has_nan =
        cases.iter().zip(&forests).any(|(c, f)| c.batch(f).as_slice().iter().any(|v| v.is_nan()));
    let has_cat = forests
        .iter()
        .any(|f| f.format == streamscore::ModelFormat::LightGbm && !f.cat_words.is_empty())
        && forests
            .iter()
            .any(|f| f.format == streamscore::ModelFormat::XgboostJson && !f.cat_words.is_empty());
    let has_multi = forests.iter().filter(|f| f.n_groups > 1).count() >= 4;
    let has_single_leaf = forests.iter().any(|f| f.trees.iter().all(|t| t.nodes.len() == 1));
    let deepest = forests.iter().map(Forest::max_depth).max().unwrap();
    assert!(has_nan && has_cat && has_multi && has_single_leaf, "coverage");
    assert!(deepest >= 20, "deepest golden tree is only {deepest} deep");
}
