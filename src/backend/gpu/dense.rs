//! Dense nets on the GPU: `shaders/dense.wgsl`, one dispatch per layer (bias and activation
//! fused into the tiled multiply), activations kept feature-major on the device between layers.

use std::sync::Arc;

use bytemuck::Zeroable;

use super::abi::{DenseParams as Params, activation as code_of, sizes};
use super::context::Context;
use super::run::{self, Program, Slot, f32_bytes};
use super::shaders::Shader;
use crate::backend::Output;
use crate::error::{Error, Result};
use crate::model::dense::{Activation, Dense, InputOp};

/// Input ops one `prep` dispatch can apply (4 bits each in `Params::ops`).
const MAX_OPS: usize = 8;
/// Outputs x rows per `layer` workgroup.
const TILE: usize = sizes::DENSE_TILE as usize;

#[derive(Debug, Clone, Copy)]
enum Kernel {
    Prep,
    Layer,
    Softmax,
}

/// One dispatch of the net: its kernel, parameters (less `n_rows`), and where it reads and
/// writes (0: the input, 1 and 2: scratch, 3: the output).
#[derive(Debug, Clone, Copy)]
struct Step {
    kernel: Kernel,
    params: Params,
    src: usize,
    dst: usize,
}

/// A dense net's buffers and pipelines on one device.
pub(crate) struct DenseProgram {
    ctx: Arc<Context>,
    net: Dense,
    layout: wgpu::BindGroupLayout,
    pipelines: [wgpu::ComputePipeline; 3],
    model: wgpu::Buffer,
    steps: Vec<Step>,
    /// Bytes between two steps' parameters (the device's uniform offset alignment).
    stride: u64,
    /// Widest activation, in values per row.
    widest: usize,
    chunk_rows: usize,
}

fn code(a: Activation) -> (u32, f32) {
    match a {
        Activation::Identity | Activation::Softmax => (code_of::IDENTITY, 0.0),
        Activation::Relu => (code_of::RELU, 0.0),
        Activation::LeakyRelu(alpha) => (code_of::LEAKY_RELU, alpha),
        Activation::Sigmoid => (code_of::SIGMOID, 0.0),
        Activation::Tanh => (code_of::TANH, 0.0),
        Activation::Gelu => (code_of::GELU, 0.0),
        Activation::GeluTanh => (code_of::GELU_TANH, 0.0),
    }
}

impl DenseProgram {
    /// Uploads `net` and plans its dispatches (once per model).
    pub fn new(ctx: Arc<Context>, net: Dense, max_chunk: usize) -> Result<Self> {
        let too_big = |what: String| Error::Unavailable { backend: "gpu", reason: what };
        let n_in = net.n_inputs();
        let mut model: Vec<f32> = Vec::new();
        let mut steps = Vec::new();
        if !net.input_ops().is_empty() {
            if net.input_ops().len() > MAX_OPS {
                return Err(too_big(format!("more than {MAX_OPS} input ops")));
            }
            let mut ops = 0;
            for (k, (op, c)) in net.input_ops().iter().enumerate() {
                let op = match op {
                    InputOp::Add => 0,
                    InputOp::Sub => 1,
                    InputOp::Mul => 2,
                    InputOp::Div => 3,
                };
                ops |= op << (4 * k);
                // Constants are stored one per input (a broadcast constant is repeated).
                model.extend((0..n_in).map(|i| if c.len() == 1 { c[0] } else { c[i] }));
            }
            let params = Params {
                n_in: n_in as u32,
                n_ops: net.input_ops().len() as u32,
                ops,
                ..Zeroable::zeroed()
            };
            steps.push(Step { kernel: Kernel::Prep, params, src: 0, dst: 1 });
        }
        let n_layers = net.layers().len();
        for (l, layer) in net.layers().iter().enumerate() {
            let weights = model.len() as u32;
            model.extend_from_slice(&layer.weights);
            let bias = model.len() as u32;
            model.extend_from_slice(&layer.bias);
            let (activation, alpha) = code(layer.activation);
            let src = steps.last().map_or(0, |s: &Step| s.dst);
            let dst = if l + 1 == n_layers {
                3
            } else if src == 1 {
                2
            } else {
                1
            };
            let params = Params {
                n_in: layer.n_in as u32,
                n_out: layer.n_out as u32,
                activation,
                weights,
                bias,
                alpha,
                ..Zeroable::zeroed()
            };
            steps.push(Step { kernel: Kernel::Layer, params, src, dst });
            if layer.activation == Activation::Softmax {
                // Softmax reads and writes `dst`; `src` is bound but unread (one buffer cannot be bound
                // both read-only and read-write in a dispatch).
                steps.push(Step { kernel: Kernel::Softmax, params, src: 0, dst: 3 });
            }
        }
        let limits = ctx.limits();
        let binding = ctx.max_binding();
        if f32_bytes(model.len()) > binding {
            return Err(too_big(format!("{} parameters exceed the binding limit", model.len())));
        }
        let widest = net.layers().iter().map(|l| l.n_out).chain([n_in]).max().unwrap_or(1);
        let chunk_rows = ((binding / f32_bytes(widest)) as usize).min(max_chunk).max(1);
        let device = &ctx.device;
        let layout = ctx.layout("dense", layout);
        let pipelines = ["prep", "layer", "softmax"]
            .map(|e| run::pipeline(&ctx, Shader::Dense, ("dense", &layout), e));
        let model = run::storage_init(device, &ctx.queue, "dense model", &model);
        let stride = std::mem::size_of::<Params>()
            .next_multiple_of(limits.min_uniform_buffer_offset_alignment as usize)
            as u64;
        ctx.check()?;
        Ok(DenseProgram { ctx, net, layout, pipelines, model, steps, stride, widest, chunk_rows })
    }

    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }
}

