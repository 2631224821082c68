//! The Open Inference Protocol's (KServe v2) REST infer request and response: JSON tensors
//! and the binary tensor data extension, parsed from untrusted bytes into the rows, keys and
//! times the runtime takes, and answers written back.
//!
//! A request's JSON header is `body[..Inference-Header-Content-Length]` (the whole body when
//! the header is absent); the bytes after it are the inputs' binary data, in input order, each
//! `parameters.binary_data_size` long. Every size is checked against the body before anything
//! is allocated for it, and the sizes must account for the binary region exactly.

use serde::Deserialize;
use serde_json::{Map, Value};

/// A protocol error: the HTTP status and the message of the `{"error": ...}` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError {
    /// HTTP status code.
    pub status: u16,
    /// What was wrong, for the caller.
    pub message: String,
}

impl ProtocolError {
    pub(crate) fn bad(message: impl Into<String>) -> Self {
        ProtocolError { status: 400, message: message.into() }
    }

    pub(crate) fn status(status: u16, message: impl Into<String>) -> Self {
        ProtocolError { status, message: message.into() }
    }
}

type Result<T> = std::result::Result<T, ProtocolError>;

/// The tensor datatypes this server reads: scores are FP32, keys UINT64 (or non-negative
/// INT64), event times INT64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DataType {
    Fp32,
    Int64,
    Uint64,
}

impl DataType {
    fn parse(s: &str) -> Result<Self> {
        match s {
            "FP32" => Ok(DataType::Fp32),
            "INT64" => Ok(DataType::Int64),
            "UINT64" => Ok(DataType::Uint64),
            "BOOL" | "UINT8" | "UINT16" | "UINT32" | "INT8" | "INT16" | "INT32" | "FP16"
            | "FP64" | "BF16" | "BYTES" => Err(ProtocolError::bad(format!(
                "datatype {s} is not taken here: features are FP32, keys UINT64 or INT64, \
                 event times INT64"
            ))),
            other => Err(ProtocolError::bad(format!("unknown datatype `{other}`"))),
        }
    }

    fn size(self) -> usize {
        match self {
            DataType::Fp32 => 4,
            DataType::Int64 | DataType::Uint64 => 8,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequest {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Map<String, Value>,
    inputs: Vec<RawInput>,
    #[serde(default)]
    outputs: Vec<RawOutput>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInput {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Map<String, Value>,
    #[serde(default)]
    data: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutput {
    name: String,
    #[serde(default)]
    parameters: Map<String, Value>,
}

/// One input tensor's values, converted.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Data {
    F32(Vec<f32>),
    I64(Vec<i64>),
    U64(Vec<u64>),
}

/// A validated input tensor.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Tensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Data,
}

/// An output the caller asked for, and whether it wants it as binary data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Wanted {
    pub name: String,
    pub binary: bool,
}

/// A parsed infer request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct InferRequest {
    pub id: Option<String>,
    pub inputs: Vec<Tensor>,
    /// Empty: every output, as `binary_all` says.
    pub outputs: Vec<Wanted>,
    /// `parameters.binary_data_output`: every output as binary data unless it says otherwise.
    pub binary_all: bool,
}

/// The length of the JSON header, from `Inference-Header-Content-Length` (absent: the body).
pub(crate) fn header_len(value: Option<&str>, body_len: usize) -> Result<usize> {
    let Some(v) = value else { return Ok(body_len) };
    let n: usize = v.trim().parse().map_err(|_| {
        ProtocolError::bad(format!("Inference-Header-Content-Length `{v}` is not a length"))
    })?;
    if n > body_len {
        return Err(ProtocolError::bad(format!(
            "Inference-Header-Content-Length is {n} but the body holds {body_len} bytes"
        )));
    }
    Ok(n)
}

fn bool_param(params: &Map<String, Value>, name: &str) -> Result<Option<bool>> {
    match params.get(name) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => {
            Err(ProtocolError::bad(format!("parameter `{name}` is {other}, not a bool")))
        }
    }
}

