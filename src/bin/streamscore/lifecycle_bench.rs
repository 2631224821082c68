//! `streamscore bench --swap-model B --swap-every SECS`: the runtime under an open-loop load
//! (half of its measured peak unless `--rate` says) while a second thread swaps the model
//! between `--model` and `--swap-model` every SECS seconds. Latency is split into steady state
//! and the window from the start of each swap's load to one second after it went live (the
//! load and warm-up run on the swapping thread, beside the runtime's, so both count).

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::json;
use streamscore::metrics::{Summary, latency_histogram};
use streamscore::{
    BackendSpec, Batch, Error, Event, ModelUpdate, Runtime, RuntimeConfig, Score, Ticket,
};

use crate::args::BenchArgs;

/// Latencies are kept per slice of acceptance time, so each slice can be told steady or
/// after-swap once the swap times are known.
const SLICE: Duration = Duration::from_millis(50);
/// How long after a swap goes live its window lasts.
const AFTER: Duration = Duration::from_secs(1);
/// Steady state starts after this (first batches, tuning of the first version).
const WARM: Duration = Duration::from_secs(1);
/// Closed-loop run that finds the peak when `--rate` is not given.
const CALIBRATE: Duration = Duration::from_secs(2);

/// One swap: when its load began and when the new version went live.
struct Swap {
    began: Duration,
    live: Duration,
    load_ms: f64,
}

/// One producer's record.
struct Record {
    slices: Vec<Histogram<u64>>,
    by_version: BTreeMap<u64, u64>,
}

impl Record {
    fn new(n: usize) -> Self {
        Record {
            slices: (0..n).map(|_| latency_histogram()).collect(),
            by_version: BTreeMap::new(),
        }
    }

    fn add(&mut self, at: Duration, score: &Score) {
        let slice = ((at.as_nanos() / SLICE.as_nanos()) as usize).min(self.slices.len() - 1);
        let ns = score.timing.total.as_nanos().max(1) as u64;
        self.slices[slice].saturating_record(ns);
        *self.by_version.entry(score.model_version).or_default() += 1;
    }
}

