//! Model versions of a running runtime: the live one, the last N kept for rollback, and what
//! each came from ([`Lineage`]).
//!
//! A new version is loaded, validated, laid out and warmed up (CPU tuning, GPU pipelines) on
//! a loader thread that the caller or the model-directory watcher starts, never by the
//! runtime's threads. Going
//! live is one pointer store: each scoring thread looks at the registry's generation once per
//! batch and takes the new version at its next batch, so a batch, and every event in it, is
//! scored by exactly one version, and its answers name it.

mod lineage;
pub(crate) mod load;
pub(crate) mod shadow;
pub(crate) mod split;
pub(crate) mod watch;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::backend::Backend;
use crate::error::{Error, Result};
pub use lineage::Lineage;
pub use load::ModelUpdate;
pub(crate) use load::{Loaded, load};
pub use shadow::ShadowConfig;
pub use split::{MAX_VARIANTS, Split, VariantSpec};
pub use watch::{ModelDir, VersionPolicy};

/// One loaded model version.
pub(crate) struct Version {
    pub backend: Arc<dyn Backend>,
    /// Values per answer.
    pub out_width: usize,
    pub lineage: Arc<Lineage>,
}

impl Version {
    pub(crate) fn id(&self) -> u64 {
        self.lineage.version
    }
}

