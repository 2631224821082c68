//! Enrichment from lookup tables: a static CSV or Parquet table (by the event key, by a
//! numeric field, by a categorical field; the missing-key policies; a reload while a runtime
//! runs) and, with the `redis` feature, Redis as an online store on a real `redis-server`
//! this test starts on a random loopback port (values, cache hits and expiry, a server that
//! stops answering, one that is killed, and recovery), each outage within its timeout and with
//! the policy applied.

#![cfg(feature = "csv")]

mod common;

use std::sync::Arc;

use streamscore::backend::{Backend, Output};
use streamscore::features::{Features, Spec};
use streamscore::{Batch, Error, Event, Runtime, RuntimeConfig};

fn dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("streamscore-lookup-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn spec_with(lookup: &str, features: &str) -> String {
    format!(
        "[events]\nkey = \"card\"\ntime = \"ts\"\nnumeric = [\"amount\", \"shop\"]\n\
         categorical = [{{ name = \"country\", values = [\"fr\", \"de\", \"it\"] }}]\n\n\
         {lookup}\n\n[[feature]]\nname = \"amount\"\nop = \"field\"\nfield = \"amount\"\n{features}"
    )
}

fn same(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

#[test]
fn static_tables_by_key_by_field_and_their_policies() {
    let d = dir();
    std::fs::write(d.join("cards.csv"), "card,limit,age\n1,500,30\n2,1000,\n7,250.5,61\n").unwrap();
    std::fs::write(d.join("shops.csv"), "shop_id,risk\n10,0.9\n11,0.1\n").unwrap();
    std::fs::write(d.join("countries.csv"), "code,tax\nfr,0.2\nde,0.19\n").unwrap();
    let text = spec_with(
        "[[lookup]]\nname = \"card\"\ncsv = \"cards.csv\"\nfields = [\"limit\", \"age\"]\n\
         on_missing = \"default\"\ndefault = -1.0\n\n\
         [[lookup]]\nname = \"shop\"\ncsv = \"shops.csv\"\nkey_column = \"shop_id\"\nby = \"shop\"\nfields = [\"risk\"]\n\n\
         [[lookup]]\nname = \"country\"\ncsv = \"countries.csv\"\nkey_column = \"code\"\nby = \"country\"\n\
         fields = [\"tax\"]\non_missing = \"error\"",
        "[[feature]]\nname = \"limit\"\nop = \"lookup\"\ntable = \"card\"\nfield = \"limit\"\n\
         [[feature]]\nname = \"age\"\nop = \"lookup\"\ntable = \"card\"\nfield = \"age\"\n\
         [[feature]]\nname = \"risk\"\nop = \"lookup\"\ntable = \"shop\"\nfield = \"risk\"\n\
         [[feature]]\nname = \"tax\"\nop = \"lookup\"\ntable = \"country\"\nfield = \"tax\"\n",
    );
    let path = d.join("spec.toml");
    std::fs::write(&path, &text).unwrap();
    // Relative table paths are read from the spec's directory.
    let spec = Spec::from_path(&path).unwrap();
    let mut f = Features::new(spec.clone());
    // Rows: amount, shop, country code. Card 3 is unknown (default), shop 12 unknown (NaN),
    // shop 10.5 holds no key (NaN), Italy has no row (refused under `error`).
    let rows =
        [[5.0, 10.0, 0.0], [6.0, 11.0, 1.0], [7.0, 12.0, 0.0], [8.0, 10.5, 1.0], [9.0, 10.0, 2.0]];
    let out = f.transform_rows(&rows.concat(), &[1, 2, 3, 7, 1], &[0, 1, 2, 3, 4]).unwrap();
    let col = |c: usize| out.values[c * 5..(c + 1) * 5].to_vec();
    let n = f32::NAN;
    for (c, want) in [
        (1, [500.0, 1000.0, -1.0, 250.5, n]),
        (2, [30.0, n, -1.0, 61.0, n]),
        (3, [0.9, 0.1, n, n, n]),
        (4, [0.2, 0.19, 0.2, 0.19, n]),
    ] {
        let got = col(c);
        assert!(got.iter().zip(&want).all(|(a, b)| same(*a, *b)), "column {c}: {got:?}");
    }
    assert_eq!(out.errors.len(), 1);
    assert!(
        matches!(&out.errors[0], (4, Error::Lookup { table, .. }) if table == "country"),
        "{:?}",
        out.errors
    );
    let counters = f.lookup_counters();
    assert_eq!(counters[0].1.found, 4);
    assert_eq!(counters[0].1.missing, 1);
    assert_eq!((counters[1].1.found, counters[1].1.missing), (3, 2));
    // Spec mistakes are clear.
    for (lookup, feature, says) in [
        (
            "",
            "[[feature]]\nname = \"x\"\nop = \"lookup\"\ntable = \"nope\"\nfield = \"a\"",
            "no [[lookup]] named",
        ),
        (
            "[[lookup]]\nname = \"c\"\ncsv = \"cards.csv\"\nfields = [\"limit\"]",
            "[[feature]]\nname = \"x\"\nop = \"lookup\"\ntable = \"c\"\nfield = \"zzz\"",
            "has no field",
        ),
        (
            "[[lookup]]\nname = \"c\"\ncsv = \"missing.csv\"\nfields = [\"limit\"]",
            "",
            "missing.csv",
        ),
        (
            "[[lookup]]\nname = \"c\"\ncsv = \"cards.csv\"\nfields = [\"nothere\"]",
            "",
            "no column `nothere`",
        ),
        (
            "[[lookup]]\nname = \"c\"\nfields = [\"limit\"]",
            "",
            "exactly one of `csv`, `parquet`, `redis`",
        ),
        (
            "[[lookup]]\nname = \"c\"\ncsv = \"cards.csv\"\nby = \"zzz\"\nfields = [\"limit\"]",
            "",
            "unknown field `zzz`",
        ),
    ] {
        std::fs::write(&path, spec_with(lookup, feature)).unwrap();
        let err = Spec::from_path(&path).unwrap_err().to_string();
        assert!(err.contains(says), "{err}");
    }
    std::fs::write(d.join("dup.csv"), "card,limit\n1,2\n1,3\n").unwrap();
    std::fs::write(
        &path,
        spec_with("[[lookup]]\nname = \"c\"\ncsv = \"dup.csv\"\nfields = [\"limit\"]", ""),
    )
    .unwrap();
    let err = Spec::from_path(&path).unwrap_err().to_string();
    assert!(err.contains("appears twice"), "{err}");
}

/// A backend that answers each event with its feature row.
struct Echo(usize);

impl Backend for Echo {
    fn name(&self) -> &'static str {
        "echo"
    }
    fn n_features(&self) -> usize {
        self.0
    }
    fn output_width(&self, _: Output) -> usize {
        self.0
    }
    fn score_batch(&self, batch: &Batch, _: Output, out: &mut [f32]) -> streamscore::Result<()> {
        out.copy_from_slice(&batch.to_rows());
        Ok(())
    }
}

