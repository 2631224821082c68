//! Shared helpers for the integration tests: golden cases and the parity check every backend
//! runs through.
#![allow(dead_code)]

#[cfg(feature = "mqtt")]
pub mod mosquitto;
pub mod process;
#[cfg(feature = "redis")]
pub mod redis_server;
#[cfg(all(feature = "serve", feature = "cli"))]
pub mod serve_child;

use std::path::{Path, PathBuf};

use streamscore::{Backend, Batch, Forest, Output, load_forest};

/// Tolerance on raw margins and predictions against the training library.
pub const REL_TOL: f64 = 1e-6;

/// A model with its input rows and the training library's outputs.
pub struct Case {
    pub name: String,
    pub dir: PathBuf,
    pub model: PathBuf,
    pub raw: Vec<Vec<f64>>,
    pub pred: Vec<Vec<f64>>,
}

impl Case {
    pub fn forest(&self) -> Forest {
        load_forest(&self.model).unwrap_or_else(|e| panic!("{}: {e}", self.name))
    }

    pub fn batch(&self, forest: &Forest) -> Batch {
        read_csv(&self.dir.join("input.csv"), forest.feature_names())
    }
}

/// The rows of a CSV with a header, columns matched to `names` (empty or NaN is missing). The
/// tests read their inputs themselves so that the lean build (no `csv` feature) runs them too.
pub fn read_csv(path: &Path, names: &[String]) -> Batch {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    let header: Vec<&str> =
        lines.next().expect("a header line").split(',').map(str::trim).collect();
    let index: Vec<usize> = names
        .iter()
        .map(|n| header.iter().position(|h| h == n).unwrap_or_else(|| panic!("no column {n}")))
        .collect();
    let mut rows = Vec::new();
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        for &i in &index {
            let f = fields[i];
            rows.push(if f.is_empty() || f.eq_ignore_ascii_case("nan") {
                f32::NAN
            } else {
                f.parse().unwrap_or_else(|_| panic!("{}: `{f}`", path.display()))
            });
        }
    }
    Batch::from_rows(&rows, names.len()).unwrap()
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read_table(path: &Path) -> Vec<Vec<f64>> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines().map(|l| l.split(',').map(|v| v.parse().unwrap()).collect()).collect()
}

fn case(name: &str, dir: PathBuf, model: PathBuf) -> Case {
    Case {
        name: name.to_string(),
        raw: read_table(&dir.join("raw.csv")),
        pred: read_table(&dir.join("pred.csv")),
        dir,
        model,
    }
}

/// Every model under models/golden/.
pub fn golden_cases() -> Vec<Case> {
    let base = root().join("models/golden");
    let mut names: Vec<String> = std::fs::read_dir(&base)
        .expect("models/golden exists (python3 models/generate.py makes it)")
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert!(names.len() >= 30, "expected the committed golden models, found {}", names.len());
    names
        .iter()
        .map(|n| {
            let dir = base.join(n);
            let model =
                ["model.txt", "model.json"].iter().map(|m| dir.join(m)).find(|p| p.exists());
            case(n, dir.clone(), model.unwrap_or_else(|| panic!("{n}: no model file")))
        })
        .collect()
}

/// The real models in ../shared/data/lleaves-models with expected outputs in models/real/,
/// or `None` (with the reason printed) where ../shared is absent.
pub fn real_cases() -> Option<Vec<Case>> {
    let shared = root().join("../shared/data/lleaves-models");
    if !shared.is_dir() {
        eprintln!("SKIP real-model parity: {} is absent", shared.display());
        return None;
    }
    let models = [("airline", "airline.model.txt"), ("NYC_taxi", "NYC_taxi.model.txt")];
    Some(
        models
            .iter()
            .map(|(n, f)| case(n, root().join("models/real").join(n), shared.join(f)))
            .collect(),
    )
}

/// `|a - b| / |b|`, or `|a|` where `b` is 0.
pub fn rel_err(a: f64, b: f64) -> f64 {
    if b == 0.0 { a.abs() } else { (a - b).abs() / b.abs() }
}

/// Result of checking one backend on one case.
pub struct Parity {
    pub max_rel_raw: f64,
    pub max_rel_pred: f64,
    /// Rows whose raw margins equal the library's after rounding to f32.
    pub identical_rows: usize,
    pub rows: usize,
}

/// Scores `case` with `backend` (raw and transformed) and compares with the library's outputs.
pub fn parity(backend: &dyn Backend, case: &Case, batch: &Batch) -> Parity {
    let mut result =
        Parity { max_rel_raw: 0.0, max_rel_pred: 0.0, identical_rows: 0, rows: batch.n_rows() };
    for (output, expected) in [(Output::Raw, &case.raw), (Output::Transformed, &case.pred)] {
        let width = backend.output_width(output);
        let mut out = vec![f32::NAN; batch.n_rows() * width];
        backend.score_batch(batch, output, &mut out).unwrap();
        assert_eq!(expected.len(), batch.n_rows(), "{}: row count", case.name);
        for (r, (ours, theirs)) in out.chunks(width).zip(expected).enumerate() {
            assert_eq!(ours.len(), theirs.len(), "{}: width of row {r}", case.name);
            let mut identical = true;
            for (&a, &b) in ours.iter().zip(theirs) {
                let e = rel_err(f64::from(a), b);
                assert!(
                    e <= REL_TOL,
                    "{} [{}] {output:?} row {r}: ours {a} vs library {b} (rel {e:.3e})",
                    case.name,
                    backend.name()
                );
                identical &= a == b as f32;
                let slot = if output == Output::Raw {
                    &mut result.max_rel_raw
                } else {
                    &mut result.max_rel_pred
                };
                *slot = slot.max(e);
            }
            if output == Output::Raw && identical {
                result.identical_rows += 1;
            }
        }
    }
    result
}
