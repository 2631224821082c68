//! Frames: the GPU's preprocessing and motion scores against the CPU's, on generated frames
//! (moving shapes on noise) of several sizes and pixel formats, on a hardware GPU or lavapipe.

// Frames run their CNN on ONNX Runtime and preprocess on the GPU.
#![cfg(all(feature = "gpu", feature = "onnx"))]

use streamscore::backend::gpu::{AdapterChoice, Context, FramesGpu};
use streamscore::frames::{
    Frame, FrameConfig, FrameScorer, MotionTracker, PixelFormat, Preprocess, preprocess,
};

/// A `w x h` frame in `format`: seeded noise, with a bright square at `(x, y)`.
fn frame_bytes(w: usize, h: usize, format: PixelFormat, x: usize, y: usize, seed: u64) -> Vec<u8> {
    let mut s = seed | 1;
    let mut out = Vec::with_capacity(w * h * format.bytes());
    for r in 0..h {
        for c in 0..w {
            let inside = (x..x + w / 4).contains(&c) && (y..y + h / 4).contains(&r);
            for k in 0..format.bytes() {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                let noise = (s % 40) as u8;
                out.push(if inside {
                    200 + noise / 2 + k as u8 * 10
                } else {
                    30 + noise + k as u8 * 20
                });
            }
        }
    }
    out
}

fn context() -> Option<std::sync::Arc<Context>> {
    match Context::new(AdapterChoice::AllowSoftware) {
        Ok(c) => Some(c),
        Err(e) if std::env::var("STREAMSCORE_REQUIRE_GPU").is_ok_and(|v| v == "1") => panic!("{e}"),
        Err(e) => {
            eprintln!("SKIP frame GPU tests: {e}");
            None
        }
    }
}

#[test]
fn gpu_preprocessing_and_motion_match_the_cpu() {
    let Some(ctx) = context() else { return };
    let shapes = [
        (64usize, 48usize, PixelFormat::Rgb8),
        (100, 75, PixelFormat::Bgr8),
        (33, 20, PixelFormat::Gray8),
    ];
    for channels in [3u32, 1] {
        let p = Preprocess {
            width: 32,
            height: 24,
            channels,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
        };
        let gpu = FramesGpu::new(ctx.clone(), p, 16).unwrap();
        let mut tracker = MotionTracker::default();
        let mut worst_tensor = 0.0f32;
        let mut worst_motion = 0.0f32;
        // Four batches; camera k moves its square each step except camera 0, which is static.
        for step in 0..4usize {
            let data: Vec<(u32, Vec<u8>, usize, usize, PixelFormat)> = (0..6u32)
                .map(|cam| {
                    let (w, h, format) = shapes[cam as usize % 3];
                    let moved = if cam == 0 { 0 } else { step * 3 };
                    (
                        cam,
                        frame_bytes(
                            w,
                            h,
                            format,
                            2 + moved,
                            1 + moved / 2,
                            7 + cam as u64 * 100 + if cam == 0 { 0 } else { step as u64 },
                        ),
                        w,
                        h,
                        format,
                    )
                })
                .collect();
            let frames: Vec<Frame> = data
                .iter()
                .map(|(cam, bytes, w, h, format)| Frame {
                    camera: *cam,
                    timestamp_ms: step as i64 * 40,
                    width: *w as u32,
                    height: *h as u32,
                    format: *format,
                    data: bytes,
                })
                .collect();
            let mut cpu = vec![0.0; p.len(frames.len())];
            preprocess(&frames, &p, &mut cpu).unwrap();
            let mut on_gpu = vec![0.0; p.len(frames.len())];
            let motion_gpu = gpu.process(&frames, &mut on_gpu).unwrap();
            let motion_cpu = tracker.scores(&frames, 32, 24).unwrap();
            for (a, b) in cpu.iter().zip(&on_gpu) {
                worst_tensor = worst_tensor.max((a - b).abs());
            }
            for (cam, (a, b)) in motion_cpu.iter().zip(&motion_gpu).enumerate() {
                if step == 0 {
                    assert!(
                        a.is_infinite() && b.is_infinite(),
                        "a camera's first frame counts as moving"
                    );
                    continue;
                }
                worst_motion = worst_motion.max((a - b).abs());
                if cam == 0 {
                    assert_eq!((*a, *b), (0.0, 0.0), "a static camera has no motion");
                } else {
                    assert!(*a > 0.01 && *b > 0.01, "camera {cam} moved: cpu {a}, gpu {b}");
                }
            }
        }
        eprintln!(
            "{channels} channels: max |gpu - cpu| tensor {worst_tensor:e}, motion {worst_motion:e}"
        );
        assert!(worst_tensor <= 1e-5, "tensor differs by {worst_tensor}");
        assert!(worst_motion <= 1e-6, "motion differs by {worst_motion}");
    }
}

