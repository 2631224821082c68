//! Video frames: the frame type, preprocessing for a CNN (bilinear resize, normalization,
//! NCHW) and a per-camera motion score, on the CPU. The GPU computes the same values in
//! `shaders/frames.wgsl` ([`FramesGpu`](crate::backend::gpu::FramesGpu)); the two agree within
//! 1e-5 (`tests/frames.rs`).
//!
//! # Examples
//!
//! ```
//! use streamscore::frames::{Frame, PixelFormat, Preprocess, preprocess};
//!
//! let pixels = vec![128u8; 4 * 4 * 3];
//! let frame = Frame { camera: 0, timestamp_ms: 0, width: 4, height: 4, format: PixelFormat::Rgb8, data: &pixels };
//! let p = Preprocess { width: 2, height: 2, channels: 3, mean: [0.5; 3], std: [0.25; 3] };
//! let mut tensor = vec![0.0; p.len(1)];
//! preprocess(&[frame], &p, &mut tensor)?;
//! assert!(tensor.iter().all(|&v| (v - (128.0 / 255.0 - 0.5) / 0.25).abs() < 1e-6));
//! # Ok::<(), streamscore::Error>(())
//! ```

use crate::error::{Error, Result};

mod runtime;
mod scorer;
pub use runtime::{FrameRuntime, FrameTicket, OwnedFrame};
pub use scorer::{FrameConfig, FrameCounters, FrameOutput, FrameScore, FrameScorer};

/// How a frame's bytes hold its pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    /// 3 bytes per pixel: red, green, blue.
    Rgb8,
    /// 3 bytes per pixel: blue, green, red (OpenCV's order).
    Bgr8,
    /// 1 byte per pixel.
    Gray8,
}

impl PixelFormat {
    /// Bytes per pixel.
    pub fn bytes(self) -> usize {
        match self {
            PixelFormat::Gray8 => 1,
            _ => 3,
        }
    }

    /// The code `shaders/frames.wgsl` uses.
    #[cfg_attr(not(feature = "gpu"), allow(dead_code))]
    pub(crate) fn code(self) -> u32 {
        match self {
            PixelFormat::Rgb8 => 0,
            PixelFormat::Bgr8 => 1,
            PixelFormat::Gray8 => 2,
        }
    }
}

/// One video frame, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The camera it came from.
    pub camera: u32,
    /// Capture time, ms since the Unix epoch.
    pub timestamp_ms: i64,
    /// Pixels per row.
    pub width: u32,
    /// Rows.
    pub height: u32,
    /// Pixel layout.
    pub format: PixelFormat,
    /// `width * height * format.bytes()` bytes, row after row.
    pub data: &'a [u8],
}

impl Frame<'_> {
    /// Checks the size fields against the data.
    pub fn check(&self) -> Result<()> {
        let want = self.width as usize * self.height as usize * self.format.bytes();
        if self.width == 0 || self.height == 0 || self.data.len() != want {
            return Err(Error::Input {
                at: format!("frame of camera {}", self.camera),
                message: format!(
                    "{}x{} {:?} needs {want} bytes, got {}",
                    self.width,
                    self.height,
                    self.format,
                    self.data.len()
                ),
            });
        }
        Ok(())
    }

    fn byte(&self, i: usize) -> f32 {
        f32::from(self.data[i])
    }

    /// Channel `c` (0 R, 1 G, 2 B) of pixel (x, y), 0..255.
    fn channel(&self, x: usize, y: usize, c: usize) -> f32 {
        let p = y * self.width as usize + x;
        match self.format {
            PixelFormat::Gray8 => self.byte(p),
            PixelFormat::Bgr8 => self.byte(p * 3 + 2 - c),
            PixelFormat::Rgb8 => self.byte(p * 3 + c),
        }
    }

    fn luma(&self, x: usize, y: usize) -> f32 {
        if self.format == PixelFormat::Gray8 {
            return self.channel(x, y, 0);
        }
        0.299 * self.channel(x, y, 0)
            + 0.587 * self.channel(x, y, 1)
            + 0.114 * self.channel(x, y, 2)
    }

    /// Channel `c`, or luma for `c == 3`, resampled at output pixel (x, y) of a `w x h` image.
    fn sample(&self, x: usize, y: usize, w: usize, h: usize, c: usize) -> f32 {
        let (x0, x1, fx) = source(x, self.width as usize, w);
        let (y0, y1, fy) = source(y, self.height as usize, h);
        let at = |x, y| if c == 3 { self.luma(x, y) } else { self.channel(x, y, c) };
        let (p00, p01, p10, p11) = (at(x0, y0), at(x1, y0), at(x0, y1), at(x1, y1));
        let top = p00 + (p01 - p00) * fx;
        let bottom = p10 + (p11 - p10) * fx;
        top + (bottom - top) * fy
    }
}

