//! Parity of every tree backend with the libraries that trained the models.
//!
//! One suite for all paths: each backend is one line in `parity_suite!` and runs the same golden
//! files (models/golden, made by models/generate.py) and real models (../shared/data, expected
//! outputs in models/real, made by models/real_expected.py).

mod common;

use common::{Case, golden_cases, parity, real_cases};
use streamscore::backend::cpu::{Algorithm, Cpu, Kernel};
use streamscore::{Backend, Batch, Forest, Output, Reference};

/// Runs `make`'s backend over `cases`. With `exact`, every raw margin must also equal the
/// library's value rounded to f32 (the reference scorer's promise: same branches, same sums).
fn run_suite(label: &str, cases: &[Case], make: &dyn Fn(Forest) -> Box<dyn Backend>, exact: bool) {
    // One table per suite, printed at once so parallel tests do not interleave rows.
    let mut table = format!(
        "{:<28} {:>5} {:>12} {:>12} {:>10}\n",
        label, "rows", "max rel raw", "max rel out", "identical"
    );
    let mut inexact = Vec::new();
    for case in cases {
        let forest = case.forest();
        let batch = case.batch(&forest);
        let backend = make(forest);
        let p = parity(backend.as_ref(), case, &batch);
        table += &format!(
            "{:<28} {:>5} {:>12.3e} {:>12.3e} {:>9.1}%\n",
            case.name,
            p.rows,
            p.max_rel_raw,
            p.max_rel_pred,
            100.0 * p.identical_rows as f64 / p.rows as f64
        );
        if p.identical_rows != p.rows {
            inexact.push(case.name.clone());
        }
    }
    eprint!("{table}");
    assert!(!exact || inexact.is_empty(), "{label}: raw margins not bit-identical for {inexact:?}");
}

/// Scores `batch` in slices of `size` rows and checks every raw margin and prediction equals
/// the reference scorer's bit for bit (this reaches the short-batch paths: a kernel walks many
/// trees of one row when a slice has fewer rows than SIMD lanes).
fn slices_match_reference(label: &str, backend: &dyn Backend, forest: &Forest, batch: &Batch) {
    let reference = Reference::new(forest.clone());
    let rows = batch.to_rows();
    let width = forest.n_features();
    for size in [1, 3, 15, 16, 17, 64, 65, 130] {
        for output in [Output::Raw, Output::Transformed] {
            let w = backend.output_width(output);
            for chunk in rows.chunks(size * width).take(6) {
                let slice = Batch::from_rows(chunk, width).unwrap();
                let (mut got, mut want) =
                    (vec![0.0; slice.n_rows() * w], vec![0.0; slice.n_rows() * w]);
                backend.score_batch(&slice, output, &mut got).unwrap();
                reference.score_batch(&slice, output, &mut want).unwrap();
                let same = got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{label}: batch of {size} rows, {output:?}: {got:?} vs {want:?}");
            }
        }
    }
}

/// A fast CPU scorer with `kernel` and `algorithm`, or `None` (said loudly) where this CPU
/// cannot run the kernel. Forests the bitvector algorithm cannot hold (trees over 64 leaves)
/// are traversed, so every golden file still runs; the masked algorithm takes any forest.
fn cpu(
    kernel: Kernel,
    algorithm: Algorithm,
    threads: usize,
) -> Option<impl Fn(Forest) -> Box<dyn Backend>> {
    if !kernel.is_available() {
        eprintln!("SKIP kernel {kernel}: this CPU lacks its features");
        return None;
    }
    Some(move |f: Forest| {
        let small = f.trees().iter().all(|t| t.leaves() <= 64);
        let algorithm =
            if small || algorithm == Algorithm::Masked { algorithm } else { Algorithm::Traverse };
        let cpu = Cpu::new(f).unwrap().with_kernel(kernel).unwrap().with_threads(threads).unwrap();
        Box::new(cpu.with_algorithm(algorithm).unwrap()) as Box<dyn Backend>
    })
}

macro_rules! parity_suite {
    ($($name:ident => $make:expr, exact: $exact:expr);* $(;)?) => {$(
        mod $name {
            use super::*;

            #[test]
            fn golden_files() {
                let Some(make) = $make else { return };
                run_suite(stringify!($name), &golden_cases(), &make, $exact);
            }

            #[test]
            fn real_models() {
                let Some(make) = $make else { return };
                if let Some(cases) = real_cases() {
                    run_suite(stringify!($name), &cases, &make, $exact);
                }
            }

            #[test]
            fn every_batch_size() {
                let Some(make) = $make else { return };
                for case in golden_cases().iter().chain(real_cases().iter().flatten()) {
                    let forest = case.forest();
                    let batch = case.batch(&forest);
                    let backend = make(forest.clone());
                    slices_match_reference(&case.name, backend.as_ref(), &forest, &batch);
                }
            }

            /// Batches large enough to be split across threads give the reference's scores.
            #[test]
            fn large_batches() {
                let Some(make) = $make else { return };
                for case in golden_cases().iter().chain(real_cases().iter().flatten()).step_by(3) {
                    let forest = case.forest();
                    let batch = streamscore::io::synthetic_rows(&forest, 20_000, 7);
                    let backend = make(forest.clone());
                    let reference = Reference::new(forest);
                    let w = backend.output_width(Output::Raw);
                    let (mut got, mut want) = (vec![0.0; 20_000 * w], vec![0.0; 20_000 * w]);
                    backend.score_batch(&batch, Output::Raw, &mut got).unwrap();
                    reference.score_batch(&batch, Output::Raw, &mut want).unwrap();
                    let same = got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "{}: large batch differs from the reference", case.name);
                }
            }
        }
    )*};
}

