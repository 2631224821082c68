//! A model directory in Triton's layout, `<root>/<name>/<version>/model.{txt,json,onnx}`,
//! polled for new and removed versions. This module decides; the runtime's watcher thread
//! loads, swaps and retires.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::error::{Error, Result};

/// Which version of a model directory serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VersionPolicy {
    /// The highest-numbered version that loads and validates.
    #[default]
    Latest,
    /// This version only.
    Specific(u64),
}

/// A model directory to serve from and watch ([`RuntimeBuilder::model_dir`](crate::RuntimeBuilder::model_dir)).
///
/// Each version is a numbered directory holding one model file named `model.txt` (LightGBM),
/// `model.json` (XGBoost) or `model.onnx`. A version goes live when its file has been the
/// same (length and modification time) for one poll interval and it loads, validates and
/// warms up; a file that fails is reported (log line, `swap_failures` counter) and not tried
/// again until it changes. Copy a new version in under another name and rename it into place,
/// so it is never read half-written. A removed version directory is retired (no longer kept
/// for rollback); when it was serving, the policy picks again among what is left.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use streamscore::{ModelDir, VersionPolicy};
///
/// let dir = ModelDir::new("/srv/models", "fraud")
///     .with_policy(VersionPolicy::Latest)
///     .with_poll_interval(Duration::from_secs(2));
/// assert_eq!(dir.model_path(), std::path::Path::new("/srv/models/fraud"));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ModelDir {
    root: PathBuf,
    name: String,
    pub(crate) policy: VersionPolicy,
    pub(crate) poll: Duration,
    pub(crate) allow_schema_change: bool,
}

impl ModelDir {
    /// Model `name` under repository `root`; policy [`VersionPolicy::Latest`], polled every
    /// second.
    pub fn new(root: impl AsRef<Path>, name: impl Into<String>) -> Self {
        ModelDir {
            root: root.as_ref().to_path_buf(),
            name: name.into(),
            policy: VersionPolicy::Latest,
            poll: Duration::from_secs(1),
            allow_schema_change: false,
        }
    }

    /// Which version serves.
    pub fn with_policy(mut self, policy: VersionPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// How often the directory is read (at least 1 ms).
    pub fn with_poll_interval(mut self, every: Duration) -> Self {
        self.poll = every.max(Duration::from_millis(1));
        self
    }

    /// Lets versions whose input names or output width differ go live.
    pub fn allow_schema_change(mut self) -> Self {
        self.allow_schema_change = true;
        self
    }

    /// `<root>/<name>`, where the version directories are.
    pub fn model_path(&self) -> PathBuf {
        self.root.join(&self.name)
    }

    /// The model's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// File names a version directory may hold its model under, in the order they are looked for.
const MODEL_FILES: [&str; 3] = ["model.txt", "model.json", "model.onnx"];

/// What identifies a file's content cheaply: its length and modification time.
pub(crate) type Signature = (u64, Option<SystemTime>);

/// One version directory's model file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    pub path: PathBuf,
    pub signature: Signature,
}

/// What the watcher thread should do after a poll.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Action {
    /// Load this file as this version and swap to it.
    Load { version: u64, entry: Entry },
    /// Make this kept version live again.
    Rollback(u64),
    /// Forget this kept version: its directory is gone.
    Retire(u64),
}

/// The watcher's memory between polls.
#[derive(Debug)]
pub(crate) struct Watch {
    pub dir: ModelDir,
    /// Every version's signature at the last poll.
    last: BTreeMap<u64, Entry>,
    /// Versions that failed to load, with the signature that failed.
    failed: HashMap<u64, Signature>,
    /// Versions loaded from the directory (the only ones it retires).
    loaded: HashSet<u64>,
}

impl Watch {
    pub(crate) fn new(dir: ModelDir) -> Self {
        Watch { dir, last: BTreeMap::new(), failed: HashMap::new(), loaded: HashSet::new() }
    }

