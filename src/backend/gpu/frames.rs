//! Video frames on the GPU: `shaders/frames.wgsl` preprocesses a batch of frames of any sizes
//! into one NCHW tensor and scores each frame's motion against its camera's previous frame,
//! in one submission. Each camera's latest luma map stays on the device between batches.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::abi::{FrameInfo, FramesParams as Params, MotionParams};
use super::context::Context;
use super::run::{self, f32_bytes};
use super::shaders::Shader;
use crate::error::{Error, Result};
use crate::frames::{Frame, Preprocess};

/// Each camera's slot in the history buffer.
struct History {
    slots: HashMap<u32, usize>,
}

/// Frame preprocessing and motion scoring on one device.
pub struct FramesGpu {
    ctx: Arc<Context>,
    p: Preprocess,
    layout: wgpu::BindGroupLayout,
    motion_layout: wgpu::BindGroupLayout,
    preprocess: wgpu::ComputePipeline,
    luma: wgpu::ComputePipeline,
    motion: wgpu::ComputePipeline,
    /// Group 0 of the motion pipeline, which binds nothing (its buffers are in group 1).
    empty: wgpu::BindGroup,
    history: wgpu::Buffer,
    cameras: Mutex<History>,
    max_cameras: usize,
}

impl std::fmt::Debug for FramesGpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FramesGpu").field("preprocess", &self.p).finish_non_exhaustive()
    }
}

