//! The GPU backend: tree ensembles and dense nets as WGSL compute shaders through wgpu's
//! Vulkan backend (any Vulkan driver; Mesa's software lavapipe in CI).
//!
//! [`Gpu::new`] opens a device ([`Context`]), lays the model out and builds its pipelines once;
//! per batch there is only write, dispatch, copy, map, with several chunks in flight. No GPU is
//! an [`Error::Unavailable`] and a lost device an
//! [`Error::DeviceLost`], never a panic; wrap the backend in
//! [`Failover`](crate::backend::Failover) (as a [`BackendSpec`](crate::backend::BackendSpec) with a fallback does) to have the
//! CPU rescore what the GPU could not.
//!
//! # Examples
//!
//! ```no_run
//! use streamscore::backend::gpu::{Gpu, GpuOptions};
//! use streamscore::{Backend, Batch, Output, load_model};
//!
//! let model = load_model("models/golden/lgb_binary/model.txt")?;
//! let gpu = Gpu::new(model, GpuOptions::default())?;
//! let batch = Batch::from_rows(&vec![0.5; gpu.n_features() * 4], gpu.n_features())?;
//! let mut out = vec![0.0; 4];
//! gpu.score_batch(&batch, Output::Transformed, &mut out)?;
//! # Ok::<(), streamscore::Error>(())
//! ```

mod abi;
mod context;
mod dense;
mod frames;
mod gbdt;
mod run;
mod shaders;

use std::sync::Arc;

pub use crate::backend::options::{AdapterChoice, GpuOptions, Strategy};
pub use context::Context;
pub use frames::FramesGpu;
pub use run::StageTimes;

use crate::backend::{Backend, Output};
use crate::batch::Batch;
use crate::error::{Error, Result};
use crate::model::Model;
use crate::model::dense::Dense;

enum Programs {
    Gbdt(gbdt::GbdtProgram),
    Dense(dense::DenseProgram),
}

/// A model compiled for one GPU.
pub struct Gpu {
    program: Programs,
    pool: run::Pool,
    options: GpuOptions,
    output_width: [usize; 2],
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpu")
            .field("context", self.context())
            .field("options", &self.options)
            .finish()
    }
}

impl Gpu {
    /// Opens a device as `options` allow and compiles `model` for it.
    pub fn new(model: impl Into<Model>, options: GpuOptions) -> Result<Gpu> {
        Gpu::with_context(Context::new(options.adapter)?, model, options)
    }

    /// Compiles `model` for an open device (several models can share one).
    pub fn with_context(
        ctx: Arc<Context>,
        model: impl Into<Model>,
        options: GpuOptions,
    ) -> Result<Gpu> {
        let (program, output_width) = match model.into() {
            Model::Forest(forest) => {
                let widths = [forest.output_width(false), forest.output_width(true)];
                let p =
                    gbdt::GbdtProgram::new(ctx, forest, options.strategy, options.max_chunk_rows)?;
                (Programs::Gbdt(p), widths)
            }
            Model::Onnx(onnx) => {
                let net = Dense::clone(onnx.dense()?);
                let width = net.n_outputs();
                (
                    Programs::Dense(dense::DenseProgram::new(ctx, net, options.max_chunk_rows)?),
                    [width; 2],
                )
            }
        };
        Ok(Gpu { program, pool: run::Pool::default(), options, output_width })
    }

    /// The device.
    pub fn context(&self) -> &Arc<Context> {
        match &self.program {
            Programs::Gbdt(p) => p.context(),
            Programs::Dense(p) => p.context(),
        }
    }

    /// The tree strategy a batch of `rows` runs with (`None` for a dense net).
    pub fn strategy_for(&self, rows: usize) -> Option<Strategy> {
        match &self.program {
            Programs::Gbdt(p) => Some(p.strategy_for(rows.min(self.options.max_chunk_rows))),
            Programs::Dense(_) => None,
        }
    }

    /// Scores `batch` with a wait after each stage and returns where the time went (upload,
    /// compute, readback). Nothing overlaps, so it is slower than
    /// [`score_batch`](Backend::score_batch); use it to see the split, not the throughput.
    pub fn profile(&self, batch: &Batch, output: Output, out: &mut [f32]) -> Result<StageTimes> {
        self.check(batch, output, out)?;
        let width = self.output_width(output);
        match &self.program {
            Programs::Gbdt(p) => run::profile(p, &self.pool, batch, output, width, out),
            Programs::Dense(p) => run::profile(p, &self.pool, batch, output, width, out),
        }
    }

    /// Fault injection: destroys the device as a driver reset would; every later batch fails
    /// with [`Error::DeviceLost`], and batches in flight fail the same way.
    pub fn inject_device_loss(&self) {
        self.context().inject_device_loss();
    }

    fn check(&self, batch: &Batch, output: Output, out: &[f32]) -> Result<()> {
        if batch.n_features() != self.n_features() {
            return Err(Error::WidthMismatch {
                expected: self.n_features(),
                got: batch.n_features(),
            });
        }
        let expected = batch.n_rows() * self.output_width(output);
        if out.len() != expected {
            return Err(Error::OutputLength { expected, got: out.len() });
        }
        Ok(())
    }
}

impl Backend for Gpu {
    fn name(&self) -> &'static str {
        "gpu"
    }

    fn n_features(&self) -> usize {
        match &self.program {
            Programs::Gbdt(p) => run::Program::n_features(p),
            Programs::Dense(p) => run::Program::n_features(p),
        }
    }

    fn output_width(&self, output: Output) -> usize {
        self.output_width[usize::from(output == Output::Raw)]
    }

    fn score_batch(&self, batch: &Batch, output: Output, out: &mut [f32]) -> Result<()> {
        self.check(batch, output, out)?;
        let (width, k) = (self.output_width(output), self.options.in_flight);
        match &self.program {
            Programs::Gbdt(p) => run::run(p, &self.pool, batch, output, width, out, k),
            Programs::Dense(p) => run::run(p, &self.pool, batch, output, width, out, k),
        }
    }
}
