//! A minimal, bounds-checked reader of the protobuf wire format, enough for ONNX's `ModelProto`.
//!
//! Model files are untrusted: every length is checked against the bytes that remain, varints are
//! limited to 10 bytes, and nesting is bounded by the schema walk in `super` (it never recurses
//! into subgraphs). Unknown fields are skipped, as protobuf requires.

/// A wire-format error: what was being read and why it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError(pub String);

type Result<T> = std::result::Result<T, WireError>;

/// One field's value as it appears on the wire.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 1.
    Fixed64(u64),
    /// Wire type 2: bytes, a string, a nested message or a packed array.
    Bytes(&'a [u8]),
    /// Wire type 5.
    Fixed32(u32),
}

impl<'a> Value<'a> {
    pub fn varint(self, what: &str) -> Result<u64> {
        match self {
            Value::Varint(v) => Ok(v),
            _ => Err(WireError(format!("{what}: expected a varint"))),
        }
    }

    pub fn int64(self, what: &str) -> Result<i64> {
        self.varint(what).map(|v| v as i64)
    }

    pub fn bytes(self, what: &str) -> Result<&'a [u8]> {
        match self {
            Value::Bytes(b) => Ok(b),
            _ => Err(WireError(format!("{what}: expected a length-delimited field"))),
        }
    }

    pub fn string(self, what: &str) -> Result<&'a str> {
        std::str::from_utf8(self.bytes(what)?)
            .map_err(|_| WireError(format!("{what}: string is not UTF-8")))
    }

    pub fn f32(self, what: &str) -> Result<f32> {
        match self {
            Value::Fixed32(v) => Ok(f32::from_bits(v)),
            _ => Err(WireError(format!("{what}: expected a 32-bit float"))),
        }
    }

    /// A repeated varint field, packed (one `Bytes`) or not (one `Varint` per occurrence).
    pub fn push_varints(self, out: &mut Vec<i64>, what: &str) -> Result<()> {
        match self {
            Value::Varint(v) => out.push(v as i64),
            Value::Bytes(mut b) => {
                while !b.is_empty() {
                    out.push(read_varint(&mut b, what)? as i64);
                }
            }
            _ => return Err(WireError(format!("{what}: expected varints"))),
        }
        Ok(())
    }

    /// A repeated float field, packed or not.
    pub fn push_f32s(self, out: &mut Vec<f32>, what: &str) -> Result<()> {
        match self {
            Value::Fixed32(v) => out.push(f32::from_bits(v)),
            Value::Bytes(b) => {
                if b.len() % 4 != 0 {
                    return Err(WireError(format!("{what}: packed floats of {} bytes", b.len())));
                }
                out.extend(b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())));
            }
            _ => return Err(WireError(format!("{what}: expected floats"))),
        }
        Ok(())
    }

    /// A repeated double field, packed or not.
    pub fn push_f64s(self, out: &mut Vec<f64>, what: &str) -> Result<()> {
        match self {
            Value::Fixed64(v) => out.push(f64::from_bits(v)),
            Value::Bytes(b) => {
                if b.len() % 8 != 0 {
                    return Err(WireError(format!("{what}: packed doubles of {} bytes", b.len())));
                }
                out.extend(b.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())));
            }
            _ => return Err(WireError(format!("{what}: expected doubles"))),
        }
        Ok(())
    }
}

fn read_varint(buf: &mut &[u8], what: &str) -> Result<u64> {
    let mut v = 0u64;
    for i in 0..10 {
        let Some((&b, rest)) = buf.split_first() else {
            return Err(WireError(format!("{what}: truncated varint")));
        };
        *buf = rest;
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(WireError(format!("{what}: varint longer than 10 bytes")))
}

fn take<'a>(buf: &mut &'a [u8], n: usize, what: &str) -> Result<&'a [u8]> {
    if buf.len() < n {
        return Err(WireError(format!(
            "{what}: field of {n} bytes, only {} remain (truncated file?)",
            buf.len()
        )));
    }
    let (head, rest) = buf.split_at(n);
    *buf = rest;
    Ok(head)
}

/// Iterates over the fields of one message: `(field number, value)`.
pub struct Fields<'a> {
    buf: &'a [u8],
    what: &'static str,
}

/// The fields of the message encoded in `buf`; `what` names it in errors.
pub fn fields<'a>(buf: &'a [u8], what: &'static str) -> Fields<'a> {
    Fields { buf, what }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Value<'a>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() {
            return None;
        }
        let item = self.read();
        if item.is_err() {
            self.buf = &[]; // stop after the first error
        }
        Some(item)
    }
}

impl<'a> Fields<'a> {
    fn read(&mut self) -> Result<(u32, Value<'a>)> {
        let what = self.what;
        let key = read_varint(&mut self.buf, what)?;
        let field = u32::try_from(key >> 3)
            .ok()
            .filter(|&f| f > 0)
            .ok_or_else(|| WireError(format!("{what}: bad field number {}", key >> 3)))?;
        let value = match key & 7 {
            0 => Value::Varint(read_varint(&mut self.buf, what)?),
            1 => Value::Fixed64(u64::from_le_bytes(
                take(&mut self.buf, 8, what)?.try_into().unwrap(),
            )),
            2 => {
                let len = read_varint(&mut self.buf, what)?;
                let len = usize::try_from(len).unwrap_or(usize::MAX);
                Value::Bytes(take(&mut self.buf, len, what)?)
            }
            5 => Value::Fixed32(u32::from_le_bytes(
                take(&mut self.buf, 4, what)?.try_into().unwrap(),
            )),
            t => {
                return Err(WireError(format!(
                    "{what}: unsupported wire type {t} (field {field})"
                )));
            }
        };
        Ok((field, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_wire_type_and_rejects_truncation() {
        // field 1 varint 300, field 2 bytes "hi", field 3 fixed32 1.5, field 4 fixed64 2.0
        let mut msg = vec![0x08, 0xac, 0x02, 0x12, 2, b'h', b'i', 0x1d];
        msg.extend(1.5f32.to_le_bytes());
        msg.push(0x21);
        msg.extend(2.0f64.to_le_bytes());
        let got: Vec<_> = fields(&msg, "test").collect::<Result<_>>().unwrap();
        assert_eq!(got[0].1.varint("a").unwrap(), 300);
        assert_eq!(got[1].1.string("b").unwrap(), "hi");
        assert_eq!(got[2].1.f32("c").unwrap(), 1.5);
        let mut d = Vec::new();
        got[3].1.push_f64s(&mut d, "d").unwrap();
        assert_eq!(d, [2.0]);
        for cut in 1..msg.len() {
            let ok = fields(&msg[..cut], "test").collect::<Result<Vec<_>>>();
            // Cuts on a field boundary parse (fewer fields); any other cut is an error.
            if let Ok(f) = ok {
                assert!(f.len() < 4, "cut {cut}");
            }
        }
        assert!(fields(&[0x12, 0xff, 0xff, 0xff, 0xff, 0x0f], "t").next().unwrap().is_err());
        assert!(fields(&[0x0b], "t").next().unwrap().is_err()); // wire type 3 (group)
        assert!(fields(&[0x08; 12], "t").nth(5).unwrap().is_ok());
        assert!(
            fields(&[0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], "t")
                .next()
                .unwrap()
                .is_err()
        );
    }
}