/// Freshness of lookup rows (issue 27, Feast's TTL on online reads): a table's `time_field`
/// stamps each row; `lookup_age` is the seconds from it to the event, and a lookup feature's
/// `max_age` makes an older row (or one without a stamp) stale: missing, or the event refused
/// with `Error::Stale` under `stale = "error"`; a key the table lacks takes its own policy.
#[test]
fn lookup_rows_carry_their_age_and_go_stale() {
    let d = dir();
    // Times in the spec's unit (seconds here): card 1 updated at 1,000 s, card 2 at 4,000 s,
    // card 7 never stamped.
    std::fs::write(d.join("stamped.csv"), "card,limit,updated\n1,500,1000\n2,900,4000\n7,250,\n")
        .unwrap();
    let spec = |stale: &str| {
        let text = spec_with(
            &format!(
                "[[lookup]]\nname = \"card\"\ncsv = \"{}\"\nfields = [\"limit\"]\ntime_field = \"updated\"",
                d.join("stamped.csv").display()
            ),
            &format!(
                "[[feature]]\nname = \"limit\"\nop = \"lookup\"\ntable = \"card\"\nfield = \"limit\"\n\
                 max_age = \"30m\"\nstale = \"{stale}\"\n\
                 [[feature]]\nname = \"limit_age\"\nop = \"lookup_age\"\ntable = \"card\"\n"
            ),
        )
        .replace("time = \"ts\"\n", "time = \"ts\"\ntime_unit = \"s\"\n");
        Spec::from_toml(&text).unwrap()
    };
    // Events at 4,500 s (ms in the stage): card 1's row is 3,500 s old, card 2's 500 s, card 7's
    // unstamped, card 3 has none.
    let rows = [[1.0, 0.0, 0.0]; 4].concat();
    let (keys, times) = ([1, 2, 7, 3], [4_500_000i64; 4]);
    let mut f = Features::new(spec("missing"));
    let out = f.transform_rows(&rows, &keys, &times).unwrap();
    let col = |c: usize| out.values[c * 4..(c + 1) * 4].to_vec();
    assert!(col(1)[0].is_nan(), "3,500 s is over 30 min: stale, missing");
    assert_eq!(col(1)[1], 900.0);
    assert!(col(1)[2].is_nan(), "a row without a timestamp is stale");
    assert!(col(1)[3].is_nan(), "no row: on_missing");
    assert_eq!(col(2)[..2], [3500.0, 500.0]);
    assert!(col(2)[2].is_nan() && col(2)[3].is_nan());
    assert!(out.errors.is_empty());
    assert_eq!(f.counters().stale, 2);
    // Under `error` the stale events are refused, each naming the feature and the age.
    let mut f = Features::new(spec("error"));
    let out = f.transform_rows(&rows, &keys, &times).unwrap();
    let refused: Vec<usize> = out.errors.iter().map(|e| e.0).collect();
    assert_eq!(refused, [0, 2]);
    match &out.errors[0].1 {
        Error::Stale { key: 1, feature, age_ms: 3_500_000, max_age_ms: 1_800_000 } => {
            assert_eq!(feature, "limit")
        }
        e => panic!("{e:?}"),
    }
    // A table without a time field cannot have an age.
    let text = spec_with(
        &format!(
            "[[lookup]]\nname = \"card\"\ncsv = \"{}\"\nfields = [\"limit\"]",
            d.join("stamped.csv").display()
        ),
        "[[feature]]\nname = \"a\"\nop = \"lookup_age\"\ntable = \"card\"\n",
    );
    let e = Spec::from_toml(&text).unwrap_err().to_string();
    assert!(e.contains("no `time_field`"), "{e}");
    // A timestamp that is not one is refused when the table loads.
    std::fs::write(d.join("badtime.csv"), "card,limit,updated\n1,5,soon\n").unwrap();
    let text = spec_with(
        &format!(
            "[[lookup]]\nname = \"card\"\ncsv = \"{}\"\nfields = [\"limit\"]\ntime_field = \"updated\"",
            d.join("badtime.csv").display()
        ),
        "[[feature]]\nname = \"a\"\nop = \"lookup_age\"\ntable = \"card\"\n",
    );
    let e = Spec::from_toml(&text).unwrap_err().to_string();
    assert!(e.contains("not a timestamp"), "{e}");
}

