//! NumPy `.npy` files (format versions 1, 2 and 3), read with a checked header.
//!
//! The reader checks that the declared shape times the item size equals the
//! bytes actually present before it allocates, so a header that claims a
//! terabyte on a 100-byte file is an error, not an allocation.

use std::io::Read;
use std::path::Path;

use ndarray::Array2;

use super::{atomic, ReadStats};
use crate::dataset::{Dataset, Origin, SampleId};
use crate::error::{Error, Location, Result};

const MAGIC: &[u8] = b"\x93NUMPY";
/// Largest header accepted (NumPy itself writes a few hundred bytes).
const MAX_HEADER: usize = 1 << 20;

/// Element types the reader accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    /// `f4`
    F32,
    /// `f8`
    F64,
    /// `i1`, `i2`, `i4`, `i8` (size in bytes)
    Int(u8),
    /// `u1`, `u2`, `u4`, `u8` (size in bytes)
    UInt(u8),
    /// `b1`
    Bool,
}

impl Dtype {
    fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::F64 => 8,
            Dtype::Int(s) | Dtype::UInt(s) => s as usize,
            Dtype::Bool => 1,
        }
    }
}

/// A parsed NPY header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Element type.
    pub dtype: Dtype,
    /// True for big-endian data.
    pub big_endian: bool,
    /// Fortran (column-major) order.
    pub fortran_order: bool,
    /// Shape.
    pub shape: Vec<usize>,
    /// Byte offset of the data.
    pub data_offset: usize,
}

/// An array read from NPY as `f64` values with its shape (row-major).
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    /// Shape as declared.
    pub shape: Vec<usize>,
    /// Values in C order.
    pub data: Vec<f64>,
    /// The declared element type.
    pub dtype: Dtype,
}

/// Parse the header at the start of `bytes`; `total_len` is the whole file's
/// length, to check the declared shape against it.
pub fn parse_header(bytes: &[u8], total_len: u64, loc: &Location) -> Result<Header> {
    let err = |field: &str, msg: String| Error::parse(loc.clone().at_field(field), msg);
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(err(
            "magic",
            "not an NPY file (missing \\x93NUMPY magic)".into(),
        ));
    }
    let major = bytes[6];
    let (hlen, start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(err("header_len", "truncated header".into()));
            }
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        v => return Err(err("version", format!("unsupported NPY version {v}"))),
    };
    if hlen > MAX_HEADER {
        return Err(err(
            "header_len",
            format!("header of {hlen} bytes exceeds {MAX_HEADER}"),
        ));
    }
    let end = start + hlen;
    if bytes.len() < end {
        return Err(err(
            "header_len",
            format!("header declares {hlen} bytes, file is shorter"),
        ));
    }
    let text = std::str::from_utf8(&bytes[start..end])
        .map_err(|_| err("header", "header is not UTF-8".into()))?;
    let descr = dict_value(text, "descr").ok_or_else(|| err("descr", "missing".into()))?;
    let descr = descr.trim().trim_matches(|c| c == '\'' || c == '"');
    let (big_endian, code) = match descr.as_bytes().first() {
        Some(b'<' | b'|' | b'=') => (false, &descr[1..]),
        Some(b'>') => (true, &descr[1..]),
        _ => (false, descr),
    };
    let dtype = match code {
        "f4" => Dtype::F32,
        "f8" => Dtype::F64,
        "i1" => Dtype::Int(1),
        "i2" => Dtype::Int(2),
        "i4" => Dtype::Int(4),
        "i8" => Dtype::Int(8),
        "u1" => Dtype::UInt(1),
        "u2" => Dtype::UInt(2),
        "u4" => Dtype::UInt(4),
        "u8" => Dtype::UInt(8),
        "b1" | "?" => Dtype::Bool,
        other => return Err(err("descr", format!("unsupported dtype {other:?}"))),
    };
    let fortran =
        dict_value(text, "fortran_order").ok_or_else(|| err("fortran_order", "missing".into()))?;
    let fortran_order = match fortran.trim() {
        "True" => true,
        "False" => false,
        o => {
            return Err(err(
                "fortran_order",
                format!("expected True or False, got {o:?}"),
            ))
        }
    };
    let shape_s = dict_value(text, "shape").ok_or_else(|| err("shape", "missing".into()))?;
    let inner = shape_s
        .trim()
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| err("shape", format!("not a tuple: {shape_s:?}")))?;
    let shape = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| err("shape", format!("bad dimension {s:?}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let count = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .and_then(|c| c.checked_mul(dtype.size()))
        .ok_or_else(|| err("shape", "declared size overflows".into()))?;
    let have = total_len.saturating_sub(end as u64);
    if have != count as u64 {
        return Err(err(
            "shape",
            format!("shape {shape:?} of {code} needs {count} data bytes, file has {have}"),
        ));
    }
    Ok(Header {
        dtype,
        big_endian,
        fortran_order,
        shape,
        data_offset: end,
    })
}

/// The text after `'key':` in a Python dict literal, up to the next top-level comma.
fn dict_value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let pat1 = format!("'{key}'");
    let pat2 = format!("\"{key}\"");
    let at = text
        .find(&pat1)
        .map(|i| i + pat1.len())
        .or_else(|| text.find(&pat2).map(|i| i + pat2.len()))?;
    let rest = text[at..].trim_start().strip_prefix(':')?;
    let mut depth = 0i32;
    for (i, c) in rest.char_indices() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth -= 1,
            ',' | '}' if depth == 0 => return Some(&rest[..i]),
            _ => {}
        }
    }
    None
}

