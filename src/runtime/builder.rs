//! [`RuntimeBuilder`]: one way to start a runtime, whatever the model comes as.

use std::path::Path;
use std::sync::Arc;

use super::Runtime;
use super::config::RuntimeConfig;
#[cfg(feature = "audit")]
use crate::audit::{AuditConfig, AuditLog as AuditSink};
#[cfg(not(feature = "audit"))]
use crate::sink::NoAudit as AuditSink;
#[cfg(not(feature = "audit"))]
type AuditConfig = std::convert::Infallible;
use crate::backend::{Backend, BackendSpec};
use crate::error::{Error, Result};
use crate::event::Schema;
use crate::features::Features;
use crate::model::Model;
use crate::registry::load::{LoadOptions, Source};
use crate::registry::watch::Watch;
use crate::registry::{Loaded, ModelDir, Version, load};

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
    model_dir: Option<ModelDir>,
    monitor: Option<crate::monitor::profile::Monitor>,
    gates: Option<crate::monitor::gates::GateSpec>,
    feedback: Option<crate::monitor::feedback::Feedback>,
    #[cfg(feature = "audit")]
    audit: Option<crate::audit::AuditConfig>,
}

impl std::fmt::Debug for RuntimeBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeBuilder").field("config", &self.config).finish_non_exhaustive()
    }
}

