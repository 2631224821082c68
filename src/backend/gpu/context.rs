//! The GPU context: adapter, device and queue chosen once, limits read, loss tracked.
//!
//! No adapter, no device, or a lost device is an `Err`, never a panic: wgpu's default handler
//! for uncaptured errors panics, so the context installs its own, which marks the device
//! unusable and lets the next call fail with [`Error::DeviceLost`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::shaders::Shader;
use crate::backend::options::AdapterChoice;
use crate::error::{Error, Result};

/// How long a wait on the GPU may take before the device counts as lost.
const WAIT_LIMIT: Duration = Duration::from_secs(120);

/// One device and its queue, shared by every model scored on it.
pub struct Context {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    /// Why the device became unusable, once it has.
    lost: Arc<Mutex<Option<String>>>,
    /// Compiled once per device, shared by every model on it.
    cache: Mutex<Cache>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").field("adapter", &self.info.name).finish_non_exhaustive()
    }
}

/// What a device compiles once: shader modules, bind group layouts and pipelines.
#[derive(Default)]
struct Cache {
    modules: HashMap<Shader, wgpu::ShaderModule>,
    layouts: HashMap<&'static str, wgpu::BindGroupLayout>,
    pipelines: HashMap<PipelineKey, wgpu::ComputePipeline>,
}

/// A pipeline is its shader, entry point, bind group layouts (by name) and override
/// constants (by name and the bits of their value).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PipelineKey {
    shader: Shader,
    entry: &'static str,
    layouts: Vec<&'static str>,
    constants: Vec<(&'static str, u64)>,
}

fn unavailable(reason: String) -> Error {
    Error::Unavailable { backend: "gpu", reason }
}