pub fn run(
    args: &BenchArgs,
    spec: &BackendSpec,
    model: &Path,
    swap_model: &Path,
    rows: &Batch,
) -> Result<(), Error> {
    let every = Duration::from_secs_f64(args.swap_every);
    let duration = Duration::from_secs_f64(args.duration);
    let config = RuntimeConfig::default()
        .with_backend(spec.clone())
        .with_max_batch(args.batch)
        .with_max_delay(Duration::from_micros(args.max_delay_us))
        .with_workers(args.threads)
        .with_queue_capacity(args.queue)
        .with_model_version(1);
    let rt = Runtime::builder().model_path(model).config(config).build()?;
    let row_major = rows.to_rows();
    let producers = args.producers.max(1);
    let rate = match args.rate {
        Some(r) => r,
        None => {
            let before = rt.metrics().scored;
            let start = Instant::now();
            drive(&rt, &row_major, rows.n_features(), producers, None, CALIBRATE, None);
            let peak = (rt.metrics().scored - before) as f64 / start.elapsed().as_secs_f64();
            if !args.json {
                eprintln!("peak {peak:.0} events/s (closed loop, {CALIBRATE:?}); load at half");
            }
            peak / 2.0
        }
    };
    let baseline = rt.metrics();
    let files = [model.to_path_buf(), swap_model.to_path_buf()];
    let swaps: Mutex<Vec<Swap>> = Mutex::new(Vec::new());
    let start = Instant::now();
    let records = std::thread::scope(|s| {
        let swapper = s.spawn(|| swapper(&rt, &files, every, duration, start, &swaps));
        let records =
            drive(&rt, &row_major, rows.n_features(), producers, Some(rate), duration, Some(start));
        swapper.join().expect("swap thread")?;
        Ok::<_, Error>(records)
    })?;
    let seconds = start.elapsed().as_secs_f64();
    rt.shutdown();
    let m = rt.metrics();
    let swaps = swaps.into_inner().unwrap_or_else(|p| p.into_inner());
    let (steady, after) = split(&records, &swaps);
    if args.timeline {
        timeline(&records, &swaps);
    }
    let mut by_version: BTreeMap<u64, u64> = BTreeMap::new();
    for r in &records {
        for (v, n) in &r.by_version {
            *by_version.entry(*v).or_default() += n;
        }
    }
    let lost = m.accepted - m.answered();
    let accepted = m.accepted - baseline.accepted;
    let scored = m.scored - baseline.scored;
    let us = |s: &Summary| [s.p50, s.p99, s.p999, s.max].map(|v| v as f64 / 1e3);
    let [s50, s99, s999, smax] = us(&steady);
    let [a50, a99, a999, amax] = us(&after);
    let max_load_ms = swaps.iter().map(|s| s.load_ms).fold(0.0, f64::max);
    if args.json {
        let answers: serde_json::Map<String, serde_json::Value> =
            by_version.iter().map(|(v, n)| (v.to_string(), json!(n))).collect();
        let v = json!({
            "mode": "lifecycle", "backend": rt.backend_name(),
            "model": model.display().to_string(), "swap_model": swap_model.display().to_string(),
            "swap_every_s": args.swap_every, "rate": rate, "producers": producers,
            "batch": args.batch, "max_delay_us": args.max_delay_us, "threads": args.threads,
            "seconds": seconds, "swaps": swaps.len(), "swap_failures": m.swap_failures,
            "max_swap_load_ms": max_load_ms,
            "p50_steady_us": s50, "p99_steady_us": s99, "p999_steady_us": s999, "max_steady_us": smax,
            "p50_after_swap_us": a50, "p99_after_swap_us": a99, "p999_after_swap_us": a999,
            "max_after_swap_us": amax, "steady_events": steady.count, "after_swap_events": after.count,
            "answers_by_version": answers, "accepted": accepted, "scored": scored,
            "rejected": m.rejected - baseline.rejected, "expired": m.expired - baseline.expired,
            "lost": lost,
        });
        println!("{v}");
    } else {
        println!(
            "lifecycle: {} swaps every {:.1} s at {rate:.0} events/s ({producers} producers), \
             longest load + warm-up {max_load_ms:.1} ms",
            swaps.len(),
            args.swap_every
        );
        println!(
            "{:<11} {:>10} {:>9} {:>9} {:>9} {:>9}",
            "window", "events", "p50_us", "p99_us", "p999_us", "max_us"
        );
        for (name, s, [p50, p99, p999, max]) in [
            ("steady", &steady, [s50, s99, s999, smax]),
            ("after swap", &after, [a50, a99, a999, amax]),
        ] {
            println!("{name:<11} {:>10} {p50:>9.1} {p99:>9.1} {p999:>9.1} {max:>9.1}", s.count);
        }
        let answers: Vec<String> = by_version.iter().map(|(v, n)| format!("v{v} {n}")).collect();
        println!(
            "answers by version: {}; accepted {accepted}, rejected {}, expired {}, lost {lost}",
            answers.join(", "),
            m.rejected - baseline.rejected,
            m.expired - baseline.expired
        );
        println!(
            "p99 after swap / steady: {:.2}x; p999: {:.2}x",
            a99 / s99.max(1e-9),
            a999 / s999.max(1e-9)
        );
    }
    Ok(())
}

/// Swaps between the two files every `every` until `duration` has passed, each swap a new
/// version number (2, 3, ...), so each one loads and warms up afresh.
fn swapper(
    rt: &Runtime,
    files: &[PathBuf; 2],
    every: Duration,
    duration: Duration,
    start: Instant,
    swaps: &Mutex<Vec<Swap>>,
) -> Result<(), Error> {
    let mut k = 1u64;
    loop {
        let due = every * k as u32;
        // The last swap leaves a full window after it inside the run.
        if due + AFTER + every.min(AFTER) > duration {
            return Ok(());
        }
        std::thread::sleep(due.saturating_sub(start.elapsed()));
        let began = start.elapsed();
        let version = k + 1;
        let file = &files[(k % 2) as usize];
        rt.swap(ModelUpdate::path(file).with_version(version))?;
        let live = start.elapsed();
        let load_ms = rt
            .versions()
            .iter()
            .find(|l| l.version == version)
            .map_or(0.0, |l| (l.load_time + l.warmup_time).as_secs_f64() * 1e3);
        swaps.lock().unwrap_or_else(|p| p.into_inner()).push(Swap { began, live, load_ms });
        k += 1;
    }
}

