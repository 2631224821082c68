//! Scoring backends. A backend is a handful of methods; everything else lives outside it.
//!
//! Every backend is tested against [`cpu::Reference`], the scalar truth.

pub mod cpu;
mod failover;
pub mod gpu;
pub mod onnx;

pub use failover::Failover;

use std::sync::Arc;

use crate::batch::Batch;
use crate::error::{Error, Result};
use crate::model::{Forest, Model};
use crate::runtime::config::BackendChoice;

/// Which values a backend writes per row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Output {
    /// The model's prediction after its objective's transform (probabilities, class, exp...).
    #[default]
    Transformed,
    /// Raw margins, one per output group, before any transform.
    Raw,
}

/// A way of scoring batches with one loaded model.
pub trait Backend: Send + Sync {
    /// Short name for logs and benchmarks.
    fn name(&self) -> &'static str;

    /// Width of a row the backend accepts.
    fn n_features(&self) -> usize;

    /// Values written per row for `output`.
    fn output_width(&self, output: Output) -> usize;

    /// Scores every row of `batch` into `out`, row-major (`output_width` values per row).
    ///
    /// Errors when the batch width or `out`'s length does not fit; writes nothing then.
    fn score_batch(&self, batch: &Batch, output: Output, out: &mut [f32]) -> Result<()>;
}

/// The backend for `choice` and `model`. `Auto` picks the fastest one this machine supports:
/// for trees, the fast CPU scorer, or the reference scorer for a forest the fast layout cannot
/// hold; for ONNX models, our dense CPU path when the graph is a dense net, else ONNX Runtime.
/// `Gpu` compiles the model for the GPU wrapped in [`Failover`] to the `Auto` CPU backend, or
/// gives that CPU backend when no GPU can take it. A fallback is said once, in the log.
pub fn select(choice: BackendChoice, model: impl Into<Model>) -> Result<Arc<dyn Backend>> {
    let onnx = match model.into() {
        Model::Forest(forest) => return select_forest(choice, forest),
        Model::Onnx(onnx) => onnx,
    };
    if choice == BackendChoice::Gpu {
        let cpu = select(BackendChoice::Auto, Model::Onnx(onnx.clone()))?;
        return Ok(with_gpu(Model::Onnx(onnx), cpu));
    }
    Ok(match choice {
        BackendChoice::Gpu => unreachable!("handled above"),
        BackendChoice::Reference => Arc::new(cpu::DenseReference::new(onnx.dense()?.clone())),
        BackendChoice::Cpu => Arc::new(cpu::DenseCpu::new(onnx.dense()?.clone())),
        BackendChoice::Onnx => Arc::new(onnx::OnnxRuntime::new(onnx, Default::default())?),
        BackendChoice::Auto => match onnx.dense() {
            Ok(net) => Arc::new(cpu::DenseCpu::new(net.clone())),
            Err(why) => {
                log::info!("{why}");
                Arc::new(onnx::OnnxRuntime::new(onnx, Default::default())?)
            }
        },
    })
}

/// The GPU backend for `model` with `cpu` as its fallback, or `cpu` alone (said once in the log)
/// when no GPU can take the model.
fn with_gpu(model: Model, cpu: Arc<dyn Backend>) -> Arc<dyn Backend> {
    match gpu::Gpu::new(model, gpu::GpuOptions::default()) {
        Ok(gpu) => {
            log::info!("gpu backend on {}", gpu.context().adapter());
            Arc::new(Failover::new(Arc::new(gpu), cpu))
        }
        Err(e) => {
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| log::warn!("{e}; using the {} backend", cpu.name()));
            cpu
        }
    }
}

fn select_forest(choice: BackendChoice, forest: Arc<Forest>) -> Result<Arc<dyn Backend>> {
    Ok(match choice {
        BackendChoice::Gpu => {
            let cpu = select_forest(BackendChoice::Auto, forest.clone())?;
            with_gpu(Model::Forest(forest), cpu)
        }
        BackendChoice::Reference => Arc::new(cpu::Reference::new(forest)),
        BackendChoice::Cpu => Arc::new(cpu::Cpu::new(forest)?),
        BackendChoice::Onnx => {
            return Err(Error::Config(
                "the onnx backend runs ONNX files; convert the trees (e.g. onnxmltools) or use \
                 the cpu backend"
                    .into(),
            ));
        }
        BackendChoice::Auto => match cpu::Cpu::new(forest.clone()) {
            Ok(fast) => Arc::new(fast),
            Err(e) => {
                log::warn!("fast CPU scorer unavailable ({e}); using the reference scorer");
                Arc::new(cpu::Reference::new(forest))
            }
        },
    })
}