#[test]
fn bad_frames_are_errors() {
    let p = Preprocess { width: 8, height: 8, channels: 3, mean: [0.0; 3], std: [1.0; 3] };
    let short = Frame {
        camera: 1,
        timestamp_ms: 0,
        width: 4,
        height: 4,
        format: PixelFormat::Rgb8,
        data: &[0; 10],
    };
    let mut out = vec![0.0; p.len(1)];
    assert!(preprocess(&[short], &p, &mut out).unwrap_err().to_string().contains("needs 48 bytes"));
    let bad = Preprocess { channels: 2, ..p };
    let ok = Frame { data: &[0; 48], ..short };
    assert!(preprocess(&[ok], &bad, &mut out).is_err());
    assert!(preprocess(&[ok], &p, &mut out[1..]).is_err());
    let zero_std = Preprocess { std: [1.0, 0.0, 1.0], ..p };
    assert!(preprocess(&[ok], &zero_std, &mut out).is_err());
}

/// The committed frames (models/frames, made by models/generate_frames.py), in capture order.
/// A frame's camera, time, width, height, format and bytes.
type Owned = (u32, i64, u32, u32, PixelFormat, Vec<u8>);

/// The frames, ONNX Runtime's outputs per frame, and numpy's tensor (row-major).
type Committed = (Vec<Owned>, Vec<Vec<f32>>, Vec<f32>);

fn committed() -> Committed {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/frames");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("frames.json")).unwrap()).unwrap();
    let frames = index
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let format = match f["format"].as_str().unwrap() {
                "rgb8" => PixelFormat::Rgb8,
                "bgr8" => PixelFormat::Bgr8,
                _ => PixelFormat::Gray8,
            };
            let bytes =
                std::fs::read(dir.join("frames").join(f["file"].as_str().unwrap())).unwrap();
            let n = |k: &str| f[k].as_u64().unwrap();
            (
                n("camera") as u32,
                n("timestamp_ms") as i64,
                n("width") as u32,
                n("height") as u32,
                format,
                bytes,
            )
        })
        .collect();
    let expected = std::fs::read_to_string(dir.join("expected.csv"))
        .unwrap()
        .lines()
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    let npy = std::fs::read(dir.join("tensor.npy")).unwrap();
    let names: Vec<String> = (0..3 * 32 * 32).map(|i| i.to_string()).collect();
    let tensor = streamscore::io::read_rows(
        &npy,
        streamscore::io::Columns::Positional,
        &names,
        "tensor.npy",
    )
    .unwrap();
    (frames, expected, tensor.to_rows())
}

fn as_frames(data: &[Owned]) -> Vec<Frame<'_>> {
    data.iter()
        .map(|(camera, t, w, h, format, bytes)| Frame {
            camera: *camera,
            timestamp_ms: *t,
            width: *w,
            height: *h,
            format: *format,
            data: bytes,
        })
        .collect()
}