    /// Lists the version directories that hold a model file.
    pub(crate) fn scan(&self) -> Result<BTreeMap<u64, Entry>> {
        let dir = self.dir.model_path();
        let listing = std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))?;
        let mut versions = BTreeMap::new();
        for entry in listing.flatten() {
            let Some(version) = entry.file_name().to_str().and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            for file in MODEL_FILES {
                let path = entry.path().join(file);
                if let Ok(meta) = std::fs::metadata(&path)
                    && meta.is_file()
                {
                    let signature = (meta.len(), meta.modified().ok());
                    versions.insert(version, Entry { path, signature });
                    break;
                }
            }
        }
        Ok(versions)
    }

    /// The versions the policy may serve, best first.
    fn wanted<'a>(&self, now: &'a BTreeMap<u64, Entry>) -> Vec<(u64, &'a Entry)> {
        match self.dir.policy {
            VersionPolicy::Latest => now.iter().rev().map(|(v, e)| (*v, e)).collect(),
            VersionPolicy::Specific(v) => now.get(&v).map(|e| (v, e)).into_iter().collect(),
        }
    }

    /// The version to start with: the policy's best (no stability wait: the directory is
    /// taken as it is when the runtime starts). The caller tries them in order.
    pub(crate) fn initial(&mut self) -> Result<Vec<(u64, Entry)>> {
        let now = self.scan()?;
        let wanted: Vec<(u64, Entry)> =
            self.wanted(&now).into_iter().map(|(v, e)| (v, e.clone())).collect();
        self.last = now;
        if wanted.is_empty() {
            return Err(Error::Config(format!(
                "model directory {}: no version directory with a model file ({}) for policy {:?}",
                self.dir.model_path().display(),
                MODEL_FILES.join(", "),
                self.dir.policy
            )));
        }
        Ok(wanted)
    }

    /// Records that `version` loaded (and is now kept).
    pub(crate) fn loaded(&mut self, version: u64) {
        self.failed.remove(&version);
        self.loaded.insert(version);
    }

    /// Records that `version`'s file failed to load: not tried again until it changes.
    pub(crate) fn failed(&mut self, version: u64, signature: Signature) {
        self.failed.insert(version, signature);
    }

    /// Reads the directory and says what to do: retire what was removed, then at most one
    /// change of the live version. `live` serves now; `kept` says whether a version is kept.
    pub(crate) fn poll(&mut self, live: u64, kept: impl Fn(u64) -> bool) -> Result<Vec<Action>> {
        let now = self.scan()?;
        let mut actions = Vec::new();
        for (version, entry) in self.wanted(&now) {
            if self.failed.get(&version) == Some(&entry.signature) {
                continue;
            }
            if version == live {
                break;
            }
            if kept(version) {
                actions.push(Action::Rollback(version));
                break;
            }
            // A file still changing (or new since the last poll) waits for the next poll
            // rather than letting an older version go live meanwhile.
            if self.last.get(&version) == Some(entry) {
                actions.push(Action::Load { version, entry: entry.clone() });
            }
            break;
        }
        let replaced = !actions.is_empty();
        let gone: Vec<u64> = self.loaded.iter().copied().filter(|v| !now.contains_key(v)).collect();
        for v in gone {
            // The serving version's directory is gone and nothing replaces it yet: it keeps
            // serving, and is retired once something does.
            if v != live || replaced {
                self.loaded.remove(&v);
                actions.push(Action::Retire(v));
            }
        }
        self.last = now;
        Ok(actions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, version: u64, text: &str) {
        let dir = root.join("m").join(version.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("model.txt"), text).unwrap();
    }

    #[test]
    fn a_new_version_loads_once_its_file_is_stable_and_a_failure_waits_for_a_change() {
        let root = std::env::temp_dir().join(format!("ss-watch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        write(&root, 1, "one");
        let mut w = Watch::new(ModelDir::new(&root, "m"));
        let first = w.initial().unwrap();
        assert_eq!(first[0].0, 1);
        w.loaded(1);
        assert!(w.poll(1, |v| v == 1).unwrap().is_empty());
        write(&root, 3, "three");
        // New since the last poll: not yet.
        assert!(w.poll(1, |v| v == 1).unwrap().is_empty());
        let actions = w.poll(1, |v| v == 1).unwrap();
        let Action::Load { version: 3, entry } = &actions[0] else { panic!("{actions:?}") };
        w.failed(3, entry.signature);
        assert!(w.poll(1, |v| v == 1).unwrap().is_empty(), "a failed file is not retried");
        write(&root, 3, "three, fixed");
        let _ = w.poll(1, |v| v == 1).unwrap();
        assert!(matches!(w.poll(1, |v| v == 1).unwrap()[..], [Action::Load { version: 3, .. }]));
        w.loaded(3);
        // Version 3 removed while serving: back to the kept 1.
        std::fs::remove_dir_all(root.join("m/3")).unwrap();
        assert_eq!(w.poll(3, |v| v <= 3).unwrap(), vec![Action::Rollback(1), Action::Retire(3)]);
        // Version 3 back; then version 1 removed while 3 serves: retired.
        write(&root, 3, "three again");
        assert!(w.poll(1, |v| v == 1).unwrap().is_empty());
        assert_eq!(
            w.poll(1, |v| v == 1).unwrap()[..1],
            [Action::Load { version: 3, entry: w.scan().unwrap()[&3].clone() }]
        );
        w.loaded(3);
        std::fs::remove_dir_all(root.join("m/1")).unwrap();
        assert_eq!(w.poll(3, |v| v <= 3).unwrap(), vec![Action::Retire(1)]);
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn a_pinned_policy_serves_only_its_version() {
        let root = std::env::temp_dir().join(format!("ss-watch-pin-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        write(&root, 1, "one");
        write(&root, 2, "two");
        let mut w = Watch::new(ModelDir::new(&root, "m").with_policy(VersionPolicy::Specific(1)));
        assert_eq!(w.initial().unwrap().iter().map(|e| e.0).collect::<Vec<_>>(), vec![1]);
        w.loaded(1);
        assert!(w.poll(1, |v| v == 1).unwrap().is_empty());
        assert!(
            Watch::new(ModelDir::new(&root, "m").with_policy(VersionPolicy::Specific(9)))
                .initial()
                .is_err()
        );
        let _ = std::fs::remove_dir_all(&root);
    }
}
