//! `streamscore bench`: model throughput (direct) and runtime throughput and latency (stream),
//! in the spirit of Triton's perf_analyzer.
//!
//! Direct mode calls the backend with whole batches from `--threads` threads. Stream mode runs
//! the full runtime: `--producers` threads submit single events, closed loop (each keeps a
//! window of events in flight) or open loop at `--rate` events/s, and latency is the
//! runtime's end-to-end histogram (acceptance to answer).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use streamscore::backend::BackendChoice;

pub use crate::args::{BenchArgs, Mode};
use crate::batches::chunks;
use streamscore::io::{Columns, normal_rows, read_rows, synthetic_rows};
use streamscore::metrics::{Summary, latency_histogram};
use streamscore::{
    Backend, Batch, Busy, Error, Event, EventBatch, Model, ModelUpdate, Output, Runtime,
    RuntimeConfig, Schema, ShadowConfig, Split, Stage, Ticket,
};

/// One configuration's result.
struct Outcome {
    mode: &'static str,
    batch: usize,
    max_delay_us: Option<u64>,
    seconds: f64,
    rows: u64,
    /// Per batch call (direct) or acceptance to answer per event (stream), in ns.
    latency_ns: Summary,
    accepted: u64,
    scored: u64,
    rejected: u64,
    expired: u64,
    lost: u64,
    stages_us: Option<[f64; 3]>,
    /// Stream mode: the runtime threads' busy ns per answered event by `Busy` kind, and the
    /// producers' CPU ns per submitted event (submission and collecting answers).
    per_event_ns: Option<([f64; 5], f64)>,
    mean_batch: f64,
    /// Stream mode with `--shadow-model`: events the shadow compared and dropped.
    shadow: Option<(u64, u64)>,
    /// Stream mode with `--canary-model`: each variant's name, version and events answered.
    variants: Vec<(String, u64, u64)>,
    /// Stream mode with `--audit`: records written and dropped.
    audit: Option<(u64, u64)>,
    /// Stream mode with `--monitor`: events observed, ns per event in the monitor, alerts.
    monitor: Option<(u64, f64, u64)>,
    /// Stream mode with `--feature-spec`: each lookup table's counts.
    lookups: Vec<(String, streamscore::features::lookup::LookupCounters)>,
}

impl Outcome {
    fn rows_per_sec(&self) -> f64 {
        self.rows as f64 / self.seconds
    }
}

/// One line about the model for the report's header.
fn describe(model: &Model) -> String {
    match model {
        Model::Forest(f) => format!("{} trees, {} features", f.trees().len(), f.n_features()),
        Model::Onnx(m) => match m.dense() {
            Ok(net) => {
                let widths: Vec<String> = std::iter::once(net.n_inputs())
                    .chain(net.layers().iter().map(|l| l.n_out))
                    .map(|w| w.to_string())
                    .collect();
                format!(
                    "dense net {}, {} multiply-adds per row",
                    widths.join("-"),
                    net.macs_per_row()
                )
            }
            Err(_) => format!("ONNX graph, {} inputs per row", m.n_features()),
        },
    }
}

/// Largest `--batch` (the runtime's own `max_batch` limit).
const MAX_BATCH: usize = 1 << 20;
/// Largest `--rows` x features of synthetic input, in values (4 GiB of f32).
const MAX_VALUES: usize = 1 << 30;
/// Longest `--duration`, in seconds (a day).
const MAX_SECONDS: f64 = 86_400.0;
/// Largest thread, producer and camera counts.
const MAX_THREADS: usize = 1024;

fn flag_error(flag: &str, value: impl std::fmt::Display, limit: &str) -> Error {
    Error::Config(format!("--{flag} {value}: must be {limit}"))
}