/// Our preprocessing against the generator's numpy one, and the CNN's scores on both paths
/// against ONNX Runtime's outputs for the numpy tensor.
#[test]
fn committed_frames_match_numpy_and_onnx_runtime() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/frames");
    let (data, expected, numpy) = committed();
    let frames = as_frames(&data);
    let config = FrameConfig::from_path(dir.join("config.toml")).unwrap();
    let mut paths: Vec<(&str, Option<std::sync::Arc<Context>>)> = vec![("cpu", None)];
    if let Some(ctx) = context() {
        paths.push(("gpu", Some(ctx)));
    }
    for (label, ctx) in paths {
        let scorer = FrameScorer::new(config.clone(), ctx, 8).unwrap();
        assert_eq!(scorer.on_gpu(), label == "gpu");
        let (tensor, _) = scorer.prepare(&frames).unwrap();
        let worst = tensor.iter().zip(&numpy).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(worst <= 1e-5, "{label}: tensor differs from numpy's by {worst}");
        let scores = scorer.score(&frames).unwrap();
        let mut worst_score = 0.0f32;
        for (s, want) in scores.iter().zip(&expected) {
            for (a, b) in s.scores.as_ref().unwrap().iter().zip(want) {
                worst_score = worst_score.max((a - b).abs());
            }
        }
        eprintln!("{label}: tensor vs numpy {worst:e}; scores vs ONNX Runtime {worst_score:e}");
        assert!(worst_score <= 1e-4, "{label}: scores differ by {worst_score}");
    }
}

/// With a motion threshold, the static camera's frames after its first skip the model and
/// the moving cameras' are scored; the counters say so.
#[test]
fn motion_gating_skips_static_frames() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/frames");
    let (data, _, _) = committed();
    let frames = as_frames(&data);
    let config = FrameConfig {
        motion_threshold: Some(0.01),
        ..FrameConfig::from_path(dir.join("config.toml")).unwrap()
    };
    let mut paths: Vec<Option<std::sync::Arc<Context>>> = vec![None];
    paths.extend(context().map(Some));
    for ctx in paths {
        let gpu = ctx.is_some();
        let scorer = FrameScorer::new(config.clone(), ctx, 8).unwrap();
        // One batch per capture step (3 cameras each).
        for step in frames.chunks(3) {
            for s in scorer.score(step).unwrap() {
                let static_camera = s.camera == 0 && s.motion.is_finite();
                assert_eq!(
                    s.scores.is_none(),
                    static_camera,
                    "gpu {gpu}: camera {} motion {}",
                    s.camera,
                    s.motion
                );
            }
        }
        let c = scorer.counters();
        use std::sync::atomic::Ordering::Relaxed;
        assert_eq!(
            (c.frames.load(Relaxed), c.scored.load(Relaxed), c.skipped.load(Relaxed)),
            (12, 9, 3),
            "gpu {gpu}"
        );
    }
}

/// Frames through the runtime: batches form across cameras, every frame is answered once with
/// the scores the scorer gives directly, and gating counts land in the scorer's counters.
#[test]
fn frames_through_the_runtime() {
    use streamscore::frames::{FrameRuntime, OwnedFrame};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/frames");
    let (data, expected, _) = committed();
    let config = FrameConfig {
        motion_threshold: Some(0.01),
        ..FrameConfig::from_path(dir.join("config.toml")).unwrap()
    };
    let runtime = streamscore::RuntimeConfig::default()
        .with_max_batch(4)
        .with_max_delay(std::time::Duration::from_millis(2))
        .with_queue_capacity(64);
    let rt = FrameRuntime::new(FrameScorer::new(config, context(), 8).unwrap(), runtime).unwrap();
    let tickets: Vec<_> = data
        .iter()
        .map(|(camera, t, w, h, format, bytes)| {
            let frame = OwnedFrame {
                camera: *camera,
                timestamp_ms: *t,
                width: *w,
                height: *h,
                format: *format,
                data: bytes.clone(),
                deadline: None,
            };
            rt.try_submit(frame).map_err(|r| r.error).unwrap()
        })
        .collect();
    for (i, t) in tickets.into_iter().enumerate() {
        let s = t.wait().unwrap();
        match &s.scores {
            Some(scores) => {
                let worst = scores
                    .iter()
                    .zip(&expected[i])
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0f32, f32::max);
                assert!(worst <= 1e-4, "frame {i}: {worst}");
            }
            None => assert_eq!(s.camera, 0, "frame {i}: only the static camera is gated"),
        }
    }
    use std::sync::atomic::Ordering::Relaxed;
    let c = rt.scorer().counters();
    assert_eq!(
        (c.frames.load(Relaxed), c.scored.load(Relaxed), c.skipped.load(Relaxed)),
        (12, 9, 3)
    );
    let m = rt.metrics();
    assert_eq!((m.accepted, m.scored), (12, 12));
    assert_eq!(m.stage(streamscore::Stage::EndToEnd).count, 9, "the model's frames");
    let bad = OwnedFrame {
        camera: 9,
        timestamp_ms: 0,
        width: 4,
        height: 4,
        format: PixelFormat::Rgb8,
        data: vec![0; 5],
        deadline: None,
    };
    assert!(matches!(rt.try_submit(bad).unwrap_err().error, streamscore::Error::Input { .. }));
    rt.shutdown();
}

