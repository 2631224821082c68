//! ONNX Runtime as a backend, through the `ort` crate: any ONNX model (dense nets, `ai.onnx.ml`
//! tree ensembles, CNNs), with ONNX Runtime's own kernels.
//!
//! The library is loaded at run time (`ort`'s `load-dynamic`), from `ORT_DYLIB_PATH` (at run
//! time, else as it was when this crate was built), or else the system's `libonnxruntime.so`; `scripts/onnxruntime.sh` puts version 1.31 where the
//! repository's `.cargo/config.toml` points. A missing or unloadable library is
//! [`Error::Unavailable`], never a panic, and the `auto` backend then uses our own CPU path.
//!
//! Sessions are pooled: `Session::run` needs exclusive access, so each call takes a session
//! from the pool (building one when all are busy) and puts it back, and concurrent workers
//! never wait on each other.

use std::sync::{Arc, Mutex, OnceLock};

use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::{TensorElementType, TensorRef, ValueType};

pub use crate::backend::options::{OnnxOptions, Optimization};
use crate::backend::{Backend, Output};
use crate::batch::Batch;
use crate::error::{Error, Result};
use crate::model::onnx::OnnxModel;

const NAME: &str = "onnx";

fn unavailable(reason: impl std::fmt::Display) -> Error {
    Error::Unavailable { backend: NAME, reason: reason.to_string() }
}

fn failed(e: impl std::fmt::Display) -> Error {
    Error::Backend { backend: NAME, message: e.to_string() }
}

/// The process's one ONNX Runtime environment, loaded on first use.
fn environment() -> Result<&'static ort::environment::Environment> {
    static ENV: OnceLock<std::result::Result<ort::environment::Environment, String>> =
        OnceLock::new();
    ENV.get_or_init(|| {
        // The run-time variable, else the one cargo set when this was built (the repository's
        // `.cargo/config.toml`), else the system's library.
        let path = std::env::var("ORT_DYLIB_PATH")
            .ok()
            .or(option_env!("ORT_DYLIB_PATH").map(String::from))
            .unwrap_or_else(|| "libonnxruntime.so".into());
        let builder = ort::init_from(&path).map_err(|e| {
            format!("cannot load ONNX Runtime from `{path}` ({e}); run scripts/onnxruntime.sh or set ORT_DYLIB_PATH")
        })?;
        // ONNX Runtime's own log lines (coloured, on stderr by default) go through the `log`
        // crate like ours, so an embedder's logger decides what is shown.
        let logger: ort::logging::LoggerFunction =
            Arc::new(|level, category: &str, _id: &str, location: &str, message: &str| {
                let level = match level {
                    ort::logging::LogLevel::Verbose => log::Level::Trace,
                    ort::logging::LogLevel::Info => log::Level::Debug,
                    ort::logging::LogLevel::Warning => log::Level::Warn,
                    _ => log::Level::Error,
                };
                log::log!(target: "onnxruntime", level, "[{category}] {message} ({location})");
            });
        builder
            .with_name("streamscore")
            .with_logger(logger)
            .build()
            .map_err(|e| format!("ONNX Runtime: {e}"))
    })
    .as_ref()
    .map_err(unavailable)
}

/// Whether ONNX Runtime can be loaded in this process (loads it if not yet loaded).
pub fn is_available() -> bool {
    environment().is_ok()
}

/// A model scored by ONNX Runtime.
pub struct OnnxRuntime {
    model: Arc<OnnxModel>,
    options: OnnxOptions,
    /// The input's shape with the batch dimension first; that one is set per call.
    input_shape: Vec<i64>,
    /// Which of the graph's outputs is the score, and its values per row.
    output: usize,
    width: usize,
    idle: Mutex<Vec<Session>>,
}

impl std::fmt::Debug for OnnxRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxRuntime")
            .field("input", self.model.input())
            .field("output", &self.model.outputs()[self.output])
            .field("options", &self.options)
            .finish()
    }
}

