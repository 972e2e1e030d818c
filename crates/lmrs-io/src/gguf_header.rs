//! lmrs's own reader of a GGUF header (magic, metadata, tensor directory), validating what the
//! backend's reader trusts before anything is handed over.
//!
//! The backend (candle) divides by `general.alignment` unchecked, so a file with alignment 0
//! aborted lmrs, and it accepts tensor offsets that are not aligned and shapes whose element
//! count overflows. Here every length is checked against the bytes left in the file before it
//! is allocated, every size is computed with checked arithmetic, and each rule of the GGUF
//! spec llama.cpp enforces (`gguf.cpp`: alignment a power of two, offsets multiples of it,
//! unique keys and tensor names, at most 4 dimensions) is an error naming the key or tensor.
//! The result is the backend's own [`Content`], so tensor reading and the tokenizer code use it
//! unchanged.

use crate::{IoError, Result};
use lmrs_core::candle::quantized::gguf_file::{Content, TensorInfo, Value, VersionedMagic};
use lmrs_core::candle::quantized::GgmlDType;
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// Alignment of the tensor data when `general.alignment` is absent (the spec's default).
const DEFAULT_ALIGNMENT: u64 = 32;
/// Most dimensions a GGUF tensor may have (`GGML_MAX_DIMS`).
const MAX_DIMS: u32 = 4;
/// Deepest nesting of arrays of arrays (bounds the recursion of a crafted file).
const MAX_DEPTH: usize = 8;

/// Parse and validate the GGUF header at the start of `reader` (a file, or bytes in a
/// `Cursor`); `path` only names the file in errors. Every tensor must lie inside the stream
/// and start at a multiple of the alignment, so a truncated download fails here rather than
/// halfway through loading. Errors are [`IoError::Gguf`] saying which key or tensor is at fault.
pub fn read_gguf_header<R: Read + Seek>(reader: &mut R, path: &Path) -> Result<Content> {
    let err = |message: String| IoError::Gguf {
        path: path.to_path_buf(),
        message,
    };
    let io = |e: std::io::Error| IoError::Read {
        path: path.to_path_buf(),
        source: e,
    };
    let size = reader.seek(SeekFrom::End(0)).map_err(io)?;
    reader.seek(SeekFrom::Start(0)).map_err(io)?;
    let mut r = Reader {
        inner: reader,
        pos: 0,
        size,
        v1: false,
    };
    r.parse().map_err(err)
}

/// A bounds-checked little-endian reader that knows how many bytes are left.
struct Reader<'a, R> {
    inner: &'a mut R,
    pos: u64,
    size: u64,
    /// GGUF v1 stores lengths and dimensions as u32 (v2 and v3: u64).
    v1: bool,
}

type Parse<T> = std::result::Result<T, String>;