/// A backend held shut until opened: the scorer can take nothing more, so queue behaviour is
/// deterministic whatever the machine's load.
struct Gate {
    inner: std::sync::Arc<dyn streamscore::Backend>,
    open: std::sync::Mutex<bool>,
    cv: std::sync::Condvar,
    held: std::sync::atomic::AtomicUsize,
}

impl Gate {
    fn set_open(&self, open: bool) {
        *self.open.lock().unwrap() = open;
        self.cv.notify_all();
    }
    fn wait_held(&self) {
        let start = std::time::Instant::now();
        while self.held.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            assert!(start.elapsed().as_secs() < 60, "no batch reached the gate");
            std::thread::yield_now();
        }
    }
}

impl streamscore::Backend for Gate {
    fn name(&self) -> &'static str {
        "gate"
    }
    fn n_features(&self) -> usize {
        self.inner.n_features()
    }
    fn output_width(&self, output: streamscore::Output) -> usize {
        self.inner.output_width(output)
    }
    fn score_batch(
        &self,
        batch: &streamscore::Batch,
        output: streamscore::Output,
        out: &mut [f32],
    ) -> streamscore::Result<()> {
        self.score_rows(&batch.to_rows(), output, out)
    }
    fn score_rows(
        &self,
        rows: &[f32],
        output: streamscore::Output,
        out: &mut [f32],
    ) -> streamscore::Result<()> {
        let mut open = self.open.lock().unwrap();
        if !*open {
            self.held.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        while !*open {
            open = self.cv.wait(open).unwrap();
        }
        drop(open);
        self.inner.score_rows(rows, output, out)
    }
}

fn gated_frames(
    overload: streamscore::Overload,
    workers: usize,
) -> (std::sync::Arc<Gate>, streamscore::frames::FrameRuntime) {
    use streamscore::frames::FrameRuntime;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/frames");
    let config = FrameConfig::from_path(dir.join("config.toml")).unwrap();
    let model = streamscore::load_model(&config.model).unwrap();
    let inner = streamscore::BackendSpec::onnx(Default::default()).select(model).unwrap();
    let gate = std::sync::Arc::new(Gate {
        inner,
        open: std::sync::Mutex::new(false),
        cv: std::sync::Condvar::new(),
        held: Default::default(),
    });
    let scorer = FrameScorer::with_backend(config, gate.clone(), None, 8).unwrap();
    let runtime = streamscore::RuntimeConfig::default()
        .with_max_batch(1)
        .with_queue_capacity(4)
        .with_workers(workers)
        .with_overload(overload);
    (gate, FrameRuntime::new(scorer, runtime).unwrap())
}

fn frame(camera: u32, i: usize) -> streamscore::frames::OwnedFrame {
    let (w, h) = (64u32, 48u32);
    let data = (0..(w * h * 3) as usize).map(|k| ((k * 7 + i * 31) % 251) as u8).collect();
    streamscore::frames::OwnedFrame {
        camera,
        timestamp_ms: i as i64 * 40,
        width: w,
        height: h,
        format: PixelFormat::Rgb8,
        data,
        deadline: None,
    }
}

