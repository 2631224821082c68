//! Reading files that are untrusted input: only regular files (a FIFO or a device such as
//! `/dev/zero` could grow without end), each kind within a stated size limit checked before
//! anything is read (and again while reading, should the file grow), and models recognised
//! from their first bytes before the rest is read.

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// A kind of file and its size limit.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Kind {
    /// What the file is, for messages.
    pub name: &'static str,
    /// The environment variable that overrides the limit (bytes).
    pub env: &'static str,
    /// The limit when the variable is unset.
    pub default: u64,
}

/// Model files (LightGBM, XGBoost, ONNX): 4 GiB by default.
pub(crate) const MODEL: Kind =
    Kind { name: "model", env: "STREAMSCORE_MAX_MODEL_BYTES", default: 4 << 30 };

/// Feature specs and frame configs (TOML): 16 MiB by default.
pub(crate) const CONFIG: Kind =
    Kind { name: "config", env: "STREAMSCORE_MAX_CONFIG_BYTES", default: 16 << 20 };

/// Input files read whole (`.npy` arrays, offline event CSVs): 16 GiB by default.
pub(crate) const INPUT: Kind =
    Kind { name: "input", env: "STREAMSCORE_MAX_INPUT_BYTES", default: 16 << 30 };

impl Kind {
    /// The limit in force (the environment variable when it holds a number).
    pub(crate) fn limit(&self) -> u64 {
        std::env::var(self.env).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(self.default)
    }

    fn too_large(&self, path: &Path, size: u64) -> Error {
        Error::TooLarge {
            path: path.into(),
            what: self.name,
            size,
            limit: self.limit(),
            env: self.env,
        }
    }
}

/// Opens `path` for reading if it is a regular file within `kind`'s limit; returns the file
/// and its size.
fn open(path: &Path, kind: &Kind) -> Result<(std::fs::File, u64)> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    if !meta.is_file() {
        return Err(Error::Input {
            at: path.display().to_string(),
            message: format!(
                "not a regular file (a directory, FIFO or device); a {} must be a file",
                kind.name
            ),
        });
    }
    if meta.len() > kind.limit() {
        return Err(kind.too_large(path, meta.len()));
    }
    Ok((file, meta.len()))
}

/// A stream (no size to check first) read whole, never past `kind`'s limit.
pub(crate) fn read_stream(path: &Path, stream: impl Read, kind: &Kind) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    read_rest(path, kind, stream, &mut bytes)?;
    Ok(bytes)
}

/// Reads the rest of `file` into `bytes`, never past `kind`'s limit.
fn read_rest(path: &Path, kind: &Kind, file: impl Read, bytes: &mut Vec<u8>) -> Result<()> {
    let limit = kind.limit();
    file.take(limit.saturating_add(1).saturating_sub(bytes.len() as u64))
        .read_to_end(bytes)
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > limit {
        return Err(kind.too_large(path, bytes.len() as u64));
    }
    Ok(())
}

/// A whole file of `kind`.
pub(crate) fn read(path: &Path, kind: &Kind) -> Result<Vec<u8>> {
    let (file, size) = open(path, kind)?;
    let mut bytes = Vec::with_capacity(size as usize);
    read_rest(path, kind, file, &mut bytes)?;
    Ok(bytes)
}

/// A whole text file of `kind`.
pub(crate) fn read_to_string(path: &Path, kind: &Kind) -> Result<String> {
    String::from_utf8(read(path, kind)?).map_err(|e| Error::Input {
        at: path.display().to_string(),
        message: format!("not UTF-8 text ({})", e.utf8_error()),
    })
}

/// A model file: its first bytes must be those of a LightGBM text (`tree`), an XGBoost JSON
/// (`{`) or an ONNX protobuf (0x08), checked before the rest is read.
pub(crate) fn read_model(path: &Path) -> Result<Vec<u8>> {
    let (file, size) = open(path, &MODEL)?;
    let mut head = Vec::with_capacity(size.min(4096) as usize);
    let mut file = file;
    (&mut file).take(4096).read_to_end(&mut head).map_err(|e| Error::io(path, e))?;
    let first = head.iter().copied().find(|b| !b.is_ascii_whitespace());
    if !matches!(first, Some(b't' | b'{' | 0x08)) {
        return Err(Error::UnknownFormat {
            path: path.into(),
            reason: "it starts with neither `tree`, `{` nor ONNX's 0x08".into(),
        });
    }
    let mut bytes = head;
    bytes.reserve(size as usize - bytes.len().min(size as usize));
    read_rest(path, &MODEL, file, &mut bytes)?;
    Ok(bytes)
}
