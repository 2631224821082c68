//! What a feature-state checkpoint costs at 100k and 1M live keys: snapshot size, the pause
//! while the stage is copied (scoring waits that long), the write (temp file, fsync, rename),
//! and the restore. Keys carry the fraud example's spec with 8 events each.
//!
//! `cargo run --release --example checkpoint [KEYS...]` (default 100000 1000000).

use std::time::Instant;

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
    }
    Ok(())
}
