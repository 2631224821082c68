//! Every backend's options, compiled whatever Cargo features are on, so a [`BackendSpec`]
//! (crate::backend::BackendSpec) can name a backend this build lacks and get a clear
//! [`Error::Unavailable`](crate::Error::Unavailable) rather than fail to compile.

use std::num::NonZeroUsize;

use crate::backend::cpu::{Algorithm, Kernel};

/// Fast CPU backend settings (trees: [`Cpu`](crate::backend::cpu::Cpu); dense nets:
/// [`DenseCpu`](crate::backend::cpu::DenseCpu)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CpuOptions {
    /// Threads one large batch is split across (default 1: the runtime's workers are the
    /// parallelism). Trees only.
    pub threads: NonZeroUsize,
    /// A forced SIMD kernel (default: the best this CPU runs, checked at run time).
    pub kernel: Option<Kernel>,
    /// A forced tree algorithm (default: measured on the first large batch). Trees only.
    pub algorithm: Option<Algorithm>,
}

impl Default for CpuOptions {
    fn default() -> Self {
        CpuOptions { threads: NonZeroUsize::MIN, kernel: None, algorithm: None }
    }
}

impl CpuOptions {
    /// Sets [`threads`](CpuOptions::threads) (0 is taken as 1).
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = NonZeroUsize::new(threads).unwrap_or(NonZeroUsize::MIN);
        self
    }

    /// Forces a kernel.
    pub fn with_kernel(mut self, kernel: Kernel) -> Self {
        self.kernel = Some(kernel);
        self
    }

    /// Forces a tree algorithm.
    pub fn with_algorithm(mut self, algorithm: Algorithm) -> Self {
        self.algorithm = Some(algorithm);
        self
    }

    /// True when every setting is the default.
    pub fn is_default(&self) -> bool {
        *self == CpuOptions::default()
    }
}

/// GPU backend settings.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GpuOptions {
    /// Which adapters may be used (default: hardware only, unless the environment variable
    /// `STREAMSCORE_GPU_SOFTWARE=1` allows software ones).
    pub adapter: AdapterChoice,
    /// Tree traversal strategy (default: chosen per batch).
    pub strategy: Strategy,
    /// Chunks of one batch queued on the GPU at once (default 3: upload, compute, readback).
    pub in_flight: usize,
    /// Largest chunk in rows (default 262,144); the device's binding limits may lower it.
    pub max_chunk_rows: usize,
}

impl Default for GpuOptions {
    fn default() -> Self {
        let software = std::env::var("STREAMSCORE_GPU_SOFTWARE").is_ok_and(|v| v == "1");
        GpuOptions {
            adapter: if software { AdapterChoice::AllowSoftware } else { AdapterChoice::Hardware },
            strategy: Strategy::Auto,
            in_flight: 3,
            max_chunk_rows: 1 << 18,
        }
    }
}

impl GpuOptions {
    /// Sets the adapter choice.
    pub fn with_adapter(mut self, adapter: AdapterChoice) -> Self {
        self.adapter = adapter;
        self
    }

    /// Sets the tree strategy.
    pub fn with_strategy(mut self, strategy: Strategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// Sets the largest chunk (at least 1 row).
    pub fn with_max_chunk_rows(mut self, rows: usize) -> Self {
        self.max_chunk_rows = rows.max(1);
        self
    }

    /// Sets the chunks in flight (at least 1).
    pub fn with_in_flight(mut self, chunks: usize) -> Self {
        self.in_flight = chunks.max(1);
        self
    }
}

/// Which adapters the context may pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AdapterChoice {
    /// A hardware GPU (discrete first, then integrated, then virtual); an error when only a
    /// software rasterizer exists.
    #[default]
    Hardware,
    /// A hardware GPU when present, else a software device such as Mesa's lavapipe (for tests
    /// and CI: real shaders, meaningless timings).
    AllowSoftware,
}

/// How the GPU walks the trees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Chosen per batch from the batch size and the model's shape.
    #[default]
    Auto,
    /// One invocation per row walks every tree.
    Rows,
    /// A workgroup stages a tile of rows in workgroup memory and splits the trees between
    /// several invocations per row, then reduces (only for rows of at most 4,096 features).
    Tiles,
}

/// How hard ONNX Runtime optimizes the graph at session creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Optimization {
    /// No graph rewrites.
    Disable,
    /// Constant folding and redundant-node removal.
    Basic,
    /// Basic plus operator fusions.
    Extended,
    /// Everything, layout optimizations included (ONNX Runtime's default).
    #[default]
    All,
}

impl std::str::FromStr for Strategy {
    type Err = crate::Error;

    fn from_str(s: &str) -> crate::Result<Self> {
        match s {
            "auto" => Ok(Strategy::Auto),
            "rows" => Ok(Strategy::Rows),
            "tiles" => Ok(Strategy::Tiles),
            other => Err(crate::Error::Config(format!(
                "unknown GPU strategy `{other}` (auto, rows or tiles)"
            ))),
        }
    }
}

/// ONNX Runtime session settings.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OnnxOptions {
    /// Threads ONNX Runtime uses inside one operator (default 1: the runtime's workers are the
    /// parallelism).
    pub intra_threads: usize,
    /// Graph optimization level (default: all).
    pub optimization: Optimization,
    /// Whether idle intra-op threads spin (default false: they would steal the producers' cores).
    pub spinning: bool,
}

impl Default for OnnxOptions {
    fn default() -> Self {
        OnnxOptions { intra_threads: 1, optimization: Optimization::All, spinning: false }
    }
}

impl OnnxOptions {
    /// Sets [`intra_threads`](OnnxOptions::intra_threads).
    pub fn with_intra_threads(mut self, n: usize) -> Self {
        self.intra_threads = n.max(1);
        self
    }

    /// Sets [`optimization`](OnnxOptions::optimization).
    pub fn with_optimization(mut self, level: Optimization) -> Self {
        self.optimization = level;
        self
    }
}
