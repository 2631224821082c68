//! `streamscore bench --frames CONFIG`: simulated cameras submit frames at their frame rate
//! (open loop) into a `FrameRuntime`; reports frames/s, end-to-end latency and the stage split.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::json;
use streamscore::Error;
use streamscore::Stage;
use streamscore::backend::gpu::{AdapterChoice, Context};
use streamscore::frames::{FrameConfig, FrameRuntime, FrameScorer, OwnedFrame, PixelFormat};

use crate::args::BenchArgs;

/// Frames each simulated camera cycles through: a bright square moving over fixed noise.
const VARIANTS: usize = 8;

fn frames_of(camera: usize, w: usize, h: usize) -> Vec<Vec<u8>> {
    let mut s = 0x9e37_79b9_7f4a_7c15u64 ^ camera as u64;
    let noise: Vec<u8> = (0..w * h * 3)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            30 + (s % 40) as u8
        })
        .collect();
    (0..VARIANTS)
        .map(|v| {
            let mut f = noise.clone();
            let (x0, y0) = (v * w / (2 * VARIANTS), v * h / (2 * VARIANTS));
            for y in y0..(y0 + h / 4).min(h) {
                for x in x0..(x0 + w / 4).min(w) {
                    f[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&[220, 200, 180]);
                }
            }
            f
        })
        .collect()
}

