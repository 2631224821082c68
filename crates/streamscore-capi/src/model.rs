//! Models: load from a path or bytes, score a batch of rows in either memory order.

use std::ffi::c_char;
use std::path::Path;
use std::sync::{Arc, LazyLock};

use streamscore::{Backend, BackendSpec, Columns, Error, Model, Output};

use crate::args::{self, count};
use crate::handles::Table;
use crate::status::{Fail, SsStatus, call};
use crate::{SS_COLUMN_MAJOR, SS_OUTPUT_RAW, SS_OUTPUT_TRANSFORMED, SS_ROW_MAJOR, SsModel};

pub(crate) struct Loaded {
    backend: Arc<dyn Backend>,
    names: Vec<String>,
}

static MODELS: LazyLock<Table<Loaded>> = LazyLock::new(|| Table::new(1, "model"));

pub(crate) fn output(code: u32) -> Result<Output, Fail> {
    match code {
        SS_OUTPUT_TRANSFORMED => Ok(Output::Transformed),
        SS_OUTPUT_RAW => Ok(Output::Raw),
        other => Err(Fail::argument(format!(
            "output {other}: expected SS_OUTPUT_TRANSFORMED (0) or SS_OUTPUT_RAW (1)"
        ))),
    }
}

fn spec(backend: Option<&str>) -> Result<BackendSpec, Fail> {
    Ok(backend.unwrap_or("auto").parse::<BackendSpec>()?)
}

fn keep(model: Model, backend: Option<&str>, out: *mut SsModel) -> Result<(), Fail> {
    let names = model.feature_names();
    let backend = spec(backend)?.select(model)?;
    let id = MODELS.insert(Loaded { backend, names });
    // SAFETY: `out` was checked writable-or-null by the caller of `keep` before loading.
    unsafe { args::put(out, SsModel { id }, "out") }.inspect_err(|_| {
        let _ = MODELS.remove(id);
    })
}

/// Loads a model file (LightGBM text, XGBoost JSON or ONNX, recognised from its content) and
/// readies a backend for it.
///
/// `backend` is a backend spec as the command line takes it (`"auto"`, `"cpu"`,
/// `"cpu:threads=2"`, `"reference"`...); null means `"auto"`. On success `*out` is the new
/// handle; free it with [`ss_model_free`].
///
/// # Safety
/// `path` and `backend` are null or NUL-terminated strings; `out` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ss_model_load(
    path: *const c_char,
    backend: *const c_char,
    out: *mut SsModel,
) -> SsStatus {
    call(|| {
        // SAFETY: the pointers are as this function's contract states.
        let path = unsafe { args::text(path, "path") }?;
        // SAFETY: the pointers are as this function's contract states.
        let backend = unsafe { args::optional_text(backend, "backend") }?;
        if out.is_null() {
            return Err(Fail::null("out"));
        }
        let model = streamscore::load_model(Path::new(path))?;
        keep(model, backend, out)
    })
}

/// Loads a model from the bytes of its file (copied; the caller keeps its buffer), as
/// [`ss_model_load`] does from a path.
///
/// # Safety
/// `data` points to `len` readable bytes (or `len` is 0); `backend` is null or a
/// NUL-terminated string; `out` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ss_model_load_bytes(
    data: *const u8,
    len: usize,
    backend: *const c_char,
    out: *mut SsModel,
) -> SsStatus {
    call(|| {
        if data.is_null() {
            return Err(Fail::null("data"));
        }
        // SAFETY: the pointers are as this function's contract states.
        let bytes = unsafe { args::slice(data, len, "data") }?;
        // SAFETY: the pointers are as this function's contract states.
        let backend = unsafe { args::optional_text(backend, "backend") }?;
        if out.is_null() {
            return Err(Fail::null("out"));
        }
        let model = Model::from_bytes(bytes.to_vec(), Path::new("<bytes>"))?;
        keep(model, backend, out)
    })
}

/// Frees a model. Calls already running on it finish first; the handle is invalid at once.
#[unsafe(no_mangle)]
pub extern "C" fn ss_model_free(model: SsModel) -> SsStatus {
    call(|| MODELS.remove(model.id).map(drop))
}

/// The width of a row: `*out` is the number of input features.
///
/// # Safety
/// `out` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ss_model_n_features(model: SsModel, out: *mut usize) -> SsStatus {
    call(|| {
        let m = MODELS.get(model.id)?;
        // SAFETY: the pointers are as this function's contract states.
        unsafe { args::put(out, m.backend.n_features(), "out") }
    })
}