/// A static table replaced while a runtime scores: events after the reload read the new rows;
/// a file that fails to load leaves the old table serving.
#[test]
fn a_static_table_reloads_while_the_runtime_runs() {
    let d = dir();
    std::fs::write(d.join("limits.csv"), "card,limit\n1,100\n").unwrap();
    let text = spec_with(
        &format!(
            "[[lookup]]\nname = \"card\"\ncsv = \"{}\"\nfields = [\"limit\"]\non_missing = \"error\"",
            d.join("limits.csv").display()
        ),
        "[[feature]]\nname = \"limit\"\nop = \"lookup\"\ntable = \"card\"\nfield = \"limit\"\n",
    );
    let spec = Spec::from_toml(&text).unwrap();
    let handle = spec.lookups[0].table.clone().unwrap();
    let rt = Runtime::builder()
        .features(Features::new(spec))
        .backend(Arc::new(Echo(2)))
        .config(RuntimeConfig::default())
        .build()
        .unwrap();
    let event = |t: i64| Event::new(vec![1.0, 0.0, 0.0]).with_key(1).with_timestamp_ms(t);
    assert_eq!(rt.score(event(1)).unwrap().values()[1], 100.0);
    std::fs::write(d.join("limits2.csv"), "card,limit\n1,250\n").unwrap();
    assert_eq!(handle.reload(d.join("limits2.csv")).unwrap(), 1);
    assert_eq!(rt.score(event(2)).unwrap().values()[1], 250.0);
    std::fs::write(d.join("broken.csv"), "card,limit\n1,abc\n").unwrap();
    assert!(handle.reload(d.join("broken.csv")).is_err());
    assert_eq!(rt.score(event(3)).unwrap().values()[1], 250.0);
    // A key the table lacks, under `error`: that event, and only it, is refused; a set mixing
    // both kinds gets one answer each.
    let unknown = Event::new(vec![1.0, 0.0, 0.0]).with_key(2).with_timestamp_ms(4);
    assert!(matches!(rt.score(unknown), Err(Error::Lookup { .. })));
    let tickets: Vec<_> = (0..6)
        .map(|i| {
            let e =
                Event::new(vec![1.0, 0.0, 0.0]).with_key(1 + i % 2).with_timestamp_ms(5 + i as i64);
            rt.try_submit(e).unwrap()
        })
        .collect();
    for (i, t) in tickets.into_iter().enumerate() {
        let answer = t.wait();
        assert_eq!(answer.is_ok(), i % 2 == 0, "event {i}: {answer:?}");
    }
    // The runtime's metrics carry the stage's and the table's counts: 6 keys found (three
    // single events, three of the set), 4 missing; Prometheus renders them per table.
    let m = rt.metrics().features.expect("a feature stage");
    let (name, c) = &m.lookups[0];
    assert_eq!((name.as_str(), c.found, c.missing, c.failed), ("card", 6, 4, 0));
    let text = rt.metrics().prometheus();
    for line in [
        "streamscore_lookup_keys_total{table=\"card\",outcome=\"found\"} 6",
        "streamscore_lookup_keys_total{table=\"card\",outcome=\"missing\"} 4",
        "streamscore_lookup_round_trip_seconds_count{table=\"card\"} 0",
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
    }
    rt.shutdown();
}

