//! What the C ABI adds to a call: one row (and 256 rows) scored through `ss_model_score`
//! against the same backend's `score_rows` called from Rust, in the same run. The extern
//! function is the one C calls (tests/c/bench.c times it from C as well).
//!
//! `cargo bench -p streamscore-capi --bench overhead`

use std::ffi::CString;
use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use streamscore::{BackendSpec, Output};
use streamscore_c::*;

const MODEL: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/golden/lgb_binary/model.txt");

fn bench(c: &mut Criterion) {
    let rust = BackendSpec::default().select(streamscore::load_model(MODEL).unwrap()).unwrap();
    let path = CString::new(MODEL).unwrap();
    let mut m = SsModel { id: 0 };
    // SAFETY: valid strings and out-pointer.
    assert_eq!(unsafe { ss_model_load(path.as_ptr(), std::ptr::null(), &mut m) }, SsStatus::Ok);
    let width = rust.n_features();
    let mut g = c.benchmark_group("overhead");
    // The boundary alone: a handle looked up, an answer written, nothing scored.
    g.bench_function("rust_n_features", |b| b.iter(|| black_box(black_box(&rust).n_features())));
    g.bench_function("ss_model_n_features", |b| {
        b.iter(|| {
            let mut n = 0usize;
            // SAFETY: `n` is writable.
            let s = unsafe { ss_model_n_features(black_box(m), &mut n) };
            assert_eq!(s, SsStatus::Ok);
            black_box(n)
        })
    });
    for rows in [1usize, 256] {
        let x: Vec<f32> =
            (0..rows * width).map(|i| ((i * 7919) % 97) as f32 / 24.0 - 2.0).collect();
        let mut out = vec![0f32; rows];
        g.bench_with_input(BenchmarkId::new("rust_score_rows", rows), &rows, |b, _| {
            b.iter(|| rust.score_rows(black_box(&x), Output::Transformed, &mut out).unwrap())
        });
        g.bench_with_input(BenchmarkId::new("ss_model_score", rows), &rows, |b, &n| {
            b.iter(|| {
                // SAFETY: `x` holds n * width values and `out` n.
                let s = unsafe {
                    ss_model_score(
                        m,
                        black_box(x.as_ptr()),
                        n,
                        width,
                        SS_ROW_MAJOR,
                        SS_OUTPUT_TRANSFORMED,
                        out.as_mut_ptr(),
                        n,
                    )
                };
                assert_eq!(s, SsStatus::Ok);
            })
        });
    }
    g.finish();
    assert_eq!(ss_model_free(m), SsStatus::Ok);
}

criterion_group!(benches, bench);
criterion_main!(benches);