/// Binding 0: the step's parameters at a dynamic offset; 1: the model; 2: source; 3: destination.
fn layout(device: &wgpu::Device) -> wgpu::BindGroupLayout {
    let entry = |binding, ty| wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty,
            has_dynamic_offset: binding == 0,
            min_binding_size: None,
        },
        count: None,
    };
    let storage = |read_only| wgpu::BufferBindingType::Storage { read_only };
    device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some("dense"),
        entries: &[
            entry(0, wgpu::BufferBindingType::Uniform),
            entry(1, storage(true)),
            entry(2, storage(true)),
            entry(3, storage(false)),
        ],
    })
}

impl Program for DenseProgram {
    fn ctx(&self) -> &Context {
        &self.ctx
    }

    fn n_features(&self) -> usize {
        self.net.n_inputs()
    }

    fn out_per_row(&self) -> usize {
        self.net.n_outputs()
    }

    fn chunk_rows(&self) -> usize {
        self.chunk_rows
    }

    fn new_slot(&self, capacity: usize) -> Slot {
        let device = &self.ctx.device;
        let usage = wgpu::BufferUsages::COPY_DST;
        let params = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("dense params"),
            size: self.stride * self.steps.len() as u64,
            usage: wgpu::BufferUsages::UNIFORM | usage,
            mapped_at_creation: false,
        });
        let x = run::storage(device, "x", f32_bytes(capacity * self.net.n_inputs()), usage);
        let scratch: Vec<wgpu::Buffer> = (0..2)
            .map(|_| run::storage(device, "activations", f32_bytes(capacity * self.widest), usage))
            .collect();
        let out_bytes = f32_bytes(capacity * self.net.n_outputs());
        let out = run::storage(device, "out", out_bytes, wgpu::BufferUsages::COPY_SRC);
        let readback = run::readback(device, out_bytes);
        let buffers = [&x, &scratch[0], &scratch[1], &out];
        let binds = self
            .steps
            .iter()
            .map(|s| {
                let entries = [
                    wgpu::BindGroupEntry {
                        binding: 0,
                        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                            buffer: &params,
                            offset: 0,
                            size: wgpu::BufferSize::new(std::mem::size_of::<Params>() as u64),
                        }),
                    },
                    wgpu::BindGroupEntry { binding: 1, resource: self.model.as_entire_binding() },
                    wgpu::BindGroupEntry {
                        binding: 2,
                        resource: buffers[s.src].as_entire_binding(),
                    },
                    wgpu::BindGroupEntry {
                        binding: 3,
                        resource: buffers[s.dst].as_entire_binding(),
                    },
                ];
                device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: None,
                    layout: &self.layout,
                    entries: &entries,
                })
            })
            .collect();
        // The bind groups keep the scratch buffers alive.
        Slot { capacity, params, x, out, readback, binds }
    }

    fn encode(
        &self,
        slot: &Slot,
        rows: usize,
        _output: Output,
        encoder: &mut wgpu::CommandEncoder,
    ) {
        let mut bytes = vec![0u8; (self.stride * self.steps.len() as u64) as usize];
        for (i, step) in self.steps.iter().enumerate() {
            let params = Params { n_rows: rows as u32, ..step.params };
            let at = i * self.stride as usize;
            bytes[at..at + std::mem::size_of::<Params>()]
                .copy_from_slice(bytemuck::bytes_of(&params));
        }
        self.ctx.queue.write_buffer(&slot.params, 0, &bytes);
        let limit = self.ctx.limits().max_compute_workgroups_per_dimension;
        let mut pass = encoder.begin_compute_pass(&Default::default());
        for (i, step) in self.steps.iter().enumerate() {
            let groups = match step.kernel {
                Kernel::Prep => (rows * self.net.n_inputs()).div_ceil(256),
                Kernel::Layer => rows.div_ceil(TILE) * (step.params.n_out as usize).div_ceil(TILE),
                Kernel::Softmax => rows.div_ceil(64),
            };
            let (x, y) = run::grid(groups, limit);
            pass.set_pipeline(&self.pipelines[step.kernel as usize]);
            pass.set_bind_group(0, &slot.binds[i], &[(i as u64 * self.stride) as u32]);
            pass.dispatch_workgroups(x, y, 1);
        }
    }

    fn emit(&self, chunk: &[f32], rows: usize, _output: Output, out: &mut [f32]) {
        // The chunk is feature-major; `out` is row-major.
        let width = self.net.n_outputs();
        for (o, column) in chunk.chunks_exact(rows).enumerate() {
            for (r, &v) in column.iter().enumerate() {
                out[r * width + o] = v;
            }
        }
    }
}
