//! LightGBM text and XGBoost JSON: load, then score a few rows on every CPU path (reference,
//! fast, each algorithm); the paths must agree bit for bit and nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamscore::backend::cpu::{Algorithm, Cpu};
use streamscore::{Backend, Batch, Forest, Output, Reference};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(forest) = Forest::from_text(text) else { return };
    let width = forest.n_features();
    if width == 0 || width > 4096 {
        return;
    }
    // Rows from the input's own bytes: values around zero, NaN and infinities included.
    let mut rows = Vec::with_capacity(4 * width);
    for i in 0..4 * width {
        let b = data.get(i % data.len().max(1)).copied().unwrap_or(0);
        rows.push(match b % 8 {
            0 => f32::NAN,
            1 => f32::INFINITY,
            2 => -0.0,
            _ => (b as f32 - 128.0) / 16.0,
        });
    }
    let batch = Batch::from_rows(&rows, width).expect("4 * width values");
    let forest = std::sync::Arc::new(forest);
    let reference = Reference::new(forest.clone());
    for output in [Output::Raw, Output::Transformed] {
        let w = reference.output_width(output);
        let mut want = vec![0.0; 4 * w];
        reference.score_batch(&batch, output, &mut want).expect("reference scores");
        for algorithm in [Algorithm::Traverse, Algorithm::Masked, Algorithm::Bitvector] {
            let Ok(fast) = Cpu::new(forest.clone()) else { break };
            let Ok(cpu) = fast.with_algorithm(algorithm) else { continue };
            let mut got = vec![0.0; 4 * w];
            cpu.score_batch(&batch, output, &mut got).expect("fast path scores");
            for (a, b) in got.iter().zip(&want) {
                assert!(a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()), "{algorithm:?}");
            }
        }
    }
});
