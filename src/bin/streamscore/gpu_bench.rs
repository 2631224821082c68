//! `streamscore bench --backend gpu`: the GPU backend as asked for (no CPU fallback), and the
//! upload / compute / readback split of one batch.

use serde_json::json;
use streamscore::backend::GpuOptions;
use streamscore::backend::gpu::Gpu;
use streamscore::{Backend, Batch, Error, Model, Output};

/// The GPU backend as `--gpu-software` and `--gpu-strategy` set it, with no CPU fallback.
pub fn gpu(options: &GpuOptions, model: &Model) -> Result<Gpu, Error> {
    Gpu::new(model.clone(), options.clone())
}

/// Times upload, compute and readback of one batch of `batch` rows with a wait after each
/// stage (medians of 5 runs) and prints their shares.
pub fn stages(gpu: &Gpu, rows: &Batch, batch: usize, json: bool) -> Result<(), Error> {
    let one = crate::batches::chunks(rows, batch).swap_remove(0);
    let mut out = vec![0.0; one.n_rows() * gpu.output_width(Output::Transformed)];
    let mut runs = Vec::new();
    for _ in 0..5 {
        let t = gpu.profile(&one, Output::Transformed, &mut out)?;
        runs.push([t.upload, t.compute, t.readback].map(|d| d.as_secs_f64() * 1e6));
    }
    let median = |k: usize| {
        let mut v: Vec<f64> = runs.iter().map(|r| r[k]).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let [up, compute, back] = [0, 1, 2].map(median);
    let total = up + compute + back;
    let strategy = gpu.strategy_for(batch).map_or("-".to_string(), |s| format!("{s:?}"));
    if json {
        println!(
            "{}",
            json!({ "gpu_stages_us": { "batch": batch, "strategy": strategy, "upload": up,
                    "compute": compute, "readback": back } })
        );
    } else {
        println!(
            "gpu     batch {batch}, strategy {strategy}, stages run one at a time: upload {up:.0} us \
             ({:.0}%), compute {compute:.0} us ({:.0}%), readback {back:.0} us ({:.0}%)",
            100.0 * up / total,
            100.0 * compute / total,
            100.0 * back / total
        );
    }
    Ok(())
}