impl FramesGpu {
    /// Pipelines and the camera history (`max_cameras` luma maps of the model's size).
    pub fn new(ctx: Arc<Context>, p: Preprocess, max_cameras: usize) -> Result<Self> {
        p.check()?;
        let device = &ctx.device;
        let layout = ctx.layout("storage3_1", |d| run::layout(d, 3, 1));
        let motion_layout = ctx.layout("storage4_1", |d| run::layout(d, 4, 1));
        let empty_layout = ctx.layout("empty", |d| {
            d.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: None,
                entries: &[],
            })
        });
        let empty = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &empty_layout,
            entries: &[],
        });
        let pipeline = |entry: &'static str, group1: bool| {
            if group1 {
                let layouts = [("empty", &empty_layout), ("storage4_1", &motion_layout)];
                ctx.pipeline(Shader::Frames, entry, &layouts, &[])
            } else {
                ctx.pipeline(Shader::Frames, entry, &[("storage3_1", &layout)], &[])
            }
        };
        let (preprocess, luma, motion) = (
            pipeline("preprocess", false),
            pipeline("luma", false),
            pipeline("motion_score", true),
        );
        let pixels = (p.width * p.height) as usize;
        let history = run::storage(
            device,
            "history",
            f32_bytes(max_cameras.max(1) * pixels),
            wgpu::BufferUsages::COPY_DST,
        );
        ctx.check()?;
        Ok(FramesGpu {
            ctx,
            p,
            layout,
            motion_layout,
            preprocess,
            luma,
            motion,
            empty,
            history,
            cameras: Mutex::new(History { slots: HashMap::new() }),
            max_cameras: max_cameras.max(1),
        })
    }

    /// Preprocesses `frames` into `tensor` (NCHW, `p.len(frames.len())` values) and returns
    /// each frame's motion score ([`f32::INFINITY`] for a camera's first frame), as the CPU's
    /// [`preprocess`](crate::frames::preprocess) and
    /// [`MotionTracker`](crate::frames::MotionTracker) compute them.
    pub fn process(&self, frames: &[Frame], tensor: &mut [f32]) -> Result<Vec<f32>> {
        self.ctx.check()?;
        frames.iter().try_for_each(Frame::check)?;
        let n = frames.len();
        if tensor.len() != self.p.len(n) {
            return Err(Error::OutputLength { expected: self.p.len(n), got: tensor.len() });
        }
        if n == 0 {
            return Ok(Vec::new());
        }
        let limit = self.ctx.limits().max_compute_workgroups_per_dimension as usize;
        if n * self.p.channels as usize > limit {
            return Err(Error::Input {
                at: "frames".into(),
                message: format!(
                    "{n} frames in one batch; the GPU takes at most {}",
                    limit / self.p.channels as usize
                ),
            });
        }
        let device = &self.ctx.device;
        let queue = &self.ctx.queue;
        let (w, h) = (self.p.width, self.p.height);
        let m = (w * h) as usize;
        // Pack the frames, each on a 4-byte boundary.
        let mut bytes = Vec::new();
        let mut infos = Vec::with_capacity(n);
        for f in frames {
            infos.push(FrameInfo {
                offset: bytes.len() as u32,
                width: f.width,
                height: f.height,
                format: f.format.code(),
            });
            bytes.extend_from_slice(f.data);
            bytes.resize(bytes.len().next_multiple_of(4), 0);
        }
        if bytes.len() as u64 > self.ctx.max_binding() {
            return Err(Error::Input {
                at: "frames".into(),
                message: "the batch's pixels exceed the GPU's binding limit; send fewer frames"
                    .into(),
            });
        }
        // Each frame's previous luma map: an earlier frame of this batch, or its camera's slot.
        let mut cameras = self.cameras.lock().unwrap_or_else(|e| e.into_inner());
        let mut previous = Vec::with_capacity(n);
        let mut first = vec![false; n];
        let mut last_in_batch: HashMap<u32, usize> = HashMap::new();
        for (i, f) in frames.iter().enumerate() {
            let prev = match last_in_batch.get(&f.camera) {
                Some(&j) => j as i32,
                None => match cameras.slots.get(&f.camera) {
                    Some(&slot) => -1 - slot as i32,
                    None => {
                        first[i] = true;
                        -1
                    }
                },
            };
            previous.push(prev);
            last_in_batch.insert(f.camera, i);
        }
        for &camera in last_in_batch.keys() {
            if !cameras.slots.contains_key(&camera) {
                if cameras.slots.len() >= self.max_cameras {
                    return Err(Error::Input {
                        at: "frames".into(),
                        message: format!("more than {} cameras", self.max_cameras),
                    });
                }
                let slot = cameras.slots.len();
                cameras.slots.insert(camera, slot);
            }
        }
        let params = Params {
            n_frames: n as u32,
            out_w: w,
            out_h: h,
            channels: self.p.channels,
            mean: [self.p.mean[0], self.p.mean[1], self.p.mean[2], 0.0],
            inv_std: [1.0 / self.p.std[0], 1.0 / self.p.std[1], 1.0 / self.p.std[2], 0.0],
        };
        let uniform = run::uniform(device, std::mem::size_of::<Params>() as u64);
        queue.write_buffer(&uniform, 0, bytemuck::bytes_of(&params));
        let info_buf = run::storage_init(device, queue, "frames", &infos);
        let words: Vec<u32> =
            bytes.chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        let pixel_buf = run::storage_init(device, queue, "pixels", &words);
        let usage = wgpu::BufferUsages::COPY_SRC;
        let tensor_buf = run::storage(device, "tensor", f32_bytes(tensor.len()), usage);
        let luma_buf = run::storage(device, "luma", f32_bytes(n * m), usage);
        let mparams = run::uniform(device, std::mem::size_of::<MotionParams>() as u64);
        queue.write_buffer(
            &mparams,
            0,
            bytemuck::bytes_of(&MotionParams {
                n_frames: n as u32,
                pixels: m as u32,
                pad0: 0,
                pad1: 0,
            }),
        );
        let prev_buf = run::storage_init(device, queue, "previous", &previous);
        let motion_buf = run::storage(device, "motion", f32_bytes(n), usage);
        let pre_bind =
            run::bind(device, &self.layout, &[&uniform, &info_buf, &pixel_buf, &tensor_buf]);
        let luma_bind =
            run::bind(device, &self.layout, &[&uniform, &info_buf, &pixel_buf, &luma_buf]);
        let motion_bind = run::bind(
            device,
            &self.motion_layout,
            &[&mparams, &luma_buf, &self.history, &prev_buf, &motion_buf],
        );
        let mut encoder = device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            pass.set_pipeline(&self.preprocess);
            pass.set_bind_group(0, &pre_bind, &[]);
            pass.dispatch_workgroups(w.div_ceil(16), h.div_ceil(16), n as u32 * self.p.channels);
            pass.set_pipeline(&self.luma);
            pass.set_bind_group(0, &luma_bind, &[]);
            pass.dispatch_workgroups(w.div_ceil(16), h.div_ceil(16), n as u32);
            pass.set_pipeline(&self.motion);
            pass.set_bind_group(0, &self.empty, &[]);
            pass.set_bind_group(1, &motion_bind, &[]);
            pass.dispatch_workgroups(n as u32, 1, 1);
        }
        // Each camera's last frame of this batch becomes its history.
        for (camera, &i) in &last_in_batch {
            let slot = cameras.slots[camera];
            encoder.copy_buffer_to_buffer(
                &luma_buf,
                f32_bytes(i * m),
                &self.history,
                f32_bytes(slot * m),
                f32_bytes(m),
            );
        }
        drop(cameras);
        let tensor_back = run::readback(device, f32_bytes(tensor.len()));
        let motion_back = run::readback(device, f32_bytes(n));
        encoder.copy_buffer_to_buffer(&tensor_buf, 0, &tensor_back, 0, f32_bytes(tensor.len()));
        encoder.copy_buffer_to_buffer(&motion_buf, 0, &motion_back, 0, f32_bytes(n));
        let submission = queue.submit([encoder.finish()]);
        let t_wait = self.ctx.start_read(&tensor_back, f32_bytes(tensor.len()));
        let m_wait = self.ctx.start_read(&motion_back, f32_bytes(n));
        self.ctx.finish_read(
            &tensor_back,
            f32_bytes(tensor.len()),
            submission.clone(),
            t_wait,
            |b| tensor.copy_from_slice(bytemuck::cast_slice(b)),
        )?;
        let mut motion =
            self.ctx.finish_read(&motion_back, f32_bytes(n), submission, m_wait, |b| {
                bytemuck::cast_slice::<u8, f32>(b).to_vec()
            })?;
        for (score, first) in motion.iter_mut().zip(first) {
            if first {
                *score = f32::INFINITY;
            }
        }
        Ok(motion)
    }
}