parity_suite! {
    reference => Some(|f: Forest| Box::new(Reference::new(f)) as Box<dyn Backend>), exact: true;
    traverse_scalar => cpu(Kernel::Scalar, Algorithm::Traverse, 1), exact: true;
    traverse_avx2 => cpu(Kernel::Avx2, Algorithm::Traverse, 1), exact: true;
    traverse_avx512 => cpu(Kernel::Avx512, Algorithm::Traverse, 1), exact: true;
    traverse_avx512_2_threads => cpu(Kernel::Avx512, Algorithm::Traverse, 2), exact: true;
    bitvector_scalar => cpu(Kernel::Scalar, Algorithm::Bitvector, 1), exact: true;
    bitvector_avx2 => cpu(Kernel::Avx2, Algorithm::Bitvector, 1), exact: true;
    bitvector_avx512 => cpu(Kernel::Avx512, Algorithm::Bitvector, 1), exact: true;
    bitvector_avx2_2_threads => cpu(Kernel::Avx2, Algorithm::Bitvector, 2), exact: true;
    masked_scalar => cpu(Kernel::Scalar, Algorithm::Masked, 1), exact: true;
    masked_avx512 => cpu(Kernel::Avx512, Algorithm::Masked, 1), exact: true;
    masked_avx512_2_threads => cpu(Kernel::Avx512, Algorithm::Masked, 2), exact: true;
    // The default: tuned on the first batch of 512 rows or more, then that plan.
    tuned => Some(|f: Forest| Box::new(Cpu::new(f).unwrap()) as Box<dyn Backend>), exact: true;
}

/// Tuning runs on a large batch (the `tuned` suite checks its bits); forcing an algorithm
/// turns it off.
#[test]
fn forcing_an_algorithm_turns_tuning_off() {
    let case = real_cases()
        .and_then(|c| c.into_iter().next())
        .unwrap_or_else(|| golden_cases().into_iter().next().expect("golden files"));
    let forest = case.forest();
    let batch = streamscore::io::synthetic_rows(&forest, 4_096, 3);
    let w = Cpu::new(forest.clone()).unwrap().output_width(Output::Raw);
    let mut out = vec![0.0; 4_096 * w];
    let tuned = Cpu::new(forest.clone()).unwrap();
    tuned.score_batch(&batch, Output::Raw, &mut out).unwrap();
    eprintln!("{}: tuned to {:?} on {}", case.name, tuned.algorithm(), tuned.kernel());
    let forced = Cpu::new(forest).unwrap().with_algorithm(Algorithm::Masked).unwrap();
    forced.score_batch(&batch, Output::Raw, &mut out).unwrap();
    assert_eq!(forced.algorithm(), Algorithm::Masked);
}

/// The .npy copy of every input gives the same rows as the CSV (NaN included).
#[test]
fn npy_and_csv_inputs_agree() {
    for case in golden_cases() {
        let forest = case.forest();
        let csv = case.batch(&forest);
        let bytes = std::fs::read(case.dir.join("input.npy")).unwrap();
        let npy = streamscore::io::read_rows(
            &bytes,
            streamscore::io::Columns::ByName,
            forest.feature_names(),
            "npy",
        )
        .unwrap();
        let same =
            csv.as_slice().iter().zip(npy.as_slice()).all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same && csv.n_rows() == npy.n_rows(), "{}: npy and csv rows differ", case.name);
    }
}

/// The golden inputs really exercise the hard cases: missing values, categorical splits,
/// multiclass, and rows built on the models' own thresholds.
#[test]
fn golden_files_cover_the_hard_cases() {
    let cases = golden_cases();
    let forests: Vec<Forest> = cases.iter().map(Case::forest).collect();
    let has_nan =
        cases.iter().zip(&forests).any(|(c, f)| c.batch(f).as_slice().iter().any(|v| v.is_nan()));
    let has_cat = forests
        .iter()
        .any(|f| f.format() == streamscore::ModelFormat::LightGbm && !f.cat_words().is_empty())
        && forests.iter().any(|f| {
            f.format() == streamscore::ModelFormat::XgboostJson && !f.cat_words().is_empty()
        });
    let has_multi = forests.iter().filter(|f| f.n_groups() > 1).count() >= 4;
    let has_single_leaf = forests.iter().any(|f| f.trees().iter().all(|t| t.nodes.len() == 1));
    let deepest = forests.iter().map(Forest::max_depth).max().unwrap();
    assert!(has_nan && has_cat && has_multi && has_single_leaf, "coverage");
    assert!(deepest >= 20, "deepest golden tree is only {deepest} deep");
}

/// A borrowed feature-major buffer (`Columns`, as the Python package passes a Fortran-order
/// numpy array) scores exactly as the owned batch, through the fast CPU path and the default.
#[test]
fn borrowed_columns_score_as_the_batch() {
    use streamscore::{BackendSpec, Columns};
    for case in common::golden_cases() {
        let forest = case.forest();
        let batch = case.batch(&forest);
        let backends = [
            BackendSpec::auto().select(forest.clone()).unwrap(),
            BackendSpec::reference().select(forest.clone()).unwrap(),
        ];
        for backend in backends {
            let width = backend.output_width(Output::Raw);
            let mut owned = vec![0.0; batch.n_rows() * width];
            backend.score_batch(&batch, Output::Raw, &mut owned).unwrap();
            let values = batch.as_slice().to_vec();
            let columns = Columns::new(&values, batch.n_rows(), batch.n_features()).unwrap();
            let mut borrowed = vec![0.0; owned.len()];
            backend.score_columns(columns, Output::Raw, &mut borrowed).unwrap();
            let same = owned.iter().zip(&borrowed).all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{} [{}]", case.name, backend.name());
        }
    }
}
