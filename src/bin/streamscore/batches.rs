//! Batches cut from a bench's rows.

use streamscore::Batch;

/// Batches of `size` rows cut from `rows` (tiled when there are fewer rows than `size`).
pub fn chunks(rows: &Batch, size: usize) -> Vec<Batch> {
    let (n, w) = (rows.n_rows(), rows.n_features());
    let size = size.max(1);
    let count = (n / size).clamp(1, 64);
    (0..count)
        .map(|c| {
            let mut values = vec![0.0; size * w];
            for f in 0..w {
                let col = rows.column(f);
                for r in 0..size {
                    values[f * size + r] = col[(c * size + r) % n];
                }
            }
            Batch::from_columns(values, size, w).expect("size * w values")
        })
        .collect()
}
