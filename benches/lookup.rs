//! Enrichment's cost in the feature stage: 100,000 keys, batches of 4,096 events, one
//! thread; a spec of two raw fields (the baseline, in the same run), the same with two
//! features from a static CSV table, and with two from Redis through a warm cache (every key
//! read once before, a TTL longer than the run), against a `redis-server` this bench starts
//! on a random loopback port.
//!
//! `cargo bench --features redis --bench lookup` (scripts/redis.sh installs redis-server)

use std::hint::black_box;
use std::process::{Command, Stdio};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use streamscore::Batch;
use streamscore::features::{Features, Output, Spec};

const KEYS: u64 = 100_000;
const BATCH: usize = 4_096;

const BASE: &str = "[events]\nkey = \"user\"\ntime = \"ts\"\nnumeric = [\"amount\"]\n\n\
                    [[feature]]\nname = \"amount\"\nop = \"field\"\nfield = \"amount\"\n";

fn with_lookup(lookup: &str) -> String {
    format!(
        "{BASE}{lookup}\n[[feature]]\nname = \"score\"\nop = \"lookup\"\ntable = \"profile\"\nfield = \"score\"\n\
         [[feature]]\nname = \"tenure\"\nop = \"lookup\"\ntable = \"profile\"\nfield = \"tenure\"\n",
    )
}

fn batches() -> Vec<(Batch, Vec<u64>, Vec<i64>)> {
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    (0..64)
        .map(|b| {
            let mut keys = Vec::with_capacity(BATCH);
            let mut rows = Vec::with_capacity(BATCH);
            for _ in 0..BATCH {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                keys.push(s % KEYS);
                rows.push((s >> 40) as f32 / 1e3);
            }
            let t = (0..BATCH as i64).map(|i| b * BATCH as i64 + i).collect();
            (Batch::from_columns(rows, BATCH, 1).unwrap(), keys, t)
        })
        .collect()
}

fn run(c: &mut Criterion, name: &str, spec: &str, batches: &[(Batch, Vec<u64>, Vec<i64>)]) {
    let mut f = Features::new(Spec::from_toml(spec).unwrap());
    let mut out = Output::default();
    // Warm: every key looked up once.
    for k in (0..KEYS).collect::<Vec<_>>().chunks(BATCH) {
        let rows = vec![0.0f32; k.len()];
        let t = vec![0i64; k.len()];
        f.transform(&Batch::from_columns(rows, k.len(), 1).unwrap(), k, &t, &mut out).unwrap();
    }
    let mut group = c.benchmark_group("lookup");
    group.throughput(Throughput::Elements(BATCH as u64));
    let mut i = 0;
    group.bench_function(name, |b| {
        b.iter(|| {
            let (batch, k, t) = &batches[i % batches.len()];
            f.transform(batch, k, t, &mut out).unwrap();
            black_box(&out.values);
            i += 1;
        })
    });
    group.finish();
    if let Some((_, counters)) = f.lookup_counters().first() {
        eprintln!("{name}: {counters:?}");
        assert_eq!(counters.failed, 0);
    }
}

fn bench(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("streamscore-bench-lookup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut csv = String::from("user,score,tenure\n");
    for k in 0..KEYS {
        csv += &format!("{k},{},{}\n", k as f32 / 7.0, k % 365);
    }
    std::fs::write(dir.join("profile.csv"), &csv).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut server = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server (scripts/redis.sh installs it)");
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
    let mut conn = loop {
        match client.get_connection() {
            Ok(c) => break c,
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    };
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(5_000) {
        let mut pipe = redis::pipe();
        for k in chunk {
            pipe.cmd("HSET")
                .arg(format!("profile:{k}"))
                .arg("score")
                .arg(format!("{}", *k as f32 / 7.0))
                .arg("tenure")
                .arg(k % 365)
                .ignore();
        }
        let () = pipe.query(&mut conn).unwrap();
    }
    let batches = batches();
    run(c, "baseline_no_lookup", BASE, &batches);
    run(
        c,
        "static_csv_2_fields",
        &with_lookup(&format!(
            "[[lookup]]\nname = \"profile\"\ncsv = \"{}\"\nfields = [\"score\", \"tenure\"]\n",
            dir.join("profile.csv").display()
        )),
        &batches,
    );
    run(
        c,
        "redis_warm_cache_2_fields",
        &with_lookup(&format!(
            "[[lookup]]\nname = \"profile\"\nredis = \"redis://127.0.0.1:{port}\"\n\
             fields = [\"score\", \"tenure\"]\ncache_ttl = \"1h\"\ntimeout = \"1s\"\n"
        )),
        &batches,
    );
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
