//! What a feature-state checkpoint costs at 100k and 1M live keys: snapshot size, the pause
//! while the stage is copied (scoring waits that long), the write (temp file, fsync, rename),
//! and the restore. Keys carry the fraud example's spec with 8 events each. Then the latency
//! of scoring while snapshots are taken back to back, against steady state, on `serve`'s
//! runtime settings (`max_delay` 0): an open-loop producer offers 20,000 events/s over the live
//! keys, each event's latency counted from when it was due (not when it was sent, so a stall
//! anywhere cannot hide: no coordinated omission; the producer's ~0.1 ms ticks are in every
//! figure); phases of 2 s alternate, three of each, and the medians of their percentiles are
//! printed.
//!
//! `cargo run --release --example checkpoint [KEYS...]` (default 100000 1000000).

use std::time::{Duration, Instant};

use streamscore::features::{Features, Spec};

fn main() -> Result<(), streamscore::Error> {
    let spec = Spec::from_path("examples/fraud/spec.toml")?;
    let keys: Vec<usize> =
        std::env::args().skip(1).map(|a| a.parse().expect("a key count")).collect();
    let keys = if keys.is_empty() { vec![100_000, 1_000_000] } else { keys };
    let width = spec.fields.len();
    for n_keys in keys {
        let mut stage = Features::new(spec.clone());
        let per_key = 8;
        let n = n_keys * per_key;
        let chunk = 65_536;
        let mut done = 0;
        while done < n {
            let m = chunk.min(n - done);
            let rows: Vec<f32> =
                (0..m * width).map(|i| ((done * width + i) % 6) as f32 + 1.0).collect();
            let ks: Vec<u64> = (done..done + m).map(|i| (i % n_keys) as u64).collect();
            let ts: Vec<i64> = (done..done + m)
                .map(|i| 1_700_000_000_000 + (i / n_keys) as i64 * 60_000)
                .collect();
            stage.transform_rows(&rows, &ks, &ts)?;
            done += m;
        }
        assert_eq!(stage.live_keys(), n_keys);
        // A runtime holding that state; its snapshot's pause is how long the feature stage's
        // lock is held (batches wait that long). Median of 5.
        let rt = streamscore::Runtime::builder()
            .model_path("examples/fraud/model.txt")
            .features(stage)
            .config(streamscore::RuntimeConfig::default().with_max_delay(Duration::ZERO))
            .build()?;
        let mut pauses = Vec::new();
        let mut total = Vec::new();
        let mut bytes = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            let snap = rt.snapshot_features().expect("a feature stage");
            total.push(t.elapsed().as_secs_f64());
            pauses.push(snap.pause.as_secs_f64());
            bytes = snap.bytes;
        }
        pauses.sort_by(f64::total_cmp);
        total.sort_by(f64::total_cmp);
        let (pause, with_checksum) = (pauses[2], total[2]);
        let dir =
            std::env::temp_dir().join(format!("streamscore-ckpt-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| streamscore::Error::io(&dir, e))?;
        let path = dir.join("features.snap");
        let t = Instant::now();
        {
            use std::io::Write;
            let tmp = dir.join(".features.snap.tmp");
            let mut f = std::fs::File::create(&tmp).map_err(|e| streamscore::Error::io(&tmp, e))?;
            f.write_all(&bytes).map_err(|e| streamscore::Error::io(&tmp, e))?;
            f.sync_all().map_err(|e| streamscore::Error::io(&tmp, e))?;
            std::fs::rename(&tmp, &path).map_err(|e| streamscore::Error::io(&path, e))?;
        }
        let write = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let read = std::fs::read(&path).map_err(|e| streamscore::Error::io(&path, e))?;
        let (restored, _) = Features::restore(spec.clone(), &read)?;
        let restore = t.elapsed().as_secs_f64();
        assert_eq!(restored.live_keys(), n_keys);
        let _ = std::fs::remove_dir_all(&dir);
        let rt = std::sync::Arc::new(rt);
        let (mut steady, mut during) = (Vec::new(), Vec::new());
        let mut clock = 1_700_000_000_000 + (per_key as i64 + 1) * 60_000;
        for _ in 0..3 {
            steady.push(latency(&rt, n_keys, &mut clock, false));
            during.push(latency(&rt, n_keys, &mut clock, true));
        }
        rt.shutdown();
        println!(
            "{n_keys} keys ({n} events kept): snapshot {:.1} MB, scoring paused {:.1} ms \
             (whole snapshot with buffer and checksum {:.1} ms), write+fsync {:.1} ms, read+restore {:.1} ms",
            bytes.len() as f64 / 1e6,
            pause * 1e3,
            with_checksum * 1e3,
            write * 1e3,
            restore * 1e3
        );
        let median = |v: &[[f64; 4]], i: usize| {
            let mut x: Vec<f64> = v.iter().map(|p| p[i]).collect();
            x.sort_by(f64::total_cmp);
            x[x.len() / 2]
        };
        for (name, v) in [("steady", &steady), ("snapshots back to back", &during)] {
            println!(
                "  scoring at 20k events/s, {name}: p50 {:.0} us, p99 {:.0} us, p99.9 {:.0} us, max {:.1} ms",
                median(v, 0),
                median(v, 1),
                median(v, 2),
                median(v, 3) / 1e3
            );
        }
    }
    Ok(())
}

/// One phase of 2 s at 20,000 events/s over `n_keys` keys (event times from `clock` on),
/// snapshots taken back to back meanwhile when `snapshots`. Returns p50, p99, p99.9 and max
/// latency in microseconds, from when each event was due to its answer.
fn latency(
    rt: &std::sync::Arc<streamscore::Runtime>,
    n_keys: usize,
    clock: &mut i64,
    snapshots: bool,
) -> [f64; 4] {
    use std::sync::atomic::{AtomicBool, Ordering};
    let rate = 20_000u64;
    let phase = Duration::from_secs(2);
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let snapper = snapshots.then(|| {
        let (rt, stop) = (rt.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                drop(rt.snapshot_features());
            }
        })
    });
    let (tx, rx) = crossbeam_channel::unbounded::<(Instant, streamscore::Ticket)>();
    let collector = std::thread::spawn(move || {
        let mut h =
            hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("bounds");
        for (sent, ticket) in rx {
            ticket.wait().expect("scored");
            h.saturating_record(sent.elapsed().as_micros().max(1) as u64);
        }
        h
    });
    let start = Instant::now();
    let mut sent = 0u64;
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    while start.elapsed() < phase {
        let due = (start.elapsed().as_micros() as u64 * rate) / 1_000_000;
        while sent < due {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *clock += 1;
            let row = [(state % 500) as f32 + 1.0, (state % 6) as f32];
            let event = streamscore::Event::new(row)
                .with_key(state % n_keys as u64)
                .with_timestamp_ms(*clock);
            let ticket = rt.try_submit(event).expect("room in the queue");
            let due = start + Duration::from_micros(sent * 1_000_000 / rate);
            tx.send((due, ticket)).expect("the collector");
            sent += 1;
        }
        std::thread::sleep(Duration::from_micros(50));
    }
    drop(tx);
    let h = collector.join().expect("the collector");
    stop.store(true, Ordering::Relaxed);
    if let Some(s) = snapper {
        s.join().expect("the snapshot thread");
    }
    let q = |p: f64| h.value_at_quantile(p) as f64;
    [q(0.5), q(0.99), q(0.999), h.max() as f64]
}
