//! Model lifecycle on a running runtime: swap, rollback, the kept versions, the shadow, and
//! the thread that watches a model directory. Loading and warm-up run on a loader thread in
//! the idle scheduling class, started by the caller (or the watcher); the runtime's threads
//! only see the new version at their next batch.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;

use crossbeam_channel::{RecvTimeoutError, Sender};

use super::{RowFlow, Runtime, Shared};
use crate::error::{Error, Result};
use crate::metrics::ShadowSnapshot;
use crate::registry::load::{LoadOptions, Source};
use crate::registry::shadow::Shadow;
use crate::registry::split::Active;
use crate::registry::watch::{Action, Watch};
use crate::registry::{Lineage, ModelUpdate, ShadowConfig, Split, Version, load};

impl Runtime {
    /// Replaces the live model while events flow: loads, validates and warms up `update` on
    /// a loader thread in the idle scheduling class (the call waits for it), then makes it
    /// live; each scoring thread takes it at its next
    /// batch, so every event is scored by exactly one version and its answer names it.
    /// Returns the new live version number.
    ///
    /// On any error (the file does not load or validate, fails its warm-up, changes the
    /// schema without [`ModelUpdate::allow_schema_change`]) the serving version stays, the
    /// `swap_failures` counter counts it and a warning is logged. The previous versions are
    /// kept for [`rollback`](Runtime::rollback), up to `keep_versions`.
    pub fn swap(&self, update: ModelUpdate) -> Result<u64> {
        swap(&self.pipeline.shared, update)
    }

    /// Makes a kept version live again, at once (it is loaded and warm).
    pub fn rollback(&self, version: u64) -> Result<()> {
        rollback(&self.pipeline.shared, version)
    }

    /// Loads, validates and warms up a version as [`swap`](Runtime::swap) does, and keeps it
    /// without making it live: for a [`Split`], or a later [`rollback`](Runtime::rollback) to
    /// it. It takes a place among the `keep_versions` kept (the oldest one that is not live
    /// goes when they are full; a version a split serves is still served). Returns its number.
    pub fn load(&self, update: ModelUpdate) -> Result<u64> {
        let sh = &*self.pipeline.shared;
        if sh.is_closed() {
            return Err(Error::Closed);
        }
        let registry = &sh.flow.registry;
        let allow_schema_change = update.allow_schema_change;
        let loaded = load_off_thread(sh, &registry.live(), update)?;
        let id = registry.keep(loaded, allow_schema_change)?;
        log::info!("model version {id} is loaded (not live)");
        Ok(id)
    }

    /// Splits traffic between kept versions by key hash ([`Split`]): from the next batch on,
    /// each event is scored by its variant's version, and its answer names that version. Call
    /// it again with other weights to ramp a canary; the same key stays in the same variant for
    /// the same weights, and keys only move into a variant whose weight grows at the end of
    /// the list. While a split is in service it picks every event's version; the live version
    /// ([`swap`](Runtime::swap), [`rollback`](Runtime::rollback)) serves all events again after
    /// [`clear_split`](Runtime::clear_split). Every variant must take the live version's input
    /// and output widths. Per-variant counts, mean score and latency are in
    /// [`MetricsSnapshot::variants`](crate::MetricsSnapshot::variants).
    pub fn set_split(&self, split: Split) -> Result<()> {
        split.validate()?;
        let sh = &*self.pipeline.shared;
        if sh.is_closed() {
            return Err(Error::Closed);
        }
        let registry = &sh.flow.registry;
        let live = registry.live();
        let mut versions = Vec::with_capacity(split.variants().len());
        for v in split.variants() {
            let version = registry.kept(v.version).ok_or(Error::UnknownVersion(v.version))?;
            same_widths(&live, &version, "a split's variants take")?;
            versions.push(version);
        }
        let shares: Vec<String> = split
            .variants()
            .iter()
            .map(|v| format!("{}={}:{}", v.name, v.version, v.weight))
            .collect();
        let old = sh.flow.split.set(Arc::new(Some(Active::new(&split, versions))));
        self.retire_split(old);
        log::info!("traffic split: {}", shares.join(", "));
        Ok(())
    }

    /// Ends the split: the live version scores every event from the next batch on.
    pub fn clear_split(&self) {
        let old = self.flow().split.set(Arc::new(None));
        self.retire_split(old);
    }

    /// The split in service, if any.
    pub fn split(&self) -> Option<Split> {
        self.flow().split.get().as_ref().as_ref().map(Active::spec)
    }