impl RuntimeBuilder {
    pub(super) fn new() -> Self {
        RuntimeBuilder {
            source: None,
            schema: None,
            features: None,
            spec: None,
            config: RuntimeConfig::default(),
            model_dir: None,
            monitor: None,
            feedback: None,
            gates: None,
            #[cfg(feature = "audit")]
            audit: None,
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

    /// Serves the model from a directory in Triton's layout and watches it: new versions go
    /// live, removed ones are retired (see [`ModelDir`]). Instead of a model source; the
    /// answers name the directory's version numbers.
    pub fn model_dir(mut self, dir: ModelDir) -> Self {
        self.model_dir = Some(dir);
        self
    }

    /// Which backends may score the model (overrides the config's `backend`).
    pub fn backend_spec(mut self, spec: impl Into<BackendSpec>) -> Self {
        self.spec = Some(spec.into());
        self
    }

    /// Writes every answer to an audit log ([`AuditConfig`](crate::audit::AuditConfig)):
    /// scores, and events answered with an error, with the model's inputs and outputs.
    #[cfg(feature = "audit")]
    pub fn audit(mut self, audit: crate::audit::AuditConfig) -> Self {
        self.audit = Some(audit);
        self
    }

    /// Profiles every scored batch against a training reference and raises drift alerts
    /// ([`Monitor`](crate::monitor::profile::Monitor); register its alert callback before
    /// handing it over). The reference must be for the model's features, in order; the
    /// model must give one value per row.
    pub fn monitor(mut self, monitor: crate::monitor::profile::Monitor) -> Self {
        self.monitor = Some(monitor);
        self
    }

    /// Joins delayed labels to the predictions they belong to
    /// ([`Feedback`](crate::monitor::feedback::Feedback)): every scored event with an id
    /// ([`Event::with_id`](crate::Event::with_id), [`EventBatch::with_ids`](crate::EventBatch::with_ids))
    /// is kept, under the version (or variant) that scored it, at its event time with a
    /// feature stage and else at the wall clock (ms since the epoch), until
    /// [`Runtime::feedback`](crate::Runtime::feedback) brings its label. The model must give
    /// one probability per row.
    pub fn feedback(mut self, feedback: crate::monitor::feedback::Feedback) -> Self {
        self.feedback = Some(feedback);
        self
    }

    /// Checks every event against data-quality gates before it is queued
    /// ([`GateSpec`](crate::monitor::gates::GateSpec)): their fields are the names of the
    /// values an event carries (the feature spec's raw fields with a feature stage, else the
    /// model's features).
    pub fn gates(mut self, gates: crate::monitor::gates::GateSpec) -> Self {
        self.gates = Some(gates);
        self
    }

    /// The runtime's settings (default: [`RuntimeConfig::default`]).
    pub fn config(mut self, config: RuntimeConfig) -> Self {
        self.config = config;
        self
    }

    /// Loads and validates the model, picks its backend, warms it up and starts the runtime.
    pub fn build(self) -> Result<Runtime> {
        #[cfg(feature = "audit")]
        let audit = self.audit;
        #[cfg(not(feature = "audit"))]
        let audit: Option<std::convert::Infallible> = None;
        let RuntimeBuilder {
            source,
            schema,
            features,
            spec,
            mut config,
            model_dir,
            monitor,
            gates,
            feedback,
            ..
        } = self;
        if let Some(spec) = spec {
            config.backend = spec;
        }
        config.validate()?;
        let feature_spec_hash = features.as_ref().map(|f| crate::features::spec_hash(f.spec()));
        let opts = LoadOptions {
            spec: &config.backend,
            output: config.output,
            batch: config.max_batch.get(),
            version: config.model_version,
            warm_up: None,
            feature_spec_hash,
        };
        let (loaded, watch) = match (source, model_dir) {
            (None, None) => {
                return Err(Error::Config(
                    "no model: give the builder a model_path, model_bytes, model, backend or \
                     model_dir"
                        .into(),
                ));
            }
            (Some(_), Some(_)) => {
                return Err(Error::Config(
                    "a model source and a model_dir: give the builder one of them".into(),
                ));
            }
            (Some(source), None) => (load(source, &opts)?, None),
            (None, Some(dir)) => {
                let mut watch = Watch::new(dir);
                (first_from_dir(&mut watch, &opts)?, Some(watch))
            }
        };
        let Loaded { version, model } = loaded;
        let schema = schema.or_else(|| model.as_ref().map(|m| Schema::new(m.feature_names())));
        if let Some(m) = &monitor {
            // The model's inputs: its own names, or (a backend of one's own names none) the
            // feature spec's outputs or the schema's.
            let names = match (&features, &schema) {
                _ if !version.lineage.feature_names.is_empty() => {
                    version.lineage.feature_names.clone()
                }
                (Some(f), _) => f.spec().names.clone(),
                (None, Some(s)) => s.names().to_vec(),
                (None, None) => Vec::new(),
            };
            m.reference().check_model(&names, version.lineage.sha256.as_deref())?;
            if version.out_width != 1 {
                return Err(Error::Config(format!(
                    "a drift monitor profiles one score per row; the model gives {}",
                    version.out_width
                )));
            }
        }
        if feedback.is_some() && version.out_width != 1 {
            return Err(Error::Config(format!(
                "a feedback join keeps one probability per row; the model gives {}",
                version.out_width
            )));
        }
        let rt = finish(version, schema, features, config, audit, gates)?;
        if let Some(f) = feedback {
            let _ = rt.flow().feedback.set(std::sync::Mutex::new(f));
        }
        if let Some(m) = monitor {
            // Set before the first event can be scored: the runtime is not handed out yet.
            let _ = rt.flow().monitor.set(std::sync::Mutex::new(m));
        }
        if let Some(watch) = watch {
            rt.watch(watch)?;
        }
        Ok(rt)
    }
}

/// Loads the policy's best version of a model directory that loads; errors with every reason
/// when none does.
fn first_from_dir(watch: &mut Watch, opts: &LoadOptions<'_>) -> Result<Loaded> {
    let mut reasons = Vec::new();
    for (version, entry) in watch.initial()? {
        let opts = LoadOptions { version: Some(version), ..*opts };
        match load(Source::Path(entry.path.clone()), &opts) {
            Ok(loaded) => {
                watch.loaded(version);
                return Ok(loaded);
            }
            Err(e) => {
                log::warn!("model version {version} ({}) does not load: {e}", entry.path.display());
                watch.failed(version, entry.signature);
                reasons.push(format!("version {version}: {e}"));
            }
        }
    }
    Err(Error::Config(format!(
        "model directory {}: no version loads ({})",
        watch.dir.model_path().display(),
        reasons.join("; ")
    )))
}

fn finish(
    mut version: Version,
    schema: Option<Schema>,
    features: Option<Features>,
    config: RuntimeConfig,
    audit: Option<AuditConfig>,
    gates: Option<crate::monitor::gates::GateSpec>,
) -> Result<Runtime> {
    // The gates read the values an event carries: the raw fields with a feature stage, else
    // the model's inputs; the audit log records the flags of their rules.
    let gated = |names: &[String]| -> Result<Option<crate::monitor::gates::Gates>> {
        gates.as_ref().map(|spec| crate::monitor::gates::Gates::new(spec, names)).transpose()
    };
    let log = |inputs: &[String], raw: &[String], gates: Option<&crate::monitor::gates::Gates>| {
        let rules: Vec<String> =
            gates.map(|g| g.names().into_iter().map(str::to_owned).collect()).unwrap_or_default();
        (audit.as_ref())
            .map(|a| AuditSink::start(a, inputs, raw, version.out_width, &rules).map(Arc::new))
            .transpose()
    };
    let set_gates = |rt: Runtime, gates: Option<crate::monitor::gates::Gates>| {
        if let Some(g) = gates {
            // Set before the first event: the runtime is not handed out yet.
            let _ = rt.flow().gates.set(g);
        }
        rt
    };
    match features {
        Some(features) => {
            let spec = features.spec();
            let width = version.backend.n_features();
            if width != spec.names.len() {
                return Err(Error::WidthMismatch { expected: width, got: spec.names.len() });
            }
            let raw = Schema::new(spec.fields.iter().cloned());
            let gates = gated(raw.names())?;
            let audit = log(&spec.names, raw.names(), gates.as_ref())?;
            Runtime::start(version, raw, config, Some(features), audit)
                .map(|rt| set_gates(rt, gates))
        }
        None => {
            let schema = schema.ok_or_else(|| {
                Error::Config("a backend of your own needs a schema naming its input".into())
            })?;
            if version.lineage.feature_names.is_empty() {
                // A backend of your own names no inputs: the schema does, and later versions
                // are checked against it.
                Arc::make_mut(&mut version.lineage).feature_names = schema.names().to_vec();
            }
            let gates = gated(schema.names())?;
            let audit = log(schema.names(), &[], gates.as_ref())?;
            Runtime::start(version, schema, config, None, audit).map(|rt| set_gates(rt, gates))
        }
    }
}
