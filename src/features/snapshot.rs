//! The feature stage's whole state as one versioned, checksummed snapshot: every live key's
//! history, watermark, previous event time and EWMA states, the stage's clock and counters,
//! and the input position the snapshot covers (opaque to us: an offset, a count of events).
//!
//! Layout (little-endian): `b"SSFSNAP\0"`, format version `u32`, the spec's hash `u64`,
//! position `u64`, clock `i64`, six counters `u64`, slots per event `u32`, EWMA states per key
//! `u32`, keys `u64`; per key: key `u64`, watermark `i64`, previous `i64`, events `u32`, their
//! times `i64`, their values `f32` (`slots` each), its EWMA states (`f64` value, `i64` time);
//! then the SHA-256 of everything before it. A file cut short or changed anywhere fails the
//! checksum; every count is checked against the bytes left before anything is allocated.
//! Slot numbers are not kept: nothing a feature computes depends on them (eviction picks by
//! watermark, ties by key), so a restored stage computes what the original would have.

use sha2::{Digest, Sha256};

use super::state::Store;
use super::{Features, spec_hash};
use crate::error::{Error, Result};

/// A snapshot taken from a running runtime ([`Runtime::snapshot_features`](crate::Runtime::snapshot_features)).
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The snapshot file's bytes ([`Features::restore`] reads them).
    pub bytes: Vec<u8>,
    /// The position it covers: events the stage had computed.
    pub position: u64,
    /// How long the feature stage (and so scoring) waited while it was copied.
    pub pause: std::time::Duration,
}

const MAGIC: &[u8; 8] = b"SSFSNAP\0";
const FORMAT: u32 = 2;
const HEADER: usize = 8 + 4 + 8 + 8 + 8 + 7 * 8 + 4 + 4 + 8;
const DIGEST: usize = 32;

fn bad(message: impl Into<String>) -> Error {
    Error::Input { at: "feature snapshot".into(), message: message.into() }
}

/// Reads little-endian values off the front of a byte slice, each read checked.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(bad(format!("cut short: {n} bytes needed, {} left", self.0.len())));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
}

impl Features {
    /// Writes the stage's whole state, stamped with `position` (the input position it covers),
    /// to `out`. Returns the bytes written.
    pub fn snapshot(&self, position: u64, out: &mut impl std::io::Write) -> Result<u64> {
        let mut buf = Vec::with_capacity(self.state_bytes() + 4096);
        self.snapshot_body(position, &mut buf);
        seal(&mut buf);
        out.write_all(&buf)
            .map_err(|e| Error::Io { path: "feature snapshot".into(), source: e })?;
        Ok(buf.len() as u64)
    }

    /// The snapshot without its checksum, appended to `buf`: the part that must be taken
    /// while the stage holds still. [`seal`] finishes it.
    pub(crate) fn snapshot_body(&self, position: u64, buf: &mut Vec<u8>) {
        self.snapshot_body_where(position, buf, |_| true);
    }