/// Frames have the rows' overload policies: `reject` hands frames back once the queue is full,
/// `shed_oldest` answers the oldest with `Shed`; every accepted frame is answered once, and the
/// counters and Prometheus text say so.
#[test]
fn frames_follow_the_overload_policy() {
    use streamscore::{Error, Overload};
    for policy in [Overload::Reject, Overload::ShedOldest] {
        let (gate, rt) = gated_frames(policy, 1);
        let mut tickets = vec![rt.try_submit(frame(1, 0)).unwrap()];
        gate.wait_held();
        let mut refused = 0;
        for i in 1..20 {
            match rt.try_submit(frame(1, i)) {
                Ok(t) => tickets.push(t),
                Err(r) => {
                    assert!(matches!(r.error, Error::QueueFull), "{policy:?}: {}", r.error);
                    assert_eq!(r.event.timestamp_ms, i as i64 * 40, "the frame comes back");
                    refused += 1;
                }
            }
        }
        gate.set_open(true);
        let answers: Vec<_> = tickets.into_iter().map(|t| t.wait()).collect();
        let shed = answers.iter().filter(|a| matches!(a, Err(Error::Shed))).count();
        let scored = answers.iter().filter(|a| a.is_ok()).count();
        assert_eq!(shed + scored, answers.len());
        match policy {
            Overload::Reject => assert_eq!((refused, shed, scored), (15, 0, 5)),
            _ => assert_eq!((refused, shed, scored), (0, 15, 5)),
        }
        rt.shutdown();
        let m = rt.metrics();
        assert_eq!(
            (m.accepted, m.rejected, m.shed, m.scored),
            (20 - refused as u64, refused as u64, shed as u64, scored as u64)
        );
        let text = m.prometheus();
        assert!(
            text.contains(&format!("streamscore_events_total{{outcome=\"scored\"}} {scored}\n"))
        );
        assert!(text.contains("streamscore_latency_seconds_count{stage=\"prepare\"}"), "{text}");
        assert!(matches!(rt.try_submit(frame(1, 99)).map_err(|r| r.error), Err(Error::Closed)));
    }
}

/// Blocking `score` and `submit().await` wait for room under the `block` policy, with two
/// workers running the model while the batcher preprocesses.
#[test]
fn frames_block_for_room_and_await_their_answers() {
    let (gate, rt) = gated_frames(streamscore::Overload::Block, 2);
    let rt = std::sync::Arc::new(rt);
    let blocked = {
        let rt = rt.clone();
        std::thread::spawn(move || (0..12).filter(|&i| rt.score(frame(2, i)).is_ok()).count())
    };
    let tokio = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let awaited = {
        let rt = rt.clone();
        std::thread::spawn(move || {
            tokio.block_on(async {
                let mut ok = 0;
                for i in 0..12 {
                    ok += rt.submit(frame(3, i)).await.is_ok() as usize;
                }
                ok
            })
        })
    };
    gate.wait_held();
    assert!(!blocked.is_finished() && !awaited.is_finished(), "both wait while the model is shut");
    gate.set_open(true);
    assert_eq!((blocked.join().unwrap(), awaited.join().unwrap()), (12, 12));
    rt.shutdown();
    let m = rt.metrics();
    assert_eq!((m.accepted, m.scored, m.rejected), (24, 24, 0));
    assert_eq!(m.answered(), 24);
}

/// A tree model named as the frame model is said to be the wrong kind of file (it used to be
/// reported as a protobuf wire-type error).
#[test]
fn a_tree_model_is_not_a_frame_model() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = FrameConfig {
        model: dir.join("models/golden/lgb_binary/model.txt"),
        ..FrameConfig::from_path(dir.join("models/frames/config.toml")).unwrap()
    };
    let e = FrameScorer::new(config, None, 1).unwrap_err();
    assert!(e.to_string().contains("must be an ONNX file"), "{e}");
    assert!(!e.to_string().contains("wire"), "{e}");
}

/// A runtime configuration beyond its limits is refused before anything is sized from it (the
/// frame runtime once multiplied `max_batch` by the worker count to size its reply pool first,
/// which overflowed).
#[test]
fn an_oversized_frame_runtime_config_is_refused() {
    use streamscore::frames::FrameRuntime;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/frames");
    let config = FrameConfig::from_path(dir.join("config.toml")).unwrap();
    let scorer = FrameScorer::new(config, None, 1).unwrap();
    let runtime =
        streamscore::RuntimeConfig::default().with_max_batch(usize::MAX).with_workers(usize::MAX);
    let e = FrameRuntime::new(scorer, runtime).unwrap_err();
    assert!(matches!(e, streamscore::Error::Config(_)), "{e}");
}