/// Checks every numeric flag against its stated limit before anything is allocated or timed.
fn check_flags(args: &BenchArgs) -> Result<(), Error> {
    let count = |flag: &str, v: usize, max: usize| {
        if (1..=max).contains(&v) {
            Ok(())
        } else {
            Err(flag_error(flag, v, &format!("1..={max}")))
        }
    };
    count("batch", args.batch, MAX_BATCH)?;
    count("rows", args.rows, MAX_VALUES)?;
    count("threads", args.threads, MAX_THREADS)?;
    count("producers", args.producers, MAX_THREADS)?;
    count("cameras", args.cameras, MAX_THREADS)?;
    count("cpu-threads", args.cpu_threads, MAX_THREADS)?;
    if let Some(w) = args.window {
        count("window", w, 1 << 24)?;
    }
    count("submit-batch", args.submit_batch, streamscore::MAX_SET)?;
    let positive = |flag: &str, v: f64, max: f64| {
        if v > 0.0 && v <= max {
            Ok(())
        } else {
            Err(flag_error(flag, v, &format!("a number above 0 and at most {max}")))
        }
    };
    positive("duration", args.duration, MAX_SECONDS)?;
    positive("fps", args.fps, 1_000.0)?;
    positive("swap-every", args.swap_every, MAX_SECONDS)?;
    if !(0.0..=100.0).contains(&args.canary_percent) {
        return Err(flag_error("canary-percent", args.canary_percent, "within 0..=100"));
    }
    if !(0.0..=1.0).contains(&args.shadow_fraction) {
        return Err(flag_error("shadow-fraction", args.shadow_fraction, "within 0..=1"));
    }
    if let Some(rate) = args.rate {
        positive("rate", rate, 1e9)?;
    }
    if let Some(t) = args.motion_threshold
        && !(0.0..=1.0).contains(&t)
    {
        return Err(flag_error("motion-threshold", t, "within 0..=1"));
    }
    if args.feature_spec.is_some() && args.producers != 1 {
        // Several producers would interleave the passes' times: events turn late.
        return Err(flag_error("producers", args.producers, "1 with --feature-spec"));
    }
    if args.feature_spec.is_some()
        && (args.swap_model.is_some() || args.shadow_model.is_some() || args.canary_model.is_some())
    {
        return Err(Error::Config(
            "--feature-spec goes with plain stream and direct runs (no swap, shadow or canary)"
                .into(),
        ));
    }
    if args.max_delay_us > 60_000_000 {
        return Err(flag_error("max-delay-us", args.max_delay_us, "at most 60,000,000 (60 s)"));
    }
    Ok(())
}

