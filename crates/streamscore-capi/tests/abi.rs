//! The extern functions called from Rust: scores bit-identical to the Rust scorer's on every
//! golden model, through both layouts and outputs. (The C suite, tests/c/suite.c, checks the
//! same calls from C against the training library's predictions, and the misuse cases.)

use std::ffi::CString;
use std::path::{Path, PathBuf};

use streamscore::{BackendSpec, Output};
use streamscore_c::*;

fn golden() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/golden");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("input.npy").exists())
        .collect();
    cases.sort();
    cases
}

/// The golden input: a header line, then rows of floats; an empty field is NaN.
fn read_csv(path: &Path) -> Vec<f32> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut values = Vec::new();
    for line in text.lines().skip(1) {
        values.extend(
            line.split(',').map(|f| if f.is_empty() { f32::NAN } else { f.parse().unwrap() }),
        );
    }
    values
}

fn model_file(dir: &Path) -> PathBuf {
    let txt = dir.join("model.txt");
    if txt.exists() { txt } else { dir.join("model.json") }
}

#[test]
fn scores_equal_the_rust_scorer_bit_for_bit() {
    let cases = golden();
    assert!(cases.len() >= 40, "{} golden cases", cases.len());
    for dir in cases {
        let path = model_file(&dir);
        let rust = BackendSpec::default().select(streamscore::load_model(&path).unwrap()).unwrap();
        let width = rust.n_features();
        let rows = read_csv(&dir.join("input.csv"));
        let n = rows.len() / width;
        assert_eq!(n * width, rows.len(), "{}", dir.display());
        let mut columns = vec![0f32; rows.len()];
        for r in 0..n {
            for c in 0..width {
                columns[c * n + r] = rows[r * width + c];
            }
        }
        let c_path = CString::new(path.to_str().unwrap()).unwrap();
        let mut m = SsModel { id: 0 };
        // SAFETY: valid strings and out-pointer.
        assert_eq!(
            unsafe { ss_model_load(c_path.as_ptr(), std::ptr::null(), &mut m) },
            SsStatus::Ok
        );
        for (code, output) in
            [(SS_OUTPUT_TRANSFORMED, Output::Transformed), (SS_OUTPUT_RAW, Output::Raw)]
        {
            let k = rust.output_width(output);
            let mut want = vec![0f32; n * k];
            rust.score_rows(&rows, output, &mut want).unwrap();
            for (layout, x) in [(SS_ROW_MAJOR, &rows), (SS_COLUMN_MAJOR, &columns)] {
                let mut got = vec![f32::NAN; n * k];
                // SAFETY: `x` holds n * width values and `got` n * k.
                let s = unsafe {
                    ss_model_score(
                        m,
                        x.as_ptr(),
                        n,
                        width,
                        layout,
                        code,
                        got.as_mut_ptr(),
                        got.len(),
                    )
                };
                assert_eq!(s, SsStatus::Ok, "{}", dir.display());
                let same = want.iter().zip(&got).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(
                    same,
                    "{} {output:?} layout {layout}: not the Rust scorer's bits",
                    dir.display()
                );
            }
        }
        assert_eq!(ss_model_free(m), SsStatus::Ok);
    }
}
