//! The one error type of the crate.
//!
//! Every failure a caller can cause (a malformed or hostile model file, an input of the wrong
//! width, an unreadable file) is a variant here with enough context to find the fault: the file,
//! the tree, the node. Nothing in the crate panics on bad input.

use std::fmt;
use std::path::PathBuf;

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The model file formats streamscore reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModelFormat {
    /// LightGBM's text model format (`tree` / `version=v3` / `v4`), as written by `save_model`.
    LightGbm,
    /// XGBoost's JSON model format (1.x to 3.x), as written by `save_model("*.json")`.
    XgboostJson,
    /// An ONNX model (`ModelProto`, protobuf).
    Onnx,
}

impl fmt::Display for ModelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ModelFormat::LightGbm => "LightGBM text",
            ModelFormat::XgboostJson => "XGBoost JSON",
            ModelFormat::Onnx => "ONNX",
        })
    }
}

/// What is structurally wrong with a tree, found by validation at load.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelProblem {
    /// A child index points outside the tree's node array.
    ChildOutOfRange {
        /// The offending child index as written in the file.
        child: i64,
        /// How many nodes (or leaves) the index had to address.
        len: usize,
    },
    /// A node is reached twice from the root: the "tree" has a cycle or a shared subtree.
    Cycle {
        /// The node (in the file's numbering) reached a second time.
        node: usize,
    },
    /// The tree is deeper than [`MAX_DEPTH`](crate::model::gbdt::MAX_DEPTH).
    TooDeep {
        /// The depth limit that was exceeded.
        max: usize,
    },
    /// A split tests a feature at or beyond the model's declared width.
    FeatureOutOfRange {
        /// The feature index in the file.
        feature: i64,
        /// The model's declared number of features.
        n_features: usize,
    },
    /// A split threshold is NaN or infinite.
    NonFiniteThreshold {
        /// The value read.
        value: f64,
    },
    /// A leaf value is NaN or infinite.
    NonFiniteLeaf {
        /// The value read.
        value: f64,
    },
    /// A categorical split refers to a category set that does not exist or is malformed.
    BadCategories {
        /// What is wrong.
        detail: String,
    },
    /// Two arrays that must have related lengths do not.
    LengthMismatch {
        /// The array that has the wrong length.
        field: String,
        /// The length implied by the rest of the tree.
        expected: usize,
        /// The length found.
        found: usize,
    },
    /// The model holds no trees, or a tree holds no nodes.
    Empty,
    /// A count or index in the file is outside what it may be.
    OutOfRange {
        /// The field, as the file names it.
        what: String,
        /// The value as written.
        value: i64,
        /// The smallest accepted value.
        min: i64,
        /// The largest accepted value.
        max: i64,
    },
    /// Two features share a name, so rows matched by name would feed both from one column.
    DuplicateName {
        /// The name.
        name: String,
        /// The first feature that has it.
        first: usize,
        /// The second.
        second: usize,
    },
    /// A count (trees, nodes, classes, features) is beyond what streamscore accepts.
    TooLarge {
        /// What is counted.
        what: String,
        /// The value in the file.
        value: u64,
        /// The accepted maximum.
        max: u64,
    },
}

impl fmt::Display for ModelProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelProblem::ChildOutOfRange { child, len } => {
                write!(f, "child index {child} is out of range (0..{len})")
            }
            ModelProblem::Cycle { node } => {
                write!(f, "node {node} is reached twice from the root (cycle or shared subtree)")
            }
            ModelProblem::TooDeep { max } => write!(f, "tree is deeper than {max} levels"),
            ModelProblem::FeatureOutOfRange { feature, n_features } => {
                write!(
                    f,
                    "split on feature {feature}, but the model declares {n_features} features"
                )
            }
            ModelProblem::NonFiniteThreshold { value } => {
                write!(f, "split threshold {value} is not finite")
            }
            ModelProblem::NonFiniteLeaf { value } => write!(f, "leaf value {value} is not finite"),
            ModelProblem::BadCategories { detail } => write!(f, "categorical split: {detail}"),
            ModelProblem::LengthMismatch { field, expected, found } => {
                write!(f, "`{field}` has {found} entries, expected {expected}")
            }
            ModelProblem::Empty => f.write_str("no trees or no nodes"),
            ModelProblem::OutOfRange { what, value, min, max } => {
                write!(f, "{what} = {value} is outside {min}..={max}")
            }
            ModelProblem::DuplicateName { name, first, second } => write!(
                f,
                "feature name `{}` is given twice (features {first} and {second})",
                name.escape_debug()
            ),
            ModelProblem::TooLarge { what, value, max } => {
                write!(f, "{what} = {value} exceeds the limit of {max}")
            }
        }
    }
}

