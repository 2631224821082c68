//! Choosing a backend: a [`BackendSpec`] is an ordered list of backends, each with its own
//! options, in the manner of ONNX Runtime's execution providers. The first that can take the
//! model wins; each choice passed over is said once in the log with its reason. A GPU that
//! wins is wrapped in [`Failover`] to the next choice that can take the model, so a device lost
//! while serving moves scoring to the CPU instead of failing events.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex};

use super::options::{CpuOptions, GpuOptions, OnnxOptions};
use super::{Backend, Failover, cpu};
use crate::error::{Error, Result};
use crate::model::onnx::OnnxModel;
use crate::model::{Forest, Model};

/// One backend and its options.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum BackendChoice {
    /// The fastest backend this build has for the model on the CPU: for trees the fast CPU
    /// scorer, or the reference scorer for the rare forest its layout cannot hold; for ONNX
    /// files our dense CPU path when the graph is a dense net, else ONNX Runtime.
    #[default]
    Auto,
    /// The scalar reference scorer (the truth every other backend is tested against).
    Reference,
    /// The fast CPU scorer with its options; an error for a model it cannot lay out.
    Cpu(CpuOptions),
    /// The GPU through wgpu (feature `gpu`); an error when no adapter can take the model.
    Gpu(GpuOptions),
    /// ONNX Runtime (feature `onnx`), for ONNX files; an error when its library cannot load.
    Onnx(OnnxOptions),
}

impl BackendChoice {
    /// The short name, as [`BackendSpec`]'s `FromStr` reads it.
    pub fn name(&self) -> &'static str {
        match self {
            BackendChoice::Auto => "auto",
            BackendChoice::Reference => "reference",
            BackendChoice::Cpu(_) => "cpu",
            BackendChoice::Gpu(_) => "gpu",
            BackendChoice::Onnx(_) => "onnx",
        }
    }
}

impl std::str::FromStr for BackendChoice {
    type Err = Error;

    /// One name with default options.
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.trim() {
            "auto" => BackendChoice::Auto,
            "reference" => BackendChoice::Reference,
            "cpu" => BackendChoice::Cpu(CpuOptions::default()),
            "gpu" => BackendChoice::Gpu(GpuOptions::default()),
            "onnx" => BackendChoice::Onnx(OnnxOptions::default()),
            other => {
                return Err(Error::Config(format!(
                    "unknown backend `{other}` (expected auto, cpu, gpu, onnx or reference)"
                )));
            }
        })
    }
}

/// Which backends may score a model, in order of preference, each with its options.
///
/// # Examples
///
/// ```
/// use streamscore::backend::{BackendChoice, BackendSpec, CpuOptions};
///
/// // The GPU where one opens, else the fast CPU path on two threads.
/// let spec = BackendSpec::gpu(Default::default())
///     .or(BackendChoice::Cpu(CpuOptions::default().with_threads(2)));
/// assert_eq!(spec.to_string(), "gpu,cpu");
/// assert_eq!("gpu,cpu".parse::<BackendSpec>()?.choices().len(), 2);
///
/// let forest = streamscore::load_forest("models/golden/lgb_binary/model.txt")?;
/// let backend = BackendSpec::cpu(CpuOptions::default()).select(forest)?;
/// assert!(backend.name().starts_with("cpu"));
/// # Ok::<(), streamscore::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendSpec {
    /// Never empty.
    choices: Vec<BackendChoice>,
}

impl Default for BackendSpec {
    fn default() -> Self {
        BackendSpec::new(BackendChoice::Auto)
    }
}

impl From<BackendChoice> for BackendSpec {
    fn from(choice: BackendChoice) -> Self {
        BackendSpec::new(choice)
    }
}

impl BackendSpec {
    /// A spec of one choice.
    pub fn new(choice: BackendChoice) -> Self {
        BackendSpec { choices: vec![choice] }
    }

    /// [`BackendChoice::Auto`] alone (the default).
    pub fn auto() -> Self {
        BackendSpec::new(BackendChoice::Auto)
    }

