//! [`RuntimeBuilder`]: one way to start a runtime, whatever the model comes as.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::Runtime;
use super::config::RuntimeConfig;
use crate::backend::{Backend, BackendSpec};
use crate::error::{Error, Result};
use crate::event::Schema;
use crate::features::Features;
use crate::model::Model;

enum Source {
    Path(PathBuf),
    Bytes(Vec<u8>),
    Model(Model),
    Backend(Arc<dyn Backend>),
}

/// Builds a [`Runtime`]: a model (from a path, bytes, a loaded model, or a backend of your
/// own), optional features, a backend spec and a config. Nothing starts until
/// [`build`](RuntimeBuilder::build), which validates everything once.
///
/// # Examples
///
/// ```
/// use streamscore::{BackendSpec, Event, Runtime, RuntimeConfig};
///
/// let rt = Runtime::builder()
///     .model_path("models/golden/lgb_binary/model.txt")
///     .backend_spec(BackendSpec::auto())
///     .config(RuntimeConfig::default().with_max_batch(64))
///     .build()?;
/// assert!(rt.score(Event::new(vec![0.5; 8]))?.value() > 0.0);
/// assert!(Runtime::builder().build().is_err(), "no model");
/// # Ok::<(), streamscore::Error>(())
/// ```
#[must_use = "a builder does nothing until `build`"]
pub struct RuntimeBuilder {
    source: Option<Source>,
    schema: Option<Schema>,
    features: Option<Features>,
    spec: Option<BackendSpec>,
    config: RuntimeConfig,
}

impl std::fmt::Debug for RuntimeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeBuilder").field("config", &self.config).finish_non_exhaustive()
    }
}

/// FNV-1a, 64 bits: a stable content hash for the default model version.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3))
}

impl RuntimeBuilder {
    pub(super) fn new() -> Self {
        RuntimeBuilder {
            source: None,
            schema: None,
            features: None,
            spec: None,
            config: RuntimeConfig::default(),
        }
    }

    /// A model file (LightGBM text, XGBoost JSON or ONNX). The default model version is a
    /// hash of its bytes.
    pub fn model_path(mut self, path: impl AsRef<Path>) -> Self {
        self.source = Some(Source::Path(path.as_ref().to_path_buf()));
        self
    }

    /// A model file's bytes (the format is recognised from the content). The default model
    /// version is a hash of the bytes.
    pub fn model_bytes(mut self, bytes: Vec<u8>) -> Self {
        self.source = Some(Source::Bytes(bytes));
        self
    }

    /// A loaded model (a [`Forest`](crate::Forest) converts).
    pub fn model(mut self, model: impl Into<Model>) -> Self {
        self.source = Some(Source::Model(model.into()));
        self
    }

    /// A backend of your own instead of a model; give its [`schema`](RuntimeBuilder::schema)
    /// too, unless [`features`](RuntimeBuilder::features) name its input.
    pub fn backend(mut self, backend: Arc<dyn Backend>) -> Self {
        self.source = Some(Source::Backend(backend));
        self
    }

    /// Names the backend's input columns (default: the model's feature names).
    pub fn schema(mut self, schema: Schema) -> Self {
        self.schema = Some(schema);
        self
    }

    /// Computes `features` from raw events before the model scores them. Events then carry
    /// the spec's raw fields (numeric values, then categorical codes from
    /// [`Spec::encode`](crate::features::Spec::encode)), a key and a timestamp; the stage runs
    /// in the batcher thread in acceptance order, so its state sees events in the order they
    /// were accepted whatever the batching. An event the stage refuses (a late event under
    /// [`LatePolicy::Reject`](crate::features::LatePolicy)) is answered with the error;
    /// expired and shed events never reach it. The model must take the spec's outputs.
    pub fn features(mut self, features: Features) -> Self {
        self.features = Some(features);
        self
    }

    /// Which backends may score the model (overrides the config's `backend`).
    pub fn backend_spec(mut self, spec: impl Into<BackendSpec>) -> Self {
        self.spec = Some(spec.into());
        self
    }

    /// The runtime's settings (default: [`RuntimeConfig::default`]).
    pub fn config(mut self, config: RuntimeConfig) -> Self {
        self.config = config;
        self
    }

    /// Loads and validates the model, picks its backend and starts the runtime.
    pub fn build(self) -> Result<Runtime> {
        let RuntimeBuilder { source, schema, features, spec, mut config } = self;
        if let Some(spec) = spec {
            config.backend = spec;
        }
        config.validate()?;
        let (model, version) = match source {
            None => {
                return Err(Error::Config(
                    "no model: give the builder a model_path, model_bytes, model or backend".into(),
                ));
            }
            Some(Source::Path(path)) => {
                let bytes = crate::files::read_model(&path)?;
                let version = fnv1a(&bytes);
                (Model::from_bytes(bytes, &path)?, Some(version))
            }
            Some(Source::Bytes(bytes)) => {
                let version = fnv1a(&bytes);
                (Model::from_bytes(bytes, Path::new("model bytes"))?, Some(version))
            }
            Some(Source::Model(model)) => (model, None),
            Some(Source::Backend(backend)) => {
                return finish(backend, schema, features, config);
            }
        };
        config.model_version = config.model_version.or(version);
        let schema = schema.or_else(|| Some(Schema::new(model.feature_names())));
        let backend = config.backend.select(model)?;
        finish(backend, schema, features, config)
    }
}

fn finish(
    backend: Arc<dyn Backend>,
    schema: Option<Schema>,
    features: Option<Features>,
    config: RuntimeConfig,
) -> Result<Runtime> {
    match features {
        Some(features) => {
            let spec = features.spec();
            if backend.n_features() != spec.names.len() {
                return Err(Error::WidthMismatch {
                    expected: backend.n_features(),
                    got: spec.names.len(),
                });
            }
            let raw = Schema::new(spec.fields.iter().cloned());
            Runtime::start(backend, raw, config, Some(features))
        }
        None => {
            let schema = schema.ok_or_else(|| {
                Error::Config("a backend of your own needs a schema naming its input".into())
            })?;
            Runtime::start(backend, schema, config, None)
        }
    }
}