    /// [`snapshot_body`](Features::snapshot_body) of the keys `keep` says yes to (a
    /// partition's keys, which move with it to another instance; [`Features::merge`] takes
    /// them in there).
    pub(crate) fn snapshot_body_where(
        &self,
        position: u64,
        buf: &mut Vec<u8>,
        keep: impl Fn(u64) -> bool,
    ) {
        let spec = &self.spec;
        let slots = spec.slots.len();
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&FORMAT.to_le_bytes());
        buf.extend_from_slice(&spec_hash(spec).to_le_bytes());
        buf.extend_from_slice(&position.to_le_bytes());
        buf.extend_from_slice(&self.clock.to_le_bytes());
        let c = &self.counters;
        for v in [
            c.events,
            c.late_rejected,
            c.late_included,
            c.expired_keys,
            c.evicted_keys,
            c.dropped_events,
            c.stale,
        ] {
            buf.extend_from_slice(&v.to_le_bytes());
        }
        buf.extend_from_slice(&(slots as u32).to_le_bytes());
        buf.extend_from_slice(&(spec.n_ewma as u32).to_le_bytes());
        // The count is written once the keys kept are known.
        let count_at = buf.len();
        buf.extend_from_slice(&0u64.to_le_bytes());
        let mut count = 0u64;
        for (key, state, ewma) in self.keys.entries().filter(|(k, _, _)| keep(*k)) {
            count += 1;
            buf.extend_from_slice(&key.to_le_bytes());
            buf.extend_from_slice(&state.watermark.to_le_bytes());
            buf.extend_from_slice(&state.previous_raw().to_le_bytes());
            let times = state.times();
            buf.extend_from_slice(&(times.len() as u32).to_le_bytes());
            put_le(buf, times, state.values(slots));
            for (v, t) in ewma {
                buf.extend_from_slice(&v.to_le_bytes());
                buf.extend_from_slice(&t.to_le_bytes());
            }
        }
        buf[count_at..count_at + 8].copy_from_slice(&count.to_le_bytes());
    }

    /// Takes in the keys of a snapshot (of this spec, checked as [`Features::restore`]
    /// checks it) beside the keys already here: a key in both gets the snapshot's state; the
    /// clock becomes the later of the two; this stage's counters stay its own. Returns the
    /// snapshot's position and its keys. Nothing changes when the snapshot is refused.
    pub fn merge(&mut self, bytes: &[u8]) -> Result<(u64, Vec<u64>)> {
        let (other, position) = Features::restore(self.spec.clone(), bytes)?;
        let slots = self.spec.slots.len();
        let mut keys = Vec::with_capacity(other.keys.len());
        for (key, state, ewma) in other.keys.entries() {
            if let Some(slot) = self.keys.slot(key) {
                self.keys.remove(slot);
            }
            self.keys
                .restore_key(
                    key,
                    state.watermark,
                    state.previous_raw(),
                    state.times(),
                    state.values(slots),
                    ewma,
                )
                .map_err(bad)?;
            keys.push(key);
        }
        self.clock = self.clock.max(other.clock);
        Ok((position, keys))
    }

    /// Removes the keys `drop` says yes to (a partition that moved to another instance);
    /// returns how many.
    pub fn forget(&mut self, drop: impl Fn(u64) -> bool) -> usize {
        let slots: Vec<u32> = self
            .keys
            .entries()
            .filter(|(k, _, _)| drop(*k))
            .filter_map(|(k, _, _)| self.keys.slot(k))
            .collect();
        for &slot in &slots {
            self.keys.remove(slot);
        }
        slots.len()
    }

    /// A stage for `spec` with the state of a snapshot, and the position the snapshot covers.
    /// A snapshot of another spec, another format version, or with any byte changed or
    /// missing is refused.
    pub fn restore(
        spec: impl Into<std::sync::Arc<super::Spec>>,
        bytes: &[u8],
    ) -> Result<(Features, u64)> {
        let mut stage = Features::new(spec);
        if bytes.len() < HEADER + DIGEST {
            return Err(bad(format!("{} bytes: too short to be a snapshot", bytes.len())));
        }
        let (body, digest) = bytes.split_at(bytes.len() - DIGEST);
        if !body.starts_with(MAGIC) {
            return Err(bad("not a feature snapshot (wrong magic)"));
        }
        if Sha256::digest(body).as_slice() != digest {
            return Err(bad("checksum mismatch: the file is partial or corrupt"));
        }
        let mut r = Reader(&body[MAGIC.len()..]);
        let format = r.u32()?;
        if format != FORMAT {
            return Err(bad(format!("format version {format}; this build reads {FORMAT}")));
        }
        let spec = stage.spec.clone();
        if r.u64()? != spec_hash(&spec) {
            return Err(bad("written for another feature spec"));
        }
        let position = r.u64()?;
        stage.clock = r.i64()?;
        let c = &mut stage.counters;
        for v in [
            &mut c.events,
            &mut c.late_rejected,
            &mut c.late_included,
            &mut c.expired_keys,
            &mut c.evicted_keys,
            &mut c.dropped_events,
            &mut c.stale,
        ] {
            *v = r.u64()?;
        }
        let (slots, n_ewma) = (r.u32()? as usize, r.u32()? as usize);
        if slots != spec.slots.len() || n_ewma != spec.n_ewma {
            return Err(bad("slot or EWMA counts differ from the spec's"));
        }
        let n_keys = r.u64()?;
        // The smallest key record is 28 bytes plus its EWMA states.
        let min_key = 28 + 16 * n_ewma as u64;
        if n_keys.saturating_mul(min_key) > r.0.len() as u64 || n_keys > spec.max_keys as u64 {
            return Err(bad(format!("{n_keys} keys cannot fit the file or the spec's max_keys")));
        }
        let mut store = Store::new(n_ewma, super::eval::n_sorted(&spec));
        let (mut times, mut values, mut ewma) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..n_keys {
            let key = r.u64()?;
            let (watermark, previous) = (r.i64()?, r.i64()?);
            let n = r.u32()? as usize;
            let need = n.checked_mul(8 + 4 * slots).ok_or_else(|| bad("event count overflows"))?;
            if need > r.0.len() || n > spec.max_events_per_key {
                return Err(bad(format!("key {key}: {n} events cannot fit the file or the spec")));
            }
            times.clear();
            values.clear();
            ewma.clear();
            for _ in 0..n {
                times.push(r.i64()?);
            }
            if times.windows(2).any(|w| w[0] > w[1]) {
                return Err(bad(format!("key {key}: event times out of order")));
            }
            for _ in 0..n * slots {
                values.push(f32::from_le_bytes(r.take(4)?.try_into().expect("4 bytes")));
            }
            for _ in 0..n_ewma {
                ewma.push((f64::from_le_bytes(r.take(8)?.try_into().expect("8 bytes")), r.i64()?));
            }
            store.restore_key(key, watermark, previous, &times, &values, &ewma).map_err(bad)?;
        }
        if !r.0.is_empty() {
            return Err(bad(format!("{} bytes after the last key", r.0.len())));
        }
        stage.keys = store;
        Ok((stage, position))
    }
}

