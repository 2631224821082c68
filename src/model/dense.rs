//! Dense neural nets: a stack of fully connected layers with fused activations, read from ONNX.
//!
//! [`Dense::forward_row`] is the scalar reference every fast path is tested against; it follows
//! ONNX's definitions of each operator (`Gemm`, `Relu`, `LeakyRelu`, `Sigmoid`, `Tanh`, `Gelu`,
//! `Softmax`) in f32.

use crate::error::{Error, ModelFormat, Result};

/// Most parameters a dense model may hold (1 GiB of f32).
pub const MAX_PARAMS: usize = 1 << 28;

/// A layer's activation, applied after its bias.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Activation {
    /// None (a linear layer).
    Identity,
    /// `max(x, 0)`.
    Relu,
    /// `x` for `x >= 0`, `alpha * x` otherwise.
    LeakyRelu(f32),
    /// `1 / (1 + exp(-x))`.
    Sigmoid,
    /// `tanh(x)`.
    Tanh,
    /// `0.5 x (1 + erf(x / sqrt 2))` (ONNX `Gelu`, `approximate = "none"`).
    Gelu,
    /// `0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))` (`approximate = "tanh"`).
    GeluTanh,
    /// `exp(x_i - max) / sum_j exp(x_j - max)` over the layer's outputs; only on the last layer.
    Softmax,
}

impl Activation {
    /// Applies an element-wise activation to one value (`Softmax` is not element-wise: it is
    /// applied to a whole row by [`Activation::apply_row`]).
    #[inline]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::Identity | Activation::Softmax => x,
            Activation::Relu => x.max(0.0),
            Activation::LeakyRelu(alpha) => {
                if x >= 0.0 {
                    x
                } else {
                    alpha * x
                }
            }
            Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Activation::Tanh => x.tanh(),
            Activation::Gelu => 0.5 * x * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2)),
            Activation::GeluTanh => {
                const C: f32 = 0.797_884_6; // sqrt(2 / pi)
                0.5 * x * (1.0 + (C * (x + 0.044_715 * x * x * x)).tanh())
            }
        }
    }

    /// Applies the activation to one row of a layer's outputs.
    pub fn apply_row(self, row: &mut [f32]) {
        match self {
            Activation::Identity => {}
            Activation::Softmax => {
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0.0;
                for v in row.iter_mut() {
                    *v = (*v - max).exp();
                    sum += *v;
                }
                for v in row.iter_mut() {
                    *v /= sum;
                }
            }
            a => row.iter_mut().for_each(|v| *v = a.apply(*v)),
        }
    }
}

/// One fully connected layer: `y = activation(x W + b)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    /// Inputs per row.
    pub n_in: usize,
    /// Outputs per row.
    pub n_out: usize,
    /// `n_in x n_out`, row-major: `weights[i * n_out + o]` links input `i` to output `o`.
    pub weights: Vec<f32>,
    /// `n_out` biases.
    pub bias: Vec<f32>,
    /// Applied after the bias.
    pub activation: Activation,
}

/// An element-wise operation on the input before the first layer (standardization).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputOp {
    /// `x + c`.
    Add,
    /// `x - c`.
    Sub,
    /// `x * c`.
    Mul,
    /// `x / c`.
    Div,
}

/// A dense net: optional input standardization, then fully connected layers.
#[derive(Debug, Clone, PartialEq)]
pub struct Dense {
    n_inputs: usize,
    input_ops: Vec<(InputOp, Vec<f32>)>,
    layers: Vec<Layer>,
}

fn invalid(what: String) -> Error {
    Error::Parse { format: ModelFormat::Onnx, at: "dense net".into(), message: what }
}

