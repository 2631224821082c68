//! ONNX models on every backend that can run them, against ONNX Runtime's own outputs
//! (models/onnx, made by models/generate_onnx.py with the onnxruntime Python package).
//!
//! Dense nets run on the dense reference, every dense CPU kernel this machine has, and ONNX
//! Runtime through `ort`; tree ensembles and CNNs run on ONNX Runtime and are refused by our
//! dense path with an error that names the operator. ONNX Runtime is loaded from
//! `ORT_DYLIB_PATH` (scripts/onnxruntime.sh, run by the README's test command): these tests
//! fail, not skip, without it.

// ONNX Runtime through `ort`.
#![cfg(feature = "onnx")]

use std::path::Path;
use std::sync::Arc;

use streamscore::backend::cpu::{DenseCpu, DenseReference, Kernel};
use streamscore::backend::gpu::{AdapterChoice, Gpu, GpuOptions};
use streamscore::backend::onnx::{OnnxOptions, OnnxRuntime};
use streamscore::model::dense::{Activation, Dense};
use streamscore::model::onnx::OnnxModel;
use streamscore::{Backend, BackendSpec, Batch, Error, Model, Output};

const DENSE: [&str; 4] =
    ["mlp_std_relu_sigmoid", "mlp_matmul_softmax", "mlp_gelu", "mlp_32_256_256_1"];
const OTHER: [&str; 2] = ["lgb_trees", "cnn_small"];

/// Relative tolerance against ONNX Runtime (the 1e-5)...
const REL: f64 = 1e-5;

/// ... except within this absolute distance (2^-23, two f32 ulps of 0.5). ONNX Runtime's
/// `Sigmoid` is a rational approximation computed as `p / q + 0.5` in f32: near 0 its output
/// is only resolved to about 6e-8 absolute (1e-4 relative at 4e-4 was measured against an f64
/// evaluation), so a relative test of tiny probabilities would compare rounding noise.
const ABS: f64 = 1.0 / (1 << 23) as f64;

/// ... and, for a linear output, relative to at least this share of the sum of the absolute
/// terms that make it (`T = sum |h_i w_io| + |b_o|`): an output below T / 10 is checked to
/// 1e-6 T absolute instead. Such an output is a difference of larger terms, and every f32
/// evaluation carries its summation order's rounding of them (about sqrt(n) x 6e-8 x T).
/// ONNX Runtime itself was measured 9.5e-6 off an f64 evaluation in this metric, and 3.8e-5
/// off in plain relative terms (at 0.0333 with T = 3.9, in mlp_gelu).
const CANCELLATION: f64 = 0.1;

/// For each output of a linear last layer, the sum of the absolute terms behind it; zeros
/// (no floor) when the last layer has an activation.
fn term_magnitudes(net: &Dense, row: &[f32]) -> Vec<f64> {
    let (last, hidden) = net.layers().split_last().unwrap();
    if last.activation != Activation::Identity {
        return vec![0.0; last.n_out];
    }
    let mut h = row.to_vec();
    net.standardize(&mut h);
    for layer in hidden {
        let mut y = layer.bias.clone();
        for (i, &x) in h.iter().enumerate() {
            for (o, y) in y.iter_mut().enumerate() {
                *y += x * layer.weights[i * layer.n_out + o];
            }
        }
        layer.activation.apply_row(&mut y);
        h = y;
    }
    (0..last.n_out)
        .map(|o| {
            let terms: f64 = h
                .iter()
                .enumerate()
                .map(|(i, &x)| (x * last.weights[i * last.n_out + o]).abs() as f64)
                .sum();
            terms + last.bias[o].abs() as f64
        })
        .collect()
}

struct Case {
    name: &'static str,
    model: Arc<OnnxModel>,
    rows: Vec<f32>,
    n_rows: usize,
    expected: Vec<f32>,
    width: usize,
}

fn case(name: &'static str) -> Case {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/onnx").join(name);
    let bytes = std::fs::read(dir.join("model.onnx")).unwrap();
    let model = Arc::new(OnnxModel::from_bytes(bytes).unwrap());
    let npy = streamscore::io::parse_npy(&std::fs::read(dir.join("input.npy")).unwrap()).unwrap();
    assert_eq!(npy.cols, model.n_features(), "{name}");
    let text = std::fs::read_to_string(dir.join("expected.csv")).unwrap();
    let mut expected = Vec::new();
    let mut width = 0;
    for line in text.lines() {
        let row: Vec<f32> = line.split(',').map(|v| v.parse().unwrap()).collect();
        width = row.len();
        expected.extend(row);
    }
    assert_eq!(expected.len(), npy.rows * width, "{name}");
    Case { name, model, rows: npy.values, n_rows: npy.rows, expected, width }
}