/// Parse a whole NPY file held in memory.
pub fn parse_npy(bytes: &[u8], loc: &Location) -> Result<NpyArray> {
    let h = parse_header(bytes, bytes.len() as u64, loc)?;
    let data = decode(&bytes[h.data_offset..], &h);
    let data = if h.fortran_order {
        to_c_order(&data, &h.shape)
    } else {
        data
    };
    Ok(NpyArray {
        shape: h.shape,
        data,
        dtype: h.dtype,
    })
}

fn decode(raw: &[u8], h: &Header) -> Vec<f64> {
    let s = h.dtype.size();
    raw.chunks_exact(s)
        .map(|c| {
            let mut b = [0u8; 8];
            b[..s].copy_from_slice(c);
            if h.big_endian {
                b[..s].reverse();
            }
            match h.dtype {
                Dtype::F32 => f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                Dtype::F64 => f64::from_le_bytes(b),
                Dtype::Bool | Dtype::UInt(_) => u64::from_le_bytes(b) as f64,
                Dtype::Int(sz) => {
                    // Sign-extend from `sz` bytes.
                    let shift = 64 - 8 * u32::from(sz);
                    ((i64::from_le_bytes(b) << shift) >> shift) as f64
                }
            }
        })
        .collect()
}

fn to_c_order(data: &[f64], shape: &[usize]) -> Vec<f64> {
    if shape.len() != 2 {
        return data.to_vec();
    }
    let (r, c) = (shape[0], shape[1]);
    let mut out = vec![0.0; data.len()];
    for i in 0..r {
        for j in 0..c {
            out[i * c + j] = data[j * r + i];
        }
    }
    out
}

/// Read an NPY file (whole; its size is checked against the header first).
pub fn read_npy(path: &Path) -> Result<NpyArray> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let len = f.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut head = vec![0u8; (len as usize).min(MAX_HEADER + 12)];
    f.read_exact(&mut head).map_err(|e| Error::io(path, e))?;
    let loc = Location::file(path);
    // Validates the shape against `len` before we read the data.
    parse_header(&head, len, &loc)?;
    let mut bytes = head;
    f.read_to_end(&mut bytes).map_err(|e| Error::io(path, e))?;
    parse_npy(&bytes, &loc)
}

/// Read features `X.npy` (2-D; 1-D is one feature) and labels from `y.npy`
/// beside it (or `labels` when given), if present.
pub fn read_npy_pair(x_path: &Path, labels: Option<&Path>) -> Result<(Dataset, ReadStats)> {
    let x = read_npy(x_path)?;
    let loc = Location::file(x_path).at_field("shape");
    let (n, d) = match x.shape.as_slice() {
        [n] => (*n, 1),
        [n, d] => (*n, *d),
        s => {
            return Err(Error::parse(
                loc,
                format!("features must be 1-D or 2-D, got shape {s:?}"),
            ))
        }
    };
    if let Some(i) = x
        .data
        .iter()
        .position(|v| !v.is_finite() || v.abs() > f64::from(f32::MAX))
    {
        return Err(Error::parse(
            Location::file(x_path)
                .at_line((i / d.max(1)) as u64)
                .at_field(format!("column {}", i % d.max(1))),
            "feature is not a finite f32",
        ));
    }
    let features = Array2::from_shape_vec((n, d), x.data.iter().map(|&v| v as f32).collect())
        .map_err(|e| Error::data(e.to_string()))?;
    let y_path = labels.map(Path::to_path_buf).or_else(|| {
        let p = x_path.with_file_name("y.npy");
        (p.exists() && p != x_path).then_some(p)
    });
    let labels = match &y_path {
        Some(p) => {
            let y = read_npy(p)?;
            let yl = Location::file(p);
            if y.shape.len() != 1 || y.shape[0] != n {
                return Err(Error::parse(
                    yl.at_field("shape"),
                    format!("labels must have shape ({n},), got {:?}", y.shape),
                ));
            }
            let lab = y
                .data
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    if v >= 0.0 && v.fract() == 0.0 && v < super::labels::MAX_CLASSES as f64 {
                        Ok(v as u32)
                    } else {
                        Err(Error::parse(
                            yl.clone().at_line(i as u64),
                            format!("label {v} is not a class index"),
                        ))
                    }
                })
                .collect::<Result<Vec<_>>>()?;
            Some(lab)
        }
        None => None,
    };
    let mut files = vec![x_path.display().to_string()];
    if let Some(p) = &y_path {
        files.push(p.display().to_string());
    }
    let ds = Dataset {
        ids: (0..n as u64).map(SampleId::Num).collect(),
        features: Some(features),
        labels,
        source_files: files,
        origins: (0..n as u64)
            .map(|i| Origin {
                file: 0,
                line: i,
                offset: 0,
                len: 0,
            })
            .collect(),
        ..Default::default()
    };
    ds.validate()?;
    Ok((
        ds,
        ReadStats {
            records: n as u64,
            ..Default::default()
        },
    ))
}

