//! Scoring frames with a CNN: preprocessing (GPU, or the CPU when no GPU is given), motion
//! gating, and the model through ONNX Runtime, configured by a small TOML file.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::{Frame, MotionTracker, Preprocess, preprocess};
use crate::backend::gpu::{Context, FramesGpu};
use crate::backend::{Backend, BackendSpec, Output};
use crate::error::{Error, Result};
use crate::model::Model;
use crate::model::onnx::OnnxModel;

/// What the model's output means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum FrameOutput {
    /// One score per class, all returned.
    Classes,
    /// One value of the output is the frame's anomaly score.
    Anomaly {
        /// Which output value.
        index: usize,
    },
}

/// A frame model's configuration (TOML):
///
/// ```toml
/// model = "model.onnx"          # relative to the config file
/// mean = [0.485, 0.456, 0.406]  # per channel, on the 0..1 scale
/// std = [0.229, 0.224, 0.225]
/// motion_threshold = 0.02       # optional: frames moving less skip the model
/// output = { kind = "classes" } # or { kind = "anomaly", index = 0 }
/// backend = "onnx"              # optional backend spec for the CNN (default: auto)
/// ```
///
/// The input size and channels come from the model's declared input `[N, C, H, W]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrameConfig {
    /// The ONNX model.
    pub model: PathBuf,
    /// Per-channel mean.
    pub mean: [f32; 3],
    /// Per-channel std.
    pub std: [f32; 3],
    /// Frames whose motion score is below this skip the model (a camera's first frame never
    /// does).
    #[serde(default)]
    pub motion_threshold: Option<f32>,
    /// How to read the output.
    pub output: FrameOutput,
    /// Which backends may run the model, as a spec (`"onnx"`, `"auto"`: see
    /// [`BackendSpec`]); default `auto`, which gives ONNX Runtime for a CNN.
    #[serde(default)]
    pub backend: Option<String>,
}

impl FrameConfig {
    /// Reads a config; the model path is resolved against the config's directory.
    pub fn from_path(path: impl AsRef<Path>) -> Result<FrameConfig> {
        let path = path.as_ref();
        let text = crate::files::read_to_string(path, &crate::files::CONFIG)?;
        let mut config: FrameConfig =
            toml::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        if config.model.is_relative() {
            config.model = path.parent().unwrap_or(Path::new(".")).join(&config.model);
        }
        Ok(config)
    }
}

/// One frame's result.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameScore {
    /// The frame's camera.
    pub camera: u32,
    /// Mean absolute luma change since the camera's previous frame (0..1; infinite for its
    /// first frame).
    pub motion: f32,
    /// The model's output (all class scores, or the one anomaly score); `None` when motion
    /// gating skipped the model.
    pub scores: Option<Vec<f32>>,
}

/// Counts of frames seen, scored and skipped.
#[derive(Debug, Default)]
pub struct FrameCounters {
    /// Frames received.
    pub frames: AtomicU64,
    /// Frames the model scored.
    pub scored: AtomicU64,
    /// Frames motion gating kept from the model.
    pub skipped: AtomicU64,
}

/// Preprocesses batches of frames (on the GPU when one is given), gates them on motion and
/// scores the rest with the CNN through ONNX Runtime.
pub struct FrameScorer {
    config: FrameConfig,
    preprocess: Preprocess,
    model: Arc<dyn Backend>,
    width: usize,
    gpu: Option<FramesGpu>,
    tracker: Mutex<MotionTracker>,
    counters: FrameCounters,
}

impl std::fmt::Debug for FrameScorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameScorer")
            .field("preprocess", &self.preprocess)
            .field("gpu", &self.gpu.is_some())
            .finish()
    }
}

impl FrameScorer {
    /// Loads the model, checks its input is `[N, 1 or 3, H, W]`, and prepares the GPU path on
    /// `gpu` (for up to `max_cameras` cameras) or the CPU path.
    pub fn new(config: FrameConfig, gpu: Option<Arc<Context>>, max_cameras: usize) -> Result<Self> {
        Self::build(config, None, gpu, max_cameras)
    }

    /// As [`new`](FrameScorer::new), with the model scored by `backend` (any [`Backend`]
    /// taking the model's input, one preprocessed frame per row) instead of the config's spec.
    pub fn with_backend(
        config: FrameConfig,
        backend: Arc<dyn Backend>,
        gpu: Option<Arc<Context>>,
        max_cameras: usize,
    ) -> Result<Self> {
        Self::build(config, Some(backend), gpu, max_cameras)
    }