/// Scores the case in slices of `size` rows; returns the largest relative error among values
/// more than [`ABS`] apart, with [`CANCELLATION`]'s floor.
fn max_rel(backend: &dyn Backend, c: &Case, size: usize) -> f64 {
    assert_eq!(backend.output_width(Output::Transformed), c.width, "{}", c.name);
    let mut worst = 0f64;
    let f = c.model.n_features();
    let floors: Vec<f64> = match c.model.dense() {
        Ok(net) => c
            .rows
            .chunks(f)
            .flat_map(|row| term_magnitudes(net, row))
            .map(|t| CANCELLATION * t)
            .collect(),
        Err(_) => vec![0.0; c.expected.len()],
    };
    for (n, (chunk, want)) in
        c.rows.chunks(size * f).zip(c.expected.chunks(size * c.width)).enumerate()
    {
        let batch = Batch::from_rows(chunk, f).unwrap();
        let mut got = vec![f32::NAN; want.len()];
        backend.score_batch(&batch, Output::Transformed, &mut got).unwrap();
        for (k, (&g, &w)) in got.iter().zip(want).enumerate() {
            let floor = floors[n * size * c.width + k];
            let diff = (g as f64 - w as f64).abs();
            assert!(diff.is_finite(), "{}: {g} vs {w}", c.name);
            if diff > ABS {
                worst = worst.max(diff / (w.abs() as f64).max(floor));
            }
        }
    }
    worst
}

fn dense_backends(model: &Arc<OnnxModel>) -> Vec<Box<dyn Backend>> {
    let net = model.dense().unwrap().clone();
    let mut all: Vec<Box<dyn Backend>> = vec![Box::new(DenseReference::new(net.clone()))];
    for kernel in Kernel::ALL {
        if let Ok(cpu) = DenseCpu::with_kernel(net.clone(), kernel) {
            all.push(Box::new(cpu));
        }
    }
    all.push(Box::new(OnnxRuntime::new(model.clone(), OnnxOptions::default()).unwrap()));
    // The GPU path: a hardware GPU, else lavapipe (the README's test command installs it).
    let options = GpuOptions::default().with_adapter(AdapterChoice::AllowSoftware);
    match Gpu::new(Model::Onnx(model.clone()), options) {
        Ok(gpu) => all.push(Box::new(gpu)),
        Err(e) if std::env::var("STREAMSCORE_REQUIRE_GPU").is_ok_and(|v| v == "1") => {
            panic!("STREAMSCORE_REQUIRE_GPU=1 but {e}")
        }
        Err(e) => eprintln!("SKIP the GPU dense path: {e}"),
    }
    all
}

#[test]
fn dense_nets_match_onnx_runtime_on_every_backend_and_batch_size() {
    let mut table = String::new();
    for name in DENSE {
        let c = case(name);
        for backend in dense_backends(&c.model) {
            for size in [1, 3, 16, 17, 255, 300, c.n_rows] {
                let err = max_rel(backend.as_ref(), &c, size);
                table += &format!(
                    "{name:<22} {:<18} batch {size:>5}: max rel {err:.2e}\n",
                    backend.name()
                );
                assert!(err <= REL, "{name} on {} in batches of {size}: {err:e}", backend.name());
            }
        }
    }
    eprint!("{table}");
}

#[test]
fn non_dense_graphs_run_on_onnx_runtime_and_are_refused_by_the_dense_path() {
    for name in OTHER {
        let c = case(name);
        let err = c.model.dense().unwrap_err();
        assert!(matches!(err, Error::Unsupported { .. }), "{name}: {err}");
        let msg = err.to_string();
        assert!(msg.contains("--backend onnx"), "{name}: {msg}");
        assert!(msg.contains(if name == "cnn_small" { "Conv" } else { "TreeEnsemble" }), "{msg}");
        let ort = OnnxRuntime::new(c.model.clone(), OnnxOptions::default()).unwrap();
        for size in [1, 7, c.n_rows] {
            let err = max_rel(&ort, &c, size);
            assert!(err <= 1e-6, "{name} in batches of {size}: {err:e}");
        }
        // `auto` falls back to ONNX Runtime; `cpu` says why it cannot.
        let auto = BackendSpec::auto().select(Model::Onnx(c.model.clone())).unwrap();
        assert_eq!(auto.name(), "onnx");
        let cpu = BackendSpec::cpu(Default::default()).select(Model::Onnx(c.model.clone()));
        assert!(matches!(cpu, Err(Error::Unsupported { .. })));
    }
}