/// The live version and the versions kept for rollback.
pub(crate) struct Registry {
    live: Swappable<Version>,
    /// Oldest first; holds the live version too.
    kept: Mutex<VecDeque<Arc<Version>>>,
    keep: usize,
    /// Versions no longer kept that a scoring thread's view may still hold: freed here, by a
    /// swapping thread, once nothing else holds them, so that a scoring thread never frees a
    /// model.
    retired: Mutex<Vec<Arc<Version>>>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Registry {
    /// A registry serving `first`, keeping up to `keep` versions (at least 1).
    pub(crate) fn new(first: Version, keep: usize) -> Self {
        let first = Arc::new(first);
        Registry {
            live: Swappable::new(first.clone()),
            kept: Mutex::new(VecDeque::from([first])),
            keep: keep.max(1),
            retired: Mutex::new(Vec::new()),
        }
    }

    /// The version serving now.
    pub(crate) fn live(&self) -> Arc<Version> {
        self.live.get()
    }

    /// A scoring thread's view of the live version.
    pub(crate) fn view(&self) -> View<Version> {
        self.live.view()
    }

    /// The live version as scoring threads read it.
    pub(crate) fn published(&self) -> &Swappable<Version> {
        &self.live
    }

    /// Every kept version's lineage, oldest first (the live one among them).
    pub(crate) fn versions(&self) -> Vec<Arc<Lineage>> {
        lock(&self.kept).iter().map(|v| v.lineage.clone()).collect()
    }

    /// The kept version numbers, oldest first.
    pub(crate) fn kept_ids(&self) -> Vec<u64> {
        lock(&self.kept).iter().map(|v| v.id()).collect()
    }

    /// Whether `id` is kept.
    pub(crate) fn is_kept(&self, id: u64) -> bool {
        lock(&self.kept).iter().any(|v| v.id() == id)
    }

    /// Makes `candidate` live, after checking it against the live version: the input width
    /// must match (queued events have it); input names and output width only with
    /// `allow_schema_change`. A number already kept with the same file hash goes live as a
    /// rollback; with another hash it is refused. Returns the live version's number.
    pub(crate) fn install(&self, candidate: Version, allow_schema_change: bool) -> Result<u64> {
        let mut kept = lock(&self.kept);
        let live = self.live();
        let id = candidate.id();
        if already_kept(&kept, &candidate)? {
            drop(kept);
            return self.rollback(id);
        }
        check_schema(&live, &candidate, allow_schema_change)?;
        let candidate = Arc::new(candidate);
        kept.push_back(candidate.clone());
        while kept.len() > self.keep {
            // The oldest goes; never the one going live (it is last).
            if let Some(old) = kept.pop_front() {
                self.park(&kept, old);
            }
        }
        let previous = self.live.set(candidate);
        self.park(&kept, previous);
        self.free_retired();
        Ok(id)
    }

    /// Keeps `candidate` without making it live (for a split), after the same checks as
    /// [`install`](Registry::install). A number already kept with the same file hash is that
    /// version. Returns its number.
    pub(crate) fn keep(&self, candidate: Version, allow_schema_change: bool) -> Result<u64> {
        let mut kept = lock(&self.kept);
        let id = candidate.id();
        if already_kept(&kept, &candidate)? {
            return Ok(id);
        }
        if self.keep < 2 {
            return Err(Error::Config(
                "keep_versions is 1: no room for a version beside the live one".into(),
            ));
        }
        check_schema(&self.live(), &candidate, allow_schema_change)?;
        let candidate = Arc::new(candidate);
        kept.push_back(candidate.clone());
        let live = self.live();
        // When the list is full the oldest that is neither live nor the new one goes.
        while kept.len() > self.keep {
            let gone = |v: &Arc<Version>| !Arc::ptr_eq(v, &live) && !Arc::ptr_eq(v, &candidate);
            let Some(i) = kept.iter().position(gone) else { break };
            if let Some(old) = kept.remove(i) {
                self.park(&kept, old);
            }
        }
        self.free_retired();
        Ok(id)
    }

    /// The kept version `id`.
    pub(crate) fn kept(&self, id: u64) -> Option<Arc<Version>> {
        lock(&self.kept).iter().find(|v| v.id() == id).cloned()
    }

    /// Makes the kept version `id` live again.
    pub(crate) fn rollback(&self, id: u64) -> Result<u64> {
        let kept = lock(&self.kept);
        let version =
            kept.iter().find(|v| v.id() == id).cloned().ok_or(Error::UnknownVersion(id))?;
        if !Arc::ptr_eq(&version, &self.live()) {
            let previous = self.live.set(version);
            self.park(&kept, previous);
        }
        self.free_retired();
        Ok(id)
    }

    /// Forgets the kept version `id` (not the live one). Whether it was kept.
    pub(crate) fn retire(&self, id: u64) -> bool {
        let mut kept = lock(&self.kept);
        let live = self.live().id();
        let before = kept.len();
        let gone: Vec<Arc<Version>> =
            kept.iter().filter(|v| v.id() == id && v.id() != live).cloned().collect();
        kept.retain(|v| v.id() != id || v.id() == live);
        for v in gone {
            self.park(&kept, v);
        }
        self.free_retired();
        kept.len() != before
    }

    /// Holds a version that left `kept` or stopped being live until nothing else does (once:
    /// a version still kept is held there).
    fn park(&self, kept: &VecDeque<Arc<Version>>, version: Arc<Version>) {
        if kept.iter().any(|k| Arc::ptr_eq(k, &version)) {
            return;
        }
        let mut retired = lock(&self.retired);
        if !retired.iter().any(|r| Arc::ptr_eq(r, &version)) {
            retired.push(version);
        }
    }

    /// Holds versions a replaced split served (see [`park`](Registry::park)).
    pub(crate) fn park_all(&self, versions: impl Iterator<Item = Arc<Version>>) {
        let kept = lock(&self.kept);
        for v in versions {
            self.park(&kept, v);
        }
        drop(kept);
        self.free_retired();
    }

    /// Frees the retired versions only this list still holds (a scoring thread that still
    /// views one lets go of it at its next batch; the next swap frees it).
    fn free_retired(&self) {
        lock(&self.retired).retain(|v| Arc::strong_count(v) > 1);
    }

    /// Retired versions not yet freed (tests).
    #[cfg(test)]
    fn retired_len(&self) -> usize {
        lock(&self.retired).len()
    }
}

/// Whether `candidate`'s number is kept with the same file hash; another hash under a kept
/// number is refused.
fn already_kept(kept: &VecDeque<Arc<Version>>, candidate: &Version) -> Result<bool> {
    let id = candidate.id();
    let Some(same) = kept.iter().find(|v| v.id() == id) else { return Ok(false) };
    if same.lineage.sha256 != candidate.lineage.sha256 {
        return Err(Error::Config(format!(
            "model version {id} is already kept with other content; give the new file another \
             version number"
        )));
    }
    Ok(true)
}

fn check_schema(live: &Version, new: &Version, allow: bool) -> Result<()> {
    let (old_w, new_w) = (live.backend.n_features(), new.backend.n_features());
    let id = new.id();
    if old_w != new_w {
        return Err(Error::SchemaChange {
            version: id,
            change: format!(
                "input width {old_w} -> {new_w}: queued events have the old width, so a \
                 running runtime keeps its width; start a new runtime for this model"
            ),
        });
    }
    if allow {
        return Ok(());
    }
    let mut changes = Vec::new();
    let (old_names, new_names) = (&live.lineage.feature_names, &new.lineage.feature_names);
    if old_names != new_names {
        let first = old_names.iter().zip(new_names).position(|(a, b)| a != b).unwrap_or(0);
        changes.push(format!(
            "input feature {first} is `{}`, was `{}`",
            new_names.get(first).map_or("", String::as_str),
            old_names.get(first).map_or("", String::as_str)
        ));
    }
    if live.out_width != new.out_width {
        changes.push(format!("output width {} -> {}", live.out_width, new.out_width));
    }
    if changes.is_empty() {
        return Ok(());
    }
    Err(Error::SchemaChange {
        version: id,
        change: format!("{}; set allow_schema_change if it is intended", changes.join(", ")),
    })
}

/// A value the scoring threads read once per batch and others replace now and then (the live
/// version, the shadow): a mutex for the writers and a generation counter, so that a reader's
/// [`View`] costs one atomic load while nothing changes.
pub(crate) struct Swappable<T> {
    value: Mutex<Arc<T>>,
    /// Bumped after each store of `value`.
    generation: AtomicU64,
}

impl<T> Swappable<T> {
    pub(crate) fn new(value: Arc<T>) -> Self {
        Swappable { value: Mutex::new(value), generation: AtomicU64::new(0) }
    }