#[cfg(feature = "redis")]
mod redis_store {
    use std::time::{Duration, Instant};

    use super::*;

    use common::redis_server::Server;

    fn hset(c: &mut redis::Connection, key: &str, fields: &[(&str, &str)]) {
        let mut cmd = redis::cmd("HSET");
        cmd.arg(key);
        for (f, v) in fields {
            cmd.arg(*f).arg(*v);
        }
        let _: i64 = cmd.query(c).unwrap();
    }

    fn spec(port: u16, on_error: &str, ttl: &str) -> Spec {
        Spec::from_toml(&spec_with(
            &format!(
                "[[lookup]]\nname = \"profile\"\nredis = \"redis://127.0.0.1:{port}\"\nprefix = \"user:\"\n\
                 fields = [\"score\", \"tenure\"]\non_missing = \"default\"\non_error = \"{on_error}\"\n\
                 default = -1.0\ncache_ttl = \"{ttl}\"\ntimeout = \"100ms\"\nretry_after = \"300ms\""
            ),
            "[[feature]]\nname = \"score\"\nop = \"lookup\"\ntable = \"profile\"\nfield = \"score\"\n\
             [[feature]]\nname = \"tenure\"\nop = \"lookup\"\ntable = \"profile\"\nfield = \"tenure\"\n",
        ))
        .unwrap()
    }