    /// Hands a replaced split's versions to the registry, which frees those no longer kept
    /// once no scoring thread holds them (never a scoring thread).
    fn retire_split(&self, old: Arc<Option<Active>>) {
        if let Some(active) = &*old {
            self.flow().registry.park_all(active.arms.iter().map(|a| a.version.clone()));
        }
    }

    /// Starts scoring a challenger beside the live version: it is loaded and warmed like a
    /// swap, then scores the share of events [`ShadowConfig::with_fraction`] picks by key, on
    /// its own thread behind a bounded queue, and its answers are compared with the
    /// primary's ([`MetricsSnapshot::shadow`](crate::MetricsSnapshot::shadow)). The primary
    /// never waits for it: a copy that finds the queue full is dropped and counted. It must
    /// take the live version's input and output widths. Replaces a running shadow. Returns
    /// the challenger's version number.
    pub fn set_shadow(&self, config: ShadowConfig) -> Result<u64> {
        let ShadowConfig { update, settings } = config;
        settings.validate()?;
        let sh = &*self.pipeline.shared;
        if sh.is_closed() {
            return Err(Error::Closed);
        }
        let live = sh.flow.registry.live();
        let challenger = load_off_thread(sh, &live, update)?;
        same_widths(&live, &challenger, "a shadow must take")?;
        let id = challenger.id();
        if settings.audit && sh.flow.audit.is_none() {
            return Err(Error::Config(
                "the shadow's answers go to the audit log, and this runtime has none".into(),
            ));
        }
        let shadow = Shadow::start(challenger, &settings, sh.config.output, sh.flow.audit.clone())?;
        self.retire_shadow(sh.flow.shadow.set(Arc::new(Some(shadow))));
        log::info!("model version {id} scores in shadow of version {}", live.id());
        Ok(id)
    }

    /// Stops the shadow, after it has compared what it was handed; its last report stays in
    /// the metrics.
    pub fn clear_shadow(&self) {
        let old = self.flow().shadow.set(Arc::new(None));
        self.retire_shadow(old);
    }

    /// Closes a replaced shadow and keeps its last report.
    fn retire_shadow(&self, old: Arc<Option<Shadow>>) {
        if let Some(shadow) = &*old {
            shadow.close();
            *self.last_shadow.lock().unwrap_or_else(|p| p.into_inner()) = Some(shadow.snapshot());
        }
    }

    /// The shadow's report: the running one's, else the last one's.
    pub(super) fn shadow_report(&self) -> Option<ShadowSnapshot> {
        match &*self.flow().shadow.get() {
            Some(s) => Some(s.snapshot()),
            None => self.last_shadow.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }

    /// The version answering now.
    pub fn live_version(&self) -> u64 {
        self.flow().registry.live().id()
    }

    /// The kept versions' lineage, oldest first (the live one among them).
    pub fn versions(&self) -> Vec<Lineage> {
        self.flow().registry.versions().iter().map(|l| (**l).clone()).collect()
    }

    /// Starts the thread that polls a model directory.
    pub(super) fn watch(&self, watch: Watch) -> Result<()> {
        let (stop, stopped) = crossbeam_channel::bounded::<()>(1);
        let sh = self.pipeline.shared.clone();
        let thread = std::thread::Builder::new()
            .name("streamscore-watcher".into())
            .spawn(move || {
                let mut watch = watch;
                let every = watch.dir.poll;
                // A stop message, or the handle dropped, ends it.
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                    poll(&sh, &mut watch);
                }
            })
            .map_err(|e| Error::Config(format!("cannot start the model watcher: {e}")))?;
        *self.watcher.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(Watcher { stop, thread: Some(thread) });
        Ok(())
    }

    /// Stops the model-directory watcher, if any, and waits for it.
    pub(super) fn stop_watching(&self) {
        drop(self.watcher.lock().unwrap_or_else(|p| p.into_inner()).take());
    }
}