    pub(crate) fn get(&self) -> Arc<T> {
        lock(&self.value).clone()
    }

    /// Replaces the value; readers take it at their next [`View::current`]. The old one is
    /// returned, so that the caller (not a scoring thread) is the one to drop it if no view
    /// still holds it.
    pub(crate) fn set(&self, value: Arc<T>) -> Arc<T> {
        let old = std::mem::replace(&mut *lock(&self.value), value);
        // Release: a reader that sees the new generation then locks `value` and gets the new
        // one (the mutex orders the store above before its load).
        self.generation.fetch_add(1, Ordering::Release);
        old
    }

    pub(crate) fn view(&self) -> View<T> {
        let generation = self.generation.load(Ordering::Acquire);
        View { generation, value: self.get() }
    }
}

/// A reader's copy of a [`Swappable`] value, refreshed when its generation moved.
pub(crate) struct View<T> {
    generation: u64,
    value: Arc<T>,
}

impl<T> View<T> {
    /// The value, taken afresh when it changed since the last call.
    #[inline]
    pub(crate) fn current(&mut self, published: &Swappable<T>) -> &Arc<T> {
        let generation = published.generation.load(Ordering::Acquire);
        if generation != self.generation {
            self.generation = generation;
            self.value = published.get();
        }
        &self.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::Reference;

    fn version(id: u64) -> Version {
        let forest = crate::load_forest("models/golden/lgb_binary/model.txt").unwrap();
        let lineage = Lineage {
            version: id,
            source: "test".into(),
            sha256: Some(format!("{id}")),
            format: "LightGBM text".into(),
            objective: None,
            trees: None,
            layers: None,
            feature_names: forest.feature_names.clone(),
            feature_spec_hash: None,
            backend: "reference".into(),
            load_time: Default::default(),
            warmup_time: Default::default(),
            loaded_at: std::time::SystemTime::now(),
        };
        Version {
            backend: Arc::new(Reference::new(forest)),
            out_width: 1,
            lineage: Arc::new(lineage),
        }
    }

    #[test]
    fn a_version_a_scoring_thread_still_holds_is_freed_by_the_next_swap_not_by_it() {
        let registry = Registry::new(version(1), 1);
        let mut view = registry.view();
        let one = Arc::downgrade(view.current(registry.published()));
        registry.install(version(2), false).unwrap();
        // Version 1 is no longer kept and the view holds it: the registry holds it too, so
        // the view's refresh does not free it.
        assert_eq!((registry.kept_ids(), registry.retired_len()), (vec![2], 1));
        assert_eq!(view.current(registry.published()).id(), 2);
        assert!(one.upgrade().is_some(), "not freed by the scoring thread's refresh");
        registry.install(version(3), false).unwrap();
        assert!(one.upgrade().is_none(), "freed by the next swap");
        // Version 2 is still in the view: parked, freed at a later swap.
        assert_eq!(registry.retired_len(), 1);
        assert_eq!(registry.kept_ids(), vec![3]);
    }
}