    fn batch(f: &mut Features, keys: &[u64]) -> streamscore::features::Output {
        let rows: Vec<f32> = keys.iter().flat_map(|_| [1.0, 0.0, 0.0]).collect();
        let times: Vec<i64> = (0..keys.len() as i64).collect();
        f.transform_rows(&rows, keys, &times).unwrap()
    }

    #[test]
    fn redis_values_cache_expiry_outages_and_recovery() {
        let server = Server::start(None);
        let mut c = server.conn().unwrap();
        for k in 0..200u64 {
            hset(
                &mut c,
                &format!("user:{k}"),
                &[("score", &format!("{}", k as f32 / 4.0)), ("tenure", &k.to_string())],
            );
        }
        // A hash with only one of the fields: the other is missing.
        hset(&mut c, "user:500", &[("score", "7.5")]);
        // Stamped hashes (`_ts`, ms): a `time_field` gives their age, and `max_age` staleness.
        hset(&mut c, "user:600", &[("score", "1"), ("_ts", "1000")]);
        hset(&mut c, "user:601", &[("score", "2"), ("_ts", "not-a-time")]);
        let stamped = Spec::from_toml(&spec_with(
            &format!(
                "[[lookup]]\nname = \"profile\"\nredis = \"redis://127.0.0.1:{}\"\nprefix = \"user:\"\n\
                 fields = [\"score\"]\ntime_field = \"_ts\"",
                server.port
            ),
            "[[feature]]\nname = \"score\"\nop = \"lookup\"\ntable = \"profile\"\nfield = \"score\"\n\
             max_age = \"5s\"\n[[feature]]\nname = \"age\"\nop = \"lookup_age\"\ntable = \"profile\"\n",
        ))
        .unwrap();
        let mut g = Features::new(stamped);
        let out = g
            .transform_rows(&[1.0, 0.0, 0.0].repeat(3), &[600, 600, 601], &[3_000, 9_000, 3_000])
            .unwrap();
        // Key 600 at 3 s: 2 s old, fresh; at 9 s: 8 s old, stale (missing); 601's stamp does
        // not parse: stale, and no age.
        assert_eq!((out.values[3], out.values[6]), (1.0, 2.0));
        assert!(out.values[4].is_nan() && out.values[5].is_nan());
        assert_eq!(out.values[7], 8.0);
        assert!(out.values[8].is_nan());
        let mut f = Features::new(spec(server.port, "default", "300ms"));
        let keys: Vec<u64> = (0..200).chain([500, 9_999]).collect();
        let out = batch(&mut f, &keys);
        let n = keys.len();
        for (r, &k) in keys.iter().enumerate() {
            let (score, tenure) = (out.values[n + r], out.values[2 * n + r]);
            match k {
                500 => assert!(score == 7.5 && tenure.is_nan()),
                9_999 => {
                    assert_eq!((score, tenure), (-1.0, -1.0), "a missing key takes the default")
                }
                _ => assert_eq!((score, tenure), (k as f32 / 4.0, k as f32)),
            }
        }
        let c0 = f.lookup_counters()[0].1;
        assert_eq!((c0.round_trips, c0.fetched, c0.found, c0.missing), (1, 202, 201, 1));
        // Warm: the same keys again are answered by the cache, no round trip.
        let _ = batch(&mut f, &keys);
        let c1 = f.lookup_counters()[0].1;
        assert_eq!((c1.round_trips, c1.cache_hits), (1, 202), "{c1:?}");
        // Expiry: after the TTL a changed value is read again.
        hset(&mut c, "user:3", &[("score", "99")]);
        std::thread::sleep(Duration::from_millis(350));
        let out = batch(&mut f, &[3]);
        assert_eq!(out.values[1], 99.0);
        assert_eq!(f.lookup_counters()[0].1.round_trips, 2);
        // A server that stops answering (SIGSTOP): the batch waits at most about the timeout,
        // cached keys are still answered, the rest take the policy.
        server.signal("-STOP");
        std::thread::sleep(Duration::from_millis(350)); // the cache has expired
        let start = Instant::now();
        let out = batch(&mut f, &[3, 4, 1_000]);
        let waited = start.elapsed();
        assert!(waited < Duration::from_millis(900), "waited {waited:?} on a stopped server");
        assert_eq!(&out.values[3..6], &[-1.0, -1.0, -1.0], "the default on a failed lookup");
        let c2 = f.lookup_counters()[0].1;
        assert_eq!(c2.store_errors, 1);
        assert_eq!(c2.failed, 3);
        // The timed-out round trip is the slowest; the others were quick.
        assert_eq!(c2.round_trips, 3);
        assert!(c2.round_trip_quantile_us(1.0) >= 90_000, "{c2:?}");
        assert!(c2.round_trip_quantile_us(0.5) < 50_000, "{c2:?}");
        // Within retry_after the store is not asked: no wait at all.
        let start = Instant::now();
        let _ = batch(&mut f, &[5]);
        assert!(start.elapsed() < Duration::from_millis(50));
        assert_eq!(f.lookup_counters()[0].1.store_errors, 1);
        // Killed: refused connections, the policy again; restarted on the same port after
        // retry_after: answers again.
        server.signal("-CONT");
        server.signal("-KILL");
        let port = server.port;
        drop(server);
        std::thread::sleep(Duration::from_millis(350));
        let out = batch(&mut f, &[6]);
        assert_eq!(out.values[1], -1.0);
        let again = Server::start(Some(port));
        let mut c = again.conn().unwrap();
        hset(&mut c, "user:6", &[("score", "1.5"), ("tenure", "6")]);
        std::thread::sleep(Duration::from_millis(350));
        let out = batch(&mut f, &[6]);
        assert_eq!(out.values[1], 1.5, "{:?}", f.lookup_counters());
    }