impl Context {
    /// Opens the best adapter `choice` allows, with the adapter's own limits (so large batches
    /// bind in few chunks).
    pub fn new(choice: AdapterChoice) -> Result<Arc<Context>> {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapters = pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()));
        let rank = |a: &wgpu::Adapter| match a.get_info().device_type {
            wgpu::DeviceType::DiscreteGpu => 0,
            wgpu::DeviceType::IntegratedGpu => 1,
            wgpu::DeviceType::VirtualGpu => 2,
            wgpu::DeviceType::Other => 3,
            wgpu::DeviceType::Cpu => 4,
        };
        let found: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
        let adapter = adapters
            .into_iter()
            .filter(|a| choice == AdapterChoice::AllowSoftware || rank(a) < 4)
            .min_by_key(rank)
            .ok_or_else(|| {
                unavailable(if found.is_empty() {
                    "no GPU adapter (no Vulkan/Metal/DX12 driver found; on Debian, \
                     `apt-get install mesa-vulkan-drivers libvulkan1` gives a software one)"
                        .into()
                } else {
                    format!(
                        "only software adapters ({}); allow them with AdapterChoice::AllowSoftware \
                         (CLI: --gpu-software)",
                        found.join(", ")
                    )
                })
            })?;
        let info = adapter.get_info();
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("streamscore"),
            required_features: wgpu::Features::empty(),
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| unavailable(format!("{}: {e}", info.name)))?;
        let lost = Arc::new(Mutex::new(None));
        let on_lost = lost.clone();
        device.set_device_lost_callback(move |reason, message| {
            let mut lost = on_lost.lock().unwrap_or_else(|p| p.into_inner());
            lost.get_or_insert(format!("{reason:?}: {message}"));
        });
        let on_error = lost.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            log::error!("gpu: {e}");
            let mut lost = on_error.lock().unwrap_or_else(|p| p.into_inner());
            lost.get_or_insert(format!("uncaptured wgpu error: {e}"));
        }));
        log::info!("gpu: {} ({:?}, {:?})", info.name, info.device_type, info.backend);
        Ok(Arc::new(Context { device, queue, info, limits, lost, cache: Default::default() }))
    }

    /// The bind group layout named `name`, made by `make` the first time it is asked for.
    pub(crate) fn layout(
        &self,
        name: &'static str,
        make: impl FnOnce(&wgpu::Device) -> wgpu::BindGroupLayout,
    ) -> wgpu::BindGroupLayout {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.layouts.entry(name).or_insert_with(|| make(&self.device)).clone()
    }

    /// The pipeline for `entry` of `shader` over `layouts` (named as given to
    /// [`layout`](Context::layout)) with `constants` overridden, compiled the first time it is
    /// asked for on this device (models loaded later share it).
    pub(crate) fn pipeline(
        &self,
        shader: Shader,
        entry: &'static str,
        layouts: &[(&'static str, &wgpu::BindGroupLayout)],
        constants: &[(&'static str, f64)],
    ) -> wgpu::ComputePipeline {
        let key = PipelineKey {
            shader,
            entry,
            layouts: layouts.iter().map(|(n, _)| *n).collect(),
            constants: constants.iter().map(|(n, v)| (*n, v.to_bits())).collect(),
        };
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = cache.pipelines.get(&key) {
            return p.clone();
        }
        let module =
            cache.modules.entry(shader).or_insert_with(|| shader.module(&self.device)).clone();
        let bind_group_layouts: Vec<Option<&wgpu::BindGroupLayout>> =
            layouts.iter().map(|(_, l)| Some(*l)).collect();
        let pipeline_layout = self.device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(entry),
            bind_group_layouts: &bind_group_layouts,
            immediate_size: 0,
        });
        let pipeline = self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(entry),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some(entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants,
                ..Default::default()
            },
            cache: None,
        });
        cache.pipelines.insert(key, pipeline.clone());
        pipeline
    }

    /// Pipelines compiled on this device so far: each (shader, entry point, layouts,
    /// constants) once, however many models use it.
    pub fn pipelines_compiled(&self) -> usize {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).pipelines.len()
    }

    /// The adapter's name and type.
    pub fn adapter(&self) -> String {
        format!("{} ({:?})", self.info.name, self.info.device_type)
    }

    /// Whether the adapter is a software rasterizer (its timings mean nothing).
    pub fn is_software(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    pub(crate) fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }

    /// The largest storage buffer one binding can hold, in bytes.
    pub(crate) fn max_binding(&self) -> u64 {
        self.limits.max_storage_buffer_binding_size.min(self.limits.max_buffer_size)
    }

    /// `Err(DeviceLost)` once the device is lost or has reported an error.
    pub fn check(&self) -> Result<()> {
        match &*self.lost.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(reason) => Err(Error::DeviceLost { backend: "gpu", reason: reason.clone() }),
            None => Ok(()),
        }
    }

    /// Marks the device unusable and returns the error to report.
    pub(crate) fn fail(&self, reason: String) -> Error {
        let mut lost = self.lost.lock().unwrap_or_else(|p| p.into_inner());
        let reason = lost.get_or_insert(reason).clone();
        Error::DeviceLost { backend: "gpu", reason }
    }

    /// Fault injection: destroys the device, as a driver reset would. Every later call on it
    /// fails with [`Error::DeviceLost`]; work in flight fails the same way.
    pub fn inject_device_loss(&self) {
        self.fail("injected device loss".into());
        self.device.destroy();
    }

    /// Blocks until `submission` has finished, or fails the device after [`WAIT_LIMIT`].
    pub(crate) fn wait(&self, submission: wgpu::SubmissionIndex) -> Result<()> {
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(submission),
                timeout: Some(WAIT_LIMIT),
            })
            .map(drop)
            .map_err(|e| self.fail(format!("waiting for the GPU: {e}")))?;
        self.check()
    }

    /// Asks for `buffer`'s first `bytes` to be mapped for reading once the work submitted
    /// before this call is done. Call it right after the submit that fills the buffer, then
    /// [`Context::finish_read`].
    pub(crate) fn start_read(&self, buffer: &wgpu::Buffer, bytes: u64) -> MapWait {
        let (tx, rx) = std::sync::mpsc::channel();
        buffer.slice(..bytes).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r.is_ok());
        });
        MapWait(rx)
    }

    /// Waits for `submission` and the mapping `start_read` asked for, hands the bytes to
    /// `read`, and unmaps.
    pub(crate) fn finish_read<T>(
        &self,
        buffer: &wgpu::Buffer,
        bytes: u64,
        submission: wgpu::SubmissionIndex,
        mapped: MapWait,
        read: impl FnOnce(&[u8]) -> T,
    ) -> Result<T> {
        self.wait(submission)?;
        match mapped.0.recv_timeout(Duration::from_secs(1)) {
            Ok(true) => {}
            Ok(false) => return Err(self.fail("mapping a readback buffer failed".into())),
            Err(_) => return Err(self.fail("a readback buffer never mapped".into())),
        }
        let result = match buffer.slice(..bytes).get_mapped_range() {
            Ok(view) => Ok(read(&view)),
            Err(e) => Err(self.fail(format!("reading a mapped buffer: {e}"))),
        };
        buffer.unmap();
        result
    }
}

/// A pending map request from [`Context::start_read`].
pub(crate) struct MapWait(std::sync::mpsc::Receiver<bool>);