/// Prints each slice's latency on stderr, marking the slices a swap's load overlaps.
fn timeline(records: &[Record], swaps: &[Swap]) {
    let n = records.first().map_or(0, |r| r.slices.len());
    eprintln!("{:>7} {:>8} {:>9} {:>9} {:>9}", "at_s", "events", "p50_us", "p99_us", "max_us");
    for i in 0..n {
        let mut h = latency_histogram();
        for r in records {
            let _ = h.add(&r.slices[i]);
        }
        if h.is_empty() {
            continue;
        }
        let (from, to) = (SLICE * i as u32, SLICE * (i as u32 + 1));
        let loading = swaps.iter().any(|s| from < s.live && to > s.began);
        let q = |q: f64| h.value_at_quantile(q) as f64 / 1e3;
        eprintln!(
            "{:>7.2} {:>8} {:>9.0} {:>9.0} {:>9.0}{}",
            from.as_secs_f64(),
            h.len(),
            q(0.5),
            q(0.99),
            h.max() as f64 / 1e3,
            if loading { "  swap loading" } else { "" }
        );
    }
}

/// Merges the producers' slices into steady state and after-swap windows.
fn split(records: &[Record], swaps: &[Swap]) -> (Summary, Summary) {
    let (mut steady, mut after) = (latency_histogram(), latency_histogram());
    let n = records.first().map_or(0, |r| r.slices.len());
    for i in 0..n {
        let (from, to) = (SLICE * i as u32, SLICE * (i as u32 + 1));
        if to <= WARM {
            continue;
        }
        let in_swap = swaps.iter().any(|s| from < s.live + AFTER && to > s.began);
        let into = if in_swap { &mut after } else { &mut steady };
        for r in records {
            let _ = into.add(&r.slices[i]);
        }
    }
    (Summary::of(&steady), Summary::of(&after))
}

/// Producers submitting single events: open loop at `rate` events/s in all, or closed loop
/// (a window of events in flight each). With `record`, answers are recorded by the time
/// (since `record`) they were submitted.
fn drive(
    rt: &Runtime,
    rows: &[f32],
    width: usize,
    producers: usize,
    rate: Option<f64>,
    duration: Duration,
    record: Option<Instant>,
) -> Vec<Record> {
    let n = rows.len() / width.max(1);
    let slices = (duration.as_nanos() / SLICE.as_nanos()) as usize + 2;
    let start = Instant::now();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..producers)
            .map(|p| {
                s.spawn(move || {
                    let mut rec = Record::new(if record.is_some() { slices } else { 1 });
                    let mut window: VecDeque<(Duration, Ticket)> = VecDeque::new();
                    let per = rate.map(|r| r / producers as f64);
                    let mut sent = 0u64;
                    let mut i = p * (n / producers.max(1));
                    let settle = |window: &mut VecDeque<(Duration, Ticket)>, rec: &mut Record| {
                        if let Some((at, t)) = window.pop_front()
                            && let Ok(score) = t.wait()
                            && record.is_some()
                        {
                            rec.add(at, &score);
                        }
                    };
                    while start.elapsed() < duration {
                        if let Some(per) = per {
                            let due = (start.elapsed().as_secs_f64() * per) as u64;
                            if sent >= due {
                                while window.front().is_some_and(|(_, t)| t.is_ready()) {
                                    settle(&mut window, &mut rec);
                                }
                                std::thread::sleep(Duration::from_micros(50));
                                continue;
                            }
                            sent += 1;
                        }
                        let r = i % n;
                        i += 1;
                        let at = record.map_or(Duration::ZERO, |t| t.elapsed());
                        match rt.try_submit(Event::new(&rows[r * width..(r + 1) * width])) {
                            Ok(t) => window.push_back((at, t)),
                            Err(_) if per.is_none() => settle(&mut window, &mut rec),
                            Err(_) => {}
                        }
                        if per.is_none() && window.len() >= 1024 {
                            settle(&mut window, &mut rec);
                        }
                    }
                    while !window.is_empty() {
                        settle(&mut window, &mut rec);
                    }
                    rec
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("producer")).collect()
    })
}
