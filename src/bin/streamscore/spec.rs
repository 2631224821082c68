//! The backend flags every subcommand shares, read into one [`BackendSpec`]: selection itself
//! lives in the library (`BackendSpec::select`), never here.

use streamscore::Error;
use streamscore::backend::{
    AdapterChoice, BackendChoice, BackendSpec, CpuOptions, GpuOptions, OnnxOptions,
};

/// The flags as given on the command line.
pub struct BackendFlags<'a> {
    /// `--backend`: comma-separated names in order of preference.
    pub backend: &'a str,
    /// `--cpu-threads`: the fast CPU tree scorer's threads, or ONNX Runtime's intra-op threads.
    pub cpu_threads: usize,
    /// `--kernel`.
    pub kernel: Option<&'a str>,
    /// `--algorithm`.
    pub algorithm: Option<&'a str>,
    /// `--gpu-software`.
    pub gpu_software: bool,
    /// `--gpu-strategy`.
    pub gpu_strategy: &'a str,
}

/// The spec the flags ask for. CPU options apply to `cpu` (and turn `auto` into `cpu`, as
/// forcing a kernel means the fast CPU path); GPU options to `gpu`; `--cpu-threads` is also
/// ONNX Runtime's intra-op threads.
pub fn spec(flags: &BackendFlags) -> Result<BackendSpec, Error> {
    let mut cpu = CpuOptions::default().with_threads(flags.cpu_threads);
    if let Some(kernel) = flags.kernel {
        cpu = cpu.with_kernel(kernel.parse()?);
    }
    if let Some(algorithm) = flags.algorithm {
        cpu = cpu.with_algorithm(algorithm.parse()?);
    }
    let adapter =
        if flags.gpu_software { AdapterChoice::AllowSoftware } else { AdapterChoice::Hardware };
    let gpu =
        GpuOptions::default().with_adapter(adapter).with_strategy(flags.gpu_strategy.parse()?);
    let onnx = OnnxOptions::default().with_intra_threads(flags.cpu_threads);
    let tuned = !cpu.is_default();
    let spec: BackendSpec = flags.backend.parse()?;
    let takes_cpu = spec
        .choices()
        .iter()
        .any(|c| matches!(c, BackendChoice::Auto | BackendChoice::Cpu(_) | BackendChoice::Onnx(_)));
    if tuned && !takes_cpu {
        return Err(Error::Config(
            "--kernel, --algorithm and --cpu-threads need --backend cpu, auto or onnx".into(),
        ));
    }
    let forced = flags.kernel.is_some() || flags.algorithm.is_some();
    if forced && spec.choices().iter().any(|c| matches!(c, BackendChoice::Onnx(_))) {
        return Err(Error::Config(
            "--kernel and --algorithm are for our CPU paths, not onnx".into(),
        ));
    }
    Ok(spec.map(|choice| match choice {
        BackendChoice::Auto if tuned => BackendChoice::Cpu(cpu.clone()),
        BackendChoice::Cpu(_) => BackendChoice::Cpu(cpu.clone()),
        BackendChoice::Gpu(_) => BackendChoice::Gpu(gpu.clone()),
        BackendChoice::Onnx(_) => BackendChoice::Onnx(onnx.clone()),
        other => other,
    }))
}