/// The watcher thread's handle: dropping it stops the thread and waits for it.
pub(super) struct Watcher {
    stop: Sender<()>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.stop.try_send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn swap(sh: &Shared<RowFlow>, update: ModelUpdate) -> Result<u64> {
    let result = try_swap(sh, update);
    let counters = &sh.metrics.counters;
    match &result {
        Ok(v) => {
            counters.swaps.fetch_add(1, Ordering::Relaxed);
            log::info!("model version {v} is live");
        }
        Err(e) => {
            counters.swap_failures.fetch_add(1, Ordering::Relaxed);
            log::warn!("a new model version stays out of service: {e}");
        }
    }
    result
}

fn try_swap(sh: &Shared<RowFlow>, update: ModelUpdate) -> Result<u64> {
    if sh.is_closed() {
        return Err(Error::Closed);
    }
    let registry = &sh.flow.registry;
    let allow_schema_change = update.allow_schema_change;
    let loaded = load_off_thread(sh, &registry.live(), update)?;
    registry.install(loaded, allow_schema_change)
}

/// Makes a kept version live again; a change of the live version is counted and logged.
fn rollback(sh: &Shared<RowFlow>, version: u64) -> Result<()> {
    let before = sh.flow.registry.live().id();
    sh.flow.registry.rollback(version)?;
    if before != version {
        sh.metrics.counters.swaps.fetch_add(1, Ordering::Relaxed);
        log::info!("model version {version} is live again (rolled back from {before})");
    }
    Ok(())
}

/// Refuses a version that scores beside the live one (a shadow, a split's variant) with other
/// input or output widths; `who` starts the message.
fn same_widths(live: &Version, other: &Version, who: &str) -> Result<()> {
    let (w, ow) = (other.backend.n_features(), other.out_width);
    let (lw, low) = (live.backend.n_features(), live.out_width);
    if (w, ow) == (lw, low) {
        return Ok(());
    }
    Err(Error::SchemaChange {
        version: other.id(),
        change: format!(
            "{who} the live version's widths: input {w} (live {lw}), output {ow} (live {low})"
        ),
    })
}

/// Loads a version on a loader thread of its own, in the idle scheduling class: on a busy
/// machine the load and warm-up take the CPU the runtime's threads leave idle, not theirs.
fn load_off_thread(sh: &Shared<RowFlow>, live: &Version, update: ModelUpdate) -> Result<Version> {
    let ModelUpdate { source, version, spec, warm_up, .. } = update;
    if version.is_none() && matches!(source, Source::Model(_) | Source::Backend(_)) {
        return Err(Error::Config(
            "a loaded model or a backend needs a version number (ModelUpdate::with_version)".into(),
        ));
    }
    let opts = LoadOptions {
        spec: spec.as_ref().unwrap_or(&sh.config.backend),
        output: sh.config.output,
        batch: sh.config.max_batch.get(),
        version,
        warm_up: warm_up.as_ref(),
        feature_spec_hash: live.lineage.feature_spec_hash,
    };
    let loaded = std::thread::scope(|s| {
        let loader = std::thread::Builder::new()
            .name("streamscore-loader".into())
            .spawn_scoped(s, || {
                lower_priority();
                load(source, &opts)
            })
            .map_err(|e| Error::Config(format!("cannot start a loader thread: {e}")))?;
        loader.join().unwrap_or_else(|_| {
            let message = "the loader panicked".to_string();
            Err(Error::Backend { backend: "loader", message })
        })
    });
    let mut loaded = loaded?.version;
    if loaded.lineage.feature_names.is_empty() {
        // A backend of your own names no inputs: it takes the serving version's.
        Arc::make_mut(&mut loaded.lineage).feature_names = live.lineage.feature_names.clone();
    }
    Ok(loaded)
}

/// One poll of the model directory, and what it calls for.
fn poll(sh: &Shared<RowFlow>, watch: &mut Watch) {
    let registry = &sh.flow.registry;
    let live = registry.live().id();
    let actions = match watch.poll(live, |v| registry.is_kept(v)) {
        Ok(actions) => actions,
        Err(e) => {
            log::warn!("model directory: {e}");
            return;
        }
    };
    for action in actions {
        match action {
            Action::Load { version, entry } => {
                let mut update = ModelUpdate::path(&entry.path).with_version(version);
                update.allow_schema_change = watch.dir.allow_schema_change;
                match swap(sh, update) {
                    Ok(_) => watch.loaded(version),
                    Err(_) => watch.failed(version, entry.signature),
                }
            }
            Action::Rollback(version) => {
                // Kept when polled; a failure (retired meanwhile) leaves the live one serving.
                let _ = rollback(sh, version);
            }
            Action::Retire(version) => {
                if registry.retire(version) {
                    log::info!("model version {version} retired: its directory is gone");
                }
            }
        }
    }
}

/// Moves the calling thread to the idle scheduling class (Linux's `SCHED_IDLE`: it runs
/// when a core has nothing else to run; elsewhere a no-op). A failure leaves it as it was.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: sched_setscheduler with pid 0 changes only the calling thread's policy; the
    // pointer is to a local that outlives the call.
    unsafe {
        let param = libc::sched_param { sched_priority: 0 };
        let _ = libc::sched_setscheduler(0, libc::SCHED_IDLE, &param);
    }
}