impl<R: Read + Seek> Reader<'_, R> {
    fn remaining(&self) -> u64 {
        self.size.saturating_sub(self.pos)
    }

    fn bytes<const N: usize>(&mut self, what: &str) -> Parse<[u8; N]> {
        let mut b = [0u8; N];
        if self.remaining() < N as u64 {
            return Err(format!(
                "{what} at byte {} runs past the end of the file ({} bytes; the header is truncated)",
                self.pos, self.size
            ));
        }
        self.inner
            .read_exact(&mut b)
            .map_err(|e| format!("{what} at byte {}: {e}", self.pos))?;
        self.pos += N as u64;
        Ok(b)
    }

    fn u8(&mut self, what: &str) -> Parse<u8> {
        Ok(self.bytes::<1>(what)?[0])
    }
    fn u16(&mut self, what: &str) -> Parse<u16> {
        Ok(u16::from_le_bytes(self.bytes(what)?))
    }
    fn u32(&mut self, what: &str) -> Parse<u32> {
        Ok(u32::from_le_bytes(self.bytes(what)?))
    }
    fn u64(&mut self, what: &str) -> Parse<u64> {
        Ok(u64::from_le_bytes(self.bytes(what)?))
    }

    /// A length or count: u32 in v1, u64 after.
    fn len(&mut self, what: &str) -> Parse<u64> {
        if self.v1 {
            Ok(self.u32(what)? as u64)
        } else {
            self.u64(what)
        }
    }

    fn len_prefix(&self) -> u64 {
        if self.v1 {
            4
        } else {
            8
        }
    }

    /// A length-prefixed string; its length is checked against the bytes left before any
    /// buffer is allocated.
    fn string(&mut self, what: &str) -> Parse<String> {
        let at = self.pos;
        let len = self.len(what)?;
        if len > self.remaining() {
            return Err(format!(
                "{what} at byte {at} claims {len} bytes but only {} remain in the file",
                self.remaining()
            ));
        }
        let mut v = vec![0u8; len as usize];
        self.inner
            .read_exact(&mut v)
            .map_err(|e| format!("{what} at byte {at}: {e}"))?;
        self.pos += len;
        // Strings should not be NUL terminated, but some writers do it; invalid UTF-8 is kept
        // lossily, as the backend's reader does.
        while v.last() == Some(&0) {
            v.pop();
        }
        Ok(String::from_utf8_lossy(&v).into_owned())
    }

    fn parse(&mut self) -> Parse<Content> {
        let magic = self.bytes::<4>("magic")?;
        if &magic != b"GGUF" {
            return Err(format!("bad magic {magic:02x?} (not a GGUF file)"));
        }
        let magic = match self.u32("version")? {
            1 => VersionedMagic::GgufV1,
            2 => VersionedMagic::GgufV2,
            3 => VersionedMagic::GgufV3,
            v => return Err(format!("unsupported GGUF version {v} (1, 2 or 3)")),
        };
        self.v1 = magic == VersionedMagic::GgufV1;
        let tensor_count = self.len("tensor count")?;
        let kv_count = self.len("metadata count")?;
        // Smallest possible entries: a key/value is a key length, a type and one byte; a tensor
        // info a name length, a dimension count, a type and an offset.
        let prefix = self.len_prefix();
        let needed = kv_count
            .saturating_mul(prefix + 4 + 1)
            .saturating_add(tensor_count.saturating_mul(prefix + 4 + 4 + 8));
        if needed > self.remaining() {
            return Err(format!(
                "the header declares {tensor_count} tensors and {kv_count} metadata entries, \
                 which need at least {needed} bytes, but only {} remain in the file (truncated?)",
                self.remaining()
            ));
        }
        let mut metadata = HashMap::new();
        for _ in 0..kv_count {
            let key = self.string("metadata key")?;
            let value = self.value_of_type(&key, 0)?;
            if metadata.insert(key.clone(), value).is_some() {
                return Err(format!("metadata key '{key}' appears twice"));
            }
        }
        let alignment = alignment(&metadata)?;
        let mut tensor_infos = HashMap::new();
        for _ in 0..tensor_count {
            let (name, info) = self.tensor_info(alignment)?;
            if tensor_infos.contains_key(&name) {
                return Err(format!("tensor '{name}' appears twice"));
            }
            tensor_infos.insert(name, info);
        }
        let tensor_data_offset = self
            .pos
            .div_ceil(alignment)
            .checked_mul(alignment)
            .ok_or_else(|| format!("alignment {alignment} overflows the data offset"))?;
        for (name, info) in &tensor_infos {
            let bytes = tensor_bytes(name, info)?;
            let end = tensor_data_offset
                .checked_add(info.offset)
                .and_then(|s| s.checked_add(bytes));
            match end {
                Some(end) if end <= self.size => {}
                _ => {
                    return Err(format!(
                        "tensor '{name}' ({bytes} bytes at data offset {}) ends past the end of \
                         the file ({} bytes; truncated?)",
                        info.offset, self.size
                    ))
                }
            }
        }
        Ok(Content {
            magic,
            metadata,
            tensor_infos,
            tensor_data_offset,
        })
    }

    /// A value preceded by its type id.
    fn value_of_type(&mut self, key: &str, depth: usize) -> Parse<Value> {
        let ty = self.u32(&format!("type of metadata '{key}'"))?;
        self.value(ty, key, depth)
    }

    fn value(&mut self, ty: u32, key: &str, depth: usize) -> Parse<Value> {
        let what = format!("metadata '{key}'");
        Ok(match ty {
            0 => Value::U8(self.u8(&what)?),
            1 => Value::I8(self.u8(&what)? as i8),
            2 => Value::U16(self.u16(&what)?),
            3 => Value::I16(self.u16(&what)? as i16),
            4 => Value::U32(self.u32(&what)?),
            5 => Value::I32(self.u32(&what)? as i32),
            6 => Value::F32(f32::from_bits(self.u32(&what)?)),
            7 => match self.u8(&what)? {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(format!("{what} is a boolean of value {b} (0 or 1)")),
            },
            8 => Value::String(self.string(&what)?),
            9 => {
                if depth >= MAX_DEPTH {
                    return Err(format!("{what} nests arrays deeper than {MAX_DEPTH}"));
                }
                let elem = self.u32(&format!("element type of {what}"))?;
                let len = self.len(&format!("length of {what}"))?;
                let min = match elem {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    10..=12 => 8,
                    8 => self.len_prefix(),
                    9 => 4 + self.len_prefix(),
                    t => return Err(format!("{what}: unknown array element type {t}")),
                };
                if len.saturating_mul(min) > self.remaining() {
                    return Err(format!(
                        "{what} claims {len} elements, more than the {} bytes left in the file hold",
                        self.remaining()
                    ));
                }
                // Grown as elements are read, never sized by the claim alone: memory stays
                // proportional to the bytes actually present.
                let mut values = Vec::with_capacity(len.min(4096) as usize);
                for _ in 0..len {
                    values.push(self.value(elem, key, depth + 1)?);
                }
                Value::Array(values)
            }
            10 => Value::U64(self.u64(&what)?),
            11 => Value::I64(self.u64(&what)? as i64),
            12 => Value::F64(f64::from_bits(self.u64(&what)?)),
            t => return Err(format!("{what} has unknown value type {t}")),
        })
    }

    fn tensor_info(&mut self, alignment: u64) -> Parse<(String, TensorInfo)> {
        let name = self.string("tensor name")?;
        let what = format!("tensor '{name}'");
        let n_dims = self.u32(&what)?;
        if n_dims > MAX_DIMS {
            return Err(format!(
                "{what} has {n_dims} dimensions (at most {MAX_DIMS})"
            ));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            let d = self.len(&what)?;
            dims.push(usize::try_from(d).map_err(|_| format!("{what}: dimension {d} too large"))?);
        }
        // A tensor with no elements holds nothing a model could use, and the backend would
        // view its empty buffer (dangling, 1-aligned) as a slice of f32: undefined behaviour.
        // Found by the gguf fuzz target; llama.cpp's loader refuses such tensors too.
        if dims.contains(&0) {
            return Err(format!("{what} has a dimension of size 0"));
        }
        // GGUF stores the fastest-varying dimension first; PyTorch order is the reverse.
        dims.reverse();
        let ty = self.u32(&what)?;
        let ggml_dtype = dtype(ty).ok_or_else(|| {
            format!(
                "{what} has unknown type id {ty}: unsupported tensor type (lmrs executes F32, F16, \
                 BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K)"
            )
        })?;
        let offset = self.u64(&what)?;
        if offset % alignment != 0 {
            return Err(format!(
                "{what} starts at data offset {offset}, not a multiple of the alignment {alignment}"
            ));
        }
        let info = TensorInfo {
            ggml_dtype,
            shape: dims.into(),
            offset,
        };
        tensor_bytes(&name, &info)?;
        Ok((name, info))
    }
}

