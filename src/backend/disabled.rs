//! What a backend compiled out leaves behind: the same names, uninhabited, and constructors
//! that answer [`Error::Unavailable`] naming the Cargo feature to turn on. Code written against
//! the full build compiles unchanged; only its run-time answer differs.

use crate::error::Error;

/// `Backend` for an uninhabited stub: no value exists, so no method can be called.
macro_rules! never_backend {
    ($ty:ty) => {
        impl crate::backend::Backend for $ty {
            fn name(&self) -> &'static str {
                match self.0 {}
            }
            fn n_features(&self) -> usize {
                match self.0 {}
            }
            fn output_width(&self, _: crate::backend::Output) -> usize {
                match self.0 {}
            }
            fn score_batch(
                &self,
                _: &crate::batch::Batch,
                _: crate::backend::Output,
                _: &mut [f32],
            ) -> crate::error::Result<()> {
                match self.0 {}
            }
        }
    };
}

/// The error every constructor of a compiled-out backend returns.
pub(crate) fn unavailable(feature: &'static str) -> Error {
    Error::Unavailable {
        backend: feature,
        reason: format!(
            "this build of streamscore has no `{feature}` backend; rebuild with the Cargo \
             feature `{feature}` (on by default)"
        ),
    }
}

/// The GPU backend, compiled out: build with the `gpu` feature to have it.
#[cfg(not(feature = "gpu"))]
pub mod gpu {
    use std::sync::Arc;
    use std::time::Duration;

    use crate::backend::Output;
    pub use crate::backend::options::{AdapterChoice, GpuOptions, Strategy};
    use crate::batch::Batch;
    use crate::error::Result;
    use crate::frames::{Frame, Preprocess};
    use crate::model::Model;

    #[derive(Debug)]
    enum Never {}

    /// A GPU device (none in this build).
    #[derive(Debug)]
    pub struct Context(Never);

    impl Context {
        /// Always [`Error::Unavailable`](crate::Error::Unavailable) in this build.
        pub fn new(_: AdapterChoice) -> Result<Arc<Context>> {
            Err(super::unavailable("gpu"))
        }

        /// The adapter's name and type.
        pub fn adapter(&self) -> String {
            match self.0 {}
        }

        /// Whether the adapter is a software rasterizer.
        pub fn is_software(&self) -> bool {
            match self.0 {}
        }
    }

    /// Upload, compute and readback times of one batch.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct StageTimes {
        /// Writing the input into GPU buffers.
        pub upload: Duration,
        /// The dispatches.
        pub compute: Duration,
        /// Copying out, mapping and reading the results.
        pub readback: Duration,
    }

    /// A model compiled for a GPU (none in this build).
    #[derive(Debug)]
    pub struct Gpu(Never);

    impl Gpu {
        /// Always [`Error::Unavailable`](crate::Error::Unavailable) in this build.
        pub fn new(_: impl Into<Model>, _: GpuOptions) -> Result<Gpu> {
            Err(super::unavailable("gpu"))
        }

        /// Always [`Error::Unavailable`](crate::Error::Unavailable) in this build.
        pub fn with_context(_: Arc<Context>, _: impl Into<Model>, _: GpuOptions) -> Result<Gpu> {
            Err(super::unavailable("gpu"))
        }

        /// The device.
        pub fn context(&self) -> &Arc<Context> {
            match self.0 {}
        }

        /// The tree strategy a batch of `rows` runs with.
        pub fn strategy_for(&self, _: usize) -> Option<Strategy> {
            match self.0 {}
        }

        /// Where one batch's time goes.
        pub fn profile(&self, _: &Batch, _: Output, _: &mut [f32]) -> Result<StageTimes> {
            match self.0 {}
        }
    }

    never_backend!(Gpu);

    /// Frame preprocessing on a GPU (none in this build).
    #[derive(Debug)]
    pub struct FramesGpu(Never);

    impl FramesGpu {
        /// Always [`Error::Unavailable`](crate::Error::Unavailable) in this build.
        pub fn new(_: Arc<Context>, _: Preprocess, _: usize) -> Result<Self> {
            Err(super::unavailable("gpu"))
        }

        /// Preprocesses `frames` into `tensor` and returns their motion scores.
        pub fn process(&self, _: &[Frame], _: &mut [f32]) -> Result<Vec<f32>> {
            match self.0 {}
        }
    }
}

/// ONNX Runtime, compiled out: build with the `onnx` feature to have it.
#[cfg(not(feature = "onnx"))]
pub mod onnx {
    use std::sync::Arc;

    pub use crate::backend::options::{OnnxOptions, Optimization};
    use crate::error::Result;
    use crate::model::onnx::OnnxModel;

    #[derive(Debug)]
    enum Never {}

    /// Whether ONNX Runtime can be loaded: never, in this build.
    pub fn is_available() -> bool {
        false
    }

    /// A model scored by ONNX Runtime (none in this build).
    #[derive(Debug)]
    pub struct OnnxRuntime(Never);

    impl OnnxRuntime {
        /// Always [`Error::Unavailable`](crate::Error::Unavailable) in this build.
        pub fn new(_: Arc<OnnxModel>, _: OnnxOptions) -> Result<Self> {
            Err(super::unavailable("onnx"))
        }

        /// The name of the graph output used as the score.
        pub fn output_name(&self) -> &str {
            match self.0 {}
        }
    }

    never_backend!(OnnxRuntime);
}
