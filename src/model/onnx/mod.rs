//! ONNX models: the file is read once, its single input and its outputs are described, and a
//! graph made only of dense-net operators is turned into a [`Dense`] net that our own CPU (and
//! GPU) paths run. Any ONNX model, dense or not, also runs on ONNX Runtime
//! ([`backend::onnx`](crate::backend::onnx)).
//!
//! Supported for the dense path: `Gemm`, `MatMul` followed by `Add`, `Relu`, `LeakyRelu`,
//! `Sigmoid`, `Tanh`, `Gelu`, `Softmax` (last), `Flatten`, `Identity`, `Dropout` (a no-op at
//! inference), `Constant`, and `Add`/`Sub`/`Mul`/`Div` by constants before the first layer
//! (input standardization). Every other operator is named in the error, which points to the
//! ONNX Runtime backend.

mod proto;

use std::collections::HashMap;
use std::sync::Arc;

use proto::{WireError, fields};

use crate::error::{Error, ModelFormat, Result};
use crate::model::dense::{Activation, Dense, InputOp, Layer};

/// Most elements an initializer may declare.
const MAX_ELEMENTS: u64 = 1 << 30;

/// ONNX's element type code for f32 tensors.
pub const FLOAT: i32 = 1;

/// A graph input's or output's declared type and shape.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// The value's name in the graph.
    pub name: String,
    /// ONNX element type code (1 = float, 7 = int64, ...); 0 for a non-tensor value.
    pub elem_type: i32,
    /// Declared dimensions; `None` for a symbolic or unknown one (such as the batch).
    pub dims: Vec<Option<u64>>,
}

impl TensorInfo {
    /// The product of every dimension after the first (the values per row); `None` when one of
    /// them is unknown or the tensor has rank 0.
    pub fn row_width(&self) -> Option<usize> {
        if self.dims.is_empty() {
            return None;
        }
        self.dims[1..]
            .iter()
            .try_fold(1u64, |acc, d| d.and_then(|d| acc.checked_mul(d)))
            .and_then(|w| usize::try_from(w).ok())
    }
}

/// A parsed ONNX model: its bytes (for ONNX Runtime), its interface, and the dense net it
/// holds, or why it holds none.
#[derive(Debug, Clone)]
pub struct OnnxModel {
    bytes: Arc<[u8]>,
    input: TensorInfo,
    outputs: Vec<TensorInfo>,
    n_features: usize,
    dense: std::result::Result<Arc<Dense>, String>,
}

fn parse_err(at: &str, message: impl Into<String>) -> Error {
    Error::Parse { format: ModelFormat::Onnx, at: at.into(), message: message.into() }
}

impl From<WireError> for Error {
    fn from(e: WireError) -> Self {
        parse_err("protobuf", e.0)
    }
}