/// Values per row for `output` (`SS_OUTPUT_TRANSFORMED` or `SS_OUTPUT_RAW`): 1, or the
/// number of classes.
///
/// # Safety
/// `out` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ss_model_output_width(
    model: SsModel,
    output: u32,
    out: *mut usize,
) -> SsStatus {
    call(|| {
        let m = MODELS.get(model.id)?;
        let output = self::output(output)?;
        // SAFETY: the pointers are as this function's contract states.
        unsafe { args::put(out, m.backend.output_width(output), "out") }
    })
}

/// Copies input feature `index`'s name (NUL-terminated) into `buf` of `cap` bytes; `*needed`
/// (when not null) is the size it takes. Pass `buf = NULL, cap = 0` to ask the size
/// (`SS_STATUS_BUFFER_TOO_SMALL`, with `*needed` set).
///
/// # Safety
/// `buf` is null or has `cap` writable bytes; `needed` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ss_model_feature_name(
    model: SsModel,
    index: usize,
    buf: *mut c_char,
    cap: usize,
    needed: *mut usize,
) -> SsStatus {
    call(|| {
        let m = MODELS.get(model.id)?;
        let name = m.names.get(index).ok_or_else(|| {
            Fail::argument(format!("feature {index}: the model has {}", m.names.len()))
        })?;
        // SAFETY: the pointers are as this function's contract states.
        unsafe { args::copy_text(name, buf, cap, needed) }
    })
}

/// Copies the name of the backend that scores the model (`"cpu-fast[...]"`, `"reference"`...)
/// into `buf`, as [`ss_model_feature_name`] does.
///
/// # Safety
/// As [`ss_model_feature_name`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ss_model_backend(
    model: SsModel,
    buf: *mut c_char,
    cap: usize,
    needed: *mut usize,
) -> SsStatus {
    call(|| {
        let m = MODELS.get(model.id)?;
        // SAFETY: the pointers are as this function's contract states.
        unsafe { args::copy_text(m.backend.name(), buf, cap, needed) }
    })
}

/// Scores `n_rows` rows of `n_cols` features into `out`, row-major, `width` values a row
/// (see [`ss_model_output_width`]).
///
/// `layout` is `SS_ROW_MAJOR` (row after row) or `SS_COLUMN_MAJOR` (feature after feature,
/// scored in place without a copy by the CPU tree scorer). NaN is a missing value. `n_cols`
/// must equal the model's width (`SS_STATUS_WIDTH`); `out_len` must hold `n_rows * width`
/// values (`SS_STATUS_BUFFER_TOO_SMALL`), and only those are written. `out` must not overlap
/// `x`. Any number of threads may score one model at once.
///
/// # Safety
/// `x` points to `n_rows * n_cols` readable floats and `out` to `out_len` writable floats
/// (either may be null when `n_rows` is 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ss_model_score(
    model: SsModel,
    x: *const f32,
    n_rows: usize,
    n_cols: usize,
    layout: u32,
    output: u32,
    out: *mut f32,
    out_len: usize,
) -> SsStatus {
    call(|| {
        let m = MODELS.get(model.id)?;
        let output = self::output(output)?;
        if layout != SS_ROW_MAJOR && layout != SS_COLUMN_MAJOR {
            return Err(Fail::argument(format!(
                "layout {layout}: expected SS_ROW_MAJOR (0) or SS_COLUMN_MAJOR (1)"
            )));
        }
        let expected = m.backend.n_features();
        if n_cols != expected {
            return Err(Error::WidthMismatch { expected, got: n_cols }.into());
        }
        let width = m.backend.output_width(output);
        let need = count::<f32>(n_rows, width, "out")?;
        if out_len < need {
            return Err(Fail::new(
                SsStatus::BufferTooSmall,
                format!("out holds {out_len} values; {n_rows} rows x {width} need {need}"),
            ));
        }
        if n_rows == 0 {
            return Ok(());
        }
        let len = count::<f32>(n_rows, n_cols, "x")?;
        // SAFETY: the pointers are as this function's contract states.
        let x = unsafe { args::slice(x, len, "x") }?;
        // SAFETY: the pointers are as this function's contract states.
        let out = unsafe { args::slice_mut(out, need, "out", x) }?;
        if layout == SS_COLUMN_MAJOR {
            m.backend.score_columns(Columns::new(x, n_rows, n_cols)?, output, out)?;
        } else {
            m.backend.score_rows(x, output, out)?;
        }
        Ok(())
    })
}
