//! The GPU backend's shaders, run for real: on a hardware GPU where there is one, else on a
//! software Vulkan device (Mesa's lavapipe, which the README's test command installs).
//!
//! Tree kernels (both strategies) against the training libraries' outputs and the reference
//! scorer on every golden file and both real models, at many batch sizes and across chunk
//! boundaries; dense nets against ONNX Runtime's outputs; device loss mid-stream with
//! failover to the CPU. Where no adapter exists at all these tests say SKIP and pass, unless
//! `STREAMSCORE_REQUIRE_GPU=1` (set by the README's test command) makes that a failure.

// The GPU backend exists only with the `gpu` feature.
#![cfg(feature = "gpu")]

mod common;

use std::sync::Arc;

use common::{golden_cases, parity, real_cases};
use streamscore::backend::Failover;
use streamscore::backend::gpu::{AdapterChoice, Context, Gpu, GpuOptions, Strategy};
use streamscore::{
    Backend, Batch, Error, Event, Forest, Output, Reference, Runtime, RuntimeConfig, Schema,
};

/// The device for these tests, or `None` (said loudly) where no adapter exists.
fn context() -> Option<Arc<Context>> {
    match Context::new(AdapterChoice::AllowSoftware) {
        Ok(ctx) => Some(ctx),
        Err(e) if std::env::var("STREAMSCORE_REQUIRE_GPU").is_ok_and(|v| v == "1") => {
            panic!("STREAMSCORE_REQUIRE_GPU=1 but no GPU adapter: {e}")
        }
        Err(e) => {
            eprintln!("SKIP GPU tests: {e}");
            None
        }
    }
}

fn options(strategy: Strategy) -> GpuOptions {
    GpuOptions::default().with_strategy(strategy)
}

/// `|got - want| <= 1e-5 |want| + 1e-7 scale`: relative, with a floor for values that are a
/// difference of larger terms (`scale` is the sum of the absolute leaf values behind a margin,
/// so the floor is the rounding of one f32 sum of them).
fn close(got: f32, want: f32, scale: f64) -> bool {
    let (g, w) = (f64::from(got), f64::from(want));
    (g.is_nan() && w.is_nan()) || (g - w).abs() <= 1e-5 * w.abs() + 1e-7 * scale
}

/// Per row, the sum of |leaf value| over the trees the row reaches.
fn leaf_scales(forest: &Forest, batch: &Batch) -> Vec<f64> {
    (0..batch.n_rows())
        .map(|r| {
            let base: f64 = forest.base_margin().iter().map(|b| b.abs()).sum();
            base + forest
                .trees()
                .iter()
                .map(|t| t.leaf_value(forest.cat_words(), |f| batch.value(r, f)).abs())
                .sum::<f64>()
        })
        .collect()
}

/// Scores `batch` in slices of `size` rows on `backend` and the reference, raw and transformed,
/// and checks every value is `close`.
fn matches_reference(
    label: &str,
    backend: &dyn Backend,
    forest: &Forest,
    batch: &Batch,
    size: usize,
) {
    let reference = Reference::new(forest.clone());
    let rows = batch.to_rows();
    let nf = forest.n_features();
    for chunk in rows.chunks(size * nf).take(4) {
        let slice = Batch::from_rows(chunk, nf).unwrap();
        let scales = leaf_scales(forest, &slice);
        for output in [Output::Raw, Output::Transformed] {
            let w = backend.output_width(output);
            let (mut got, mut want) =
                (vec![0.0; slice.n_rows() * w], vec![0.0; slice.n_rows() * w]);
            backend.score_batch(&slice, output, &mut got).unwrap();
            reference.score_batch(&slice, output, &mut want).unwrap();
            for (i, (&g, &v)) in got.iter().zip(&want).enumerate() {
                // Transformed outputs are bounded by their transform; the floor applies to margins.
                let scale = if output == Output::Raw { scales[i / w] } else { 0.0 };
                assert!(
                    close(g, v, scale),
                    "{label}: {size} rows, {output:?}, value {i}: gpu {g} vs reference {v}"
                );
            }
        }
    }
}

fn tree_suite(strategy: Strategy) {
    let Some(ctx) = context() else { return };
    let cases: Vec<_> =
        golden_cases().into_iter().chain(real_cases().into_iter().flatten()).collect();
    let mut table = format!(
        "{:<28} {:>12} {:>12} {:>10}\n",
        format!("{strategy:?}"),
        "max rel raw",
        "max rel out",
        "identical"
    );
    for case in &cases {
        let forest = Arc::new(case.forest());
        let batch = case.batch(&forest);
        let gpu = Gpu::with_context(ctx.clone(), forest.clone(), options(strategy)).unwrap();
        // Against the training library, at the CPU paths' tolerance.
        let p = parity(&gpu, case, &batch);
        table += &format!(
            "{:<28} {:>12.3e} {:>12.3e} {:>9.1}%\n",
            case.name,
            p.max_rel_raw,
            p.max_rel_pred,
            100.0 * p.identical_rows as f64 / p.rows as f64
        );
        for size in [1, 7, 64, 200] {
            matches_reference(&case.name, &gpu, &forest, &batch, size);
        }
    }
    eprint!("{table}");
}

