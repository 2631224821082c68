//! # streamscore
//!
//! An embedded scoring runtime for event streams: gradient-boosted trees (LightGBM, XGBoost)
//! and neural nets, scored in micro-batches on SIMD CPU paths or the GPU.
//!
//! This release holds the foundation every fast path is tested against: model files parsed
//! into one validated [`Forest`], and the scalar [`Reference`] scorer that reproduces the
//! training library's predictions (same branch for every f32 input, raw scores within 1e-6
//! relative).
//!
//! # Examples
//!
//! ```
//! use streamscore::{Backend, Batch, Output, Reference};
//!
//! let forest = streamscore::load_forest("models/golden/lgb_binary/model.txt")?;
//! let scorer = Reference::new(forest);
//! let batch = Batch::from_rows(&[0.5, -1.0, 2.0, 0.0, f32::NAN, 1.0, 3.0, -2.0], 8)?;
//! let mut scores = vec![0.0; batch.n_rows() * scorer.output_width(Output::Transformed)];
//! scorer.score_batch(&batch, Output::Transformed, &mut scores)?;
//! assert!(scores[0] > 0.0 && scores[0] < 1.0); // a probability
//! # Ok::<(), streamscore::Error>(())
//! ```

#![warn(missing_docs)]

pub mod backend;
pub mod batch;
pub mod error;
pub mod event;
pub mod features;
pub mod frames;
pub mod ingest;
pub mod io;
pub mod metrics;
pub mod model;
pub mod runtime;

pub use backend::cpu::Reference;
pub use backend::{Backend, BackendChoice, BackendSpec, Output};
pub use batch::Batch;
pub use error::{Error, ModelFormat, ModelProblem, Result};
pub use event::{Event, NonFinitePolicy, Schema};
pub use ingest::Rejected;
pub use ingest::reply::{Score, Ticket, Timing};
pub use metrics::{MetricsSnapshot, Stage};
pub use model::{Forest, Model, load_forest, load_model};
pub use runtime::Runtime;
pub use runtime::config::{Overload, RuntimeConfig};

/// The README's Rust examples, compiled and run as doc tests so they cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
