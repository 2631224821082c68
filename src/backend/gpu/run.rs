//! The batch pipeline every GPU program shares: split a batch into chunks that fit the
//! device's binding limits, and keep several chunks in flight (chunk N+1 uploads while N
//! computes while N-1 reads back). Buffers live in per-model slots that are reused across
//! batches, so per batch there is only write, dispatch, copy, map.

use std::collections::VecDeque;
use std::num::NonZeroU64;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::context::{Context, MapWait};
use super::shaders::Shader;
use crate::backend::Output;
use crate::batch::Batch;
use crate::error::Result;

/// Smallest slot, in rows: small batches share one size class.
const MIN_SLOT_ROWS: usize = 1024;

/// The buffers one chunk in flight uses.
pub(crate) struct Slot {
    /// Rows the buffers hold.
    pub capacity: usize,
    /// The program's uniform parameters.
    pub params: wgpu::Buffer,
    /// The chunk's input, feature-major.
    pub x: wgpu::Buffer,
    /// The program's output.
    pub out: wgpu::Buffer,
    /// Where `out` is copied for the CPU to read.
    pub readback: wgpu::Buffer,
    /// Bind groups over the model's buffers and this slot's.
    pub binds: Vec<wgpu::BindGroup>,
}

/// A model compiled for the GPU.
pub(crate) trait Program: Send + Sync {
    /// The device.
    fn ctx(&self) -> &Context;
    /// Input width.
    fn n_features(&self) -> usize;
    /// f32 values per row in the output buffer.
    fn out_per_row(&self) -> usize;
    /// Largest chunk, in rows, the device's limits allow for this model.
    fn chunk_rows(&self) -> usize;
    /// Buffers and bind groups for chunks of up to `capacity` rows.
    fn new_slot(&self, capacity: usize) -> Slot;
    /// Writes the parameters for a chunk of `rows` and records its dispatches.
    fn encode(&self, slot: &Slot, rows: usize, output: Output, encoder: &mut wgpu::CommandEncoder);
    /// Copies a chunk's output (`rows * out_per_row` values) into the caller's row-major `out`
    /// (the chunk's part of it).
    fn emit(&self, chunk: &[f32], rows: usize, output: Output, out: &mut [f32]);
}

/// Time spent per stage, for `streamscore bench`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StageTimes {
    /// Writing the input into GPU buffers.
    pub upload: Duration,
    /// The dispatches.
    pub compute: Duration,
    /// Copying out, mapping and reading the results.
    pub readback: Duration,
}

/// Slots not in use, reused by later batches.
#[derive(Default)]
pub(crate) struct Pool(Mutex<Vec<Slot>>);

impl Pool {
    fn take(&self, program: &impl Program, rows: usize) -> Slot {
        let mut free = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let best =
            (0..free.len()).filter(|&i| free[i].capacity >= rows).min_by_key(|&i| free[i].capacity);
        match best {
            Some(i) => free.swap_remove(i),
            None => {
                drop(free);
                let capacity =
                    rows.next_power_of_two().max(MIN_SLOT_ROWS).min(program.chunk_rows());
                program.new_slot(capacity.max(rows))
            }
        }
    }

    fn put(&self, slot: Slot) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(slot);
    }
}

/// Bytes of `n` f32 values, as a buffer address.
pub(crate) fn f32_bytes(n: usize) -> u64 {
    (n * 4) as u64
}

/// Writes rows `start..start + rows` of `batch` into `slot.x`, feature-major. Fails the device
/// when wgpu refuses the write (it only does on a lost device or a bug).
fn upload(ctx: &Context, batch: &Batch, start: usize, rows: usize, slot: &Slot) -> Result<()> {
    let n_features = batch.n_features();
    let Some(size) = NonZeroU64::new(f32_bytes(rows * n_features)) else { return Ok(()) };
    let Some(mut view) = ctx.queue.write_buffer_with(&slot.x, 0, size) else {
        return Err(ctx.fail("the GPU refused an upload".into()));
    };
    for f in 0..n_features {
        let column = &batch.column(f)[start..start + rows];
        view.slice(f * rows * 4..(f + 1) * rows * 4).copy_from_slice(bytemuck::cast_slice(column));
    }
    Ok(())
}

/// Records the chunk's dispatches and the copy to its readback buffer.
fn record(program: &impl Program, slot: &Slot, rows: usize, output: Output) -> wgpu::CommandBuffer {
    let mut encoder = program.ctx().device.create_command_encoder(&Default::default());
    program.encode(slot, rows, output, &mut encoder);
    let bytes = f32_bytes(rows * program.out_per_row());
    encoder.copy_buffer_to_buffer(&slot.out, 0, &slot.readback, 0, bytes);
    encoder.finish()
}

/// One chunk on its way through the GPU.
struct InFlight {
    slot: Slot,
    start: usize,
    rows: usize,
    submission: wgpu::SubmissionIndex,
    mapped: MapWait,
}

