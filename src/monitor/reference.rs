//! A training reference: per input feature and for the score, the count, missing values,
//! range, mean and variance, and the distribution over a grid of quantile edges; and the
//! distances between it and what the runtime sees (PSI, Jensen-Shannon, a KS estimate).
//!
//! The grid is the reference's own quantiles at every 5% (distinct values only, so a binary
//! feature has two edges): bin 0 holds values below the reference's minimum, bin `i` values
//! in `[edge[i-1], edge[i])`, and the last bin values at or above its maximum. A value's
//! bin is found in constant time (`bins.rs`, used for the reference and for every window),
//! the memory per monitored column is fixed (22 counts), and windows merge by adding counts. Quantiles of a window are read off the
//! grid, interpolated within a bin (so to about one bin's width of the reference's
//! distribution). Twenty bins, not a hundred, because the PSI's noise grows with the bins:
//! with no drift at all it is about `(bins - 1) (1/n + 1/m)`, 0.17 for a hundred bins, 800
//! live and 2,000 reference values, against 0.2 for "significant drift".
//!
//! A reference is a JSON file (`streamscore profile` writes it) and is untrusted when read:
//! its size, its column count, every grid (sorted, finite) and its counts are checked, and a
//! reference whose features are not the model's is an [`Error::Config`].

use serde::{Deserialize, Serialize};

use crate::batch::Columns;
use crate::error::{Error, Result};
use crate::monitor::bins::Finder;

/// Steps of the grid: 20 bins (of 5%) between the minimum and the maximum.
pub const GRID: usize = 20;

/// The most columns a reference may describe.
pub const MAX_COLUMNS: usize = 65_536;

/// Shares are floored here in the PSI's logarithm, so that an empty bin costs a large but
/// finite amount (the usual convention; the Jensen-Shannon distance needs no floor).
pub const PSI_FLOOR: f64 = 1e-4;

/// The format's version, checked on read.
const FORMAT: u32 = 1;

/// One column of the reference.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ColumnReference {
    /// The feature's name (`score` for the model's output).
    pub name: String,
    /// Values seen, missing ones included.
    pub count: u64,
    /// Of them, NaN.
    pub missing: u64,
    /// The smallest value (`None`: every value missing).
    pub min: Option<f64>,
    /// The largest value.
    pub max: Option<f64>,
    /// Their mean.
    pub mean: f64,
    /// Their sample variance.
    pub variance: f64,
    /// Distinct quantile edges, increasing (the quantiles 0, 0.05, ..., 1 of the values).
    pub edges: Vec<f64>,
    /// Values per bin (`edges.len() + 1` bins, see the module docs).
    pub counts: Vec<u64>,
}

/// A training reference for one model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    /// The format's version.
    pub format: u32,
    /// The model's feature names, in order.
    pub features: Vec<String>,
    /// The model file's SHA-256, when known (informational).
    pub model_sha256: Option<String>,
    /// One per feature, then the score's.
    pub columns: Vec<ColumnReference>,
}

impl ColumnReference {
    /// The reference of one column's values (NaN counted as missing).
    pub fn of(name: &str, values: &[f32]) -> Self {
        let mut present: Vec<f64> =
            values.iter().filter(|v| !v.is_nan()).map(|&v| f64::from(v)).collect();
        present.sort_unstable_by(f64::total_cmp);
        let missing = (values.len() - present.len()) as u64;
        let n = present.len();
        let mut edges = Vec::with_capacity(GRID + 1);
        if n > 0 {
            for i in 0..=GRID {
                // NumPy's default (linear) quantile.
                let h = (n - 1) as f64 * i as f64 / GRID as f64;
                let lo = h.floor() as usize;
                let hi = (lo + 1).min(n - 1);
                let e = present[lo] + (present[hi] - present[lo]) * (h - lo as f64);
                if edges.last().is_none_or(|&last| e > last) {
                    edges.push(e);
                }
            }
        }
        // The monitor's own bins, so a window and its reference are counted alike.
        let finder = Finder::new(&edges);
        let mut counts = vec![0u64; edges.len() + 1];
        for &x in &present {
            counts[finder.bin(x)] += 1;
        }
        let mean = if n > 0 { present.iter().sum::<f64>() / n as f64 } else { 0.0 };
        let variance = if n > 1 {
            present.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1) as f64
        } else {
            0.0
        };
        ColumnReference {
            name: name.to_owned(),
            count: values.len() as u64,
            missing,
            min: present.first().copied(),
            max: present.last().copied(),
            mean,
            variance,
            edges,
            counts,
        }
    }

    fn validate(&self, at: &str) -> Result<()> {
        let bad =
            |message: String| Error::Input { at: format!("{at}: column `{}`", self.name), message };
        if self.edges.len() > GRID + 1 || self.counts.len() != self.edges.len() + 1 {
            return Err(bad(format!(
                "{} edges and {} counts (at most {} edges, one count more)",
                self.edges.len(),
                self.counts.len(),
                GRID + 1
            )));
        }
        if self.edges.iter().any(|e| !e.is_finite()) || self.edges.windows(2).any(|w| w[0] >= w[1])
        {
            return Err(bad("edges are not finite and increasing".into()));
        }
        let present = self.counts.iter().try_fold(0u64, |a, &c| a.checked_add(c));
        if present.and_then(|p| p.checked_add(self.missing)) != Some(self.count) {
            return Err(bad("counts and missing do not add up to count".into()));
        }
        Ok(())
    }

    /// The reference's share of values per bin (missing values left out).
    pub fn shares(&self) -> Vec<f64> {
        shares(&self.counts)
    }
}

