//! Model formats shared by every backend.
//!
//! [`load_model`] reads a file and recognises its format from its content: LightGBM text models
//! start with `tree`, XGBoost JSON models with `{`, ONNX models (protobuf) with the byte `0x08`
//! (field 1, `ir_version`). Trees become a validated [`Forest`]; an ONNX file becomes an
//! [`OnnxModel`](onnx::OnnxModel), which holds a [`Dense`](dense::Dense) net when its graph is one.
//! [`load_forest`] reads tree models only.

pub mod dense;
pub mod gbdt;
pub mod onnx;
pub mod transform;

use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, ModelFormat, Result};
pub use gbdt::Forest;

impl Forest {
    /// Parses a model from its text, recognising the format from the content.
    ///
    /// # Examples
    ///
    /// ```
    /// let forest = streamscore::Forest::from_text("{ not a model").unwrap_err();
    /// assert!(forest.to_string().contains("XGBoost JSON"));
    /// ```
    pub fn from_text(text: &str) -> Result<Forest> {
        match detect(text) {
            Some(ModelFormat::LightGbm) => gbdt::lightgbm::parse(text),
            Some(ModelFormat::XgboostJson) => gbdt::xgboost::parse(text),
            Some(ModelFormat::Onnx) | None => Err(Error::UnknownFormat {
                path: "<text>".into(),
                reason: "it starts with neither `tree` nor `{`".into(),
            }),
        }
    }
}

/// A loaded model of any supported format.
#[derive(Debug, Clone)]
pub enum Model {
    /// A tree ensemble (LightGBM or XGBoost).
    Forest(Arc<Forest>),
    /// An ONNX model (a dense net our own paths run, or any graph for ONNX Runtime).
    Onnx(Arc<onnx::OnnxModel>),
}

impl From<Forest> for Model {
    fn from(forest: Forest) -> Self {
        Model::Forest(Arc::new(forest))
    }
}

impl From<Arc<Forest>> for Model {
    fn from(forest: Arc<Forest>) -> Self {
        Model::Forest(forest)
    }
}

impl From<onnx::OnnxModel> for Model {
    fn from(model: onnx::OnnxModel) -> Self {
        Model::Onnx(Arc::new(model))
    }
}

/// The widest input row any model may declare (2^24 values): checked at load, before anything
/// is sized by a width read from a file.
pub const MAX_FEATURES: usize = 1 << 24;

impl Model {
    /// Input columns' names, in the model's order (`f0`, `f1`, ... for ONNX inputs).
    pub fn feature_names(&self) -> Vec<String> {
        match self {
            Model::Forest(f) => f.feature_names.clone(),
            Model::Onnx(m) => (0..m.n_features()).map(|i| format!("f{i}")).collect(),
        }
    }

    /// Parses a model from a file's bytes, recognising the format from the content.
    pub fn from_bytes(bytes: Vec<u8>, path: &Path) -> Result<Model> {
        if bytes.first() == Some(&0x08) {
            return Ok(Model::Onnx(Arc::new(onnx::OnnxModel::from_bytes(bytes)?)));
        }
        let text = std::str::from_utf8(&bytes).map_err(|e| Error::UnknownFormat {
            path: path.into(),
            reason: format!("neither text ({e}) nor an ONNX protobuf (which starts with 0x08)"),
        })?;
        if detect(text).is_none() {
            return Err(Error::UnknownFormat {
                path: path.into(),
                reason: "it starts with neither `tree`, `{` nor ONNX's 0x08".into(),
            });
        }
        Ok(Model::Forest(Arc::new(Forest::from_text(text)?)))
    }
}

/// Reads and validates a model file of any supported format.
pub fn load_model(path: impl AsRef<Path>) -> Result<Model> {
    let path = path.as_ref();
    let bytes = crate::files::read_model(path)?;
    Model::from_bytes(bytes, path)
}

/// The format a model text is in, judged from its first non-blank characters.
pub fn detect(text: &str) -> Option<ModelFormat> {
    let head = text.trim_start();
    if head.starts_with('{') {
        Some(ModelFormat::XgboostJson)
    } else if head.lines().next().is_some_and(|l| l.trim() == "tree") {
        Some(ModelFormat::LightGbm)
    } else {
        None
    }
}

/// Reads and validates a tree model file (LightGBM text or XGBoost JSON).
pub fn load_forest(path: impl AsRef<Path>) -> Result<Forest> {
    let path = path.as_ref();
    let bytes = crate::files::read_model(path)?;
    let text = std::str::from_utf8(&bytes).map_err(|e| Error::UnknownFormat {
        path: path.into(),
        reason: format!("not UTF-8 text ({e}); binary formats such as UBJSON are not supported"),
    })?;
    if detect(text).is_none() {
        return Err(Error::UnknownFormat {
            path: path.into(),
            reason: "it starts with neither `tree` nor `{`".into(),
        });
    }
    Forest::from_text(text)
}