impl OnnxModel {
    /// Parses an ONNX `ModelProto`. Errors for a malformed file, a graph without exactly one
    /// float input (besides initializers), or an input whose per-row width is not fixed.
    pub fn from_bytes(bytes: impl Into<Arc<[u8]>>) -> Result<Self> {
        let bytes: Arc<[u8]> = bytes.into();
        let graph = parse_model(&bytes)?;
        let inputs: Vec<&TensorInfo> =
            graph.inputs.iter().filter(|i| !graph.initializers.contains_key(&i.name)).collect();
        let [input] = inputs[..] else {
            return Err(parse_err(
                "graph inputs",
                format!(
                    "the graph has {} inputs besides its initializers; streamscore feeds exactly one",
                    inputs.len()
                ),
            ));
        };
        if input.elem_type != FLOAT {
            return Err(parse_err(
                &format!("input `{}`", input.name),
                format!("element type {} (only float inputs are supported)", input.elem_type),
            ));
        }
        let n_features = input.row_width().filter(|&w| w > 0).ok_or_else(|| {
            parse_err(
                &format!("input `{}`", input.name),
                format!(
                    "shape {:?}: every dimension after the batch must be fixed and non-zero",
                    input.dims
                ),
            )
        })?;
        if n_features > super::MAX_FEATURES {
            let problem = crate::ModelProblem::TooLarge {
                what: format!("values per row of input `{}`", input.name.escape_debug()),
                value: n_features as u64,
                max: super::MAX_FEATURES as u64,
            };
            return Err(Error::InvalidModel {
                format: ModelFormat::Onnx,
                at: "graph input".into(),
                problem,
            });
        }
        if graph.outputs.is_empty() {
            return Err(parse_err("graph outputs", "the graph has no output"));
        }
        let dense = to_dense(&graph, input, n_features).map(Arc::new);
        Ok(OnnxModel {
            input: input.clone(),
            outputs: graph.outputs.clone(),
            n_features,
            dense,
            bytes,
        })
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &Arc<[u8]> {
        &self.bytes
    }

    /// The graph's one input.
    pub fn input(&self) -> &TensorInfo {
        &self.input
    }

    /// The graph's outputs, in order.
    pub fn outputs(&self) -> &[TensorInfo] {
        &self.outputs
    }

    /// Values per row the input takes (the product of its dimensions after the batch).
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// The dense net this graph is, or an [`Error::Unsupported`] naming the operator or
    /// pattern that is not one (and pointing to the ONNX Runtime backend).
    pub fn dense(&self) -> Result<&Arc<Dense>> {
        self.dense.as_ref().map_err(|why| Error::Unsupported {
            format: ModelFormat::Onnx,
            what: format!(
                "{why}; streamscore's own dense path runs Gemm/MatMul+Add layers with \
                 element-wise activations: use the ONNX Runtime backend (`--backend onnx`) \
                 for this model"
            ),
        })
    }
}

/// A tensor constant: float data, or the element type it has instead.
#[derive(Debug, Clone)]
struct Tensor {
    dims: Vec<i64>,
    data: std::result::Result<Vec<f32>, i32>,
}

#[derive(Debug, Default)]
struct Attr {
    f: Option<f32>,
    i: Option<i64>,
    s: Option<String>,
    t: Option<Tensor>,
}

#[derive(Debug, Default)]
struct Node {
    inputs: Vec<String>,
    outputs: Vec<String>,
    name: String,
    op: String,
    domain: String,
    attrs: HashMap<String, Attr>,
}

#[derive(Debug, Default)]
struct Graph {
    nodes: Vec<Node>,
    initializers: HashMap<String, Tensor>,
    inputs: Vec<TensorInfo>,
    outputs: Vec<TensorInfo>,
}

fn parse_model(bytes: &[u8]) -> Result<Graph> {
    let mut graph = None;
    for f in fields(bytes, "ModelProto") {
        let (field, value) = f?;
        if field == 7 {
            graph = Some(parse_graph(value.bytes("ModelProto.graph")?)?);
        }
    }
    graph.ok_or_else(|| parse_err("ModelProto", "no graph (is this an ONNX file?)"))
}

fn parse_graph(buf: &[u8]) -> Result<Graph> {
    let mut g = Graph::default();
    for f in fields(buf, "GraphProto") {
        match f? {
            (1, v) => g.nodes.push(parse_node(v.bytes("GraphProto.node")?)?),
            (5, v) => {
                let (name, t) = parse_tensor(v.bytes("GraphProto.initializer")?)?;
                g.initializers.insert(name, t);
            }
            (11, v) => g.inputs.push(parse_value_info(v.bytes("GraphProto.input")?)?),
            (12, v) => g.outputs.push(parse_value_info(v.bytes("GraphProto.output")?)?),
            _ => {}
        }
    }
    Ok(g)
}

fn parse_node(buf: &[u8]) -> Result<Node> {
    let mut n = Node::default();
    for f in fields(buf, "NodeProto") {
        match f? {
            (1, v) => n.inputs.push(v.string("NodeProto.input")?.to_owned()),
            (2, v) => n.outputs.push(v.string("NodeProto.output")?.to_owned()),
            (3, v) => n.name = v.string("NodeProto.name")?.to_owned(),
            (4, v) => n.op = v.string("NodeProto.op_type")?.to_owned(),
            (7, v) => n.domain = v.string("NodeProto.domain")?.to_owned(),
            (5, v) => {
                let mut name = String::new();
                let mut a = Attr::default();
                for f in fields(v.bytes("NodeProto.attribute")?, "AttributeProto") {
                    match f? {
                        (1, v) => name = v.string("AttributeProto.name")?.to_owned(),
                        (2, v) => a.f = Some(v.f32("AttributeProto.f")?),
                        (3, v) => a.i = Some(v.int64("AttributeProto.i")?),
                        (4, v) => a.s = Some(v.string("AttributeProto.s")?.to_owned()),
                        (5, v) => a.t = Some(parse_tensor(v.bytes("AttributeProto.t")?)?.1),
                        _ => {}
                    }
                }
                n.attrs.insert(name, a);
            }
            _ => {}
        }
    }
    Ok(n)
}

fn parse_tensor(buf: &[u8]) -> Result<(String, Tensor)> {
    let (mut name, mut dims, mut data_type) = (String::new(), Vec::new(), 0i32);
    let (mut floats, mut doubles, mut raw) = (Vec::new(), Vec::new(), None);
    for f in fields(buf, "TensorProto") {
        match f? {
            (1, v) => v.push_varints(&mut dims, "TensorProto.dims")?,
            (2, v) => data_type = v.int64("TensorProto.data_type")? as i32,
            (4, v) => v.push_f32s(&mut floats, "TensorProto.float_data")?,
            (8, v) => name = v.string("TensorProto.name")?.to_owned(),
            (9, v) => raw = Some(v.bytes("TensorProto.raw_data")?),
            (10, v) => v.push_f64s(&mut doubles, "TensorProto.double_data")?,
            (14, v) if v.varint("TensorProto.data_location")? == 1 => {
                return Err(parse_err(
                    &format!("initializer `{name}`"),
                    "external data files are not supported: save the model with its weights inside",
                ));
            }
            _ => {}
        }
    }
    let at = format!("initializer `{name}`");
    let mut count = 1u64;
    for &d in &dims {
        count = u64::try_from(d)
            .ok()
            .and_then(|d| count.checked_mul(d))
            .filter(|&c| c <= MAX_ELEMENTS)
            .ok_or_else(|| parse_err(&at, format!("dims {dims:?} are negative or too large")))?;
    }
    let data = match data_type {
        1 => {
            if let Some(raw) = raw {
                if raw.len() as u64 != count * 4 {
                    return Err(parse_err(
                        &at,
                        format!("{} raw bytes for {count} floats", raw.len()),
                    ));
                }
                Ok(raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect())
            } else if floats.len() as u64 != count {
                return Err(parse_err(&at, format!("{} floats for dims {dims:?}", floats.len())));
            } else {
                Ok(floats)
            }
        }
        11 if raw.is_none() && doubles.len() as u64 == count => {
            Ok(doubles.iter().map(|&d| d as f32).collect())
        }
        other => Err(other),
    };
    Ok((name, Tensor { dims, data }))
}

fn parse_value_info(buf: &[u8]) -> Result<TensorInfo> {
    let mut info = TensorInfo { name: String::new(), elem_type: 0, dims: Vec::new() };
    for f in fields(buf, "ValueInfoProto") {
        match f? {
            (1, v) => info.name = v.string("ValueInfoProto.name")?.to_owned(),
            (2, v) => {
                for f in fields(v.bytes("TypeProto")?, "TypeProto") {
                    let (1, v) = f? else { continue };
                    for f in fields(v.bytes("TypeProto.tensor_type")?, "TypeProto.Tensor") {
                        match f? {
                            (1, v) => info.elem_type = v.int64("Tensor.elem_type")? as i32,
                            (2, v) => {
                                for f in fields(v.bytes("Tensor.shape")?, "TensorShapeProto") {
                                    let (1, v) = f? else { continue };
                                    let mut dim = None;
                                    for f in fields(v.bytes("dim")?, "Dimension") {
                                        if let (1, v) = f? {
                                            dim = u64::try_from(v.int64("dim_value")?).ok();
                                        }
                                    }
                                    info.dims.push(dim);
                                }
                            }
                            _ => {}
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(info)
}

/// Constants for an op on a row of `width`: one value, or one per column (`[w]` or `[1, w]`).
fn row_constants(t: &Tensor, width: usize, what: &str) -> std::result::Result<Vec<f32>, String> {
    let data = t.data.as_ref().map_err(|ty| format!("{what}: element type {ty} is not float"))?;
    let leading_ones = t.dims.iter().rev().skip(1).all(|&d| d == 1);
    if data.len() == 1 || (data.len() == width && leading_ones) {
        Ok(data.clone())
    } else {
        Err(format!(
            "{what}: constant of shape {:?} does not broadcast over {width} columns",
            t.dims
        ))
    }
}

fn to_dense(
    graph: &Graph,
    input: &TensorInfo,
    n_features: usize,
) -> std::result::Result<Dense, String> {
    // A dense layer takes [batch, features]: an input of higher rank must be flattened first.
    let mut flat = input.dims.len() == 2;
    let mut consts: HashMap<&str, &Tensor> =
        graph.initializers.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut cur = input.name.as_str();
    let mut width = n_features;
    let mut input_ops = Vec::new();
    let mut layers: Vec<Layer> = Vec::new();
    // Whether the last layer still takes a bias (`MatMul` then `Add`) or an activation.
    let mut open = false;
    for (k, node) in graph.nodes.iter().enumerate() {
        let what = format!("node {k} `{}` ({})", node.op, node.name);
        if !(node.domain.is_empty() || node.domain == "ai.onnx") {
            return Err(format!("{what} is in domain `{}`", node.domain));
        }
        if node.op == "Constant" {
            let t = node.attrs.get("value").and_then(|a| a.t.as_ref());
            let (Some(t), Some(out)) = (t, node.outputs.first()) else {
                return Err(format!("{what}: only tensor-valued constants are supported"));
            };
            consts.insert(out, t);
            continue;
        }
        // The node must read the running value and, for binary ops, one constant.
        let other = match node.inputs.as_slice() {
            [x] if x == cur => None,
            [x, c, ..] if x == cur => Some(c.as_str()),
            [c, x] if x == cur && matches!(node.op.as_str(), "Add" | "Mul") => Some(c.as_str()),
            _ => return Err(format!("{what} does not take the previous layer's output alone")),
        };
        let constant = |name: Option<&str>| -> std::result::Result<&Tensor, String> {
            name.and_then(|n| consts.get(n).copied())
                .ok_or_else(|| format!("{what}: operand {name:?} is not a constant"))
        };
        let attr_i =
            |name: &str, default: i64| node.attrs.get(name).and_then(|a| a.i).unwrap_or(default);
        let attr_f =
            |name: &str, default: f32| node.attrs.get(name).and_then(|a| a.f).unwrap_or(default);
        if !flat && !matches!(node.op.as_str(), "Flatten" | "Identity" | "Dropout") {
            return Err(format!(
                "{what} is not a dense-net operator on a rank-{} input",
                input.dims.len()
            ));
        }
        let activation = match node.op.as_str() {
            "Identity" | "Dropout" => None,
            "Flatten" if attr_i("axis", 1) == 1 => {
                flat = true;
                None
            }
            "Gemm" | "MatMul" => {
                let b = constant(other)?;
                let data = b.data.as_ref().map_err(|ty| format!("{what}: weights of type {ty}"))?;
                let trans_b = node.op == "Gemm" && attr_i("transB", 0) != 0;
                if node.op == "Gemm" && attr_i("transA", 0) != 0 {
                    return Err(format!("{what}: transA is not supported"));
                }
                let (k_dim, n_dim) = match (b.dims.as_slice(), trans_b) {
                    (&[k, n], false) | (&[n, k], true) => (k, n),
                    _ => return Err(format!("{what}: weights of shape {:?}", b.dims)),
                };
                if k_dim as usize != width || n_dim <= 0 {
                    return Err(format!("{what}: weights {:?} for {width} inputs", b.dims));
                }
                let n_out = n_dim as usize;
                let alpha = attr_f("alpha", 1.0);
                let mut weights = vec![0.0f32; width * n_out];
                for i in 0..width {
                    for o in 0..n_out {
                        let w = if trans_b { data[o * width + i] } else { data[i * n_out + o] };
                        weights[i * n_out + o] = if alpha == 1.0 { w } else { alpha * w };
                    }
                }
                let mut bias = vec![0.0f32; n_out];
                if let Some(c) = node.inputs.get(2).filter(|c| !c.is_empty()) {
                    let c = row_constants(constant(Some(c))?, n_out, &what)?;
                    let beta = attr_f("beta", 1.0);
                    for (o, b) in bias.iter_mut().enumerate() {
                        *b = beta * c[if c.len() == 1 { 0 } else { o }];
                    }
                }
                layers.push(Layer {
                    n_in: width,
                    n_out,
                    weights,
                    bias,
                    activation: Activation::Identity,
                });
                width = n_out;
                open = true;
                None
            }
            op @ ("Add" | "Sub" | "Mul" | "Div") => {
                let c = row_constants(constant(other)?, width, &what)?;
                if layers.is_empty() {
                    let op = match op {
                        "Add" => InputOp::Add,
                        "Sub" => InputOp::Sub,
                        "Mul" => InputOp::Mul,
                        _ => InputOp::Div,
                    };
                    input_ops.push((op, c));
                } else if op == "Add" && open {
                    let layer = layers.last_mut().expect("open implies a layer");
                    for (o, b) in layer.bias.iter_mut().enumerate() {
                        *b += c[if c.len() == 1 { 0 } else { o }];
                    }
                } else {
                    return Err(format!("{what} after a layer's activation is not a dense-net op"));
                }
                None
            }
            "Relu" => Some(Activation::Relu),
            "LeakyRelu" => Some(Activation::LeakyRelu(attr_f("alpha", 0.01))),
            "Sigmoid" => Some(Activation::Sigmoid),
            "Tanh" => Some(Activation::Tanh),
            "Gelu" => match node.attrs.get("approximate").and_then(|a| a.s.as_deref()) {
                None | Some("none") => Some(Activation::Gelu),
                Some("tanh") => Some(Activation::GeluTanh),
                Some(other) => return Err(format!("{what}: approximate = `{other}`")),
            },
            "Softmax" if matches!(attr_i("axis", -1), -1 | 1) => Some(Activation::Softmax),
            _ => return Err(format!("{what} is not a dense-net operator")),
        };
        if let Some(a) = activation {
            match layers.last_mut() {
                Some(layer) if open => layer.activation = a,
                _ => {
                    return Err(format!(
                        "{what}: an activation must follow a Gemm or MatMul layer"
                    ));
                }
            }
            open = false;
        }
        let [out, ..] = node.outputs.as_slice() else {
            return Err(format!("{what} has no output"));
        };
        cur = out;
    }
    match graph.outputs.as_slice() {
        [o] if o.name == cur => {}
        [o] => return Err(format!("the graph output `{}` is not the last layer's", o.name)),
        _ => {
            return Err(format!(
                "the graph has {} outputs (a dense net has one)",
                graph.outputs.len()
            ));
        }
    }
    Dense::new(n_features, input_ops, layers).map_err(|e| e.to_string())
}