#[test]
fn auto_picks_our_dense_path_and_widths_are_checked() {
    let c = case("mlp_matmul_softmax");
    let auto = BackendSpec::auto().select(Model::Onnx(c.model.clone())).unwrap();
    assert!(auto.name().starts_with("dense-cpu"), "{}", auto.name());
    let ort = OnnxRuntime::new(c.model.clone(), OnnxOptions::default()).unwrap();
    for backend in [auto.as_ref(), &ort as &dyn Backend] {
        let wrong = Batch::from_rows(&[1.0; 7], 7).unwrap();
        let mut out = vec![0.0; 4];
        assert!(matches!(
            backend.score_batch(&wrong, Output::Raw, &mut out),
            Err(Error::WidthMismatch { expected: 6, got: 7 })
        ));
        let batch = Batch::from_rows(&[1.0; 12], 6).unwrap();
        assert!(matches!(
            backend.score_batch(&batch, Output::Raw, &mut out),
            Err(Error::OutputLength { expected: 8, got: 4 })
        ));
    }
    // A tree model has no ONNX Runtime backend here.
    let forest = streamscore::load_forest("models/golden/lgb_binary/model.txt").unwrap();
    assert!(matches!(BackendSpec::onnx(Default::default()).select(forest), Err(Error::Config(_))));
}

#[test]
fn one_session_pool_serves_many_threads() {
    let c = case("mlp_32_256_256_1");
    let ort = Arc::new(OnnxRuntime::new(c.model.clone(), OnnxOptions::default()).unwrap());
    let c = Arc::new(c);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (ort, c) = (ort.clone(), c.clone());
            std::thread::spawn(move || {
                for _ in 0..5 {
                    assert!(max_rel(ort.as_ref(), &c, 64 + t) <= 1e-6);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

fn model_bytes(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("models/onnx").join(name).join("model.onnx"),
    )
    .unwrap()
}

/// Loads `bytes` as a model; when it loads as a dense net, scores a few rows on our paths.
/// Nothing may panic; what loads must either score or return an error.
fn load_and_score(bytes: Vec<u8>) -> bool {
    let Ok(model) = OnnxModel::from_bytes(bytes) else { return false };
    if let Ok(net) = model.dense() {
        let f = net.n_inputs();
        if f <= 4096 {
            let batch = Batch::from_rows(&vec![0.5; 3 * f], f).unwrap();
            let mut out = vec![0.0; 3 * net.n_outputs()];
            let cpu = DenseCpu::new(net.clone());
            cpu.score_batch(&batch, Output::Raw, &mut out).unwrap();
        }
    }
    true
}

#[test]
fn truncated_and_mutated_onnx_files_are_errors_never_panics() {
    let bytes = model_bytes("mlp_matmul_softmax");
    let mut loaded = 0;
    for cut in 0..bytes.len() {
        loaded += load_and_score(bytes[..cut].to_vec()) as usize;
    }
    assert!(loaded < bytes.len() / 2, "most truncations must fail ({loaded} loaded)");
    let bytes = model_bytes("mlp_std_relu_sigmoid");
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..3000 {
        let mut m = bytes.clone();
        for _ in 0..(next() % 4 + 1) {
            let i = (next() as usize) % m.len();
            m[i] = next() as u8;
        }
        load_and_score(m);
    }
    for bad in [vec![], vec![0x08], vec![0x08, 0x07, 0x3a, 0xff, 0xff, 0xff, 0xff, 0x0f]] {
        assert!(matches!(OnnxModel::from_bytes(bad), Err(Error::Parse { .. })));
    }
    let e = Model::from_bytes(vec![0x08, 0x07], Path::new("x.onnx")).unwrap_err();
    assert!(e.to_string().contains("ONNX"), "{e}");
}

#[test]
fn the_runtime_scores_onnx_files_end_to_end() {
    let c = case("mlp_std_relu_sigmoid");
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("models/onnx/mlp_std_relu_sigmoid/model.onnx");
    for backend in [BackendSpec::auto(), BackendSpec::onnx(Default::default())] {
        let config = streamscore::RuntimeConfig::default().with_backend(backend.clone());
        let rt = streamscore::Runtime::builder().model_path(&dir).config(config).build().unwrap();
        let f = c.model.n_features();
        for (row, want) in c.rows.chunks(f).zip(&c.expected).take(50) {
            let got = rt.score(streamscore::Event::new(row.to_vec())).unwrap().value();
            assert!(
                (got - want).abs() <= 1e-5 * want.abs() + ABS as f32,
                "{backend:?}: {got} vs {want}"
            );
        }
        rt.shutdown();
    }
}

#[test]
fn a_missing_onnx_runtime_is_a_clear_error_and_auto_does_not_need_it() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/onnx/mlp_gelu/model.onnx");
    let run = |backend: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_streamscore"))
            .args([
                "bench",
                "--mode",
                "direct",
                "--duration",
                "0.05",
                "--rows",
                "64",
                "--backend",
                backend,
            ])
            .arg("--model")
            .arg(&model)
            .env("ORT_DYLIB_PATH", "/nonexistent/libonnxruntime.so")
            .output()
            .unwrap()
    };
    let onnx = run("onnx");
    assert!(!onnx.status.success());
    let stderr = String::from_utf8_lossy(&onnx.stderr);
    assert!(
        stderr.contains("backend `onnx` is unavailable") && stderr.contains("onnxruntime.sh"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let auto = run("auto");
    assert!(auto.status.success(), "{}", String::from_utf8_lossy(&auto.stderr));
}
