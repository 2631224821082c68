//! Feature-state checkpoints: the feature stage's snapshot written periodically and on
//! shutdown to `<dir>/features-<position>.snap`, and the latest good one restored at start.
//!
//! A snapshot is copied under the feature stage's lock (scoring pauses that long; the pause
//! is logged and counted) and written off it: to a temporary file, fsynced, renamed into
//! place, the directory fsynced, so a crash leaves either the old set or the new file whole.
//! At start the newest file that passes its checksum and matches the spec wins; a corrupt or
//! partial one is reported and the one before it is tried.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::features::{Features, Snapshot, Spec};

/// `[checkpoint]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointConfig {
    /// Where snapshots are kept.
    pub dir: PathBuf,
    /// Seconds between snapshots (default 30); one is always written on shutdown.
    #[serde(default = "default_every")]
    pub every_s: u64,
    /// Snapshots kept (default 3, at least 1): older ones are deleted.
    #[serde(default = "default_keep")]
    pub keep: usize,
}

impl CheckpointConfig {
    /// Checkpoints in `dir`, every 30 s, the newest 3 kept.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        CheckpointConfig { dir: dir.into(), every_s: default_every(), keep: default_keep() }
    }
}

fn default_every() -> u64 {
    30
}

fn default_keep() -> usize {
    3
}

/// A snapshot file is read whole; refuse what no feature state of ours reaches.
const MAX_SNAPSHOT_BYTES: u64 = 1 << 36;

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::Io { path: path.to_path_buf(), source: e }
}

fn position_of(name: &str) -> Option<u64> {
    name.strip_prefix("features-")?.strip_suffix(".snap")?.parse().ok()
}

/// Snapshot files in `dir`, newest position first.
fn listed(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(io(dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io(dir))?;
        if let Some(p) = entry.file_name().to_str().and_then(position_of) {
            found.push((p, entry.path()));
        }
    }
    found.sort_by_key(|f| std::cmp::Reverse(f.0));
    Ok(found)
}

/// The newest snapshot in `dir` that restores, with its position and file; `None` when there
/// is none. Each one that fails is logged and skipped.
pub(crate) fn restore_latest(dir: &Path, spec: &Spec) -> Result<Option<(Features, u64, PathBuf)>> {
    let found = newest_good(dir, |bytes| Features::restore(spec.clone(), bytes))?;
    Ok(found.map(|((stage, position), path)| (stage, position, path)))
}

/// The first snapshot in `dir`, newest first, that `read` takes, with its file; each one
/// it refuses (or too large to be ours) is logged and the one before it tried.
pub(crate) fn newest_good<T>(
    dir: &Path,
    mut read: impl FnMut(&[u8]) -> Result<T>,
) -> Result<Option<(T, PathBuf)>> {
    for (_, path) in listed(dir)? {
        let len = std::fs::metadata(&path).map_err(io(&path))?.len();
        if len > MAX_SNAPSHOT_BYTES {
            log::warn!("{}: {len} bytes, over {MAX_SNAPSHOT_BYTES}; skipped", path.display());
            continue;
        }
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        match read(&bytes) {
            Ok(t) => return Ok(Some((t, path))),
            Err(e) => log::warn!("{}: {e}; trying the one before", path.display()),
        }
    }
    Ok(None)
}

/// Writes a snapshot into `dir` atomically and deletes all but the newest `keep`. Returns the
/// file and how long writing took.
pub(crate) fn write(dir: &Path, snap: &Snapshot, keep: usize) -> Result<(PathBuf, Duration)> {
    use std::io::Write;
    let start = Instant::now();
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let path = dir.join(format!("features-{:020}.snap", snap.position));
    let tmp = dir.join(format!(".features-{:020}.snap.tmp", snap.position));
    {
        let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(&snap.bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
    }
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    for (_, old) in listed(dir)?.into_iter().skip(keep.max(1)) {
        if let Err(e) = std::fs::remove_file(&old) {
            log::warn!("{}: cannot delete an old snapshot: {e}", old.display());
        }
    }
    Ok((path, start.elapsed()))
}

/// Takes and writes one snapshot of `rt`'s feature stage (nothing without one), at the
/// position `at` (a source's lines) or else at the events the stage has computed.
pub(crate) fn checkpoint(
    rt: &crate::Runtime,
    c: &CheckpointConfig,
    at: Option<u64>,
) -> Result<Option<u64>> {
    let snap = match at {
        Some(p) => rt.snapshot_features_at(p),
        None => rt.snapshot_features(),
    };
    let Some(snap) = snap else { return Ok(None) };
    let (path, took) = write(&c.dir, &snap, c.keep)?;
    log::info!(
        "checkpoint {}: {} bytes at position {}, scoring paused {:?}, written in {took:?}",
        path.display(),
        snap.bytes.len(),
        snap.position,
        snap.pause
    );
    Ok(Some(snap.position))
}

/// [`checkpoint`], its failure logged and printed rather than returned (the checkpoint
/// thread and shutdown have no caller to hand it to; scoring goes on).
pub(crate) fn checkpoint_or_log(rt: &crate::Runtime, c: &CheckpointConfig, at: Option<u64>) {
    if let Err(e) = checkpoint(rt, c, at) {
        log::error!("checkpoint failed: {e}");
        eprintln!("streamscore serve: checkpoint failed: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_good_snapshot_wins_and_old_ones_go() {
        let dir = std::env::temp_dir().join(format!("streamscore-ckpt-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let spec = Spec::from_toml(
            "[events]\nkey = \"k\"\ntime = \"t\"\nnumeric = [\"x\"]\n\
             [[feature]]\nname = \"n\"\nop = \"count\"\nwindow = \"1h\"\n",
        )
        .unwrap();
        let mut f = Features::new(spec.clone());
        for i in 0..4u64 {
            f.transform_rows(&[1.0], &[i], &[1_000 * i as i64]).unwrap();
            let mut bytes = Vec::new();
            f.snapshot(i + 1, &mut bytes).unwrap();
            let snap = Snapshot { bytes, position: i + 1, pause: Duration::ZERO };
            write(&dir, &snap, 2).unwrap();
        }
        let names: Vec<u64> = listed(&dir).unwrap().iter().map(|x| x.0).collect();
        assert_eq!(names, vec![4, 3]);
        assert_eq!(restore_latest(&dir, &spec).unwrap().unwrap().1, 4);
        // The newest torn: the one before it is restored.
        let newest = dir.join(format!("features-{:020}.snap", 4));
        let bytes = std::fs::read(&newest).unwrap();
        std::fs::write(&newest, &bytes[..bytes.len() - 3]).unwrap();
        let (stage, pos, _) = restore_latest(&dir, &spec).unwrap().unwrap();
        assert_eq!((pos, stage.live_keys()), (3, 3));
        assert!(restore_latest(&dir.join("none"), &spec).unwrap().is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
