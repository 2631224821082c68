//! Loading a version: read, hash, parse, validate, pick the backend, warm it up, record its
//! lineage. Runs on the builder's caller at start, on a loader thread for swaps and shadows,
//! never on the runtime's threads.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::{Lineage, Version};
use crate::backend::{Backend, BackendSpec, Output};
use crate::batch::Batch;
use crate::error::{Error, Result};
use crate::model::Model;

/// Where a model comes from.
pub(crate) enum Source {
    Path(PathBuf),
    Bytes(Vec<u8>),
    Model(Model),
    Backend(Arc<dyn Backend>),
}

/// A new model version for a running runtime ([`Runtime::swap`](crate::Runtime::swap)).
///
/// # Examples
///
/// ```
/// use streamscore::{Event, ModelUpdate, Runtime};
///
/// let rt = Runtime::builder().model_path("models/golden/lgb_binary/model.txt").build()?;
/// let v2 = rt.swap(ModelUpdate::path("models/golden/lgb_binary_sigmoid/model.txt").with_version(2))?;
/// assert_eq!(rt.score(Event::new(vec![0.5; 8]))?.model_version, v2);
/// // A model of another input width never goes live; the serving version stays.
/// assert!(rt.swap(ModelUpdate::path("models/golden/lgb_deep/model.txt")).is_err());
/// assert_eq!(rt.live_version(), 2);
/// # Ok::<(), streamscore::Error>(())
/// ```
#[must_use = "an update does nothing until `Runtime::swap`"]
pub struct ModelUpdate {
    pub(crate) source: Source,
    pub(crate) version: Option<u64>,
    pub(crate) spec: Option<BackendSpec>,
    pub(crate) allow_schema_change: bool,
    pub(crate) warm_up: Option<Batch>,
}

impl std::fmt::Debug for ModelUpdate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelUpdate")
            .field("version", &self.version)
            .field("allow_schema_change", &self.allow_schema_change)
            .finish_non_exhaustive()
    }
}

impl ModelUpdate {
    fn new(source: Source) -> Self {
        ModelUpdate { source, version: None, spec: None, allow_schema_change: false, warm_up: None }
    }

    /// A model file (LightGBM text, XGBoost JSON or ONNX). Its version number defaults to a
    /// hash of its bytes. Write a new file beside the old one and rename it into place: a
    /// file read while it is being written fails validation and never goes live, but the
    /// rename makes sure it is never read half-written.
    pub fn path(path: impl AsRef<Path>) -> Self {
        Self::new(Source::Path(path.as_ref().to_path_buf()))
    }

    /// A model file's bytes; the version number defaults to a hash of them.
    pub fn bytes(bytes: Vec<u8>) -> Self {
        Self::new(Source::Bytes(bytes))
    }

    /// A loaded model; give it a version number with [`with_version`](Self::with_version).
    pub fn model(model: impl Into<Model>) -> Self {
        Self::new(Source::Model(model.into()))
    }

    /// A backend of your own; give it a version number with
    /// [`with_version`](Self::with_version).
    pub fn backend(backend: Arc<dyn Backend>) -> Self {
        Self::new(Source::Backend(backend))
    }

    /// The version number its answers will name.
    pub fn with_version(mut self, version: u64) -> Self {
        self.version = Some(version);
        self
    }

    /// Which backends may score it (default: the runtime's spec).
    pub fn with_backend_spec(mut self, spec: impl Into<BackendSpec>) -> Self {
        self.spec = Some(spec.into());
        self
    }

    /// Lets it go live although its input names or output width differ from the serving
    /// version's (the input width must always match).
    pub fn allow_schema_change(mut self) -> Self {
        self.allow_schema_change = true;
        self
    }

    /// Rows to warm the new backend up on (CPU tuning times them) instead of rows drawn from
    /// the model's split thresholds (trees) or a standard normal (nets). Feature-major, the
    /// model's width.
    pub fn with_warm_up(mut self, rows: Batch) -> Self {
        self.warm_up = Some(rows);
        self
    }
}

/// Rows a new version is warmed up on at most.
const WARM_ROWS: usize = 4096;

/// What [`load`] needs beside the source.
pub(crate) struct LoadOptions<'a> {
    pub spec: &'a BackendSpec,
    pub output: Output,
    /// Rows per warm-up batch (the runtime's `max_batch`; raised to the tuning minimum).
    pub batch: usize,
    pub version: Option<u64>,
    pub warm_up: Option<&'a Batch>,
    pub feature_spec_hash: Option<u64>,
}

/// A loaded, warmed version and its model (when it came as one).
pub(crate) struct Loaded {
    pub version: Version,
    pub model: Option<Model>,
}