/// Parses a request body whose JSON header is its first `json_len` bytes.
pub(crate) fn parse(body: &[u8], json_len: usize) -> Result<InferRequest> {
    let (json, mut binary) = body.split_at(json_len);
    let quoted;
    let json = if has_bare_non_finite(json) {
        quoted = quote_non_finite(json);
        &quoted[..]
    } else {
        json
    };
    let raw: RawRequest = serde_json::from_slice(json)
        .map_err(|e| ProtocolError::bad(format!("malformed infer request: {e}")))?;
    if raw.inputs.is_empty() {
        return Err(ProtocolError::bad("the request has no inputs"));
    }
    for key in raw.parameters.keys() {
        if !matches!(key.as_str(), "binary_data_output") {
            return Err(ProtocolError::bad(format!("unknown request parameter `{key}`")));
        }
    }
    let binary_all = bool_param(&raw.parameters, "binary_data_output")?.unwrap_or(false);
    let mut inputs = Vec::with_capacity(raw.inputs.len());
    for input in raw.inputs {
        if inputs.iter().any(|t: &Tensor| t.name == input.name) {
            return Err(ProtocolError::bad(format!("input `{}` is given twice", input.name)));
        }
        inputs.push(tensor(input, &mut binary)?);
    }
    if !binary.is_empty() {
        return Err(ProtocolError::bad(format!(
            "{} bytes of binary data follow the inputs' binary_data_size total",
            binary.len()
        )));
    }
    let mut outputs = Vec::with_capacity(raw.outputs.len());
    for out in raw.outputs {
        for key in out.parameters.keys() {
            if !matches!(key.as_str(), "binary_data" | "classification") {
                return Err(ProtocolError::bad(format!(
                    "unknown parameter `{key}` of output `{}`",
                    out.name
                )));
            }
        }
        if out.parameters.contains_key("classification") {
            return Err(ProtocolError::bad("the classification extension is not supported"));
        }
        let binary = bool_param(&out.parameters, "binary_data")?.unwrap_or(binary_all);
        outputs.push(Wanted { name: out.name, binary });
    }
    Ok(InferRequest { id: raw.id, inputs, outputs, binary_all })
}

/// Python's `json` and tritonclient write NaN and infinities as the bare words `NaN`,
/// `Infinity` and `-Infinity`, which JSON does not have. A cheap look for them first: most
/// requests hold none.
fn has_bare_non_finite(json: &[u8]) -> bool {
    json.windows(3).any(|w| w == b"NaN") || json.windows(8).any(|w| w == b"Infinity")
}