/// Appends the SHA-256 of everything in `buf`, finishing a snapshot.
pub(crate) fn seal(buf: &mut Vec<u8>) {
    let digest = Sha256::digest(&buf[..]);
    buf.extend_from_slice(&digest);
}

/// A key's times and values, little-endian: one copy each where memory already is.
fn put_le(buf: &mut Vec<u8>, times: &[i64], values: &[f32]) {
    #[cfg(target_endian = "little")]
    {
        buf.extend_from_slice(bytemuck::cast_slice(times));
        buf.extend_from_slice(bytemuck::cast_slice(values));
    }
    #[cfg(not(target_endian = "little"))]
    {
        times.iter().for_each(|t| buf.extend_from_slice(&t.to_le_bytes()));
        values.iter().for_each(|v| buf.extend_from_slice(&v.to_le_bytes()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::Spec;

    fn spec() -> Spec {
        Spec::from_toml(
            r#"
            [events]
            key = "card"
            time = "ts"
            numeric = ["amount"]
            [state]
            max_events_per_key = 8
            [[feature]]
            name = "n_1h"
            op = "count"
            window = "1h"
            [[feature]]
            name = "mean_1h"
            op = "mean"
            field = "amount"
            window = "1h"
            [[feature]]
            name = "ewma"
            op = "ewma"
            field = "amount"
            half_life = "10m"
            [[feature]]
            name = "since"
            op = "since_last"
            "#,
        )
        .unwrap()
    }

    fn events(n: usize) -> (Vec<f32>, Vec<u64>, Vec<i64>) {
        let rows = (0..n).map(|i| (i % 97) as f32 * 1.5).collect();
        let keys = (0..n).map(|i| (i * 7 % 13) as u64).collect();
        let times =
            (0..n).map(|i| 1_700_000_000_000 + i as i64 * 45_000 - (i % 5) as i64 * 1000).collect();
        (rows, keys, times)
    }

    #[test]
    fn restored_stage_computes_what_the_original_does() {
        let (rows, keys, times) = events(2_000);
        let mut whole = Features::new(spec());
        let all = whole.transform_rows(&rows, &keys, &times).unwrap().values;
        let cut = 1_234;
        let mut first = Features::new(spec());
        first.transform_rows(&rows[..cut], &keys[..cut], &times[..cut]).unwrap();
        let mut file = Vec::new();
        first.snapshot(cut as u64, &mut file).unwrap();
        drop(first);
        let (mut again, pos) = Features::restore(spec(), &file).unwrap();
        assert_eq!(pos, cut as u64);
        let rest = again.transform_rows(&rows[cut..], &keys[cut..], &times[cut..]).unwrap().values;
        let (n, cols) = (2_000, all.len() / 2_000);
        for c in 0..cols {
            for r in cut..n {
                let (a, b) = (all[c * n + r], rest[c * (n - cut) + r - cut]);
                assert_eq!(a.to_bits(), b.to_bits(), "feature {c} of event {r}");
            }
        }
        assert_eq!(again.counters().events, 2_000);
    }

    #[test]
    fn a_partitions_keys_move_to_another_stage_and_compute_the_same() {
        // Odd keys are one partition, even keys another: the odd ones move mid-stream.
        let (rows, keys, times) = events(2_000);
        let mut whole = Features::new(spec());
        let all = whole.transform_rows(&rows, &keys, &times).unwrap().values;
        let cut = 1_111;
        let mut here = Features::new(spec());
        here.transform_rows(&rows[..cut], &keys[..cut], &times[..cut]).unwrap();
        let mut odd = Vec::new();
        here.snapshot_body_where(cut as u64, &mut odd, |k| k % 2 == 1);
        seal(&mut odd);
        let live = here.live_keys();
        let dropped = here.forget(|k| k % 2 == 1);
        assert_eq!((dropped, here.live_keys()), (6, live - 6));
        // The new owner already holds keys of its own; the moved ones join them.
        let mut there = Features::new(spec());
        there.transform_rows(&[1.0], &[1_000], &[1_700_000_000_000]).unwrap();
        let (pos, moved) = there.merge(&odd).unwrap();
        assert_eq!((pos, moved.len(), there.live_keys()), (cut as u64, 6, 7));
        let (n, cols) = (2_000, all.len() / 2_000);
        for r in cut..n {
            let stage = if keys[r] % 2 == 1 { &mut there } else { &mut here };
            let out = stage.transform_rows(&rows[r..r + 1], &keys[r..r + 1], &times[r..r + 1]);
            let out = out.unwrap().values;
            for c in 0..cols {
                assert_eq!(all[c * n + r].to_bits(), out[c].to_bits(), "feature {c} of event {r}");
            }
        }
        // A damaged snapshot changes nothing.
        let before = there.live_keys();
        odd[40] ^= 1;
        assert!(there.merge(&odd).is_err());
        assert_eq!(there.live_keys(), before);
    }

    #[test]
    fn any_damage_is_refused() {
        let (rows, keys, times) = events(300);
        let mut f = Features::new(spec());
        f.transform_rows(&rows, &keys, &times).unwrap();
        let mut file = Vec::new();
        f.snapshot(7, &mut file).unwrap();
        assert!(Features::restore(spec(), &file).is_ok());
        for cut in [0, 10, HEADER, file.len() / 2, file.len() - 1] {
            assert!(Features::restore(spec(), &file[..cut]).is_err(), "cut at {cut}");
        }
        for at in [3, 20, HEADER + 5, file.len() - 40, file.len() - 1] {
            let mut bad = file.clone();
            bad[at] ^= 0x10;
            assert!(Features::restore(spec(), &bad).is_err(), "byte {at} flipped");
        }
        let other = Spec::from_toml(
            "[events]\nkey = \"card\"\ntime = \"ts\"\nnumeric = [\"amount\"]\n\
             [[feature]]\nname = \"n\"\nop = \"count\"\nwindow = \"1h\"\n",
        )
        .unwrap();
        let e = Features::restore(other, &file).unwrap_err().to_string();
        assert!(e.contains("another feature spec"), "{e}");
    }
}
