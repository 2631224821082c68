//! Output transforms: what a model's objective does to its raw margins.
//!
//! Computed in f64 from f64 margins, as LightGBM does; XGBoost's f32 versions agree to within
//! an f32 rounding.

/// The link from raw margins to predictions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Transform {
    /// Raw margins are the prediction (regression, ranking, raw logits).
    Identity,
    /// `1 / (1 + exp(-scale * x))` on the single output (binary, cross-entropy, reg:logistic).
    Sigmoid {
        /// LightGBM's `sigmoid:` parameter; 1 for XGBoost.
        scale: f64,
    },
    /// The sigmoid applied to each class independently (LightGBM `multiclassova`).
    SigmoidEach {
        /// LightGBM's `sigmoid:` parameter.
        scale: f64,
    },
    /// `exp(x)` (poisson, gamma, tweedie, survival).
    Exp,
    /// `log(1 + exp(x))` (LightGBM `cross_entropy_lambda`).
    Log1pExp,
    /// `sign(x) * x^2` (LightGBM regression trained with `reg_sqrt`).
    SignedSquare,
    /// `1` if `x > 0` else `0` (XGBoost `binary:hinge`).
    Step,
    /// Softmax across classes (multiclass).
    Softmax,
    /// Index of the largest class margin, first on ties (XGBoost `multi:softmax`).
    ArgMax,
}

impl Transform {
    /// Values per row after the transform, for a model with `n_groups` raw outputs.
    pub fn output_width(&self, n_groups: usize) -> usize {
        match self {
            Transform::ArgMax => 1,
            _ => n_groups,
        }
    }

    /// Whether each output depends only on its own raw value (everything but `Softmax` and
    /// `ArgMax`), so that [`Transform::apply`] may take many single-output rows at once.
    pub fn is_elementwise(&self) -> bool {
        !matches!(self, Transform::Softmax | Transform::ArgMax)
    }

    /// Transforms one row: `raw` has `n_groups` values, `out` has `output_width(n_groups)` (for
    /// an elementwise transform, any number of single-output rows at once).
    pub fn apply(&self, raw: &[f64], out: &mut [f64]) {
        let sigmoid = |x: f64, s: f64| 1.0 / (1.0 + (-s * x).exp());
        match *self {
            Transform::Identity => out.copy_from_slice(raw),
            Transform::Sigmoid { scale } | Transform::SigmoidEach { scale } => {
                for (o, &x) in out.iter_mut().zip(raw) {
                    *o = sigmoid(x, scale);
                }
            }
            Transform::Exp => out.iter_mut().zip(raw).for_each(|(o, &x)| *o = x.exp()),
            Transform::Log1pExp => out.iter_mut().zip(raw).for_each(|(o, &x)| *o = x.exp().ln_1p()),
            Transform::SignedSquare => out.iter_mut().zip(raw).for_each(|(o, &x)| *o = x * x.abs()),
            Transform::Step => {
                out.iter_mut().zip(raw).for_each(|(o, &x)| *o = if x > 0.0 { 1.0 } else { 0.0 })
            }
            Transform::Softmax => {
                let max = raw.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let mut sum = 0.0;
                for (o, &x) in out.iter_mut().zip(raw) {
                    *o = (x - max).exp();
                    sum += *o;
                }
                out.iter_mut().for_each(|o| *o /= sum);
            }
            Transform::ArgMax => {
                let mut best = 0;
                for (i, &x) in raw.iter().enumerate() {
                    if x > raw[best] {
                        best = i;
                    }
                }
                out[0] = best as f64;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sums_to_one_and_argmax_takes_first_tie() {
        let mut out = [0.0; 3];
        Transform::Softmax.apply(&[1.0, 2.0, 3.0], &mut out);
        assert!((out.iter().sum::<f64>() - 1.0).abs() < 1e-15);
        assert!(out[2] > out[1] && out[1] > out[0]);
        let mut one = [0.0];
        Transform::ArgMax.apply(&[0.5, 2.0, 2.0], &mut one);
        assert_eq!(one[0], 1.0);
    }

    #[test]
    fn sigmoid_uses_scale() {
        let mut out = [0.0];
        Transform::Sigmoid { scale: 2.0 }.apply(&[0.5], &mut out);
        assert!((out[0] - 1.0 / (1.0 + (-1.0f64).exp())).abs() < 1e-15);
    }
}