/// Loads, validates and warms up a version. Nothing is shared until it returns.
pub(crate) fn load(source: Source, opts: &LoadOptions<'_>) -> Result<Loaded> {
    let started = Instant::now();
    let (model, described, backend) = match source {
        Source::Path(path) => {
            let bytes = crate::files::read_model(&path)?;
            let (model, d) = parse(bytes, &path, opts.version)?;
            (Some(model), Described { source: path.display().to_string(), ..d }, None)
        }
        Source::Bytes(bytes) => {
            let (model, d) = parse(bytes, Path::new("model bytes"), opts.version)?;
            (Some(model), d, None)
        }
        Source::Model(model) => {
            let d = Described { source: "model".into(), ..Described::new(opts.version) };
            (Some(model), d, None)
        }
        Source::Backend(b) => {
            let d = Described { source: "backend".into(), ..Described::new(opts.version) };
            (None, d, Some(b))
        }
    };
    let backend = match (backend, &model) {
        (Some(b), _) => b,
        (None, Some(m)) => opts.spec.select(m.clone())?,
        (None, None) => unreachable!("a source is a model or a backend"),
    };
    let load_time = started.elapsed();
    let warm = Instant::now();
    warm_up(&*backend, model.as_ref(), opts)?;
    let warmup_time = warm.elapsed();
    let out_width = backend.output_width(opts.output);
    let mut lineage = Lineage {
        version: described.version,
        source: described.source,
        sha256: described.sha256,
        format: "backend".into(),
        objective: None,
        trees: None,
        layers: None,
        feature_names: model.as_ref().map(Model::feature_names).unwrap_or_default(),
        feature_spec_hash: opts.feature_spec_hash,
        backend: backend.name().to_string(),
        load_time,
        warmup_time,
        loaded_at: SystemTime::now(),
    };
    match &model {
        Some(Model::Forest(f)) => {
            lineage.format = f.format().to_string();
            lineage.objective = Some(f.objective().to_string());
            lineage.trees = Some(f.trees().len());
        }
        Some(Model::Onnx(m)) => {
            lineage.format = "ONNX".into();
            lineage.layers = m.dense().ok().map(|d| d.layers().len());
        }
        None => {}
    }
    let version = Version { backend, out_width, lineage: Arc::new(lineage) };
    Ok(Loaded { version, model })
}

/// Lineage fields known before the backend is built.
struct Described {
    version: u64,
    source: String,
    sha256: Option<String>,
}

impl Described {
    fn new(version: Option<u64>) -> Self {
        Described { version: version.unwrap_or(0), source: String::new(), sha256: None }
    }
}

fn parse(bytes: Vec<u8>, path: &Path, version: Option<u64>) -> Result<(Model, Described)> {
    let sha256 = Lineage::sha256_of(&bytes);
    let version = version.unwrap_or_else(|| Lineage::default_version(&bytes));
    let model = Model::from_bytes(bytes, path)?;
    Ok((model, Described { version, source: "model bytes".into(), sha256: Some(sha256) }))
}

/// Scores a large batch (the CPU scorer tunes itself on the first one at least
/// `TUNE_MIN_ROWS` long; a GPU builds its buffers) and a single row (the small-batch path).
/// A version that cannot score its warm-up rows does not go live. A backend of your own is
/// warmed only on rows you give.
fn warm_up(backend: &dyn Backend, model: Option<&Model>, opts: &LoadOptions<'_>) -> Result<()> {
    let width = backend.n_features();
    let n = opts.batch.clamp(crate::backend::cpu::TUNE_MIN_ROWS, WARM_ROWS);
    let drawn;
    let rows = match (opts.warm_up, model) {
        (Some(rows), _) => {
            if rows.n_features() != width {
                return Err(Error::WidthMismatch { expected: width, got: rows.n_features() });
            }
            rows
        }
        (None, Some(Model::Forest(f))) => {
            drawn = crate::io::synthetic_rows(f, n, 0x5eed);
            &drawn
        }
        (None, Some(Model::Onnx(_))) => {
            drawn = crate::io::normal_rows(width, n, 0x5eed);
            &drawn
        }
        // A backend of your own is warmed by its owner (or with `ModelUpdate::with_warm_up`).
        (None, None) => return Ok(()),
    };
    if rows.n_rows() == 0 {
        return Ok(());
    }
    let ow = backend.output_width(opts.output);
    let mut out = vec![0.0; rows.n_rows() * ow];
    let fail = |e: Error| Error::Backend {
        backend: backend.name(),
        message: format!("the new version failed its warm-up: {e}"),
    };
    backend.score_batch(rows, opts.output, &mut out).map_err(fail)?;
    let first = (0..width).map(|f| rows.value(0, f)).collect();
    let one = Batch::from_columns(first, 1, width)?;
    backend.score_batch(&one, opts.output, &mut out[..ow]).map_err(fail)?;
    Ok(())
}