    /// Under `on_error = "error"` a failed lookup refuses its event with `Error::Lookup`.
    #[test]
    fn a_failed_lookup_can_refuse_the_event() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut f = Features::new(spec(port, "error", "1s"));
        let out = batch(&mut f, &[1, 2]);
        assert_eq!(out.errors.len(), 2);
        assert!(
            matches!(&out.errors[0], (0, Error::Lookup { table, message }) if table == "profile" && message.contains("did not answer"))
        );
    }
}

/// Static tables from Parquet files pyarrow wrote (tests/lookup_parquet.py): the same values a
/// CSV of the same table gives, bit for bit (integer and text keys, float64/int32/float32
/// fields, nulls missing); a reload from Parquet; and files that are refused with an error
/// naming the problem, never a panic: a text field, a key twice, a null key, a truncated
/// file, one that is not Parquet at all.
#[cfg(feature = "parquet")]
#[test]
fn parquet_tables_read_as_their_csv_twins() {
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/py-venv/bin/python");
    assert!(
        python.exists(),
        "no test Python: run scripts/python.sh (the README's test command does)"
    );
    let d = dir().join("parquet");
    std::fs::create_dir_all(&d).unwrap();
    let out = std::process::Command::new(&python)
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lookup_parquet.py"))
        .arg(&d)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(
        d.join("cards.csv"),
        "card,limit,age,score,updated\n1,500,30,0.25,1000\n2,1000,,0.5,\n7,250.5,61,,3\n",
    )
    .unwrap();
    std::fs::write(d.join("countries.csv"), "code,tax\nfr,0.2\nde,0.19\n").unwrap();
    let spec = |ext: &str| {
        let text = spec_with(
            &format!(
                "[[lookup]]\nname = \"card\"\n{ext} = \"{}\"\nfields = [\"limit\", \"age\", \"score\"]\ntime_field = \"updated\"\n\n\
                 [[lookup]]\nname = \"country\"\n{ext} = \"{}\"\nkey_column = \"code\"\nby = \"country\"\nfields = [\"tax\"]",
                d.join(format!("cards.{ext}")).display(),
                d.join(format!("countries.{ext}")).display()
            ),
            "[[feature]]\nname = \"limit\"\nop = \"lookup\"\ntable = \"card\"\nfield = \"limit\"\n\
             [[feature]]\nname = \"age\"\nop = \"lookup\"\ntable = \"card\"\nfield = \"age\"\n\
             [[feature]]\nname = \"score\"\nop = \"lookup\"\ntable = \"card\"\nfield = \"score\"\n\
             [[feature]]\nname = \"tax\"\nop = \"lookup\"\ntable = \"country\"\nfield = \"tax\"\n\
             [[feature]]\nname = \"card_age\"\nop = \"lookup_age\"\ntable = \"card\"\n",
        );
        Spec::from_toml(&text)
    };
    let rows = [[5.0, 0.0, 0.0], [6.0, 0.0, 1.0], [7.0, 0.0, 2.0], [8.0, 0.0, 0.0]];
    let (keys, times) = ([1, 2, 3, 7], [0, 1, 2, 3]);
    let run =
        |spec: Spec| Features::new(spec).transform_rows(&rows.concat(), &keys, &times).unwrap();
    let (csv, parquet) = (run(spec("csv").unwrap()), run(spec("parquet").unwrap()));
    assert_eq!(csv.values.len(), parquet.values.len());
    for (a, b) in csv.values.iter().zip(&parquet.values) {
        assert!(same(*a, *b), "csv {a} against parquet {b}");
    }
    // Values, not only agreement: card 2's age is null, card 7's score, card 3 is unknown.
    let col = |c: usize| parquet.values[c * 4..(c + 1) * 4].to_vec();
    assert_eq!(col(1)[..2], [500.0, 1000.0]);
    assert!(col(2)[1].is_nan() && col(3)[3].is_nan() && col(1)[2].is_nan());
    assert_eq!((col(2)[3], col(4)[0], col(4)[1]), (61.0, 0.2, 0.19));
    assert!(col(4)[2].is_nan(), "Italy has no row");
    // Row timestamps (ms here): card 1's at 1 s, read at event time 0 ms; card 7's at 3 ms,
    // read at 3 ms; card 2's row has none.
    assert_eq!((col(5)[0], col(5)[3]), (-1.0, 0.0));
    assert!(col(5)[1].is_nan() && col(5)[2].is_nan());
    // A reload from Parquet.
    let s = spec("parquet").unwrap();
    let handle = s.lookups[0].table.clone().unwrap();
    assert_eq!(handle.reload(d.join("cards.parquet")).unwrap(), 3);
    // Refused files, each with its reason.
    let bytes = std::fs::read(d.join("cards.parquet")).unwrap();
    std::fs::write(d.join("truncated.parquet"), &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(d.join("not.parquet"), "card,limit\n1,2\n").unwrap();
    for (file, says) in [
        ("text_field", "not a number"),
        ("twice", "appears twice"),
        ("null_key", "no key"),
        ("truncated", "Parquet"),
        ("not", "Parquet"),
    ] {
        let path = d.join(format!("{file}.parquet"));
        let text = spec_with(
            &format!(
                "[[lookup]]\nname = \"card\"\nparquet = \"{}\"\nfields = [\"limit\"]",
                path.display()
            ),
            "[[feature]]\nname = \"limit\"\nop = \"lookup\"\ntable = \"card\"\nfield = \"limit\"\n",
        );
        let e = Spec::from_toml(&text).unwrap_err().to_string();
        assert!(e.contains(says), "{file}: {e}");
        assert!(handle.reload(&path).is_err(), "{file}");
    }
    assert_eq!(handle.current().len(), 3, "a refused reload changes nothing");
}