    /// [`BackendChoice::Reference`] alone.
    pub fn reference() -> Self {
        BackendSpec::new(BackendChoice::Reference)
    }

    /// The fast CPU path alone.
    pub fn cpu(options: CpuOptions) -> Self {
        BackendSpec::new(BackendChoice::Cpu(options))
    }

    /// The GPU alone (add a fallback with [`or`](BackendSpec::or)).
    pub fn gpu(options: GpuOptions) -> Self {
        BackendSpec::new(BackendChoice::Gpu(options))
    }

    /// ONNX Runtime alone.
    pub fn onnx(options: OnnxOptions) -> Self {
        BackendSpec::new(BackendChoice::Onnx(options))
    }

    /// Adds `next` as the fallback after every choice so far.
    pub fn or(mut self, next: BackendChoice) -> Self {
        self.choices.push(next);
        self
    }

    /// The choices, in order of preference.
    pub fn choices(&self) -> &[BackendChoice] {
        &self.choices
    }

    /// Applies `f` to every choice's options (a command line sets `--cpu-threads` on whichever
    /// choices take it).
    pub fn map(mut self, f: impl Fn(BackendChoice) -> BackendChoice) -> Self {
        self.choices = self.choices.into_iter().map(f).collect();
        self
    }

    /// The backend for `model`: the first choice that can take it. A GPU that wins fails over
    /// to the next choice that can take the model, when there is one. Errors with the reason
    /// of every choice when none can.
    pub fn select(&self, model: impl Into<Model>) -> Result<Arc<dyn Backend>> {
        let model = model.into();
        let mut reasons = Vec::new();
        for (i, choice) in self.choices.iter().enumerate() {
            match build(choice, &model) {
                Ok(backend) => {
                    let rest = &self.choices[i + 1..];
                    if matches!(choice, BackendChoice::Gpu(_)) && !rest.is_empty() {
                        let rest = BackendSpec { choices: rest.to_vec() };
                        if let Ok(fallback) = rest.select(model.clone()) {
                            return Ok(Arc::new(Failover::new(backend, fallback)));
                        }
                    }
                    return Ok(backend);
                }
                Err(e) => {
                    if let Some(next) = self.choices.get(i + 1) {
                        say_once(format!(
                            "the {} backend cannot take the model ({e}); trying {}",
                            choice.name(),
                            next.name()
                        ));
                    }
                    reasons.push((choice.name(), e));
                }
            }
        }
        if reasons.len() == 1 {
            return Err(reasons.pop().expect("one reason").1);
        }
        let reasons: Vec<String> = reasons.iter().map(|(n, e)| format!("{n}: {e}")).collect();
        Err(Error::Unavailable { backend: "spec", reason: reasons.join("; ") })
    }
}

impl fmt::Display for BackendSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.choices.iter().map(BackendChoice::name).collect();
        f.write_str(&names.join(","))
    }
}

impl std::str::FromStr for BackendSpec {
    type Err = Error;

    /// Comma-separated names in order of preference, each with default options:
    /// `auto`, `cpu`, `gpu,cpu`, `onnx,auto`.
    fn from_str(s: &str) -> Result<Self> {
        let choices = s.split(',').map(str::parse).collect::<Result<Vec<BackendChoice>>>()?;
        Ok(BackendSpec { choices })
    }
}

/// Logs `message` at warn level the first time it is seen in this process.
fn say_once(message: String) {
    static SAID: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let mut said = SAID.lock().unwrap_or_else(|p| p.into_inner());
    if said.get_or_insert_with(HashSet::new).insert(message.clone()) {
        log::warn!("{message}");
    }
}

fn build(choice: &BackendChoice, model: &Model) -> Result<Arc<dyn Backend>> {
    match (choice, model) {
        (BackendChoice::Gpu(options), model) => gpu(model, options),
        (choice, Model::Forest(forest)) => forest_backend(choice, forest.clone()),
        (choice, Model::Onnx(onnx)) => onnx_backend(choice, onnx.clone()),
    }
}