    fn build(
        config: FrameConfig,
        backend: Option<Arc<dyn Backend>>,
        gpu: Option<Arc<Context>>,
        max_cameras: usize,
    ) -> Result<Self> {
        let bytes = crate::files::read_model(&config.model)?;
        if bytes.first() != Some(&0x08) {
            return Err(Error::Config(format!(
                "{}: a frame model must be an ONNX file (a CNN taking [N, C, H, W]); this one is \
                 a tree model's text",
                config.model.display()
            )));
        }
        let onnx = Arc::new(OnnxModel::from_bytes(bytes)?);
        let dims = &onnx.input().dims;
        let shape: Option<Vec<usize>> =
            dims.get(1..).and_then(|d| d.iter().map(|x| x.map(|v| v as usize)).collect());
        let (channels, height, width) = match shape.as_deref() {
            Some(&[c, h, w]) if (c == 1 || c == 3) && h > 0 && w > 0 => (c, h, w),
            _ => {
                return Err(Error::Config(format!(
                    "{}: a frame model takes [N, C, H, W] with C 1 or 3 and a fixed size, its input is {dims:?}",
                    config.model.display()
                )));
            }
        };
        let preprocess = Preprocess {
            width: width as u32,
            height: height as u32,
            channels: channels as u32,
            mean: config.mean,
            std: config.std,
        };
        preprocess.check()?;
        let model = match backend {
            Some(b) if b.n_features() != preprocess.len(1) => {
                return Err(Error::WidthMismatch {
                    expected: preprocess.len(1),
                    got: b.n_features(),
                });
            }
            Some(b) => b,
            None => {
                let spec: BackendSpec = config.backend.as_deref().unwrap_or("auto").parse()?;
                spec.select(Model::Onnx(onnx))?
            }
        };
        let out_width = model.output_width(Output::Raw);
        if let FrameOutput::Anomaly { index } = config.output
            && index >= out_width
        {
            return Err(Error::Config(format!(
                "anomaly index {index}, but the model has {out_width} outputs"
            )));
        }
        let gpu = gpu.map(|ctx| FramesGpu::new(ctx, preprocess, max_cameras)).transpose()?;
        Ok(FrameScorer {
            config,
            preprocess,
            model,
            width: out_width,
            gpu,
            tracker: Mutex::new(MotionTracker::default()),
            counters: FrameCounters::default(),
        })
    }

    /// The model's input preprocessing.
    pub fn preprocessing(&self) -> &Preprocess {
        &self.preprocess
    }

    /// Whether preprocessing runs on the GPU.
    pub fn on_gpu(&self) -> bool {
        self.gpu.is_some()
    }

    /// Counters so far.
    pub fn counters(&self) -> &FrameCounters {
        &self.counters
    }

    /// Preprocesses `frames` into an NCHW tensor and scores each frame's motion.
    pub fn prepare(&self, frames: &[Frame]) -> Result<(Vec<f32>, Vec<f32>)> {
        let mut tensor = vec![0.0; self.preprocess.len(frames.len())];
        let motion = match &self.gpu {
            Some(gpu) => gpu.process(frames, &mut tensor)?,
            None => {
                preprocess(frames, &self.preprocess, &mut tensor)?;
                let (w, h) = (self.preprocess.width as usize, self.preprocess.height as usize);
                self.tracker.lock().unwrap_or_else(|p| p.into_inner()).scores(frames, w, h)?
            }
        };
        Ok((tensor, motion))
    }

    /// Scores a batch of frames (from any cameras), in order.
    pub fn score(&self, frames: &[Frame]) -> Result<Vec<FrameScore>> {
        self.score_timed(frames).map(|(scores, _, _)| scores)
    }

    /// [`score`](FrameScorer::score), with the time spent preprocessing (with motion) and in
    /// the model.
    pub fn score_timed(&self, frames: &[Frame]) -> Result<(Vec<FrameScore>, Duration, Duration)> {
        let start = Instant::now();
        let gated = self.gate(frames)?;
        let prepared = Instant::now();
        let out = self.run_model(&gated.input, gated.keep.len())?;
        let scored = Instant::now();
        let mut scores: Vec<Option<Vec<f32>>> = vec![None; frames.len()];
        for (k, &i) in gated.keep.iter().enumerate() {
            scores[i] = Some(self.read(&out[k * self.width..(k + 1) * self.width]));
        }
        let scores = frames
            .iter()
            .zip(gated.motion)
            .zip(scores)
            .map(|((f, motion), scores)| FrameScore { camera: f.camera, motion, scores })
            .collect();
        Ok((scores, prepared - start, scored - prepared))
    }

    /// Preprocesses `frames`, scores their motion and keeps those the motion threshold lets
    /// through: the model's input for them, row after row.
    pub(crate) fn gate(&self, frames: &[Frame]) -> Result<Gated> {
        let (tensor, motion) = self.prepare(frames)?;
        let per = self.preprocess.len(1);
        let keep: Vec<usize> = (0..frames.len())
            .filter(|&i| self.config.motion_threshold.is_none_or(|t| motion[i] >= t))
            .collect();
        let mut input = Vec::with_capacity(keep.len() * per);
        for &i in &keep {
            input.extend_from_slice(&tensor[i * per..(i + 1) * per]);
        }
        self.counters.frames.fetch_add(frames.len() as u64, Ordering::Relaxed);
        self.counters.skipped.fetch_add((frames.len() - keep.len()) as u64, Ordering::Relaxed);
        Ok(Gated { input, keep, motion })
    }

    /// The model's raw output for `rows` preprocessed frames (`width` values each).
    pub(crate) fn run_model(&self, input: &[f32], rows: usize) -> Result<Vec<f32>> {
        let mut out = vec![0.0; rows * self.width];
        self.model.score_rows(input, Output::Raw, &mut out)?;
        self.counters.scored.fetch_add(rows as u64, Ordering::Relaxed);
        Ok(out)
    }

    /// One frame's answer from its row of model output.
    pub(crate) fn read(&self, row: &[f32]) -> Vec<f32> {
        match self.config.output {
            FrameOutput::Classes => row.to_vec(),
            FrameOutput::Anomaly { index } => vec![row[index]],
        }
    }

    /// Values per row of the model's output.
    pub(crate) fn out_width(&self) -> usize {
        self.width
    }

    /// The backend running the model.
    pub fn model_backend(&self) -> &str {
        self.model.name()
    }
}

/// A batch after preprocessing and motion gating.
pub(crate) struct Gated {
    /// The model input of the kept frames, row after row.
    pub input: Vec<f32>,
    /// Indices (in the batch) of the frames the model scores.
    pub keep: Vec<usize>,
    /// Every frame's motion score.
    pub motion: Vec<f32>,
}