fn header_bytes(descr: &str, shape: &[usize]) -> Vec<u8> {
    let shape_s = match shape {
        [n] => format!("({n},)"),
        s => format!(
            "({})",
            s.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_s}, }}");
    // Pad so that the data starts on a 64-byte boundary, as NumPy does.
    let total = 10 + h.len() + 1;
    h.push_str(&" ".repeat((64 - total % 64) % 64));
    h.push('\n');
    let mut out = Vec::with_capacity(10 + h.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    out.extend_from_slice(h.as_bytes());
    out
}

/// Write a 2-D `f32` array as NPY (`<f4`, C order), atomically.
pub fn write_npy_f32(path: &Path, a: &Array2<f32>) -> Result<()> {
    let head = header_bytes("<f4", &[a.nrows(), a.ncols()]);
    atomic::write_atomic(path, |w| {
        w.write_all(&head)?;
        for v in a.iter() {
            w.write_all(&v.to_le_bytes())?;
        }
        Ok(())
    })
}

/// Write a 1-D `i64` array as NPY (`<i8`), atomically.
pub fn write_npy_i64(path: &Path, a: &[i64]) -> Result<()> {
    let head = header_bytes("<i8", &[a.len()]);
    atomic::write_atomic(path, |w| {
        w.write_all(&head)?;
        for v in a {
            w.write_all(&v.to_le_bytes())?;
        }
        Ok(())
    })
}

/// Write a 1-D `f32` array as NPY (`<f4`), atomically (an aggregated model, a score vector).
pub fn write_npy_f32_1d(path: &Path, a: &[f32]) -> Result<()> {
    let head = header_bytes("<f4", &[a.len()]);
    atomic::write_atomic(path, |w| {
        w.write_all(&head)?;
        for v in a {
            w.write_all(&v.to_le_bytes())?;
        }
        Ok(())
    })
}

/// NPY bytes of a 2-D `f32` array (for tests, fuzzing and in-memory use).
pub fn npy_bytes_f32(a: &Array2<f32>) -> Vec<u8> {
    let mut out = header_bytes("<f4", &[a.nrows(), a.ncols()]);
    for v in a.iter() {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn round_trips_f32() {
        let a = array![[1.0f32, -2.5], [3.0, 4.0], [0.0, 1e-7]];
        let b = npy_bytes_f32(&a);
        assert_eq!((b.len() - 3 * 2 * 4) % 64, 0);
        let r = parse_npy(&b, &Location::default()).unwrap();
        assert_eq!(r.shape, vec![3, 2]);
        assert_eq!(
            r.data.iter().map(|&v| v as f32).collect::<Vec<_>>(),
            a.iter().copied().collect::<Vec<_>>()
        );
    }

    #[test]
    fn refuses_declared_size_larger_than_file() {
        let mut b = header_bytes("<f8", &[1 << 40, 1 << 20]);
        b.extend_from_slice(&[0; 16]);
        let err = parse_npy(&b, &Location::file("x.npy"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("x.npy") && err.contains("shape"), "{err}");
        let err = parse_npy(b"\x93NUMPY\x01\x00", &Location::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("magic"), "{err}");
    }

    #[test]
    fn reads_ints_big_endian_and_fortran() {
        let mut b = header_bytes(">i2", &[2]);
        b.extend_from_slice(&(-3i16).to_be_bytes());
        b.extend_from_slice(&(7i16).to_be_bytes());
        assert_eq!(
            parse_npy(&b, &Location::default()).unwrap().data,
            vec![-3.0, 7.0]
        );
        let mut b = header_bytes("<f8", &[2, 2]);
        let at = b.windows(5).position(|w| w == b"False").unwrap();
        b.splice(at..at + 5, b"True ".iter().copied());
        for v in [1.0f64, 3.0, 2.0, 4.0] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        assert_eq!(
            parse_npy(&b, &Location::default()).unwrap().data,
            vec![1.0, 2.0, 3.0, 4.0]
        );
    }
}
