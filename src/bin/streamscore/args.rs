//! `streamscore bench`'s flags, shared by the row, GPU and frames benches.

use std::path::PathBuf;

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Whole batches straight through the backend: model throughput.
    Direct,
    /// Events one by one through the full runtime: throughput and end-to-end latency.
    Stream,
    /// Direct, then stream, on the same rows; stream also reports its ratio to direct.
    Both,
}

/// `streamscore bench` flags.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Model file: LightGBM text, XGBoost JSON or ONNX (not with `--frames`).
    #[arg(long, required_unless_present = "frames")]
    pub model: Option<PathBuf>,
    /// Frame scoring instead: a frame config (TOML, e.g. models/frames/config.toml), fed by
    /// `--cameras` simulated cameras at `--fps` each with `--frame-size` RGB frames; batches of
    /// up to `--batch` frames, `--max-delay-us`; `--backend gpu` preprocesses on the GPU.
    #[arg(long)]
    pub frames: Option<PathBuf>,
    /// Simulated cameras (`--frames`).
    #[arg(long, default_value_t = 8)]
    pub cameras: usize,
    /// Frames per second per camera (`--frames`).
    #[arg(long, default_value_t = 25.0)]
    pub fps: f64,
    /// Frame size, WIDTHxHEIGHT (`--frames`).
    #[arg(long, default_value = "640x480")]
    pub frame_size: String,
    /// Motion threshold for gating (`--frames`; default: the config's).
    #[arg(long)]
    pub motion_threshold: Option<f32>,
    /// A feature spec (TOML): stream mode runs the runtime's feature stage over raw events
    /// from `--events` (one producer; each pass over the file moves its times forward), and
    /// direct mode scores the same events' features computed offline. The model must take the
    /// spec's outputs. Prints the stage's lookups (round trips, their p99, cache hits).
    #[arg(long, requires = "events", conflicts_with = "input")]
    pub feature_spec: Option<PathBuf>,
    /// Raw events for `--feature-spec`: a CSV naming the spec's key, time and fields.
    #[arg(long, requires = "feature_spec")]
    pub events: Option<PathBuf>,
    /// Rows to score (.npy, or CSV with a header); without it, `--rows` synthetic rows (for
    /// trees, drawn within the model's thresholds; for ONNX models, standard normal).
    #[arg(long)]
    pub input: Option<String>,
    /// Synthetic rows drawn within the model's own thresholds (when no `--input`).
    #[arg(long, default_value_t = 100_000)]
    pub rows: usize,
    /// direct, stream or both.
    #[arg(long, value_enum, default_value = "both")]
    pub mode: Mode,
    /// Rows per batch (direct) or the runtime's max_batch (stream).
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    /// The runtime's max_delay in microseconds (stream).
    #[arg(long, default_value_t = 500)]
    pub max_delay_us: u64,
    /// Producer threads (stream).
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
    /// Scoring threads: callers in direct mode, runtime workers in stream mode.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Events in flight per producer in closed loop (default: 4 x batch, at least 64). The open
    /// loop (`--rate`) never waits on answers.
    #[arg(long)]
    pub window: Option<usize>,
    /// Stream mode: each producer hands events over in sets of N with `try_submit_many` (one
    /// ticket per set) instead of one at a time; 1 submits single events.
    #[arg(long, default_value_t = 1)]
    pub submit_batch: usize,
    /// auto, cpu, gpu, onnx (ONNX Runtime, for ONNX models) or reference, or a comma-separated
    /// fallback list such as `gpu,cpu` (the first that can take the model wins). `gpu` alone
    /// benchmarks the GPU itself (no CPU fallback) and also reports the upload / compute /
    /// readback split.
    #[arg(long, default_value = "auto")]
    pub backend: String,
    /// With `--backend gpu`: allow a software adapter such as lavapipe (correctness only: its
    /// timings say nothing about a GPU).
    #[arg(long)]
    pub gpu_software: bool,
    /// With `--backend gpu` and trees: auto, rows or tiles.
    #[arg(long, default_value = "auto")]
    pub gpu_strategy: String,
    /// Force the fast CPU scorer's kernel (trees; for dense nets, the small-batch kernel):
    /// avx512, avx2 or scalar (default: the fastest this CPU runs, or STREAMSCORE_KERNEL).
    #[arg(long)]
    pub kernel: Option<String>,
    /// Force the fast CPU scorer's algorithm: traverse, bitvector or masked (default: timed
    /// on the first batch of 512 rows or more, and the fastest kept).
    #[arg(long)]
    pub algorithm: Option<String>,
    /// Threads the fast CPU tree scorer splits one large batch across (direct mode); for
    /// `--backend onnx`, ONNX Runtime's intra-op threads.
    #[arg(long, default_value_t = 1)]
    pub cpu_threads: usize,
    /// Seconds per configuration.
    #[arg(long, default_value_t = 3.0)]
    pub duration: f64,
    /// Open loop: total events per second across producers (stream).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Queue capacity (stream).
    #[arg(long, default_value_t = 65_536)]
    pub queue: usize,
    /// Lifecycle mode: swap the running model between `--model` and this file every
    /// `--swap-every` seconds under an open-loop load (`--rate`, default half of the measured
    /// peak), and report latency in steady state and after each swap.
    #[arg(long)]
    pub swap_model: Option<PathBuf>,
    /// Seconds between swaps (lifecycle mode).
    #[arg(long, default_value_t = 2.0, requires = "swap_model")]
    pub swap_every: f64,
    /// Stream mode: this model scores in shadow of `--model` (its own thread and queue) and is
    /// compared with it; the stream line then says how many events it compared and dropped.
    #[arg(long)]
    pub shadow_model: Option<PathBuf>,
    /// The share of keys the shadow takes (stream mode; 0..=1).
    #[arg(long, default_value_t = 1.0, requires = "shadow_model")]
    pub shadow_fraction: f64,
    /// Stream mode: a canary. This model is loaded beside `--model` and a split by key sends
    /// it `--canary-percent` of the keys (each event's key is its row); the stream line then
    /// says how many events each variant answered.
    #[arg(long)]
    pub canary_model: Option<PathBuf>,
    /// The canary's share of keys, in percent (stream mode; 0..=100).
    #[arg(long, default_value_t = 10.0, requires = "canary_model")]
    pub canary_percent: f64,
    /// Stream mode: write every answer to an audit log in this directory (Arrow IPC files);
    /// the stream line then says how many records were written and dropped.
    #[arg(long)]
    pub audit: Option<PathBuf>,
    /// Stream mode: profile every scored batch against this training reference (`streamscore
    /// profile`); the stream line then says what the monitor cost per event.
    #[arg(long)]
    pub monitor: Option<PathBuf>,
    /// With `--monitor`: quantiles from a DDSketch per column with this relative accuracy
    /// (e.g. 0.01) instead of from the reference's grid.
    #[arg(long, value_name = "ALPHA", requires = "monitor")]
    pub monitor_sketch: Option<f64>,
    /// Lifecycle mode: print latency per 50 ms of the run on stderr, marking swaps.
    #[arg(long, requires = "swap_model")]
    pub timeline: bool,
    /// Run a grid over batch size (and max delay in stream mode) and print it as a table.
    #[arg(long)]
    pub sweep: bool,
    /// One JSON object per configuration instead of a table.
    #[arg(long)]
    pub json: bool,
    /// After each stream configuration, print the runtime's metrics (Prometheus text) on stderr.
    #[arg(long)]
    pub prometheus: bool,
}