impl OnnxRuntime {
    /// A session for `model`. The score is the graph's first float tensor output (a converted
    /// classifier's probabilities rather than its label); its values per row must be fixed.
    ///
    /// Errors: [`Error::Unavailable`] when ONNX Runtime cannot be loaded; [`Error::Backend`]
    /// when it rejects the model; [`Error::Unsupported`] when no output is a float tensor with
    /// a fixed width.
    pub fn new(model: Arc<OnnxModel>, options: OnnxOptions) -> Result<Self> {
        let session = build_session(&model, &options)?;
        let mut found = None;
        for (i, outlet) in session.outputs().iter().enumerate() {
            if let ValueType::Tensor { ty: TensorElementType::Float32, shape, .. } = outlet.dtype()
            {
                let dims: Vec<i64> = shape.iter().copied().collect();
                let width = dims.iter().skip(1).try_fold(1usize, |acc, &d| {
                    usize::try_from(d).ok().and_then(|d| acc.checked_mul(d))
                });
                if let (Some(w), true) = (width, !dims.is_empty()) {
                    found = Some((i, w));
                    break;
                }
            }
        }
        let Some((output, width)) = found else {
            return Err(Error::Unsupported {
                format: crate::ModelFormat::Onnx,
                what: "no graph output is a float tensor with a fixed number of values per row"
                    .into(),
            });
        };
        let mut input_shape = vec![1i64];
        input_shape.extend(model.input().dims[1..].iter().map(|d| d.unwrap_or(1) as i64));
        Ok(OnnxRuntime {
            model,
            options,
            input_shape,
            output,
            width,
            idle: Mutex::new(vec![session]),
        })
    }

    /// The name of the graph output used as the score.
    pub fn output_name(&self) -> &str {
        &self.model.outputs()[self.output].name
    }

    fn take_session(&self) -> Result<Session> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match idle {
            Some(s) => Ok(s),
            None => build_session(&self.model, &self.options),
        }
    }
}

fn build_session(model: &OnnxModel, options: &OnnxOptions) -> Result<Session> {
    let env = environment()?;
    let level = match options.optimization {
        Optimization::Disable => GraphOptimizationLevel::Disable,
        Optimization::Basic => GraphOptimizationLevel::Level1,
        Optimization::Extended => GraphOptimizationLevel::Level2,
        Optimization::All => GraphOptimizationLevel::All,
    };
    // The builder's errors carry the builder (not Send): render them at once.
    let build = || -> std::result::Result<Session, String> {
        Session::builder(env)
            .map_err(|e| e.to_string())?
            .with_intra_threads(options.intra_threads)
            .map_err(|e| e.to_string())?
            .with_intra_op_spinning(options.spinning)
            .map_err(|e| e.to_string())?
            .with_optimization_level(level)
            .map_err(|e| e.to_string())?
            .commit_from_memory(model.bytes())
            .map_err(|e| e.to_string())
    };
    build().map_err(|e| failed(format!("cannot create a session: {e}")))
}

impl Backend for OnnxRuntime {
    fn name(&self) -> &'static str {
        NAME
    }

    fn n_features(&self) -> usize {
        self.model.n_features()
    }

    /// The graph's score output as it is: ONNX graphs carry no separate raw output.
    fn output_width(&self, _output: Output) -> usize {
        self.width
    }

    fn score_batch(&self, batch: &Batch, _output: Output, out: &mut [f32]) -> Result<()> {
        let width = self.model.n_features();
        if batch.n_features() != width {
            return Err(Error::WidthMismatch { expected: width, got: batch.n_features() });
        }
        let rows = batch.n_rows();
        if out.len() != rows * self.width {
            return Err(Error::OutputLength { expected: rows * self.width, got: out.len() });
        }
        if rows == 0 {
            return Ok(());
        }
        self.score_rows(&batch.to_rows(), Output::Raw, out)
    }

    /// Row-major input is the tensor's own layout (each row laid out as the model's input
    /// shape after the batch dimension, e.g. one CHW image): no transposition.
    fn score_rows(&self, input: &[f32], _output: Output, out: &mut [f32]) -> Result<()> {
        let width = self.model.n_features();
        if width == 0 || !input.len().is_multiple_of(width) {
            return Err(Error::WidthMismatch { expected: width, got: input.len() });
        }
        let rows = input.len() / width;
        if out.len() != rows * self.width {
            return Err(Error::OutputLength { expected: rows * self.width, got: out.len() });
        }
        if rows == 0 {
            return Ok(());
        }
        let mut shape = self.input_shape.clone();
        shape[0] = rows as i64;
        let mut session = self.take_session()?;
        let result = (|| -> std::result::Result<(), String> {
            let tensor = TensorRef::from_array_view((shape, input)).map_err(|e| e.to_string())?;
            let outputs = session.run(ort::inputs![tensor]).map_err(|e| e.to_string())?;
            let (_, values) =
                outputs[self.output].try_extract_tensor::<f32>().map_err(|e| e.to_string())?;
            if values.len() != out.len() {
                return Err(format!("{} output values for {} expected", values.len(), out.len()));
            }
            out.copy_from_slice(values);
            Ok(())
        })();
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).push(session);
        result.map_err(failed)
    }
}
