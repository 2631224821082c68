//! Status codes, the thread-local last-error message, and the boundary every call crosses.

use std::cell::RefCell;
use std::ffi::{CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};

use streamscore::Error;

/// What a call did. Every function of the API returns one; `SS_STATUS_OK` is 0, and
/// [`ss_last_error`] gives the message of the calling thread's last failure.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SsStatus {
    /// Done.
    Ok = 0,
    /// A ticket's answer is not ready yet (`ss_ticket_poll`); the ticket stays valid.
    Pending = 1,
    /// A required pointer was null.
    NullPointer = 2,
    /// An argument is out of its range: an unknown layout or option, a misaligned or
    /// overlapping buffer, a size that overflows, a string that is not UTF-8.
    InvalidArgument = 3,
    /// A handle that was never issued, was freed already, or is of another kind.
    InvalidHandle = 4,
    /// An output buffer is too small; the size needed is reported where the call can.
    BufferTooSmall = 5,
    /// A model file could not be read, parsed or validated, or uses what is not supported.
    Model = 6,
    /// An input was refused: a non-finite value under the `reject` policy, a gate, an unknown
    /// field, a late event, a bad length of keys or times.
    Input = 7,
    /// Rows of the wrong width for the model or runtime.
    Width = 8,
    /// The runtime's queue is full (non-blocking submission).
    QueueFull = 9,
    /// The runtime is shut down.
    Closed = 10,
    /// The event's deadline passed while it was queued.
    Expired = 11,
    /// The event was shed from a full queue to make room for a newer one.
    Shed = 12,
    /// A backend is not available here or failed.
    Unavailable = 13,
    /// A configuration was refused (a runtime option, a feature spec, a schema change).
    Config = 14,
    /// Reading a file failed.
    Io = 15,
    /// A bug in streamscore, caught at the boundary (a panic); the message says where.
    Internal = 16,
}

/// A failed call: its status and message.
pub(crate) struct Fail {
    pub(crate) status: SsStatus,
    pub(crate) message: String,
}

impl Fail {
    pub(crate) fn new(status: SsStatus, message: impl Into<String>) -> Self {
        Fail { status, message: message.into() }
    }

    pub(crate) fn null(what: &str) -> Self {
        Fail::new(SsStatus::NullPointer, format!("{what} is a null pointer"))
    }

    pub(crate) fn argument(message: impl Into<String>) -> Self {
        Fail::new(SsStatus::InvalidArgument, message)
    }
}

/// The status a library error becomes (the same grouping as the Python exceptions).
pub(crate) fn status_of(e: &Error) -> SsStatus {
    match e {
        Error::Io { .. } => SsStatus::Io,
        Error::TooLarge { .. }
        | Error::UnknownFormat { .. }
        | Error::Parse { .. }
        | Error::InvalidModel { .. }
        | Error::Unsupported { .. } => SsStatus::Model,
        Error::WidthMismatch { .. } | Error::OutputLength { .. } => SsStatus::Width,
        Error::MissingColumn { .. }
        | Error::Input { .. }
        | Error::UnknownField { .. }
        | Error::NonFinite { .. }
        | Error::Gate { .. }
        | Error::Stale { .. }
        | Error::Lookup { .. }
        | Error::Late { .. } => SsStatus::Input,
        Error::QueueFull => SsStatus::QueueFull,
        Error::Closed => SsStatus::Closed,
        Error::Expired { .. } => SsStatus::Expired,
        Error::Shed => SsStatus::Shed,
        Error::Unavailable { .. } | Error::DeviceLost { .. } | Error::Backend { .. } => {
            SsStatus::Unavailable
        }
        Error::Config(_) | Error::SchemaChange { .. } | Error::UnknownVersion(_) => {
            SsStatus::Config
        }
        _ => SsStatus::Internal,
    }
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        Fail::new(status_of(&e), e.to_string())
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(message: &str) {
    // An interior NUL would cut the message short in C; nothing else is changed.
    let text = CString::new(message.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|l| *l.borrow_mut() = text);
}

/// Runs one call: its failure becomes a status and this thread's last error, and a panic is
/// caught here (unwinding into C is undefined) and reported as `SS_STATUS_INTERNAL`.
pub(crate) fn call(f: impl FnOnce() -> Result<(), Fail>) -> SsStatus {
    call_status(|| f().map(|()| SsStatus::Ok))
}

/// As [`call`], for a call whose success has more than one status (`SS_STATUS_PENDING`).
pub(crate) fn call_status(f: impl FnOnce() -> Result<SsStatus, Fail>) -> SsStatus {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(status)) => status,
        Ok(Err(fail)) => {
            set_last_error(&fail.message);
            fail.status
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            set_last_error(&format!("internal error (please report it): {what}"));
            SsStatus::Internal
        }
    }
}

/// The message of the calling thread's last failed call (`""` when none has failed).
///
/// The text stays valid until the next failing call on the same thread; copy it to keep it.
/// Never null.
#[unsafe(no_mangle)]
pub extern "C" fn ss_last_error() -> *const c_char {
    LAST_ERROR.with(|l| l.borrow().as_ptr())
}

/// A short, stable name for a status (`"SS_STATUS_QUEUE_FULL"`), for logs. Never null.
#[unsafe(no_mangle)]
pub extern "C" fn ss_status_name(status: i32) -> *const c_char {
    let name: &'static [u8] = match status {
        0 => b"SS_STATUS_OK\0",
        1 => b"SS_STATUS_PENDING\0",
        2 => b"SS_STATUS_NULL_POINTER\0",
        3 => b"SS_STATUS_INVALID_ARGUMENT\0",
        4 => b"SS_STATUS_INVALID_HANDLE\0",
        5 => b"SS_STATUS_BUFFER_TOO_SMALL\0",
        6 => b"SS_STATUS_MODEL\0",
        7 => b"SS_STATUS_INPUT\0",
        8 => b"SS_STATUS_WIDTH\0",
        9 => b"SS_STATUS_QUEUE_FULL\0",
        10 => b"SS_STATUS_CLOSED\0",
        11 => b"SS_STATUS_EXPIRED\0",
        12 => b"SS_STATUS_SHED\0",
        13 => b"SS_STATUS_UNAVAILABLE\0",
        14 => b"SS_STATUS_CONFIG\0",
        15 => b"SS_STATUS_IO\0",
        16 => b"SS_STATUS_INTERNAL\0",
        _ => b"SS_STATUS_UNKNOWN\0",
    };
    name.as_ptr().cast()
}
