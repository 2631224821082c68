//! # streamscore
//!
//! An embedded scoring runtime for event streams: gradient-boosted trees (LightGBM, XGBoost)
//! and neural nets, scored in micro-batches on SIMD CPU paths or the GPU.
//!
//! Events go through one pipeline ([`Runtime`]): a bounded lock-free queue, a deadline
//! micro-batcher, optional streaming features, and a backend chosen by a [`BackendSpec`] (the
//! fast CPU scorer by default; the GPU, ONNX Runtime or the scalar [`Reference`] on request).
//! Every accepted event gets exactly one answer. Events are submitted one at a time
//! ([`Runtime::try_submit`], [`Runtime::score`], [`Runtime::submit`]) or in sets with one ticket
//! and one answer per event ([`Runtime::try_submit_many`] with an [`EventBatch`], answered with
//! [`Scores`]). Model files are parsed into one validated
//! [`Forest`] (or an ONNX model), and every backend is tested against the reference scorer,
//! which reproduces the training library's predictions.
//!
//! Monitoring runs inside the scoring loop ([`monitor`]): data-quality gates on every event
//! before it is queued (`RuntimeBuilder::gates`), profiles of every scored batch against a
//! training reference with drift alerts (`RuntimeBuilder::monitor`,
//! [`Runtime::monitor_report`]), drift detectors with River's algorithms and River's decisions
//! for any stream of numbers ([`monitor::drift::Detector`]), and delayed labels joined back to
//! their predictions with online metrics ([`monitor::feedback::Feedback`]; inside the runtime:
//! `RuntimeBuilder::feedback`, events with an id, [`Runtime::feedback`]).
//!
//! A running runtime's model is replaced while events flow ([`Runtime::swap`] with a
//! [`ModelUpdate`], [`Runtime::rollback`], or a watched [`ModelDir`] in Triton's layout): the
//! new version is loaded and warmed off the runtime's threads and goes live at a batch
//! boundary, every answer names its version, and its [`Lineage`] says where it came from. A
//! challenger scores in shadow ([`Runtime::set_shadow`] with a [`ShadowConfig`]) on its own
//! thread and is compared with the live version ([`MetricsSnapshot::shadow`]); versions
//! loaded beside it ([`Runtime::load`]) split traffic by key hash for A/B tests and canaries
//! ([`Runtime::set_split`] with a [`Split`]; [`MetricsSnapshot::variants`]); with the
//! `audit` feature every answer can be appended to Arrow IPC files by a background writer
//! (`RuntimeBuilder::audit`, the `audit` module).
//!
//! # Examples
//!
//! ```
//! use streamscore::{Event, Runtime, RuntimeConfig};
//!
//! let rt = Runtime::builder()
//!     .model_path("models/golden/lgb_binary/model.txt")
//!     .config(RuntimeConfig::default().with_max_batch(128))
//!     .build()?;
//! let score = rt.score(Event::new(vec![0.5, -1.0, 2.0, 0.0, f32::NAN, 1.0, 3.0, -2.0]))?;
//! assert!(score.value() > 0.0 && score.value() < 1.0); // a probability
//! rt.shutdown();
//! # Ok::<(), streamscore::Error>(())
//! ```
//!
//! [`serve`] puts a runtime behind the Open Inference Protocol's REST API and a line-delimited
//! JSON source and sink (`streamscore serve`). The Python package (`python/`, `pip install
//! ./python`) wraps models, runtimes and features; [`Columns`] is how it hands a borrowed
//! Fortran-order array to a backend. The C ABI (`crates/streamscore-capi`: opaque handles,
//! status codes, a generated header `include/streamscore.h`) wraps models and runtimes for C
//! and the languages that call C.
//!
//! Cargo features `gpu`, `onnx`, `csv`, `cli`, `audit`, `serve` and `parquet` are on by
//! default (`redis` is off); with `--no-default-features` the crate is the lean core (trees,
//! dense nets, runtime, features).

#![warn(missing_docs)]
// Every unsafe block states why it is sound.
#![warn(clippy::undocumented_unsafe_blocks)]

#[cfg(feature = "audit")]
pub mod audit;
pub mod backend;
pub mod batch;
mod error;
mod event;
pub mod features;
mod files;
pub mod frames;
mod ingest;
#[doc(hidden)]
pub mod io;
pub mod metrics;
pub mod model;
pub mod monitor;
mod registry;
mod runtime;
#[cfg(feature = "serve")]
pub mod serve;
mod sink;

pub use backend::cpu::Reference;
pub use backend::{Backend, BackendChoice, BackendSpec, Output};
pub use batch::{Batch, Columns};
pub use error::{Error, ModelFormat, ModelProblem, Result};
pub use event::{Event, EventBatch, NonFinitePolicy, Schema};
pub use ingest::Rejected;
pub use ingest::reply::{Score, Scores, Ticket, Timing};
pub use metrics::{
    AuditSnapshot, Busy, DriftSnapshot, FeedbackSnapshot, MetricsSnapshot, ShadowSnapshot,
    ShadowWindow, Stage, Summary, VariantSnapshot, VersionFeedback,
};
pub use model::{Forest, Model, load_forest, load_model};
pub use registry::{
    Lineage, MAX_VARIANTS, ModelDir, ModelUpdate, ShadowConfig, Split, VariantSpec, VersionPolicy,
};
pub use runtime::config::{Overload, RuntimeConfig};
pub use runtime::{MAX_SET, Runtime, RuntimeBuilder};

/// The README's Rust examples, compiled and run as doc tests so they cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