/// Every error streamscore returns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file involved (`-` for stdin/stdout).
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A file is larger than the limit for its kind (checked before it is read).
    #[error(
        "{path}: the {what} file is {size} bytes, over the limit of {limit} (set {env} to raise it)"
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// What kind of file (model, config, input).
        what: &'static str,
        /// Its size, or the bytes read when it grew past the limit.
        size: u64,
        /// The limit in force.
        limit: u64,
        /// The environment variable that sets the limit.
        env: &'static str,
    },
    /// The model file could not be recognised as any supported format.
    #[error("{path}: not a LightGBM text, XGBoost JSON or ONNX model ({reason})")]
    UnknownFormat {
        /// The file.
        path: PathBuf,
        /// Why detection failed.
        reason: String,
    },
    /// The model file is syntactically broken: truncated, a missing key, a number that is not one.
    #[error("{format} model, {at}: {message}")]
    Parse {
        /// The format being read.
        format: ModelFormat,
        /// Where in the file (line, key, tree).
        at: String,
        /// What is wrong.
        message: String,
    },
    /// The model parsed but is structurally invalid (found by validation at load).
    #[error("{format} model, {at}: {problem}")]
    InvalidModel {
        /// The format being read.
        format: ModelFormat,
        /// Where (tree and node, in the file's numbering).
        at: String,
        /// What is wrong.
        problem: ModelProblem,
    },
    /// The model uses a feature streamscore does not support; the message says which.
    #[error("{format} model: unsupported: {what}")]
    Unsupported {
        /// The format being read.
        format: ModelFormat,
        /// The unsupported feature.
        what: String,
    },
    /// Input rows have a different number of features than the model expects.
    #[error("input has {got} features per row, the model expects {expected}")]
    WidthMismatch {
        /// The model's feature count.
        expected: usize,
        /// The input's feature count.
        got: usize,
    },
    /// An output buffer has the wrong length for the batch.
    #[error("output buffer holds {got} values, {expected} are needed")]
    OutputLength {
        /// Required length.
        expected: usize,
        /// Given length.
        got: usize,
    },
    /// A feature the model needs is not among the input's named columns.
    #[error("input has no column named `{name}` (the model's feature {index})")]
    MissingColumn {
        /// The feature name.
        name: String,
        /// Its position in the model's feature order.
        index: usize,
    },
    /// An input file is malformed (bad number, ragged rows, unsupported dtype).
    #[error("input {at}: {message}")]
    Input {
        /// Where: file, line, column.
        at: String,
        /// What is wrong.
        message: String,
    },
    /// A named event field is not in the model's schema.
    #[error("unknown field `{name}`: the model has no feature of that name")]
    UnknownField {
        /// The name given.
        name: String,
    },
    /// An event holds NaN or an infinity and the runtime's policy rejects non-finite values.
    #[error("feature {feature} is {value}, and the non-finite policy is `reject`")]
    NonFinite {
        /// Position of the offending feature.
        feature: usize,
        /// The value found.
        value: f32,
    },
    /// The ingestion queue is full (overload); nothing was queued.
    #[error("queue full: the runtime is overloaded")]
    QueueFull,
    /// The event was queued but displaced by a newer one under the `shed-oldest` policy.
    #[error("shed: displaced from a full queue by a newer event")]
    Shed,
    /// The runtime is shut down (or shutting down) and accepts no new events.
    #[error("the runtime is closed")]
    Closed,
    /// The event's deadline passed before it could be scored; no model time was spent on it.
    #[error("deadline expired after {waited:?} in the runtime, before scoring")]
    Expired {
        /// Time from acceptance to the decision to give up.
        waited: std::time::Duration,
    },
    /// A configuration value is invalid; found once, when the runtime is built.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A backend cannot run on this machine (no library, no device); nothing was scored.
    #[error("backend `{backend}` is unavailable: {reason}")]
    Unavailable {
        /// The backend's name.
        backend: &'static str,
        /// Why, with what to do about it.
        reason: String,
    },
    /// The backend's device was lost (a GPU reset, removal or driver failure) or injected as
    /// lost; the batch was not scored. [`Failover`](crate::backend::Failover) rescores it on
    /// the CPU.
    #[error("backend `{backend}` lost its device: {reason}")]
    DeviceLost {
        /// The backend's name.
        backend: &'static str,
        /// What the driver or wgpu said.
        reason: String,
    },
    /// The event is older than its key's watermark by more than the spec's allowed lateness,
    /// and the spec's late policy rejects such events; the key's state is unchanged.
    #[error(
        "late event for key {key}: time {time_ms} ms is behind the key's watermark {watermark_ms} ms by more than the allowed lateness"
    )]
    Late {
        /// The event's key.
        key: u64,
        /// Its event time.
        time_ms: i64,
        /// The key's latest event time.
        watermark_ms: i64,
    },
    /// A feature of the event reads a key history (or a lookup row) older than the feature's
    /// `max_age`, and its stale policy refuses such events; the key's state is updated with
    /// the event. A lookup row without a timestamp counts as stale, with `age_ms` `i64::MAX`.
    #[error(
        "stale feature `{feature}` for key {key}: what it reads (the key's previous event, or its lookup row) is {age_ms} ms old, over its max_age of {max_age_ms} ms"
    )]
    Stale {
        /// The event's key.
        key: u64,
        /// The feature.
        feature: String,
        /// How old the key's previous event (or the lookup row) was.
        age_ms: i64,
        /// The feature's limit.
        max_age_ms: i64,
    },
    /// A lookup table holds no row for the event's key, or its store failed or timed out, and
    /// the lookup's policy refuses such events.
    #[error("lookup `{table}`: {message}")]
    Lookup {
        /// The lookup table.
        table: String,
        /// What happened.
        message: String,
    },
    /// A model swap would change the runtime's schema (input names, output width) and the
    /// caller did not say the change is intended; the serving version is unchanged.
    #[error("model version {version} changes the schema ({change}); the serving version stays")]
    SchemaChange {
        /// The refused version.
        version: u64,
        /// What differs.
        change: String,
    },
    /// The event violates a data-quality gate whose policy is `reject`
    /// ([`monitor::gates`](crate::monitor::gates)); nothing was queued.
    #[error("gate `{rule}`: field `{field}` is {value}")]
    Gate {
        /// The rule's name.
        rule: String,
        /// The field it checks.
        field: String,
        /// The value found.
        value: f32,
    },
    /// No kept model version has this number (it was never loaded, or has been retired).
    #[error("no kept model version {0}")]
    UnknownVersion(u64),
    /// The backend failed on the batch this event was in.
    #[error("backend `{backend}` failed: {message}")]
    Backend {
        /// The backend's name.
        backend: &'static str,
        /// Its error, rendered.
        message: String,
    },
    /// A message broker's call failed (a connection refused or lost, a timeout, an error
    /// reply); `serve`'s connectors retry it.
    #[error("broker `{broker}`: {message}")]
    Broker {
        /// The broker's kind (`redis_streams`, ...).
        broker: &'static str,
        /// What failed, rendered.
        message: String,
    },
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}