/// Scores `batch` on the GPU into `out` (row-major, `width` values per row), with up to
/// `in_flight` chunks queued at once.
pub(crate) fn run(
    program: &impl Program,
    pool: &Pool,
    batch: &Batch,
    output: Output,
    width: usize,
    out: &mut [f32],
    in_flight: usize,
) -> Result<()> {
    let ctx = program.ctx();
    ctx.check()?;
    let n = batch.n_rows();
    let chunk = program.chunk_rows();
    let mut queue: VecDeque<InFlight> = VecDeque::new();
    let per_row = program.out_per_row();
    let finish = |job: InFlight, out: &mut [f32]| -> Result<()> {
        let InFlight { slot, start, rows, submission, mapped } = job;
        let dest = &mut out[start * width..(start + rows) * width];
        ctx.finish_read(&slot.readback, f32_bytes(rows * per_row), submission, mapped, |bytes| {
            program.emit(bytemuck::cast_slice(bytes), rows, output, dest)
        })?;
        pool.put(slot);
        Ok(())
    };
    let mut start = 0;
    while start < n {
        let rows = chunk.min(n - start);
        let slot = pool.take(program, rows);
        upload(ctx, batch, start, rows, &slot)?;
        let submission = ctx.queue.submit([record(program, &slot, rows, output)]);
        let mapped = ctx.start_read(&slot.readback, f32_bytes(rows * per_row));
        queue.push_back(InFlight { slot, start, rows, submission, mapped });
        if queue.len() >= in_flight.max(1) {
            finish(queue.pop_front().expect("queue is not empty"), out)?;
        }
        start += rows;
    }
    while let Some(job) = queue.pop_front() {
        finish(job, out)?;
    }
    ctx.check()
}

/// Scores `batch` one chunk at a time with a wait after each stage, and times the stages.
/// Slower than [`run`] (nothing overlaps); it says where the time goes.
pub(crate) fn profile(
    program: &impl Program,
    pool: &Pool,
    batch: &Batch,
    output: Output,
    width: usize,
    out: &mut [f32],
) -> Result<StageTimes> {
    let ctx = program.ctx();
    ctx.check()?;
    let mut times = StageTimes::default();
    let per_row = program.out_per_row();
    let mut start = 0;
    while start < batch.n_rows() {
        let rows = program.chunk_rows().min(batch.n_rows() - start);
        let slot = pool.take(program, rows);
        let t = Instant::now();
        upload(ctx, batch, start, rows, &slot)?;
        ctx.wait(ctx.queue.submit([]))?;
        times.upload += t.elapsed();

        let t = Instant::now();
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        program.encode(&slot, rows, output, &mut encoder);
        ctx.wait(ctx.queue.submit([encoder.finish()]))?;
        times.compute += t.elapsed();

        let t = Instant::now();
        let bytes = f32_bytes(rows * per_row);
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(&slot.out, 0, &slot.readback, 0, bytes);
        let submission = ctx.queue.submit([encoder.finish()]);
        let mapped = ctx.start_read(&slot.readback, bytes);
        let dest = &mut out[start * width..(start + rows) * width];
        ctx.finish_read(&slot.readback, bytes, submission, mapped, |b| {
            program.emit(bytemuck::cast_slice(b), rows, output, dest)
        })?;
        times.readback += t.elapsed();
        pool.put(slot);
        start += rows;
    }
    Ok(times)
}

/// Workgroup counts covering `groups` workgroups within the per-dimension limit (the shaders
/// fold `y` back into a linear index).
pub(crate) fn grid(groups: usize, limit: u32) -> (u32, u32) {
    let x = groups.clamp(1, limit as usize);
    (x as u32, groups.div_ceil(x).max(1) as u32)
}

/// A storage buffer of `bytes` (at least 4).
pub(crate) fn storage(
    device: &wgpu::Device,
    label: &str,
    bytes: u64,
    extra: wgpu::BufferUsages,
) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: bytes.max(16).next_multiple_of(4),
        usage: wgpu::BufferUsages::STORAGE | extra,
        mapped_at_creation: false,
    })
}

/// A read-only storage buffer holding `data` (padded to at least 16 bytes: empty bindings are
/// invalid).
pub(crate) fn storage_init<T: bytemuck::Pod>(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    label: &str,
    data: &[T],
) -> wgpu::Buffer {
    let bytes: &[u8] = bytemuck::cast_slice(data);
    let buffer = storage(device, label, bytes.len() as u64, wgpu::BufferUsages::COPY_DST);
    queue.write_buffer(&buffer, 0, bytes);
    buffer
}

/// The readback buffer for `bytes`.
pub(crate) fn readback(device: &wgpu::Device, bytes: u64) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("readback"),
        size: bytes.max(16),
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

/// The uniform buffer for a program's parameters.
pub(crate) fn uniform(device: &wgpu::Device, bytes: u64) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("params"),
        size: bytes.next_multiple_of(16),
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

/// A bind group layout of one uniform (binding 0) and `n_storage` storage buffers (bindings
/// 1..), the last `writable` of them read-write.
pub(crate) fn layout(
    device: &wgpu::Device,
    n_storage: u32,
    writable: u32,
) -> wgpu::BindGroupLayout {
    let mut entries = vec![wgpu::BindGroupLayoutEntry {
        binding: 0,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Uniform,
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    }];
    for b in 1..=n_storage {
        entries.push(wgpu::BindGroupLayoutEntry {
            binding: b,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage { read_only: b <= n_storage - writable },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        });
    }
    device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: None,
        entries: &entries,
    })
}

/// A bind group binding `buffers` in order from binding 0.
pub(crate) fn bind(
    device: &wgpu::Device,
    layout: &wgpu::BindGroupLayout,
    buffers: &[&wgpu::Buffer],
) -> wgpu::BindGroup {
    let entries: Vec<wgpu::BindGroupEntry> = buffers
        .iter()
        .enumerate()
        .map(|(i, b)| wgpu::BindGroupEntry { binding: i as u32, resource: b.as_entire_binding() })
        .collect();
    device.create_bind_group(&wgpu::BindGroupDescriptor { label: None, layout, entries: &entries })
}

/// A compute pipeline for `entry` of `module` over one bind group layout.
/// The pipeline for `entry` of `shader` over one layout, from the device's cache.
pub(crate) fn pipeline(
    ctx: &Context,
    shader: Shader,
    layout: (&'static str, &wgpu::BindGroupLayout),
    entry: &'static str,
) -> wgpu::ComputePipeline {
    ctx.pipeline(shader, entry, &[layout], &[])
}