pub fn run(args: BenchArgs) -> Result<(), Error> {
    check_flags(&args)?;
    if let Some(config) = &args.frames {
        return crate::frames_bench::run(&args, config);
    }
    let spec = crate::spec::spec(&crate::spec::BackendFlags {
        backend: &args.backend,
        cpu_threads: args.cpu_threads,
        kernel: args.kernel.as_deref(),
        algorithm: args.algorithm.as_deref(),
        gpu_software: args.gpu_software,
        gpu_strategy: &args.gpu_strategy,
    })?;
    let load = Instant::now();
    let model_path = args.model.clone().expect("clap requires --model without --frames");
    let model = streamscore::load_model(&model_path)?;
    // `--backend gpu` alone measures the GPU itself (no fallback) and its stage split.
    let gpu = match spec.choices() {
        [BackendChoice::Gpu(options)] => Some(Arc::new(crate::gpu_bench::gpu(options, &model)?)),
        _ => None,
    };
    let backend = match &gpu {
        Some(gpu) => gpu.clone() as Arc<dyn Backend>,
        None => spec.select(model.clone())?,
    };
    // Load time is what a user waits for: parse, validate and lay out for the backend.
    let load_ms = load.elapsed().as_secs_f64() * 1e3;
    // With a feature spec: the raw events for the stream, their features (computed offline,
    // as the stage computes them online) for direct scoring.
    let raw = match (&args.feature_spec, &args.events) {
        (Some(spec), Some(events)) => Some(raw_events(spec, events)?),
        _ => None,
    };
    let rows = match (&raw, &args.input) {
        (Some(raw), _) => raw.features.clone(),
        (None, Some(path)) => {
            let bytes = streamscore::io::read_input(std::path::Path::new(path))?;
            read_rows(&bytes, Columns::ByName, &model.feature_names(), path)?
        }
        (None, None) => {
            let width = model.feature_names().len().max(1);
            if args.rows.saturating_mul(width) > MAX_VALUES {
                return Err(flag_error(
                    "rows",
                    args.rows,
                    &format!("at most {} for a model of {width} features", MAX_VALUES / width),
                ));
            }
            match &model {
                Model::Forest(forest) => synthetic_rows(forest, args.rows, 0x5eed),
                Model::Onnx(m) => normal_rows(m.n_features(), args.rows, 0x5eed),
            }
        }
    };
    if rows.n_rows() == 0 {
        return Err(Error::Input { at: "bench".into(), message: "no rows to score".into() });
    }
    if let Some(swap_model) = &args.swap_model {
        return crate::lifecycle_bench::run(&args, &spec, &model_path, swap_model, &rows);
    }
    if !args.json {
        eprintln!(
            "model {} ({}), load {load_ms:.2} ms; backend {}; {} rows",
            model_path.display(),
            describe(&model),
            backend.name(),
            rows.n_rows()
        );
        if let Some(gpu) = &gpu {
            let ctx = gpu.context();
            let note =
                if ctx.is_software() { " (software: timings say nothing about a GPU)" } else { "" };
            eprintln!("gpu adapter {}{note}", ctx.adapter());
        }
    }
    let (batches, delays): (Vec<usize>, Vec<u64>) = if args.sweep {
        (vec![1, 16, 64, 256, 1024], vec![50, 200, 1000])
    } else {
        (vec![args.batch], vec![args.max_delay_us])
    };
    let modes: &[&'static str] = match args.mode {
        Mode::Direct => &["direct"],
        Mode::Stream => &["stream"],
        Mode::Both => &["direct", "stream"],
    };
    let mut plan = Vec::new();
    for &batch in &batches {
        for &mode in modes {
            if mode == "direct" {
                plan.push((mode, batch, None));
            } else {
                plan.extend(delays.iter().map(|&d| (mode, batch, Some(d))));
            }
        }
    }
    let total = Duration::from_secs_f64(args.duration * plan.len() as f64);
    let bar = if !args.json && total >= Duration::from_secs(2) {
        let bar = ProgressBar::new(total.as_millis() as u64);
        let style = ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {msg}")
            .expect("valid template");
        bar.set_style(style);
        bar
    } else {
        ProgressBar::hidden()
    };
    if !args.json {
        bar.suspend(|| println!(
            "{:<7} {:>6} {:>8} {:>4} {:>4} {:>13} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8} {:>5} {:>10}",
            "mode", "batch", "delay_us", "thr", "prod", "rows/s", "p50_us", "p99_us", "p999_us", "max_us",
            "accepted", "rejected", "expired", "lost", "", "mean_batch"
        ));
    }
    let mut direct_rate = std::collections::HashMap::new();
    let duration = Duration::from_secs_f64(args.duration.max(0.01));
    for (i, &(mode, batch, delay)) in plan.iter().enumerate() {
        bar.set_message(format!("{mode} batch {batch}"));
        let done_before = duration * i as u32;
        let tick = |elapsed: Duration| {
            bar.set_position((done_before + elapsed.min(duration)).as_millis() as u64)
        };
        let outcome = if mode == "direct" {
            direct(&*backend, &rows, batch, args.threads, duration, tick)
        } else {
            let config = RuntimeConfig::default()
                .with_backend(spec.clone())
                .with_max_batch(batch)
                .with_max_delay(Duration::from_micros(delay.unwrap_or(500)))
                .with_workers(args.threads)
                .with_queue_capacity(args.queue);
            let window = args.window.unwrap_or((batch * 4).max(64));
            let schema = Schema::new(model.feature_names());
            let load = Load {
                producers: args.producers,
                window,
                rate: args.rate,
                set: args.submit_batch,
                shadow: args.shadow_model.clone().map(|m| (m, args.shadow_fraction)),
                canary: args.canary_model.clone().map(|m| (m, args.canary_percent)),
                audit: args.audit.clone(),
                monitor: args.monitor.clone().map(|m| (m, args.monitor_sketch)),
                raw: raw.as_ref(),
                duration,
            };
            let o = stream((backend.clone(), schema), config, &rows, &load, tick)?;
            if args.prometheus {
                bar.suspend(|| eprint!("{}", o.1.prometheus()));
            }
            o.0
        };
        if mode == "direct" {
            direct_rate.insert(batch, outcome.rows_per_sec());
        }
        let ratio = (mode == "stream")
            .then(|| direct_rate.get(&batch).map(|d| outcome.rows_per_sec() / d))
            .flatten();
        report(&args, backend.name(), &outcome, ratio, load_ms, &bar);
        if let (Some(gpu), "direct") = (&gpu, mode) {
            bar.suspend(|| crate::gpu_bench::stages(gpu, &rows, batch, args.json))?;
        }
    }
    bar.finish_and_clear();
    if !args.json {
        // Scorers that tune themselves on the first large batch name their pick here.
        eprintln!("backend after the runs: {}", backend.name());
    }
    Ok(())
}