/// Rewrites those bare words (outside strings) as the strings `"NaN"`, `"Infinity"` and
/// `"-Infinity"`, which FP32 data reads back as the values.
fn quote_non_finite(json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len() + 64);
    let (mut i, mut in_string) = (0, false);
    while i < json.len() {
        let b = json[i];
        if in_string {
            out.push(b);
            if b == b'\\' && i + 1 < json.len() {
                out.push(json[i + 1]);
                i += 1;
            } else if b == b'"' {
                in_string = false;
            }
            i += 1;
            continue;
        }
        let word =
            [&b"-Infinity"[..], b"Infinity", b"NaN"].into_iter().find(|w| json[i..].starts_with(w));
        match (b, word) {
            (b'"', _) => {
                in_string = true;
                out.push(b);
                i += 1;
            }
            (_, Some(w)) => {
                out.push(b'"');
                out.extend_from_slice(w);
                out.push(b'"');
                i += w.len();
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// An FP32 element: a number, `null` (missing), or a non-finite word quoted above.
fn f32_of(v: &Value) -> Option<f32> {
    match v {
        Value::Number(n) => n.as_f64().map(|x| x as f32),
        Value::Null => Some(f32::NAN),
        Value::String(s) => match s.as_str() {
            "NaN" => Some(f32::NAN),
            "Infinity" => Some(f32::INFINITY),
            "-Infinity" => Some(f32::NEG_INFINITY),
            _ => None,
        },
        _ => None,
    }
}

/// Validates one input: its shape against its data (JSON or binary, exactly one of them).
fn tensor(input: RawInput, binary: &mut &[u8]) -> Result<Tensor> {
    let RawInput { name, shape, datatype, parameters, data } = input;
    let dtype = DataType::parse(&datatype)
        .map_err(|e| ProtocolError::bad(format!("input `{name}`: {}", e.message)))?;
    let bad = |m: String| ProtocolError::bad(format!("input `{name}`: {m}"));
    let mut dims = Vec::with_capacity(shape.len());
    let mut numel: usize = 1;
    for &d in &shape {
        let d = usize::try_from(d)
            .map_err(|_| bad(format!("shape {shape:?} has a negative dimension")))?;
        numel = numel.checked_mul(d).ok_or_else(|| bad(format!("shape {shape:?} overflows")))?;
        dims.push(d);
    }
    for key in parameters.keys() {
        if key != "binary_data_size" {
            return Err(bad(format!("unknown parameter `{key}`")));
        }
    }
    let data = match (parameters.get("binary_data_size"), data) {
        (Some(_), Some(_)) => return Err(bad("has both `data` and `binary_data_size`".into())),
        (None, None) => return Err(bad("has neither `data` nor `binary_data_size`".into())),
        (Some(size), None) => {
            let size = size
                .as_u64()
                .ok_or_else(|| bad(format!("binary_data_size {size} is not a size")))?;
            let expected =
                numel.checked_mul(dtype.size()).ok_or_else(|| bad("too large".into()))?;
            if size != expected as u64 {
                return Err(bad(format!(
                    "binary_data_size is {size} bytes, shape {shape:?} of {datatype} needs {expected}"
                )));
            }
            if binary.len() < expected {
                return Err(bad(format!(
                    "binary_data_size is {expected} bytes but only {} bytes of binary data are left",
                    binary.len()
                )));
            }
            let (mine, rest) = binary.split_at(expected);
            *binary = rest;
            from_bytes(dtype, mine)
        }
        (None, Some(value)) => from_json(dtype, numel, &value).map_err(bad)?,
    };
    Ok(Tensor { name, shape: dims, data })
}

fn from_bytes(dtype: DataType, bytes: &[u8]) -> Data {
    match dtype {
        DataType::Fp32 => Data::F32(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                .collect(),
        ),
        DataType::Int64 => Data::I64(
            bytes
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect(),
        ),
        DataType::Uint64 => Data::U64(
            bytes
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect(),
        ),
    }
}

/// JSON data, flat or nested in row-major order, with exactly `numel` elements. `numel` is
/// bounded by the JSON's own length (every element takes at least one byte), so reserving it
/// is safe.
fn from_json(dtype: DataType, numel: usize, value: &Value) -> std::result::Result<Data, String> {
    let mut flat = Vec::with_capacity(numel.min(1 << 20));
    flatten(value, &mut flat, numel)?;
    if flat.len() != numel {
        return Err(format!("data holds {} elements, its shape needs {numel}", flat.len()));
    }
    let wrong = |v: &Value| format!("element {v} is not a {dtype:?} value");
    Ok(match dtype {
        DataType::Fp32 => Data::F32(
            flat.iter()
                .map(|v| f32_of(v).ok_or_else(|| wrong(v)))
                .collect::<std::result::Result<_, _>>()?,
        ),
        DataType::Int64 => Data::I64(
            flat.iter()
                .map(|v| v.as_i64().ok_or_else(|| wrong(v)))
                .collect::<std::result::Result<_, _>>()?,
        ),
        DataType::Uint64 => Data::U64(
            flat.iter()
                .map(|v| v.as_u64().ok_or_else(|| wrong(v)))
                .collect::<std::result::Result<_, _>>()?,
        ),
    })
}

fn flatten<'a>(
    v: &'a Value,
    out: &mut Vec<&'a Value>,
    limit: usize,
) -> std::result::Result<(), String> {
    match v {
        Value::Array(items) => {
            for item in items {
                flatten(item, out, limit)?;
            }
            Ok(())
        }
        other => {
            if out.len() == limit {
                return Err(format!("data holds more elements than its shape's {limit}"));
            }
            out.push(other);
            Ok(())
        }
    }
}

/// One output tensor of a response.
pub(crate) struct OutTensor<'a> {
    pub name: &'a str,
    pub shape: [usize; 2],
    pub rank: usize,
    pub data: OutData<'a>,
    pub binary: bool,
}

/// An output's values.
pub(crate) enum OutData<'a> {
    F32(&'a [f32]),
    U64(&'a [u64]),
}

/// A response: JSON header and binary tail (empty when no output is binary).
pub(crate) struct Encoded {
    pub json: Vec<u8>,
    pub binary: Vec<u8>,
}

/// Writes an infer response.
pub(crate) fn encode(
    model: &str,
    version: Option<u64>,
    id: Option<&str>,
    outputs: &[OutTensor<'_>],
) -> Encoded {
    use std::fmt::Write;
    let mut s = String::with_capacity(128 + outputs.iter().map(|o| o.shape[0] * 12).sum::<usize>());
    s.push_str("{\"model_name\":");
    s.push_str(&Value::from(model).to_string());
    if let Some(v) = version {
        let _ = write!(s, ",\"model_version\":\"{v}\"");
    }
    if let Some(id) = id {
        s.push_str(",\"id\":");
        s.push_str(&Value::from(id).to_string());
    }
    s.push_str(",\"outputs\":[");
    let mut binary = Vec::new();
    for (i, o) in outputs.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let (dtype, bytes) = match o.data {
            OutData::F32(v) => ("FP32", v.len() * 4),
            OutData::U64(v) => ("UINT64", v.len() * 8),
        };
        let _ =
            write!(s, "{{\"name\":{},\"datatype\":\"{dtype}\",\"shape\":[", Value::from(o.name));
        for (d, n) in o.shape[..o.rank].iter().enumerate() {
            let _ = write!(s, "{}{n}", if d > 0 { "," } else { "" });
        }
        s.push(']');
        if o.binary {
            let _ = write!(s, ",\"parameters\":{{\"binary_data_size\":{bytes}}}}}");
            match o.data {
                OutData::F32(v) => {
                    v.iter().for_each(|x| binary.extend_from_slice(&x.to_le_bytes()))
                }
                OutData::U64(v) => {
                    v.iter().for_each(|x| binary.extend_from_slice(&x.to_le_bytes()))
                }
            }
            continue;
        }
        s.push_str(",\"data\":[");
        match o.data {
            OutData::F32(v) => {
                for (j, x) in v.iter().enumerate() {
                    if j > 0 {
                        s.push(',');
                    }
                    if x.is_finite() {
                        // The shortest text that reads back as the same f32.
                        s.push_str(ryu::Buffer::new().format_finite(*x));
                    } else {
                        // JSON has no NaN: null, as Triton writes it.
                        s.push_str("null");
                    }
                }
            }
            OutData::U64(v) => {
                for (j, x) in v.iter().enumerate() {
                    let _ = write!(s, "{}{x}", if j > 0 { "," } else { "" });
                }
            }
        }
        s.push_str("]}");
    }
    s.push_str("]}");
    Encoded { json: s.into_bytes(), binary }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(json: &str) -> Result<InferRequest> {
        parse(json.as_bytes(), json.len())
    }

    #[test]
    fn json_tensors_flat_and_nested() {
        let r = req(r#"{"id":"a","inputs":[{"name":"input","shape":[2,2],"datatype":"FP32","data":[[1,2.5],[3,-4]]}]}"#).unwrap();
        assert_eq!(r.id.as_deref(), Some("a"));
        assert_eq!(r.inputs[0].shape, vec![2, 2]);
        assert_eq!(r.inputs[0].data, Data::F32(vec![1.0, 2.5, 3.0, -4.0]));
        let r = req(r#"{"inputs":[{"name":"key","shape":[2],"datatype":"UINT64","data":[18446744073709551615,0]}]}"#).unwrap();
        assert_eq!(r.inputs[0].data, Data::U64(vec![u64::MAX, 0]));
    }

    #[test]
    fn shape_and_data_must_agree() {
        for (json, needle) in [
            (
                r#"{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[1,2,3]}]}"#,
                "3 elements",
            ),
            (
                r#"{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[1,2,3]}]}"#,
                "more elements",
            ),
            (
                r#"{"inputs":[{"name":"x","shape":[-1,2],"datatype":"FP32","data":[1,2]}]}"#,
                "negative",
            ),
            (
                r#"{"inputs":[{"name":"x","shape":[4294967296,4294967296,4294967296],"datatype":"FP32","data":[]}]}"#,
                "overflows",
            ),
            (
                r#"{"inputs":[{"name":"x","shape":[2],"datatype":"FP64","data":[1,2]}]}"#,
                "FP64 is not taken",
            ),
            (
                r#"{"inputs":[{"name":"x","shape":[2],"datatype":"FP99","data":[1,2]}]}"#,
                "unknown datatype",
            ),
            (
                r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":["a"]}]}"#,
                "not a Fp32",
            ),
            (
                r#"{"inputs":[{"name":"x","shape":[1],"datatype":"INT64","data":[1.5]}]}"#,
                "not a Int64",
            ),
            (r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32"}]}"#, "neither"),
            (
                r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1],"colour":1}]}"#,
                "unknown field",
            ),
            (r#"{"inputs":[]}"#, "no inputs"),
            (
                r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]},{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]}"#,
                "twice",
            ),
            (
                r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}],"parameters":{"priority":1}}"#,
                "unknown request parameter",
            ),
            (
                r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}],"outputs":[{"name":"s","parameters":{"classification":2}}]}"#,
                "classification",
            ),
            (r#"{"inputs":[{"name":"x""#, "malformed"),
        ] {
            let e = req(json).expect_err(json);
            assert_eq!(e.status, 400);
            assert!(e.message.contains(needle), "{json}: {}", e.message);
        }
    }

    fn binary_body(json: &str, tail: &[u8]) -> (Vec<u8>, usize) {
        let mut b = json.as_bytes().to_vec();
        b.extend_from_slice(tail);
        (b, json.len())
    }

    #[test]
    fn binary_data_in_order_and_exact() {
        let mut tail = Vec::new();
        [1.5f32, -2.0].iter().for_each(|x| tail.extend_from_slice(&x.to_le_bytes()));
        tail.extend_from_slice(&7u64.to_le_bytes());
        let json = r#"{"inputs":[{"name":"input","shape":[1,2],"datatype":"FP32","parameters":{"binary_data_size":8}},{"name":"key","shape":[1],"datatype":"UINT64","parameters":{"binary_data_size":8}}],"outputs":[{"name":"score","parameters":{"binary_data":true}}]}"#;
        let (body, n) = binary_body(json, &tail);
        let r = parse(&body, n).unwrap();
        assert_eq!(r.inputs[0].data, Data::F32(vec![1.5, -2.0]));
        assert_eq!(r.inputs[1].data, Data::U64(vec![7]));
        assert_eq!(r.outputs, vec![Wanted { name: "score".into(), binary: true }]);
        // One byte short, one byte over, a size that does not match the shape.
        let (body, n) = binary_body(json, &tail[..15]);
        assert!(parse(&body, n).unwrap_err().message.contains("only 7 bytes"));
        let mut over = tail.clone();
        over.push(0);
        let (body, n) = binary_body(json, &over);
        assert!(parse(&body, n).unwrap_err().message.contains("1 bytes of binary data follow"));
        let lying = json.replacen("\"binary_data_size\":8", "\"binary_data_size\":12", 1);
        let (body, n) = binary_body(&lying, &tail);
        assert!(parse(&body, n).unwrap_err().message.contains("needs 8"));
    }

    #[test]
    fn non_finite_words_and_null() {
        let r = req(r#"{"id":"NaN \" Infinity","inputs":[{"name":"x","shape":[4],"datatype":"FP32","data":[NaN,-Infinity,Infinity,null]}]}"#).unwrap();
        assert_eq!(r.id.as_deref(), Some("NaN \" Infinity"));
        let Data::F32(v) = &r.inputs[0].data else { panic!() };
        assert!(
            v[0].is_nan() && v[1] == f32::NEG_INFINITY && v[2] == f32::INFINITY && v[3].is_nan()
        );
        // Not a number anywhere else: keys stay integers.
        assert!(
            req(r#"{"inputs":[{"name":"k","shape":[1],"datatype":"UINT64","data":[NaN]}]}"#)
                .is_err()
        );
        assert!(
            req(r#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":["one"]}]}"#)
                .is_err()
        );
    }

    #[test]
    fn header_length_is_checked() {
        assert_eq!(header_len(None, 10).unwrap(), 10);
        assert_eq!(header_len(Some("4"), 10).unwrap(), 4);
        assert!(header_len(Some("11"), 10).is_err());
        assert!(header_len(Some("-1"), 10).is_err());
        assert!(header_len(Some("x"), 10).is_err());
    }

    #[test]
    fn responses_read_back() {
        let scores = [0.25f32, f32::NAN, 1e-30];
        let json = encode(
            "m",
            Some(3),
            Some("r\"1"),
            &[OutTensor {
                name: "score",
                shape: [3, 1],
                rank: 2,
                data: OutData::F32(&scores),
                binary: false,
            }],
        );
        let v: Value = serde_json::from_slice(&json.json).unwrap();
        assert_eq!(v["id"], "r\"1");
        assert_eq!(v["model_version"], "3");
        assert_eq!(v["outputs"][0]["shape"], serde_json::json!([3, 1]));
        assert_eq!(v["outputs"][0]["data"][0].as_f64().unwrap() as f32, 0.25);
        assert!(v["outputs"][0]["data"][1].is_null());
        assert_eq!(v["outputs"][0]["data"][2].as_f64().unwrap() as f32, 1e-30);
        let bin = encode(
            "m",
            None,
            None,
            &[OutTensor {
                name: "score",
                shape: [3, 1],
                rank: 2,
                data: OutData::F32(&scores),
                binary: true,
            }],
        );
        let v: Value = serde_json::from_slice(&bin.json).unwrap();
        assert_eq!(v["outputs"][0]["parameters"]["binary_data_size"], 12);
        assert_eq!(bin.binary.len(), 12);
        assert_eq!(f32::from_le_bytes(bin.binary[8..12].try_into().unwrap()), 1e-30);
    }
}
