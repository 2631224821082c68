//! What a loaded model version came from, and what it cost to load.

use std::fmt;
use std::time::{Duration, SystemTime};

/// What a loaded model version came from and what it cost to load, as `streamscore inspect`
/// prints it and [`Runtime::versions`](crate::Runtime::versions) lists it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Lineage {
    /// The version number answers name ([`Score::model_version`](crate::Score)).
    pub version: u64,
    /// Where it came from: a file path, `model bytes`, `model` or `backend`.
    pub source: String,
    /// SHA-256 of the model file's bytes, in hex (`None` for a loaded model or a backend).
    pub sha256: Option<String>,
    /// `LightGBM text`, `XGBoost JSON`, `ONNX`, or `backend`.
    pub format: String,
    /// The objective as the file names it (trees), or `None`.
    pub objective: Option<String>,
    /// Trees in a forest.
    pub trees: Option<usize>,
    /// Layers of a dense net.
    pub layers: Option<usize>,
    /// Input names, in order.
    pub feature_names: Vec<String>,
    /// Hash of the compiled feature spec the runtime runs before the model (FNV-1a of its
    /// canonical form), when it runs one.
    pub feature_spec_hash: Option<u64>,
    /// The backend that scores it, as named after warm-up.
    pub backend: String,
    /// Read, parse, validate and lay out.
    pub load_time: Duration,
    /// Scoring the warm-up rows (CPU tuning, GPU pipelines).
    pub warmup_time: Duration,
    /// When the load finished.
    pub loaded_at: SystemTime,
}

impl Lineage {
    /// SHA-256 of a model file's bytes, in hex, as [`Lineage::sha256`] records it.
    pub fn sha256_of(bytes: &[u8]) -> String {
        use sha2::Digest;
        sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The version number a model file's answers name unless one is given: FNV-1a (64 bits)
    /// of its bytes.
    pub fn default_version(bytes: &[u8]) -> u64 {
        crate::features::fnv1a(bytes)
    }
}

impl fmt::Display for Lineage {
    /// `key: value` lines, as `streamscore inspect` prints them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "version: {}", self.version)?;
        writeln!(f, "source: {}", self.source.escape_debug())?;
        if let Some(h) = &self.sha256 {
            writeln!(f, "sha256: {h}")?;
        }
        writeln!(f, "format: {}", self.format)?;
        if let Some(o) = &self.objective {
            writeln!(f, "objective: {}", o.escape_debug())?;
        }
        if let Some(t) = self.trees {
            writeln!(f, "trees: {t}")?;
        }
        if let Some(l) = self.layers {
            writeln!(f, "layers: {l}")?;
        }
        writeln!(f, "features: {}", self.feature_names.len())?;
        if let Some(h) = self.feature_spec_hash {
            writeln!(f, "feature spec: {h:016x}")?;
        }
        writeln!(f, "backend: {}", self.backend)?;
        writeln!(f, "load time: {:.3} ms", self.load_time.as_secs_f64() * 1e3)?;
        writeln!(f, "warm-up time: {:.3} ms", self.warmup_time.as_secs_f64() * 1e3)?;
        let at = self.loaded_at.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        writeln!(f, "loaded at: {:.3} (unix seconds)", at.as_secs_f64())
    }
}