fn report(
    args: &BenchArgs,
    backend: &str,
    o: &Outcome,
    ratio: Option<f64>,
    load_ms: f64,
    bar: &ProgressBar,
) {
    let l = &o.latency_ns;
    let [p50, p99, p999, max] = [l.p50, l.p99, l.p999, l.max].map(|v| v as f64 / 1e3);
    let producers = if o.mode == "stream" { args.producers } else { 0 };
    if args.json {
        let mut v = json!({
            "backend": backend, "mode": o.mode, "model": args.model.as_deref().map(|m| m.display().to_string()),
            "load_ms": load_ms, "rows": o.rows, "batch": o.batch, "max_delay_us": o.max_delay_us,
            "threads": args.threads, "producers": producers, "rate": args.rate,
            "submit_batch": if o.mode == "stream" { args.submit_batch } else { 0 },
            "seconds": o.seconds, "rows_per_sec": o.rows_per_sec(),
            "latency_us": { "p50": p50, "p99": p99, "p999": p999, "max": max },
            "accepted": o.accepted, "scored": o.scored, "rejected": o.rejected, "expired": o.expired,
            "lost": o.lost, "mean_batch": o.mean_batch,
        });
        if let Some([queue, batching, scoring]) = o.stages_us {
            v["stages_p50_us"] =
                json!({ "queue": queue, "batching": batching, "scoring": scoring });
        }
        if let Some(r) = ratio {
            v["ratio_to_direct"] = json!(r);
        }
        if let Some((compared, dropped)) = o.shadow {
            v["shadow_compared"] = json!(compared);
            v["shadow_dropped"] = json!(dropped);
        }
        if let Some((written, dropped)) = o.audit {
            v["audit_written"] = json!(written);
            v["audit_dropped"] = json!(dropped);
        }
        if let Some((observed, ns, alerts)) = o.monitor {
            v["monitor_observed"] = json!(observed);
            v["monitor_ns_per_event"] = json!(ns);
            v["monitor_alerts"] = json!(alerts);
        }
        if !o.variants.is_empty() {
            let by: serde_json::Map<String, serde_json::Value> = (o.variants.iter())
                .map(|(name, version, n)| {
                    (name.clone(), json!({ "version": version, "answers": n }))
                })
                .collect();
            v["answers_by_variant"] = by.into();
        }
        if !o.lookups.is_empty() {
            let by: serde_json::Map<String, serde_json::Value> = (o.lookups.iter())
                .map(|(name, c)| {
                    let v = json!({
                        "round_trips": c.round_trips, "round_trip_p99_us": c.round_trip_quantile_us(0.99),
                        "round_trip_max_us": c.max_round_trip_us, "cache_hits": c.cache_hits,
                        "fetched": c.fetched, "found": c.found, "missing": c.missing, "failed": c.failed,
                    });
                    (name.clone(), v)
                })
                .collect();
            v["lookups"] = by.into();
        }
        if let Some((busy, producer)) = o.per_event_ns {
            let mut per = serde_json::Map::new();
            for (kind, ns) in Busy::ALL.iter().zip(busy) {
                per.insert(kind.label().into(), json!(ns));
            }
            per.insert("producer".into(), json!(producer));
            v["ns_per_event"] = per.into();
        }
        println!("{v}");
    } else {
        let delay = o.max_delay_us.map_or("-".to_string(), |d| d.to_string());
        let ratio = ratio.map_or(String::new(), |r| format!("{r:.2}x"));
        bar.suspend(|| println!(
            "{:<7} {:>6} {:>8} {:>4} {:>4} {:>13.0} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9} {:>9} {:>8} {:>8} {:>5} {:>10.1}",
            o.mode, o.batch, delay, args.threads, producers, o.rows_per_sec(), p50, p99, p999, max, o.accepted, o.rejected, o.expired, o.lost, ratio, o.mean_batch
        ));
        if let Some((compared, dropped)) = o.shadow {
            bar.suspend(|| println!("        shadow: {compared} compared, {dropped} dropped"));
        }
        if let Some((written, dropped)) = o.audit {
            bar.suspend(|| println!("        audit: {written} written, {dropped} dropped"));
        }
        if let Some((observed, ns, alerts)) = o.monitor {
            bar.suspend(|| println!("        monitor: {observed} events profiled, {ns:.1} ns per event, {alerts} alerts"));
        }
        if !o.variants.is_empty() {
            let parts: Vec<String> = (o.variants.iter())
                .map(|(name, version, n)| format!("{name} (version {version}) {n}"))
                .collect();
            bar.suspend(|| println!("        answers by variant: {}", parts.join(", ")));
        }
        for (name, c) in &o.lookups {
            bar.suspend(|| {
                println!(
                    "        lookup {name}: {} round trips, p99 <= {} us, max {} us; {} found, {} missing, {} failed; {} cache hits, {} fetched",
                    c.round_trips,
                    c.round_trip_quantile_us(0.99),
                    c.max_round_trip_us,
                    c.found,
                    c.missing,
                    c.failed,
                    c.cache_hits,
                    c.fetched
                )
            });
        }
        if let Some((busy, producer)) = o.per_event_ns {
            let parts: Vec<String> = Busy::ALL
                .iter()
                .zip(busy)
                .map(|(k, ns)| format!("{} {ns:.0}", k.label()))
                .collect();
            let total: f64 = busy.iter().sum();
            bar.suspend(|| {
                println!(
                    "        ns per event: runtime {total:.0} ({}); producer {producer:.0}",
                    parts.join(", ")
                )
            });
        }
    }
}

