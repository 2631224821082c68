//! Model formats shared by every backend.
//!
//! [`load_forest`] reads a file, recognises its format from its content (LightGBM text models
//! start with `tree`, XGBoost JSON models with `{`) and returns a validated [`Forest`].

pub mod gbdt;
pub mod transform;

use std::path::Path;

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
            None => Err(Error::UnknownFormat {
                path: "<text>".into(),
                reason: "it starts with neither `tree` nor `{`".into(),
            }),
        }
    }
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
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
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