impl Dense {
    /// Builds and validates a net. Each input op's constants hold one value per input or a
    /// single value for all; each layer's input width is the previous one's output width;
    /// every weight is finite; `Softmax` appears only on the last layer.
    pub fn new(
        n_inputs: usize,
        input_ops: Vec<(InputOp, Vec<f32>)>,
        layers: Vec<Layer>,
    ) -> Result<Self> {
        if n_inputs == 0 || layers.is_empty() {
            return Err(invalid("a dense net needs at least one input and one layer".into()));
        }
        for (op, c) in &input_ops {
            if c.len() != 1 && c.len() != n_inputs {
                return Err(invalid(format!(
                    "input {op:?} has {} constants for {n_inputs} inputs",
                    c.len()
                )));
            }
        }
        let mut width = n_inputs;
        let mut params = 0usize;
        for (l, layer) in layers.iter().enumerate() {
            if layer.n_in != width || layer.n_out == 0 {
                return Err(invalid(format!(
                    "layer {l} takes {} inputs, but {width} reach it",
                    layer.n_in
                )));
            }
            let n = layer.n_in.checked_mul(layer.n_out).filter(|&n| n <= MAX_PARAMS);
            if n != Some(layer.weights.len()) || layer.bias.len() != layer.n_out {
                return Err(invalid(format!(
                    "layer {l}: {} weights and {} biases for {} x {}",
                    layer.weights.len(),
                    layer.bias.len(),
                    layer.n_in,
                    layer.n_out
                )));
            }
            params += layer.weights.len();
            if params > MAX_PARAMS {
                return Err(invalid(format!("more than {MAX_PARAMS} parameters")));
            }
            if let Some(v) = layer.weights.iter().chain(&layer.bias).find(|v| !v.is_finite()) {
                return Err(invalid(format!("layer {l} holds a non-finite parameter ({v})")));
            }
            if layer.activation == Activation::Softmax && l + 1 != layers.len() {
                return Err(invalid(format!("softmax on layer {l}, which is not the last")));
            }
            width = layer.n_out;
        }
        Ok(Dense { n_inputs, input_ops, layers })
    }

    /// Inputs per row.
    pub fn n_inputs(&self) -> usize {
        self.n_inputs
    }

    /// Outputs per row.
    pub fn n_outputs(&self) -> usize {
        self.layers.last().map_or(0, |l| l.n_out)
    }

    /// The layers, first to last.
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// The standardization applied to the input before the first layer, in order.
    pub fn input_ops(&self) -> &[(InputOp, Vec<f32>)] {
        &self.input_ops
    }

    /// Multiply-adds per row (the FLOP count is twice this).
    pub fn macs_per_row(&self) -> usize {
        self.layers.iter().map(|l| l.n_in * l.n_out).sum()
    }

    /// Applies the input ops to `row` in place.
    pub fn standardize(&self, row: &mut [f32]) {
        for (op, c) in &self.input_ops {
            for (i, v) in row.iter_mut().enumerate() {
                let c = if c.len() == 1 { c[0] } else { c[i] };
                *v = match op {
                    InputOp::Add => *v + c,
                    InputOp::Sub => *v - c,
                    InputOp::Mul => *v * c,
                    InputOp::Div => *v / c,
                };
            }
        }
    }

    /// The reference forward pass of one row (scalar f32, inputs summed in order).
    ///
    /// Errors when `row` does not hold [`n_inputs`](Dense::n_inputs) values.
    ///
    /// # Examples
    ///
    /// ```
    /// use streamscore::model::dense::{Activation, Dense, Layer};
    ///
    /// let layer = Layer { n_in: 2, n_out: 1, weights: vec![1.0, -2.0], bias: vec![0.5],
    ///                     activation: Activation::Relu };
    /// let net = Dense::new(2, vec![], vec![layer]).unwrap();
    /// assert_eq!(net.forward_row(&[3.0, 1.0]).unwrap(), [1.5]);
    /// assert_eq!(net.forward_row(&[0.0, 1.0]).unwrap(), [0.0]);
    /// ```
    pub fn forward_row(&self, row: &[f32]) -> Result<Vec<f32>> {
        if row.len() != self.n_inputs {
            return Err(Error::WidthMismatch { expected: self.n_inputs, got: row.len() });
        }
        let mut x = row.to_vec();
        self.standardize(&mut x);
        for layer in &self.layers {
            let mut y = vec![0.0f32; layer.n_out];
            for (i, &xi) in x.iter().enumerate() {
                let w = &layer.weights[i * layer.n_out..(i + 1) * layer.n_out];
                for (yo, &wo) in y.iter_mut().zip(w) {
                    *yo += xi * wo;
                }
            }
            for (yo, &b) in y.iter_mut().zip(&layer.bias) {
                *yo += b;
            }
            layer.activation.apply_row(&mut y);
            x = y;
        }
        Ok(x)
    }
}