fn direct(
    backend: &dyn Backend,
    rows: &Batch,
    batch: usize,
    threads: usize,
    duration: Duration,
    tick: impl Fn(Duration),
) -> Outcome {
    let chunks = chunks(rows, batch);
    let out_width = backend.output_width(Output::Transformed);
    let scored = AtomicU64::new(0);
    let start = Instant::now();
    let hists: Vec<Histogram<u64>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads.max(1))
            .map(|t| {
                let (chunks, scored) = (&chunks, &scored);
                s.spawn(move || {
                    let mut h = latency_histogram();
                    let mut out = vec![0.0; batch * out_width];
                    let mut i = t;
                    while start.elapsed() < duration {
                        let c = &chunks[i % chunks.len()];
                        let t0 = Instant::now();
                        backend
                            .score_batch(c, Output::Transformed, &mut out)
                            .expect("rows fit the model");
                        h.saturating_record(t0.elapsed().as_nanos().max(1) as u64);
                        scored.fetch_add(c.n_rows() as u64, Ordering::Relaxed);
                        i += 1;
                    }
                    std::hint::black_box(&out);
                    h
                })
            })
            .collect();
        while handles.iter().any(|h| !h.is_finished()) {
            tick(start.elapsed());
            std::thread::sleep(Duration::from_millis(50));
        }
        handles.into_iter().map(|h| h.join().expect("bench thread")).collect()
    });
    let seconds = start.elapsed().as_secs_f64();
    let mut all = latency_histogram();
    for h in &hists {
        let _ = all.add(h);
    }
    let latency_ns = Summary::of(&all);
    let rows = scored.into_inner();
    Outcome {
        mode: "direct",
        batch,
        max_delay_us: None,
        seconds,
        rows,
        latency_ns,
        accepted: rows,
        scored: rows,
        rejected: 0,
        expired: 0,
        lost: 0,
        stages_us: None,
        per_event_ns: None,
        mean_batch: batch as f64,
        shadow: None,
        variants: Vec::new(),
        audit: None,
        monitor: None,
        lookups: Vec::new(),
    }
}

