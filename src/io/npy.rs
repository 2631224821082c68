//! NumPy `.npy` input: 2-D, C-order, f32 or f64, either byte order, format versions 1 to 3.

pub(super) const MAGIC: &[u8] = b"\x93NUMPY";

/// A 2-D array read from a `.npy` file, row-major, converted to f32.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// Row-major values.
    pub values: Vec<f32>,
}

/// Parses a `.npy` file. Errors are messages for [`Error::Input`](crate::Error::Input).
pub fn parse(bytes: &[u8]) -> Result<NpyArray, String> {
    if !bytes.starts_with(MAGIC) || bytes.len() < 10 {
        return Err("not a .npy file (bad magic or truncated)".into());
    }
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 if bytes.len() >= 12 => {
            (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
        }
        v => return Err(format!("unsupported .npy format version {v}")),
    };
    let header = bytes.get(start..start.saturating_add(len)).ok_or("truncated .npy header")?;
    let header = std::str::from_utf8(header).map_err(|_| "the .npy header is not text")?;
    let descr = dict_value(header, "descr").ok_or("the .npy header has no 'descr'")?;
    let descr = descr.trim_matches(|c| c == '\'' || c == '"');
    let (size, little) = match descr {
        "<f4" | "=f4" => (4, true),
        ">f4" => (4, false),
        "<f8" | "=f8" => (8, true),
        ">f8" => (8, false),
        other => return Err(format!("dtype {other} is not supported (use float32 or float64)")),
    };
    match dict_value(header, "fortran_order") {
        Some("False") => {}
        Some(_) => {
            return Err("Fortran-order arrays are not supported (np.ascontiguousarray)".into());
        }
        None => return Err("the .npy header has no 'fortran_order'".into()),
    }
    let shape = dict_value(header, "shape").ok_or("the .npy header has no 'shape'")?;
    let dims: Vec<usize> = shape
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| format!("bad shape {shape}")))
        .collect::<Result<_, _>>()?;
    let [rows, cols] = dims[..] else {
        return Err(format!("expected a 2-D array, found shape {shape}"));
    };
    let data = &bytes[start + len..];
    let expected = rows
        .checked_mul(cols)
        .and_then(|n| n.checked_mul(size))
        .ok_or_else(|| format!("shape {shape} is too large"))?;
    if data.len() != expected {
        return Err(format!(
            "shape {shape} needs {expected} data bytes, the file has {}",
            data.len()
        ));
    }
    let values = if size == 4 {
        data.chunks_exact(4)
            .map(|c| {
                let b = [c[0], c[1], c[2], c[3]];
                if little { f32::from_le_bytes(b) } else { f32::from_be_bytes(b) }
            })
            .collect()
    } else {
        data.chunks_exact(8)
            .map(|c| {
                let b: [u8; 8] = c.try_into().expect("chunks_exact(8)");
                (if little { f64::from_le_bytes(b) } else { f64::from_be_bytes(b) }) as f32
            })
            .collect()
    };
    Ok(NpyArray { rows, cols, values })
}

/// The raw text of `key`'s value in a numpy header dict such as
/// `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }`.
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let start = header.find(&format!("'{key}'"))? + key.len() + 2;
    let rest = header[start..].trim_start().strip_prefix(':')?.trim_start();
    let end = if rest.starts_with('(') {
        rest.find(')')? + 1
    } else {
        rest.find([',', '}']).unwrap_or(rest.len())
    };
    Some(rest[..end].trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
        let header =
            format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}\n");
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn reads_f32_and_f64() {
        let data: Vec<u8> =
            [1.5f32, 2.0, -3.0, f32::NAN].iter().flat_map(|v| v.to_le_bytes()).collect();
        let a = parse(&npy("<f4", "(2, 2)", &data)).unwrap();
        assert_eq!((a.rows, a.cols), (2, 2));
        assert_eq!(&a.values[..3], &[1.5, 2.0, -3.0]);
        assert!(a.values[3].is_nan());
        let data: Vec<u8> = [0.1f64, 7.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let a = parse(&npy("<f8", "(1, 2)", &data)).unwrap();
        assert_eq!(a.values, vec![0.1f32, 7.0]);
    }

    #[test]
    fn rejects_bad_arrays() {
        assert!(parse(&npy("<i4", "(1, 1)", &[0; 4])).unwrap_err().contains("dtype"));
        assert!(parse(&npy("<f4", "(3,)", &[0; 12])).unwrap_err().contains("2-D"));
        assert!(parse(&npy("<f4", "(2, 2)", &[0; 12])).unwrap_err().contains("data bytes"));
        assert!(parse(&MAGIC[..4]).is_err());
    }
}
