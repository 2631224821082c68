//! Handles: numbers, never pointers, so that a freed or forged handle is an error code.
//!
//! Each kind of object lives in its own table under an id that is never reused (a 64-bit
//! counter, the kind in its top byte). A call looks its handle up under a read lock and takes a
//! reference-counted clone, so a concurrent `free` removes the entry without pulling the object
//! from under a call that is using it: the object goes when its last call returns. A handle
//! used after `ss_*_free`, freed twice, of another kind or never issued is
//! `SS_STATUS_INVALID_HANDLE`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::status::{Fail, SsStatus};

/// A table of one kind of object.
pub(crate) struct Table<T> {
    kind: u8,
    name: &'static str,
    entries: RwLock<HashMap<u64, Arc<T>>>,
}

static NEXT: AtomicU64 = AtomicU64::new(1);

impl<T> Table<T> {
    pub(crate) fn new(kind: u8, name: &'static str) -> Self {
        Table { kind, name, entries: RwLock::new(HashMap::new()) }
    }

    /// Keeps `value` and returns its new id.
    pub(crate) fn insert(&self, value: T) -> u64 {
        // 2^56 ids per process: at a billion a second, two years.
        let n = NEXT.fetch_add(1, Ordering::Relaxed) & ((1 << 56) - 1);
        let id = (u64::from(self.kind) << 56) | n;
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        entries.insert(id, Arc::new(value));
        id
    }

    fn invalid(&self, id: u64) -> Fail {
        let why = if id == 0 {
            "the null handle".to_string()
        } else if (id >> 56) as u8 != self.kind {
            format!("handle {id:#x} is not a {} handle", self.name)
        } else {
            format!("{} handle {id:#x} was freed or never issued", self.name)
        };
        Fail::new(SsStatus::InvalidHandle, why)
    }

    /// The object of `id`, held for the length of a call.
    pub(crate) fn get(&self, id: u64) -> Result<Arc<T>, Fail> {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        entries.get(&id).cloned().ok_or_else(|| self.invalid(id))
    }

    /// Removes `id`; the object is dropped when no call holds it any more.
    pub(crate) fn remove(&self, id: u64) -> Result<Arc<T>, Fail> {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        entries.remove(&id).ok_or_else(|| self.invalid(id))
    }
}