/// CPU time of the calling thread in nanoseconds (0 where the clock is unavailable).
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec through a valid pointer to a local.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// How stream mode loads the runtime.
/// Raw events for a feature stage, and their features computed offline.
pub(crate) struct RawEvents {
    spec: streamscore::features::Spec,
    /// Row-major raw fields, the spec's `fields` per event.
    rows: Vec<f32>,
    keys: Vec<u64>,
    times: Vec<i64>,
    /// How far each pass over the events moves their times: their span, plus 1 ms.
    span: i64,
    /// The features the stage computes for them (what direct mode scores).
    features: Batch,
}

impl RawEvents {
    /// Event `i`'s time on pass `pass` over the events (saturating: a time out of range is
    /// refused by the stage, never wrapped).
    fn time(&self, i: usize, pass: i64) -> i64 {
        self.times[i].saturating_add(pass.saturating_mul(self.span))
    }
}

fn raw_events(spec: &std::path::Path, events: &std::path::Path) -> Result<RawEvents, Error> {
    use streamscore::features::{Features, Spec, offline};
    let spec = Spec::from_path(spec)?;
    let at = events.display().to_string();
    let read = offline::read_csv(&spec, &streamscore::io::read_input(events)?, &at)?;
    if read.is_empty() {
        return Err(Error::Input { at, message: "no events to replay".into() });
    }
    let mut stage = Features::new(spec.clone());
    let (rows, _) = offline::run(&mut stage, &read, 65_536)?;
    let features = Batch::from_rows(&rows, spec.names.len())?;
    let (lo, hi) = read.times.iter().fold((i64::MAX, i64::MIN), |(a, b), &t| (a.min(t), b.max(t)));
    Ok(RawEvents {
        spec,
        rows: read.rows,
        keys: read.keys,
        times: read.times,
        span: hi.saturating_sub(lo).saturating_add(1),
        features,
    })
}

struct Load<'a> {
    producers: usize,
    /// Events in flight per producer (closed loop).
    window: usize,
    /// Events/s over all producers (open loop), or closed loop.
    rate: Option<f64>,
    /// Events per submission (1: `try_submit`; more: `try_submit_many`).
    set: usize,
    /// A challenger scoring in shadow, and its share of the events.
    shadow: Option<(std::path::PathBuf, f64)>,
    /// A canary in a split by key, and its share of the keys in percent.
    canary: Option<(std::path::PathBuf, f64)>,
    /// An audit log's directory.
    audit: Option<std::path::PathBuf>,
    /// A training reference for the drift monitor, and its quantile sketch's accuracy.
    monitor: Option<(std::path::PathBuf, Option<f64>)>,
    /// Raw events through a feature stage instead of the model's rows.
    raw: Option<&'a RawEvents>,
    duration: Duration,
}

/// What a producer waits on: one event's answer or a set's.
enum Pending {
    One(Ticket),
    Many(Ticket<streamscore::Scores>),
}

impl Pending {
    fn is_ready(&self) -> bool {
        match self {
            Pending::One(t) => t.is_ready(),
            Pending::Many(t) => t.is_ready(),
        }
    }
    /// Events it answers.
    fn events(&self, set: usize) -> usize {
        match self {
            Pending::One(_) => 1,
            Pending::Many(_) => set,
        }
    }
}

/// Waits for the oldest submission in the window.
fn settle(window: &mut VecDeque<Pending>) {
    // Errors (expired, shed) are counted by the runtime's metrics.
    match window.pop_front() {
        Some(Pending::One(t)) => drop(std::hint::black_box(t.wait())),
        Some(Pending::Many(t)) => drop(std::hint::black_box(t.wait())),
        None => {}
    }
}