/// The two source samples around output coordinate `o` and the second one's weight
/// (half-pixel centres, clamped at the edges).
fn source(o: usize, src: usize, dst: usize) -> (usize, usize, f32) {
    let s = ((o as f32 + 0.5) * (src as f32 / dst as f32) - 0.5).clamp(0.0, (src - 1) as f32);
    let i0 = s.floor();
    let i1 = (i0 + 1.0).min((src - 1) as f32);
    (i0 as usize, i1 as usize, s - i0)
}

/// What a CNN expects: its input size and channels, and the per-channel normalization
/// `(v / 255 - mean) / std`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Preprocess {
    /// Input width.
    pub width: u32,
    /// Input height.
    pub height: u32,
    /// 3 (RGB) or 1 (luma).
    pub channels: u32,
    /// Per-channel mean, on the 0..1 scale.
    pub mean: [f32; 3],
    /// Per-channel standard deviation, on the 0..1 scale.
    pub std: [f32; 3],
}

impl Preprocess {
    /// Values of the NCHW tensor for `n` frames.
    pub fn len(&self, n: usize) -> usize {
        n * (self.channels * self.width * self.height) as usize
    }

    /// Checks the settings.
    pub fn check(&self) -> Result<()> {
        if self.width == 0 || self.height == 0 || !matches!(self.channels, 1 | 3) {
            return Err(Error::Config(format!(
                "preprocessing needs a positive size and 1 or 3 channels, got {}x{}x{}",
                self.channels, self.height, self.width
            )));
        }
        if self.std.iter().chain(&self.mean).any(|v| !v.is_finite()) || self.std.contains(&0.0) {
            return Err(Error::Config(
                "preprocessing mean and std must be finite, std non-zero".into(),
            ));
        }
        Ok(())
    }
}

/// Resizes, normalizes and lays out `frames` as one NCHW tensor in `out`
/// (`p.len(frames.len())` values).
pub fn preprocess(frames: &[Frame], p: &Preprocess, out: &mut [f32]) -> Result<()> {
    p.check()?;
    frames.iter().try_for_each(Frame::check)?;
    if out.len() != p.len(frames.len()) {
        return Err(Error::OutputLength { expected: p.len(frames.len()), got: out.len() });
    }
    let (w, h, ch) = (p.width as usize, p.height as usize, p.channels as usize);
    let inv_std = p.std.map(|s| 1.0 / s);
    for (n, f) in frames.iter().enumerate() {
        for c in 0..ch {
            let source_channel = match (ch, f.format) {
                (1, _) => 3,
                (_, PixelFormat::Gray8) => 0,
                _ => c,
            };
            for y in 0..h {
                for x in 0..w {
                    let v = f.sample(x, y, w, h, source_channel);
                    out[((n * ch + c) * h + y) * w + x] = (v / 255.0 - p.mean[c]) * inv_std[c];
                }
            }
        }
    }
    Ok(())
}

/// Each frame's luma resampled to `w x h` (0..255), frame after frame.
pub fn luma_maps(frames: &[Frame], w: usize, h: usize) -> Result<Vec<f32>> {
    frames.iter().try_for_each(Frame::check)?;
    let mut out = Vec::with_capacity(frames.len() * w * h);
    for f in frames {
        for y in 0..h {
            for x in 0..w {
                out.push(f.sample(x, y, w, h, 3));
            }
        }
    }
    Ok(out)
}

/// Mean absolute difference (0..1) between two luma maps, summed in the GPU's order (256
/// strided partial sums, then a tree), so both paths form the same sums.
pub fn motion_between(current: &[f32], previous: &[f32]) -> f32 {
    let mut partial = [0.0f32; 256];
    for (lane, p) in partial.iter_mut().enumerate() {
        let mut i = lane;
        while i < current.len() {
            *p += (current[i] - previous[i]).abs();
            i += 256;
        }
    }
    let mut stride = 128;
    while stride > 0 {
        for i in 0..stride {
            partial[i] += partial[i + stride];
        }
        stride >>= 1;
    }
    partial[0] / (current.len() as f32 * 255.0)
}

/// Per-camera motion on the CPU: each camera's latest luma map, and the score of each new
/// frame against it ([`f32::INFINITY`] for a camera's first frame: nothing to compare with, so
/// it counts as moving).
#[derive(Debug, Default)]
pub struct MotionTracker {
    last: std::collections::HashMap<u32, Vec<f32>>,
}

impl MotionTracker {
    /// Scores `frames` in order at `w x h` and remembers each camera's last one.
    pub fn scores(&mut self, frames: &[Frame], w: usize, h: usize) -> Result<Vec<f32>> {
        let maps = luma_maps(frames, w, h)?;
        let m = w * h;
        Ok(frames
            .iter()
            .enumerate()
            .map(|(n, f)| {
                let current = &maps[n * m..(n + 1) * m];
                let score = self
                    .last
                    .get(&f.camera)
                    .map_or(f32::INFINITY, |prev| motion_between(current, prev));
                self.last.insert(f.camera, current.to_vec());
                score
            })
            .collect())
    }
}
