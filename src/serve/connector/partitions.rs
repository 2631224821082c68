//! Feature state that moves with its partitions, for a source whose partitions move between
//! instances (a Kafka consumer group; NATS subjects moved by hand): each partition's keys are
//! checkpointed on their own, taken in when the partition is assigned here (for NATS: at
//! start, for each subject configured), and dropped when it is revoked.
//!
//! A key belongs to the partition its events come from (the producer keys them, so each key
//! has one). The checkpoint of partition `p` is `<checkpoint.dir>/partitions/<p>/features-<position>.snap`,
//! the ordinary snapshot format holding only `p`'s keys, stamped with the last position of
//! `p` whose answer is confirmed; the newest `keep` are kept. The directory is shared by every
//! instance of the group (a shared file system here; an object store's prefix per partition
//! in production), and an instance only writes the partitions it holds.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::runtime::Runtime;
use crate::serve::checkpoint::{self, CheckpointConfig};

/// One partition's bookkeeping.
#[derive(Debug, Default, Clone, Copy)]
struct Held {
    /// The last position whose answer is confirmed.
    published: Option<u64>,
    /// The position its newest checkpoint covers.
    checkpointed: Option<u64>,
}

/// What a restore took in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Restored {
    /// The position the checkpoint covers: messages up to it are in the state.
    pub position: u64,
    /// Keys taken in.
    pub keys: usize,
    /// How long reading and merging took.
    pub took: Duration,
}

/// Per partition, its keys' checkpoints and where they stand.
pub(crate) struct Partitions {
    rt: Arc<Runtime>,
    root: PathBuf,
    keep: usize,
    /// Partition names and their numbers here.
    names: Vec<String>,
    index: HashMap<String, u32>,
    held: BTreeMap<u32, Held>,
    /// Per key, the partition its latest event came from.
    owner: HashMap<u64, u32>,
    /// Keys whose events came from more than one partition (the producer does not key by
    /// the event key): their state goes with the latest.
    pub(crate) strays: u64,
}

impl Partitions {
    pub(crate) fn new(rt: Arc<Runtime>, config: &CheckpointConfig) -> Self {
        Partitions {
            rt,
            root: config.dir.join("partitions"),
            keep: config.keep.max(1),
            names: Vec::new(),
            index: HashMap::new(),
            held: BTreeMap::new(),
            owner: HashMap::new(),
            strays: 0,
        }
    }

    fn number(&mut self, partition: &str) -> u32 {
        if let Some(&n) = self.index.get(partition) {
            return n;
        }
        let n = self.names.len() as u32;
        self.names.push(partition.to_string());
        self.index.insert(partition.to_string(), n);
        n
    }

    /// Where `partition`'s checkpoints go; its name's parts must be plain names.
    fn dir(&self, partition: &str) -> Result<PathBuf> {
        let parts: Vec<&str> = partition.split('/').collect();
        if parts.iter().any(|p| p.is_empty() || *p == "." || *p == ".." || p.contains('\\')) {
            return Err(Error::Config(format!("partition {partition:?}: not a plain name")));
        }
        Ok(parts.iter().fold(self.root.clone(), |d, p| d.join(p)))
    }

    /// Records answers confirmed: for each, its partition, position and event key (`None`
    /// for a message that held no event).
    pub(crate) fn published<'a>(
        &mut self,
        answered: impl Iterator<Item = (&'a str, &'a str, Option<u64>)>,
    ) {
        let mut last: Option<(&str, u32)> = None;
        for (partition, position, key) in answered {
            let n = match last {
                Some((name, n)) if name == partition => n,
                _ => self.number(partition),
            };
            last = Some((partition, n));
            if let Ok(p) = position.parse::<u64>() {
                let held = self.held.entry(n).or_default();
                held.published = Some(held.published.map_or(p, |q| q.max(p)));
            }
            if let Some(k) = key
                && self.owner.insert(k, n).is_some_and(|before| before != n)
            {
                self.strays += 1;
            }
        }
    }

    /// Checkpoints each partition held here (or only those in `only`) with answers newer
    /// than its last checkpoint. Returns, per partition written, its name and position.
    pub(crate) fn checkpoint(&mut self, only: Option<&[String]>) -> Result<Vec<(String, u64)>> {
        let mut written = Vec::new();
        let numbers: Vec<u32> = match only {
            Some(names) => names.iter().filter_map(|p| self.index.get(p).copied()).collect(),
            None => self.held.keys().copied().collect(),
        };
        for n in numbers {
            let Some(held) = self.held.get(&n).copied() else { continue };
            let Some(position) = held.published else { continue };
            if held.checkpointed.is_some_and(|c| c >= position) {
                continue;
            }
            let name = self.names[n as usize].clone();
            let dir = self.dir(&name)?;
            let owner = &self.owner;
            let Some(snap) =
                self.rt.snapshot_features_where(Some(position), |k| owner.get(&k) == Some(&n))
            else {
                return Ok(written);
            };
            let (path, took) = checkpoint::write(&dir, &snap, self.keep)?;
            log::info!(
                "partition {name}: checkpoint {} ({} bytes, position {position}) in {took:?}",
                path.display(),
                snap.bytes.len()
            );
            self.held.entry(n).or_default().checkpointed = Some(position);
            written.push((name, position));
        }
        Ok(written)
    }

    /// Takes in `partition`'s newest good checkpoint (none: its keys start empty) and
    /// records the partition as held here.
    pub(crate) fn restore(&mut self, partition: &str) -> Result<Option<Restored>> {
        let n = self.number(partition);
        let dir = self.dir(partition)?;
        let start = Instant::now();
        let rt = &self.rt;
        let found = checkpoint::newest_good(&dir, |bytes| match rt.merge_features(bytes) {
            Some(r) => r,
            None => Err(Error::Config("no feature stage to restore into".into())),
        })?;
        let held = self.held.entry(n).or_default();
        let Some(((position, keys), path)) = found else {
            return Ok(None);
        };
        held.checkpointed = Some(position);
        held.published = Some(held.published.map_or(position, |p| p.max(position)));
        for &k in &keys {
            self.owner.insert(k, n);
        }
        let restored = Restored { position, keys: keys.len(), took: start.elapsed() };
        log::info!(
            "partition {partition}: {} keys restored from {} (position {position}) in {:?}",
            restored.keys,
            path.display(),
            restored.took
        );
        Ok(Some(restored))
    }

    /// Drops `partition`'s keys from the feature stage (it moved to another instance);
    /// returns how many.
    pub(crate) fn forget(&mut self, partition: &str) -> usize {
        let Some(&n) = self.index.get(partition) else { return 0 };
        self.held.remove(&n);
        let owner = &self.owner;
        let dropped = self.rt.forget_features(|k| owner.get(&k) == Some(&n));
        self.owner.retain(|_, p| *p != n);
        dropped
    }
}
