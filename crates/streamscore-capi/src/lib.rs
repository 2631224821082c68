//! The C ABI of streamscore (and, with the feature `jni`, the JVM binding's native methods,
//! `src/jvm.rs`): load a model and score batches, or run a runtime (queue,
//! micro-batcher, feature stage) and submit events, from C or anything that calls C (the JVM
//! binding, Go, C#...).
//!
//! The header is `include/streamscore.h`, generated from this crate by cbindgen
//! (`tests/header.rs` fails when the committed header differs from the code; regenerate with
//! `STREAMSCORE_BLESS=1 cargo test -p streamscore-capi --test header`).
//!
//! The API follows ONNX Runtime's and tract's C APIs:
//! - **Opaque handles** ([`SsModel`], [`SsRuntime`], [`SsTicket`]): numbers, not pointers, so a
//!   handle used after it was freed, freed twice, or of the wrong kind is
//!   `SS_STATUS_INVALID_HANDLE`, never undefined behaviour.
//! - **Status codes** ([`SsStatus`]) from every call, and a thread-local message for the last
//!   failure ([`ss_last_error`]).
//! - **Checked arguments**: null pointers, misaligned or overlapping buffers, sizes that
//!   overflow, output buffers too small, strings that are not UTF-8 are status codes; a panic
//!   is caught at the boundary (`SS_STATUS_INTERNAL`). What cannot be checked is the caller's
//!   promise that a pointer holds as many values as it says.
//! - **Versioned**: [`ss_api_version`] is [`SS_API_VERSION`] of the header the library was
//!   built with; a change that breaks a caller raises it.
//! - **Thread-safe**: every call may be made from any thread at once.
//!
//! ```c
//! ss_model m;
//! if (ss_model_load("model.txt", NULL, &m) != SS_STATUS_OK) {
//!     fprintf(stderr, "%s\n", ss_last_error());
//! }
//! float rows[2 * 8] = {0}, out[2];
//! ss_model_score(m, rows, 2, 8, SS_ROW_MAJOR, SS_OUTPUT_TRANSFORMED, out, 2);
//! ss_model_free(m);
//! ```

#![warn(clippy::undocumented_unsafe_blocks)]

mod args;
mod handles;
#[cfg(feature = "jni")]
mod jvm;
mod model;
mod runtime;
mod status;

use std::ffi::c_char;

pub use model::{
    ss_model_backend, ss_model_feature_name, ss_model_free, ss_model_load, ss_model_load_bytes,
    ss_model_n_features, ss_model_output_width, ss_model_score,
};
pub use runtime::{
    ss_runtime_field_name, ss_runtime_free, ss_runtime_live_version, ss_runtime_new,
    ss_runtime_prometheus, ss_runtime_rollback, ss_runtime_score, ss_runtime_shape,
    ss_runtime_shutdown, ss_runtime_submit, ss_runtime_submit_many, ss_runtime_swap,
    ss_ticket_free, ss_ticket_poll, ss_ticket_wait,
};
pub use status::{SsStatus, ss_last_error, ss_status_name};

/// The version of this API; [`ss_api_version`] returns the library's.
pub const SS_API_VERSION: u32 = 1;

/// Rows one after the other (`x[row * n_cols + col]`).
pub const SS_ROW_MAJOR: u32 = 0;
/// Features one after the other (`x[col * n_rows + row]`), as Fortran, Arrow and most column
/// stores lay them out.
pub const SS_COLUMN_MAJOR: u32 = 1;
/// The model's prediction after its objective's transform (probabilities, ...).
pub const SS_OUTPUT_TRANSFORMED: u32 = 0;
/// Raw margins, one per output group.
pub const SS_OUTPUT_RAW: u32 = 1;

/// A loaded model ([`ss_model_load`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SsModel {
    /// The handle's number; 0 is never issued.
    pub id: u64,
}

/// A running runtime ([`ss_runtime_new`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SsRuntime {
    /// The handle's number; 0 is never issued.
    pub id: u64,
}

/// An answer to come ([`ss_runtime_submit`], [`ss_runtime_submit_many`]); collected once by
/// [`ss_ticket_wait`] or [`ss_ticket_poll`], which free it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SsTicket {
    /// The handle's number; 0 is never issued.
    pub id: u64,
}

/// A set of events for [`ss_runtime_submit_many`]: `n_rows` rows of `n_cols` values,
/// row-major, with optional keys and event times (null: 0 for every event).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SsEvents {
    /// `n_rows * n_cols` values.
    pub rows: *const f32,
    /// Events in the set.
    pub n_rows: usize,
    /// Values per event: the runtime's field count.
    pub n_cols: usize,
    /// Null, or `n_rows` keys.
    pub keys: *const u64,
    /// Null, or `n_rows` event times in ms since the epoch.
    pub timestamps_ms: *const i64,
}

/// The library's [`SS_API_VERSION`]: compare it with the header's to catch a mismatched build.
#[unsafe(no_mangle)]
pub extern "C" fn ss_api_version() -> u32 {
    SS_API_VERSION
}

/// The library's version (`"0.1.0"`). Never null; static.
#[unsafe(no_mangle)]
pub extern "C" fn ss_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}
