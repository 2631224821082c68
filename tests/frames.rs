//! Frames: the GPU's preprocessing and motion scores against the CPU's, on generated frames
//! (moving shapes on noise) of several sizes and pixel formats, on a hardware GPU or lavapipe.

use streamscore::backend::gpu::{AdapterChoice, Context, FramesGpu};
use streamscore::frames::{Frame, MotionTracker, PixelFormat, Preprocess, preprocess};

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