#[test]
fn trees_rows_strategy() {
    tree_suite(Strategy::Rows);
}

#[test]
fn trees_tiles_strategy() {
    tree_suite(Strategy::Tiles);
}

/// A batch split into many chunks, several in flight, gives the reference's scores in order.
#[test]
fn large_batches_cross_chunk_boundaries() {
    let Some(ctx) = context() else { return };
    for case in golden_cases().iter().step_by(4) {
        let forest = Arc::new(case.forest());
        let batch = streamscore::io::synthetic_rows(&forest, 5_003, 11);
        for strategy in [Strategy::Rows, Strategy::Tiles, Strategy::Auto] {
            let opts = options(strategy).with_max_chunk_rows(1_000).with_in_flight(3);
            let gpu = Gpu::with_context(ctx.clone(), forest.clone(), opts).unwrap();
            matches_reference(&case.name, &gpu, &forest, &batch, 5_003);
        }
    }
}

#[test]
fn wrong_widths_are_errors_and_empty_batches_are_fine() {
    let Some(ctx) = context() else { return };
    let case = &golden_cases()[0];
    let forest = Arc::new(case.forest());
    let gpu = Gpu::with_context(ctx, forest.clone(), GpuOptions::default()).unwrap();
    let wide =
        Batch::from_rows(&vec![0.0; forest.n_features() + 1], forest.n_features() + 1).unwrap();
    let mut out = vec![0.0; gpu.output_width(Output::Raw)];
    assert!(matches!(
        gpu.score_batch(&wide, Output::Raw, &mut out),
        Err(Error::WidthMismatch { .. })
    ));
    let batch = Batch::from_rows(&vec![0.0; forest.n_features()], forest.n_features()).unwrap();
    let mut short = vec![];
    assert!(matches!(
        gpu.score_batch(&batch, Output::Raw, &mut short),
        Err(Error::OutputLength { .. })
    ));
    let empty = Batch::from_columns(vec![], 0, forest.n_features()).unwrap();
    gpu.score_batch(&empty, Output::Raw, &mut []).unwrap();
}

/// A lost device is an error on the GPU backend itself, and `Failover` rescores that batch on
/// the CPU in the same call.
#[test]
fn a_lost_device_is_an_error_and_failover_rescores_the_batch() {
    let Some(ctx) = context() else { return };
    let case = golden_cases().into_iter().find(|c| c.name == "lgb_multiclass").unwrap();
    let forest = Arc::new(case.forest());
    let batch = case.batch(&forest);
    let gpu = Arc::new(Gpu::with_context(ctx, forest.clone(), GpuOptions::default()).unwrap());
    let failover = Failover::new(gpu.clone(), Arc::new(Reference::new(forest.clone())));
    let w = failover.output_width(Output::Transformed);
    let mut out = vec![0.0; batch.n_rows() * w];
    failover.score_batch(&batch, Output::Transformed, &mut out).unwrap();
    assert!(!failover.has_failed());
    gpu.inject_device_loss();
    assert!(matches!(
        gpu.score_batch(&batch, Output::Transformed, &mut out),
        Err(Error::DeviceLost { .. })
    ));
    out.fill(f32::NAN);
    failover.score_batch(&batch, Output::Transformed, &mut out).unwrap();
    assert!(failover.has_failed() && failover.rescored_batches() == 1);
    assert_eq!(failover.name(), "reference");
    let mut want = vec![0.0; out.len()];
    Reference::new(forest).score_batch(&batch, Output::Transformed, &mut want).unwrap();
    assert_eq!(out, want);
}