fn shares(counts: &[u64]) -> Vec<f64> {
    let total: u64 = counts.iter().sum();
    counts.iter().map(|&c| if total == 0 { 0.0 } else { c as f64 / total as f64 }).collect()
}

/// How far a window's distribution is from the reference's, on the reference's grid.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Distances {
    /// Population stability index: `sum((a - e) ln(a / e))`, shares floored at [`PSI_FLOOR`].
    pub psi: f64,
    /// Jensen-Shannon distance (the square root of the divergence, natural logarithm), as
    /// `scipy.spatial.distance.jensenshannon`.
    pub js: f64,
    /// The largest gap between the two cumulative distributions at the grid's edges: the
    /// Kolmogorov-Smirnov statistic at those points (a lower bound on the exact one).
    pub ks: f64,
}

/// The distances between the reference's bin counts and a window's.
pub fn distances(reference: &[u64], window: &[u64]) -> Distances {
    let (e, a) = (shares(reference), shares(window));
    let mut d = Distances::default();
    let (mut ce, mut ca) = (0.0, 0.0);
    let mut js = 0.0;
    for (&e, &a) in e.iter().zip(&a) {
        let (ef, af) = (e.max(PSI_FLOOR), a.max(PSI_FLOOR));
        d.psi += (af - ef) * (af / ef).ln();
        let m = (e + a) / 2.0;
        if e > 0.0 {
            js += e * (e / m).ln();
        }
        if a > 0.0 {
            js += a * (a / m).ln();
        }
        ce += e;
        ca += a;
        d.ks = d.ks.max((ce - ca).abs());
    }
    d.js = (js / 2.0).max(0.0).sqrt();
    d
}

impl Reference {
    /// The reference of a model's training features and its scores (`scores`, one per row).
    pub fn of(features: &[String], rows: Columns<'_>, scores: &[f32]) -> Result<Self> {
        if rows.n_features() != features.len() || scores.len() != rows.n_rows() {
            return Err(Error::WidthMismatch { expected: features.len(), got: rows.n_features() });
        }
        let mut columns: Vec<ColumnReference> = features
            .iter()
            .enumerate()
            .map(|(f, name)| ColumnReference::of(name, rows.column(f)))
            .collect();
        columns.push(ColumnReference::of("score", scores));
        Ok(Reference { format: FORMAT, features: features.to_vec(), model_sha256: None, columns })
    }

    /// Reads and checks a reference file.
    pub fn from_path(path: &std::path::Path) -> Result<Self> {
        let text = crate::files::read_to_string(path, &crate::files::CONFIG)?;
        Self::from_json(&text, &path.display().to_string())
    }

    /// Parses and checks a reference (`at` names it in errors).
    pub fn from_json(text: &str, at: &str) -> Result<Self> {
        let r: Reference = serde_json::from_str(text).map_err(|e| Error::Input {
            at: at.to_owned(),
            message: format!("not a reference profile: {e}"),
        })?;
        if r.format != FORMAT {
            return Err(Error::Input {
                at: at.to_owned(),
                message: format!("reference format {} (this build reads {FORMAT})", r.format),
            });
        }
        if r.columns.len() > MAX_COLUMNS || r.columns.len() != r.features.len() + 1 {
            return Err(Error::Input {
                at: at.to_owned(),
                message: format!(
                    "{} columns for {} features (one per feature and the score)",
                    r.columns.len(),
                    r.features.len()
                ),
            });
        }
        for (c, name) in
            r.columns.iter().zip(r.features.iter().chain(std::iter::once(&"score".to_owned())))
        {
            if &c.name != name {
                return Err(Error::Input {
                    at: at.to_owned(),
                    message: format!("column `{}` where `{name}` belongs", c.name),
                });
            }
            c.validate(at)?;
        }
        Ok(r)
    }

    /// The reference as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Checks that this reference describes this model: the same features in the same order,
    /// and, where both are known, the same file (SHA-256). A reference made for another model
    /// file is refused even when the feature names agree; profile each model you serve.
    pub fn check_model(&self, features: &[String], sha256: Option<&str>) -> Result<()> {
        if self.features != features {
            let first = self
                .features
                .iter()
                .zip(features)
                .position(|(a, b)| a != b)
                .unwrap_or(self.features.len().min(features.len()));
            return Err(Error::Config(format!(
                "the reference profile is for another model: {} features against the model's {}, first difference at feature {first}",
                self.features.len(),
                features.len()
            )));
        }
        if let (Some(ours), Some(theirs)) = (&self.model_sha256, sha256)
            && ours != theirs
        {
            return Err(Error::Config(format!(
                "the reference profile is for another model: made from the file with SHA-256 {ours}, the model's is {theirs}"
            )));
        }
        Ok(())
    }
}