pub fn run(args: &BenchArgs, config: &Path) -> Result<(), Error> {
    let (w, h) = args
        .frame_size
        .split_once('x')
        .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)))
        // At most 16384 on a side and 2^28 bytes of RGB (an 8K frame is 99.5 MB).
        .filter(|&(a, b)| {
            (1..=16_384).contains(&a) && (1..=16_384).contains(&b) && a * b * 3 <= 1 << 28
        })
        .ok_or_else(|| {
            Error::Config(format!(
                "--frame-size `{}`: expected WIDTHxHEIGHT, each 1..=16384 and at most 2^28 \
                 bytes of RGB",
                args.frame_size
            ))
        })?;
    let mut config = FrameConfig::from_path(config)?;
    if args.motion_threshold.is_some() {
        config.motion_threshold = args.motion_threshold;
    }
    let gpu = match args.backend.as_str() {
        "gpu" => {
            let adapter = if args.gpu_software {
                AdapterChoice::AllowSoftware
            } else {
                AdapterChoice::Hardware
            };
            Some(Context::new(adapter)?)
        }
        "auto" | "cpu" => None,
        other => {
            return Err(Error::Config(format!(
                "--frames runs on --backend cpu or gpu, not `{other}`"
            )));
        }
    };
    if let Some(ctx) = &gpu {
        let note =
            if ctx.is_software() { " (software: timings say nothing about a GPU)" } else { "" };
        eprintln!("gpu adapter {}{note}", ctx.adapter());
    }
    let scorer = FrameScorer::new(config, gpu, args.cameras.max(1))?;
    let p = *scorer.preprocessing();
    let config = streamscore::RuntimeConfig::default()
        .with_max_batch(args.batch.max(1))
        .with_max_delay(Duration::from_micros(args.max_delay_us))
        .with_queue_capacity(args.queue.max(1))
        .with_overload(streamscore::Overload::Reject);
    let rt = FrameRuntime::new(scorer, config)?;
    let period = Duration::from_secs_f64(1.0 / args.fps.max(0.001));
    let duration = Duration::from_secs_f64(args.duration.max(0.1));
    let start = Instant::now();
    let (submitted, rejected, answered, errors) = std::thread::scope(|s| {
        let cameras: Vec<_> = (0..args.cameras)
            .map(|c| {
                let rt = &rt;
                s.spawn(move || {
                    let frames = frames_of(c, w, h);
                    let (tx, rx) = crossbeam_channel::unbounded();
                    let waiter = std::thread::spawn(move || {
                        let (mut ok, mut err) = (0u64, 0u64);
                        for t in rx {
                            match streamscore::frames::FrameTicket::wait(t) {
                                Ok(_) => ok += 1,
                                Err(_) => err += 1,
                            }
                        }
                        (ok, err)
                    });
                    let (mut sent, mut refused) = (0u64, 0u64);
                    // Cameras start staggered over one period, as real ones are not in phase.
                    let mut next = start + period.mul_f64(c as f64 / args.cameras as f64);
                    let mut i = 0usize;
                    while next < start + duration {
                        if let Some(wait) = next.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                        let frame = OwnedFrame {
                            camera: c as u32,
                            timestamp_ms: (next - start).as_millis() as i64,
                            width: w as u32,
                            height: h as u32,
                            format: PixelFormat::Rgb8,
                            data: frames[i % VARIANTS].clone(),
                            deadline: None,
                        };
                        match rt.try_submit(frame) {
                            Ok(t) => {
                                sent += 1;
                                let _ = tx.send(t);
                            }
                            Err(_) => refused += 1,
                        }
                        i += 1;
                        next += period;
                    }
                    drop(tx);
                    let (ok, err) = waiter.join().unwrap_or((0, 0));
                    (sent, refused, ok, err)
                })
            })
            .collect();
        cameras
            .into_iter()
            .map(|h| h.join().unwrap_or((0, 0, 0, 0)))
            .fold((0, 0, 0, 0), |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2, a.3 + b.3))
    });
    let seconds = start.elapsed().as_secs_f64();
    let m = rt.metrics();
    let (e2e, queue) = (m.stage(Stage::EndToEnd), m.stage(Stage::Queue));
    let (pre, model) = (m.stage(Stage::Prepare), m.stage(Stage::Scoring));
    let mean = |s: &streamscore::metrics::Summary| s.sum / s.count.max(1) as f64;
    let c = rt.scorer().counters();
    let (scored, skipped) = (c.scored.load(Ordering::Relaxed), c.skipped.load(Ordering::Relaxed));
    let ms = |v: u64| v as f64 / 1e6;
    let path = if rt.scorer().on_gpu() { "gpu" } else { "cpu" };
    if args.json {
        println!(
            "{}",
            json!({
                "mode": "frames", "preprocess": path, "cameras": args.cameras, "fps": args.fps,
                "frame": format!("{w}x{h}"), "model_input": format!("{}x{}x{}", p.channels, p.height, p.width),
                "seconds": seconds, "submitted": submitted, "rejected": rejected, "answered": answered,
                "errors": errors, "scored": scored, "skipped": skipped,
                "frames_per_sec": answered as f64 / seconds,
                "latency_ms": { "p50": ms(e2e.p50), "p99": ms(e2e.p99), "max": ms(e2e.max) },
                "stage_mean_ms": { "queue": mean(queue) / 1e6, "preprocess_per_batch": mean(pre) / 1e6, "model_per_batch": mean(model) / 1e6 },
                "mean_batch": mean(&m.batch_rows),
            })
        );
    } else {
        println!(
            "frames: {} cameras x {} fps, {w}x{h} RGB -> {}x{}x{} ({path} preprocessing), {:.1} s",
            args.cameras, args.fps, p.channels, p.height, p.width, seconds
        );
        println!(
            "  {answered} answered ({:.1} frames/s; {scored} scored, {skipped} skipped by motion), {rejected} refused, {errors} errors",
            answered as f64 / seconds
        );
        println!(
            "  end-to-end latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; mean batch {:.1} frames",
            ms(e2e.p50),
            ms(e2e.p99),
            ms(e2e.max),
            mean(&m.batch_rows)
        );
        println!(
            "  stages (mean): queue {:.2} ms per frame; preprocess+motion {:.2} ms and model {:.2} ms per batch",
            mean(queue) / 1e6,
            mean(pre) / 1e6,
            mean(model) / 1e6
        );
    }
    rt.shutdown();
    Ok(())
}
