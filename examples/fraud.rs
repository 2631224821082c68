//! Fraud scoring end to end: raw card transactions in, fraud probabilities out, with the
//! features computed online by the runtime from the same spec the model was trained on.
//!
//! `examples/fraud/train.py` generated the stream (`stream.csv`), computed the features
//! offline with `streamscore features`, trained LightGBM on the first 22 days, and saved
//! LightGBM's own predictions for the last 8 days (`expected.csv`). Here every transaction is
//! replayed through `Runtime::builder().features(..)` (one producer, so acceptance order is the stream's
//! order) and the scores of the held-out days are checked against LightGBM's.
//!
//! `cargo run --release --example fraud`

use std::time::{Duration, Instant};

use streamscore::features::{Features, Spec, offline};
use streamscore::{Error, Event, Runtime, RuntimeConfig, load_forest};

fn main() -> Result<(), Error> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/fraud");
    let spec = Spec::from_path(format!("{dir}/spec.toml"))?;
    let forest = load_forest(format!("{dir}/model.txt"))?;
    if forest.feature_names() != spec.names {
        return Err(Error::Config(
            "the model was trained on other features than the spec's".into(),
        ));
    }
    let backend = streamscore::BackendSpec::auto().select(forest)?;
    let config =
        RuntimeConfig::default().with_max_batch(256).with_max_delay(Duration::from_micros(500));
    let rt = Runtime::builder()
        .features(Features::new(spec.clone()))
        .backend(backend)
        .config(config)
        .build()?;

    let path = format!("{dir}/stream.csv");
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    let events = offline::read_csv(&spec, &bytes, &path)?;
    let labels = read_labels(&bytes);
    let width = spec.fields.len();
    let start = Instant::now();
    // The default queue (65,536 events) holds the whole replay: no submission is refused.
    let mut tickets = Vec::with_capacity(events.len());
    for i in 0..events.len() {
        let event = Event::new(&events.rows[i * width..(i + 1) * width])
            .with_key(events.keys[i])
            .with_timestamp_ms(events.times[i]);
        tickets.push(rt.try_submit(event).map_err(|r| r.error)?);
    }
    let scores: Vec<f32> =
        tickets.into_iter().map(|t| t.wait().map(|s| s.value())).collect::<Result<_, _>>()?;
    let elapsed = start.elapsed();

    let expected =
        std::fs::read_to_string(format!("{dir}/expected.csv")).map_err(|e| Error::io(dir, e))?;
    let mut worst = 0.0f64;
    let mut held_out = Vec::new();
    for line in expected.lines().skip(1) {
        let (i, p) = line.split_once(',').expect("index,prediction");
        let (i, p): (usize, f64) = (i.parse().expect("index"), p.parse().expect("prediction"));
        worst = worst.max((f64::from(scores[i]) - p).abs() / p.abs().max(1e-30));
        held_out.push((scores[i], labels[i]));
    }
    held_out.sort_by(|a, b| b.0.total_cmp(&a.0));
    let frauds = held_out.iter().filter(|x| x.1).count();
    let caught = held_out.iter().take(frauds).filter(|x| x.1).count();
    let counters = rt.feature_counters().expect("a feature stage");
    println!(
        "{} transactions scored online in {:.1} ms ({:.0} events/s); features for {} events, {} keys live",
        scores.len(),
        elapsed.as_secs_f64() * 1e3,
        scores.len() as f64 / elapsed.as_secs_f64(),
        counters.events,
        events.keys.iter().collect::<std::collections::HashSet<_>>().len()
    );
    println!(
        "held-out days: {} transactions, {frauds} fraudulent; the {frauds} highest scores hold {caught} of them",
        held_out.len()
    );
    println!(
        "online scores vs LightGBM's predictions on the offline features: max relative difference {worst:.1e}"
    );
    rt.shutdown();
    if worst > 1e-6 {
        return Err(Error::Config(format!("online and offline disagree ({worst:e})")));
    }
    Ok(())
}

/// The `label` column of the stream.
fn read_labels(bytes: &[u8]) -> Vec<bool> {
    let mut reader = csv::Reader::from_reader(bytes);
    let col = reader
        .headers()
        .ok()
        .and_then(|h| h.iter().position(|c| c == "label"))
        .expect("a label column");
    reader
        .records()
        .map(|r| r.ok().and_then(|r| r.get(col).map(|v| v == "1")).unwrap_or(false))
        .collect()
}