fn stream(
    (backend, schema): (Arc<dyn Backend>, Schema),
    config: RuntimeConfig,
    rows: &Batch,
    load: &Load,
    tick: impl Fn(Duration),
) -> Result<(Outcome, streamscore::MetricsSnapshot), Error> {
    let batch = config.max_batch.get();
    let max_delay_us = config.max_delay.as_micros() as u64;
    let mut builder = Runtime::builder().backend(backend).schema(schema).config(config);
    if let Some(raw) = load.raw {
        builder = builder.features(streamscore::features::Features::new(raw.spec.clone()));
    }
    if let Some(dir) = &load.audit {
        builder = builder.audit(streamscore::audit::AuditConfig::new(dir));
    }
    if let Some((path, quantile_sketch)) = &load.monitor {
        use streamscore::monitor::profile::{Monitor, MonitorConfig};
        let reference = streamscore::monitor::reference::Reference::from_path(path)?;
        let config = MonitorConfig {
            quantile_sketch: *quantile_sketch,
            ..MonitorConfig::new(Arc::new(reference))
        };
        builder = builder.monitor(Monitor::new(config)?);
    }
    let rt = builder.build()?;
    if let Some((model, fraction)) = &load.shadow {
        let update = ModelUpdate::path(model).with_version(2);
        rt.set_shadow(ShadowConfig::new(update).with_fraction(*fraction))?;
    }
    if let Some((model, percent)) = &load.canary {
        // Weights in basis points: 0.01% steps.
        let canary = (percent * 100.0).round() as u32;
        let id = rt.load(ModelUpdate::path(model).with_version(3))?;
        let live = rt.live_version();
        rt.set_split(
            Split::new().variant("control", live, 10_000 - canary).variant("canary", id, canary),
        )?;
    }
    // Keys choose a shadow's share and a split's variant: each event's key is its row.
    let keyed = load.shadow.is_some() || load.canary.is_some();
    let keys: Vec<u64> = if keyed { (0..rows.n_rows() as u64).collect() } else { Vec::new() };
    // The events: the model's rows, or raw events (fields, keys, times) for the stage.
    let (n, w, row_major) = match load.raw {
        Some(raw) => (raw.keys.len(), raw.spec.fields.len(), raw.rows.clone()),
        None => (rows.n_rows(), rows.n_features(), rows.to_rows()),
    };
    // Sets are cut from the rows without wrapping: at most n events each.
    let set = load.set.min(n).max(1);
    let producers = load.producers.max(1);
    let (window, rate, duration) = (load.window.max(set), load.rate, load.duration);
    let start = Instant::now();
    let producer_cpu_ns = std::thread::scope(|s| {
        let handles: Vec<_> = (0..producers)
            .map(|p| {
                let (rt, row_major, keys) = (&rt, &row_major, &keys);
                s.spawn(move || {
                    let cpu0 = thread_cpu_ns();
                    let mut window_q = VecDeque::with_capacity(window);
                    let mut in_flight = 0;
                    let per_producer = rate.map(|r| r.max(1e-9) / producers as f64);
                    let mut sent = 0u64;
                    let mut i = p * (n / producers);
                    // Raw events: each pass over them moves their times past the last pass's.
                    let (mut pass, mut shifted) = (-1i64, vec![0i64; set]);
                    // A closed loop reads the clock once per 64 events or so, not per event:
                    // a clock read costs about as much as the runtime's hand-off it measures.
                    let check_every = if rate.is_some() { 1 } else { (64 / set).max(1) };
                    let mut until_check = 0;
                    loop {
                        if until_check == 0 {
                            if start.elapsed() >= duration {
                                break;
                            }
                            until_check = check_every;
                        }
                        until_check -= 1;
                        if let Some(rp) = per_producer {
                            // Open loop in ~50 µs ticks: submit every event due by now, collect
                            // the answers that are in, then sleep, so the producer does not
                            // take a core away from the runtime's threads.
                            let due = (start.elapsed().as_secs_f64() * rp) as u64;
                            if sent + set as u64 > due {
                                while window_q.front().is_some_and(Pending::is_ready) {
                                    in_flight -= window_q.front().map_or(0, |t| t.events(set));
                                    settle(&mut window_q);
                                }
                                std::thread::sleep(Duration::from_micros(50));
                                continue;
                            }
                            sent += set as u64;
                        }
                        let r = if i % n + set > n { 0 } else { i % n };
                        if r == 0 {
                            pass += 1;
                        }
                        i = r + set;
                        let submitted = match load.raw {
                            Some(raw) if set == 1 => {
                                let event = Event::new(&row_major[r * w..(r + 1) * w])
                                    .with_key(raw.keys[r])
                                    .with_timestamp_ms(raw.time(r, pass));
                                rt.try_submit(event).map(Pending::One).map_err(|_| ())
                            }
                            Some(raw) => {
                                for (i, s) in shifted.iter_mut().enumerate() {
                                    *s = raw.time(r + i, pass);
                                }
                                let events = EventBatch::rows(&row_major[r * w..(r + set) * w])
                                    .with_keys(&raw.keys[r..r + set])
                                    .with_timestamps_ms(&shifted);
                                rt.try_submit_many(events).map(Pending::Many).map_err(|_| ())
                            }
                            None if set == 1 => {
                                let mut event = Event::new(&row_major[r * w..(r + 1) * w]);
                                if keyed {
                                    event = event.with_key(r as u64);
                                }
                                rt.try_submit(event).map(Pending::One).map_err(|_| ())
                            }
                            None => {
                                let mut events = EventBatch::rows(&row_major[r * w..(r + set) * w]);
                                if keyed {
                                    events = events.with_keys(&keys[r..r + set]);
                                }
                                rt.try_submit_many(events).map(Pending::Many).map_err(|_| ())
                            }
                        };
                        match submitted {
                            Ok(t) => {
                                in_flight += t.events(set);
                                window_q.push_back(t);
                            }
                            // Closed loop: wait for room by settling the oldest. Open loop: the
                            // events are dropped and counted as rejected.
                            Err(()) if per_producer.is_none() => {
                                in_flight -= window_q.front().map_or(0, |t| t.events(set));
                                settle(&mut window_q);
                            }
                            Err(()) => {}
                        }
                        while per_producer.is_none() && in_flight + set > window {
                            in_flight -= window_q.front().map_or(0, |t| t.events(set));
                            settle(&mut window_q);
                        }
                    }
                    while !window_q.is_empty() {
                        settle(&mut window_q);
                    }
                    thread_cpu_ns() - cpu0
                })
            })
            .collect();
        while handles.iter().any(|h| !h.is_finished()) {
            tick(start.elapsed());
            std::thread::sleep(Duration::from_millis(50));
        }
        handles.into_iter().map(|h| h.join().unwrap_or(0)).sum::<u64>()
    });
    let seconds = start.elapsed().as_secs_f64();
    rt.shutdown();
    let m = rt.metrics();
    let rt_monitor = rt
        .monitor_report()
        .map(|r| (r.observed, r.observe_ns as f64 / r.observed.max(1) as f64, r.alerts_total));
    let latency_ns = *m.stage(Stage::EndToEnd);
    let us = |s: Stage| m.stage(s).p50 as f64 / 1e3;
    let outcome = Outcome {
        mode: "stream",
        batch,
        max_delay_us: Some(max_delay_us),
        seconds,
        rows: m.scored,
        latency_ns,
        accepted: m.accepted,
        scored: m.scored,
        rejected: m.rejected,
        expired: m.expired,
        lost: m.accepted - m.answered(),
        stages_us: Some([us(Stage::Queue), us(Stage::Batching), us(Stage::Scoring)]),
        per_event_ns: Some((
            Busy::ALL.map(|k| m.busy(k) as f64 / m.answered().max(1) as f64),
            producer_cpu_ns as f64 / (m.accepted + m.rejected).max(1) as f64,
        )),
        mean_batch: m.batch_rows.sum / m.batch_rows.count.max(1) as f64,
        shadow: m.shadow.as_ref().map(|s| (s.compared, s.dropped)),
        variants: m.variants.iter().map(|v| (v.name.clone(), v.version, v.events)).collect(),
        audit: m.audit.map(|a| (a.written, a.dropped)),
        monitor: rt_monitor,
        lookups: m.features.as_ref().map(|f| f.lookups.clone()).unwrap_or_default(),
    };
    Ok((outcome, m))
}