/// `general.alignment`: any unsigned integer type, a power of two (llama.cpp's rule; 0 would
/// divide by zero).
fn alignment(metadata: &HashMap<String, Value>) -> Parse<u64> {
    let key = "general.alignment";
    let Some(v) = metadata.get(key) else {
        return Ok(DEFAULT_ALIGNMENT);
    };
    let a = match *v {
        Value::U8(x) => x as u64,
        Value::U16(x) => x as u64,
        Value::U32(x) => x as u64,
        Value::U64(x) => x,
        Value::I8(x) if x >= 0 => x as u64,
        Value::I16(x) if x >= 0 => x as u64,
        Value::I32(x) if x >= 0 => x as u64,
        Value::I64(x) if x >= 0 => x as u64,
        ref v => {
            return Err(format!(
                "metadata '{key}' is {v:?}, not an unsigned integer"
            ))
        }
    };
    if !a.is_power_of_two() {
        return Err(format!(
            "metadata '{key}' is {a}; the alignment must be a power of two"
        ));
    }
    Ok(a)
}

/// Bytes of tensor data `info` describes, with the element count and byte size checked for
/// overflow and the element count for whole blocks.
fn tensor_bytes(name: &str, info: &TensorInfo) -> Parse<u64> {
    let dims = info.shape.dims();
    let elems = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
        .filter(|&e| usize::try_from(e).is_ok())
        .ok_or_else(|| format!("tensor '{name}' has shape {dims:?}, too many elements"))?;
    let block = info.ggml_dtype.block_size() as u64;
    if elems % block != 0 {
        return Err(format!(
            "tensor '{name}' has {elems} elements, not a multiple of the {:?} block size {block}",
            info.ggml_dtype
        ));
    }
    (elems / block)
        .checked_mul(info.ggml_dtype.type_size() as u64)
        .ok_or_else(|| format!("tensor '{name}' has shape {dims:?}, too many bytes"))
}

/// GGML type ids (ggml.h `enum ggml_type`) of the types the backend can hold.
fn dtype(id: u32) -> Option<GgmlDType> {
    Some(match id {
        0 => GgmlDType::F32,
        1 => GgmlDType::F16,
        2 => GgmlDType::Q4_0,
        3 => GgmlDType::Q4_1,
        6 => GgmlDType::Q5_0,
        7 => GgmlDType::Q5_1,
        8 => GgmlDType::Q8_0,
        9 => GgmlDType::Q8_1,
        10 => GgmlDType::Q2K,
        11 => GgmlDType::Q3K,
        12 => GgmlDType::Q4K,
        13 => GgmlDType::Q5K,
        14 => GgmlDType::Q6K,
        15 => GgmlDType::Q8K,
        30 => GgmlDType::BF16,
        _ => return None,
    })
}