#[cfg(feature = "gpu")]
fn gpu(model: &Model, options: &GpuOptions) -> Result<Arc<dyn Backend>> {
    let gpu = super::gpu::Gpu::new(model.clone(), options.clone())?;
    log::info!("gpu backend on {}", gpu.context().adapter());
    Ok(Arc::new(gpu))
}

#[cfg(not(feature = "gpu"))]
fn gpu(_: &Model, _: &GpuOptions) -> Result<Arc<dyn Backend>> {
    Err(super::disabled::unavailable("gpu"))
}

#[cfg(feature = "onnx")]
fn onnx_runtime(onnx: Arc<OnnxModel>, options: &OnnxOptions) -> Result<Arc<dyn Backend>> {
    Ok(Arc::new(super::onnx::OnnxRuntime::new(onnx, options.clone())?))
}

#[cfg(not(feature = "onnx"))]
fn onnx_runtime(_: Arc<OnnxModel>, _: &OnnxOptions) -> Result<Arc<dyn Backend>> {
    Err(super::disabled::unavailable("onnx"))
}

fn fast_cpu(forest: Arc<Forest>, options: &CpuOptions) -> Result<cpu::Cpu> {
    let mut fast = cpu::Cpu::new(forest)?;
    if options.threads.get() > 1 {
        fast = fast.with_threads(options.threads.get())?;
    }
    if let Some(kernel) = options.kernel {
        fast = fast.with_kernel(kernel)?;
    }
    if let Some(algorithm) = options.algorithm {
        fast = fast.with_algorithm(algorithm)?;
    }
    Ok(fast)
}

fn forest_backend(choice: &BackendChoice, forest: Arc<Forest>) -> Result<Arc<dyn Backend>> {
    Ok(match choice {
        BackendChoice::Reference => Arc::new(cpu::Reference::new(forest)),
        BackendChoice::Cpu(options) => Arc::new(fast_cpu(forest, options)?),
        BackendChoice::Auto => match cpu::Cpu::new(forest.clone()) {
            Ok(fast) => Arc::new(fast),
            Err(e) => {
                say_once(format!("fast CPU scorer unavailable ({e}); using the reference scorer"));
                Arc::new(cpu::Reference::new(forest))
            }
        },
        BackendChoice::Onnx(_) => {
            return Err(Error::Config(
                "the onnx backend runs ONNX files; convert the trees (e.g. onnxmltools) or use \
                 the cpu backend"
                    .into(),
            ));
        }
        BackendChoice::Gpu(_) => unreachable!("`build` takes the GPU first"),
    })
}

fn onnx_backend(choice: &BackendChoice, onnx: Arc<OnnxModel>) -> Result<Arc<dyn Backend>> {
    Ok(match choice {
        BackendChoice::Reference => Arc::new(cpu::DenseReference::new(onnx.dense()?.clone())),
        BackendChoice::Cpu(options) => {
            if options.threads.get() > 1 || options.algorithm.is_some() {
                return Err(Error::Config(
                    "threads and algorithm apply to trees; a dense net on the CPU runs on the \
                     runtime's workers"
                        .into(),
                ));
            }
            let net = onnx.dense()?.clone();
            match options.kernel {
                Some(kernel) => {
                    Arc::new(cpu::DenseCpu::with_kernel(net, kernel).map_err(|(_, e)| e)?)
                }
                None => Arc::new(cpu::DenseCpu::new(net)),
            }
        }
        BackendChoice::Onnx(options) => onnx_runtime(onnx, options)?,
        BackendChoice::Auto => match onnx.dense() {
            Ok(net) => Arc::new(cpu::DenseCpu::new(net.clone())),
            Err(why) => {
                say_once(format!("{why}; using ONNX Runtime"));
                onnx_runtime(onnx, &OnnxOptions::default())?
            }
        },
        BackendChoice::Gpu(_) => unreachable!("`build` takes the GPU first"),
    })
}