/// The device is destroyed while producers stream events through the runtime: every accepted
/// event gets exactly one answer, each is the reference's score, and the CPU takes over.
#[test]
fn device_loss_mid_stream_loses_nothing_and_answers_once() {
    let Some(ctx) = context() else { return };
    let case = golden_cases().into_iter().find(|c| c.name == "lgb_binary").unwrap();
    let forest = Arc::new(case.forest());
    let rows = streamscore::io::synthetic_rows(&forest, 4_000, 3).to_rows();
    let nf = forest.n_features();
    let gpu = Arc::new(Gpu::with_context(ctx, forest.clone(), GpuOptions::default()).unwrap());
    let reference = Reference::new(forest.clone());
    let failover = Arc::new(Failover::new(gpu.clone(), Arc::new(reference.clone())));
    let producers = 4;
    let per = 3_000;
    // Room for every event: a refusal would be a test failure, not backpressure.
    let config = RuntimeConfig::default()
        .with_max_batch(32)
        .with_workers(3)
        .with_queue_capacity(producers * per);
    let schema = Schema::new(forest.feature_names().iter().cloned());
    let rt = Arc::new(
        Runtime::builder().backend(failover.clone()).schema(schema).config(config).build().unwrap(),
    );
    // Producers submit half their events, wait while the device is destroyed (with the first
    // half still queued or in flight), then submit the rest: events meet the loss for sure.
    let barrier = std::sync::Barrier::new(producers + 1);
    let answers: Vec<Vec<(usize, f32)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..producers)
            .map(|p| {
                let (rt, rows, barrier) = (rt.clone(), &rows, &barrier);
                s.spawn(move || {
                    let submit = |i: usize| {
                        let r = (p * per + i) % 4_000;
                        let row = rows[r * nf..(r + 1) * nf].to_vec();
                        (r, rt.try_submit(Event::new(row)).map_err(|e| e.error))
                    };
                    let mut tickets: Vec<_> = (0..per / 2).map(submit).collect();
                    barrier.wait();
                    tickets.extend((per / 2..per).map(submit));
                    tickets
                        .into_iter()
                        .map(|(r, t)| (r, t.unwrap().wait().unwrap().value()))
                        .collect()
                })
            })
            .collect();
        while rt.metrics().batches < 20 {
            std::thread::yield_now();
        }
        gpu.inject_device_loss();
        barrier.wait();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut want = vec![0.0; 4_000];
    let all = Batch::from_rows(&rows, nf).unwrap();
    reference.score_batch(&all, Output::Transformed, &mut want).unwrap();
    for (r, got) in answers.iter().flatten() {
        // Probabilities: GPU rows carry an f32 sigmoid, CPU rows the reference's bits.
        assert!(close(*got, want[*r], 0.0), "row {r}: {got} vs {}", want[*r]);
    }
    let m = rt.metrics();
    assert_eq!(answers.iter().map(Vec::len).sum::<usize>(), producers * per);
    assert_eq!(
        (m.accepted, m.scored, m.errors),
        ((producers * per) as u64, (producers * per) as u64, 0)
    );
    assert!(failover.has_failed());
    assert!(failover.rescored_batches() >= 1);
    rt.shutdown();
}

/// The spec `gpu,auto` gives the GPU (behind failover) where a hardware adapter opens, and
/// the CPU backend otherwise; both score like the reference. On a machine with only lavapipe
/// this checks the fallback (software adapters are not picked unless asked for).
#[test]
fn gpu_choice_falls_back_to_the_cpu_without_a_hardware_adapter() {
    if std::env::var("STREAMSCORE_GPU_SOFTWARE").is_ok() {
        eprintln!("SKIP: STREAMSCORE_GPU_SOFTWARE is set, so a software adapter counts");
        return;
    }
    let case = golden_cases().into_iter().find(|c| c.name == "xgb_binary").unwrap();
    let forest = Arc::new(case.forest());
    let hardware = Context::new(AdapterChoice::Hardware).is_ok();
    let spec: streamscore::BackendSpec = "gpu,auto".parse().unwrap();
    let backend = spec.select(forest.clone()).unwrap();
    let cpu = streamscore::BackendSpec::auto().select(forest.clone()).unwrap();
    assert_eq!(backend.name(), if hardware { "gpu" } else { cpu.name() });
    let batch = case.batch(&forest);
    matches_reference(&case.name, backend.as_ref(), &forest, &batch, 100);
}

/// Pipelines are compiled once per device: a second model of the same kind on the same
/// context compiles nothing new, and still scores like the reference.
#[test]
fn models_on_one_device_share_their_pipelines() {
    let Some(ctx) = context() else { return };
    let cases = golden_cases();
    let first = cases.iter().find(|c| c.name == "lgb_binary").unwrap();
    let second = cases.iter().find(|c| c.name == "xgb_multiclass").unwrap();
    let a = Gpu::with_context(ctx.clone(), first.forest(), GpuOptions::default()).unwrap();
    let compiled = ctx.pipelines_compiled();
    assert_eq!(compiled, 2, "rows and tiles");
    let forest = Arc::new(second.forest());
    let b = Gpu::with_context(ctx.clone(), forest.clone(), GpuOptions::default()).unwrap();
    assert_eq!(ctx.pipelines_compiled(), compiled, "the second model reuses them");
    matches_reference(&second.name, &b, &forest, &second.batch(&forest), 100);
    drop(a);
}
