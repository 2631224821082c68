//! Embedding frame scoring: cameras hand frames to a `FrameRuntime`, which batches them across
//! cameras, preprocesses them (on the GPU when one opens, else on the CPU), skips frames with
//! no motion, and scores the rest with a CNN through ONNX Runtime.
//!
//! `scripts/onnxruntime.sh && cargo run --release --example frames`

use std::time::Duration;

use streamscore::Error;
use streamscore::backend::gpu::{AdapterChoice, Context};
use streamscore::frames::{FrameConfig, FrameRuntime, FrameScorer, OwnedFrame, PixelFormat};

fn main() -> Result<(), Error> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/models/frames");
    let mut config = FrameConfig::from_path(format!("{dir}/config.toml"))?;
    config.motion_threshold = Some(0.01);
    // A hardware GPU if there is one; the CPU path otherwise (same tensors, same scores).
    let gpu = Context::new(AdapterChoice::Hardware).ok();
    let scorer = FrameScorer::new(config, gpu, 16)?;
    println!("preprocessing on the {}", if scorer.on_gpu() { "GPU" } else { "CPU" });
    let config = streamscore::RuntimeConfig::default()
        .with_max_batch(8)
        .with_max_delay(Duration::from_millis(5))
        .with_queue_capacity(256);
    let rt = FrameRuntime::new(scorer, config)?;

    // The committed test frames: three cameras, four captures each; camera 0 sees no motion.
    let index: serde_json::Value = serde_json::from_slice(
        &std::fs::read(format!("{dir}/frames.json")).map_err(|e| Error::io(dir, e))?,
    )
    .map_err(|e| Error::Config(e.to_string()))?;
    let mut tickets = Vec::new();
    for f in index.as_array().into_iter().flatten() {
        let file = format!("{dir}/frames/{}", f["file"].as_str().unwrap_or_default());
        let format = match f["format"].as_str() {
            Some("rgb8") => PixelFormat::Rgb8,
            Some("bgr8") => PixelFormat::Bgr8,
            _ => PixelFormat::Gray8,
        };
        let frame = OwnedFrame {
            camera: f["camera"].as_u64().unwrap_or(0) as u32,
            timestamp_ms: f["timestamp_ms"].as_i64().unwrap_or(0),
            width: f["width"].as_u64().unwrap_or(0) as u32,
            height: f["height"].as_u64().unwrap_or(0) as u32,
            format,
            data: std::fs::read(&file).map_err(|e| Error::io(&file, e))?,
            deadline: None,
        };
        tickets.push(rt.try_submit(frame).map_err(|r| r.error)?);
    }
    for t in tickets {
        let s = t.wait()?;
        match s.scores {
            Some(scores) => {
                println!("camera {} motion {:.4}: class scores {scores:.3?}", s.camera, s.motion)
            }
            None => println!("camera {} motion {:.4}: static, not scored", s.camera, s.motion),
        }
    }
    rt.shutdown();
    Ok(())
}
