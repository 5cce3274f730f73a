//! Tensors: element types ([`DType`]), the rebuilt [`Tensor`] with its conversions, and the
//! interpreter's handling of `BINPERSID` storage references and `_rebuild_tensor_v2`, which
//! checks a tensor's view against its storage and the byte budget before copying its values.

use super::{Global, Obj, PickleError, StorageSource, Value, Vm};

/// Element type of a torch storage or tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// `torch.float64`.
    F64,
    /// `torch.float32`.
    F32,
    /// `torch.float16` (raw IEEE half bits).
    F16,
    /// `torch.bfloat16` (raw bits).
    BF16,
    /// `torch.int64`.
    I64,
    /// `torch.int32`.
    I32,
    /// `torch.int16`.
    I16,
    /// `torch.int8`.
    I8,
    /// `torch.uint8`.
    U8,
    /// `torch.bool`.
    Bool,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 | DType::I16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
        }
    }

    /// The torch name: `float32`, `int64`, ...
    pub fn name(self) -> &'static str {
        match self {
            DType::F64 => "float64",
            DType::F32 => "float32",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::I64 => "int64",
            DType::I32 => "int32",
            DType::I16 => "int16",
            DType::I8 => "int8",
            DType::U8 => "uint8",
            DType::Bool => "bool",
        }
    }

    /// True for the floating-point types.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F64 | DType::F32 | DType::F16 | DType::BF16)
    }

    pub(super) fn from_storage_class(name: &str) -> Option<Self> {
        Some(match name {
            "DoubleStorage" => DType::F64,
            "FloatStorage" => DType::F32,
            "HalfStorage" => DType::F16,
            "BFloat16Storage" => DType::BF16,
            "LongStorage" => DType::I64,
            "IntStorage" => DType::I32,
            "ShortStorage" => DType::I16,
            "CharStorage" => DType::I8,
            "ByteStorage" => DType::U8,
            "BoolStorage" => DType::Bool,
            _ => return None,
        })
    }
}

pub(super) fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1F) as u32;
    let man = (h & 0x3FF) as u32;
    let bits = match (exp, man) {
        (0, 0) => sign,
        // Subnormal: m * 2^-24, exact in f32.
        (0, m) => {
            let v = m as f32 * f32::from_bits(0x3380_0000);
            return if sign != 0 { -v } else { v };
        }
        (0x1F, m) => sign | 0x7F80_0000 | (m << 13),
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

/// A tensor rebuilt from its storage: the values, contiguous in row-major order, plus the
/// layout the file recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Element type.
    pub dtype: DType,
    /// Size of each dimension.
    pub shape: Vec<usize>,
    /// Strides as stored in the file (elements); `data` is contiguous regardless.
    pub stride: Vec<usize>,
    /// Offset into the storage as stored in the file (elements).
    pub storage_offset: usize,
    /// The storage key (zip member `data/KEY`).
    pub storage_key: String,
    /// Values, contiguous row-major, little-endian bytes.
    pub data: Vec<u8>,
}

impl Tensor {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    fn chunks<const N: usize>(&self) -> impl Iterator<Item = [u8; N]> + '_ {
        self.data.chunks_exact(N).map(|c| {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            a
        })
    }

    /// The values as `f64` (integers converted; exact below 2^53).
    pub fn to_f64(&self) -> Vec<f64> {
        match self.dtype {
            DType::F64 => self.chunks::<8>().map(f64::from_le_bytes).collect(),
            DType::F32 => self
                .chunks::<4>()
                .map(|b| f32::from_le_bytes(b) as f64)
                .collect(),
            DType::F16 => self
                .chunks::<2>()
                .map(|b| f16_to_f32(u16::from_le_bytes(b)) as f64)
                .collect(),
            DType::BF16 => self
                .chunks::<2>()
                .map(|b| f32::from_bits((u16::from_le_bytes(b) as u32) << 16) as f64)
                .collect(),
            _ => self.to_i64().into_iter().map(|v| v as f64).collect(),
        }
    }

    /// The values as `f32` (f64 rounded, integers converted).
    pub fn to_f32(&self) -> Vec<f32> {
        match self.dtype {
            DType::F32 => self.chunks::<4>().map(f32::from_le_bytes).collect(),
            _ => self.to_f64().into_iter().map(|v| v as f32).collect(),
        }
    }

    /// The values as `i64` (floats truncated toward zero).
    pub fn to_i64(&self) -> Vec<i64> {
        match self.dtype {
            DType::I64 => self.chunks::<8>().map(i64::from_le_bytes).collect(),
            DType::I32 => self
                .chunks::<4>()
                .map(|b| i32::from_le_bytes(b) as i64)
                .collect(),
            DType::I16 => self
                .chunks::<2>()
                .map(|b| i16::from_le_bytes(b) as i64)
                .collect(),
            DType::I8 => self.data.iter().map(|&b| b as i8 as i64).collect(),
            DType::U8 | DType::Bool => self.data.iter().map(|&b| b as i64).collect(),
            _ => self.to_f64().into_iter().map(|v| v as i64).collect(),
        }
    }
}

/// Tensors with more dimensions are refused.
const MAX_RANK: usize = 64;

impl<'a, S: StorageSource> Vm<'a, S> {
    pub(super) fn usize_tuple(&self, v: &Value, what: &str) -> Result<Vec<usize>, PickleError> {
        let items = match v {
            Value::Obj(i) => match self.arena.get(*i) {
                Some(Obj::Tuple(t)) | Some(Obj::List(t)) => t,
                _ => return self.fail(format!("{what} is not a tuple")),
            },
            _ => return self.fail(format!("{what} is not a tuple")),
        };
        if items.len() > MAX_RANK {
            return self.fail(format!("{what} has {} dimensions", items.len()));
        }
        items
            .iter()
            .map(|x| match x {
                Value::Int(i) if *i >= 0 => Ok(*i as usize),
                Value::Bool(b) => Ok(*b as usize),
                _ => self.fail(format!("{what} holds a non-negative-int value")),
            })
            .collect()
    }

    pub(super) fn rebuild_tensor(&mut self, args: &[Value]) -> Result<Value, PickleError> {
        if args.len() < 4 {
            return self.fail(format!(
                "_rebuild_tensor_v2 takes at least 4 arguments, got {}",
                args.len()
            ));
        }
        let (dtype, key, storage_numel) = match self.obj_ref(&args[0]) {
            Some(Obj::Storage { dtype, key, numel }) => (*dtype, key.clone(), *numel),
            _ => return self.fail("_rebuild_tensor_v2: argument 0 is not a storage"),
        };
        let offset = match args[1] {
            Value::Int(o) if o >= 0 => o as usize,
            _ => return self.fail("_rebuild_tensor_v2: storage offset is not a non-negative int"),
        };
        let shape = self.usize_tuple(&args[2], "tensor size")?;
        let stride = self.usize_tuple(&args[3], "tensor stride")?;
        if shape.len() != stride.len() {
            return self.fail(format!(
                "tensor size {shape:?} and stride {stride:?} differ in rank"
            ));
        }
        let numel = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .filter(|&n| n.checked_mul(dtype.size()).is_some());
        let Some(numel) = numel else {
            return self.fail(format!("tensor size {shape:?} overflows"));
        };
        // Highest storage element the view touches.
        if numel > 0 {
            let mut last = offset;
            for (&d, &s) in shape.iter().zip(&stride) {
                let Some(span) = (d - 1).checked_mul(s) else {
                    return self.fail("tensor stride overflows");
                };
                last = match last.checked_add(span) {
                    Some(l) => l,
                    None => return self.fail("tensor stride overflows"),
                };
            }
            if last >= storage_numel {
                return self.fail(format!(
                    "tensor (offset {offset}, size {shape:?}, stride {stride:?}) reaches element \
                     {last} of storage {key:?}, which has {storage_numel}"
                ));
            }
        }
        let nbytes = numel * dtype.size();
        if nbytes > self.budget {
            return self.fail(format!(
                "tensor of {nbytes} bytes exceeds the remaining budget of {} bytes (refusing \
                 absurd sizes)",
                self.budget
            ));
        }
        self.budget -= nbytes;
        let raw = match self.storages.storage(&key) {
            Ok(r) => r,
            Err(e) => return self.fail(format!("storage {key:?}: {e}")),
        };
        let need = storage_numel.saturating_mul(dtype.size());
        if raw.len() < need {
            return self.fail(format!(
                "storage {key:?} has {} bytes, its {storage_numel} {} elements need {need}",
                raw.len(),
                dtype.name()
            ));
        }
        let es = dtype.size();
        let mut data = Vec::with_capacity(nbytes);
        if numel > 0 {
            let contiguous = {
                let mut expect = 1usize;
                let mut ok = true;
                for (&d, &s) in shape.iter().zip(&stride).rev() {
                    if d != 1 && s != expect {
                        ok = false;
                        break;
                    }
                    expect = expect.saturating_mul(d);
                }
                ok
            };
            if contiguous {
                data.extend_from_slice(&raw[offset * es..(offset + numel) * es]);
            } else {
                let rank = shape.len();
                let mut idx = vec![0usize; rank];
                let mut at = offset;
                for _ in 0..numel {
                    data.extend_from_slice(&raw[at * es..(at + 1) * es]);
                    // Advance the odometer (row-major order).
                    // Wrapping arithmetic: every visited element was bounds-checked above, and
                    // the temporary overshoot past the last one is undone right away.
                    let mut k = rank;
                    while k > 0 {
                        k -= 1;
                        idx[k] += 1;
                        at = at.wrapping_add(stride[k]);
                        if idx[k] < shape[k] {
                            break;
                        }
                        at = at.wrapping_sub(stride[k].wrapping_mul(shape[k]));
                        idx[k] = 0;
                    }
                }
            }
        }
        Ok(self.alloc(Obj::Tensor(Tensor {
            dtype,
            shape,
            stride,
            storage_offset: offset,
            storage_key: key,
            data,
        })))
    }

    pub(super) fn persistent_load(&mut self, pid: Value) -> Result<Value, PickleError> {
        let Some(t) = self.seq_of(&pid)? else {
            return self.fail("persistent id is not a tuple");
        };
        match t.as_slice() {
            [Value::Str(kind), Value::Global(Global::Storage(dtype)), Value::Str(key), Value::Str(_location), Value::Int(numel)]
                if &**kind == "storage" && *numel >= 0 =>
            {
                if key.len() > 256 {
                    return self.fail("storage key is too long");
                }
                let numel = usize::try_from(*numel).unwrap_or(usize::MAX);
                Ok(self.alloc(Obj::Storage {
                    dtype: *dtype,
                    key: key.to_string(),
                    numel,
                }))
            }
            [Value::Str(kind), ..] if &**kind == "storage" => self.fail(
                "persistent id is not ('storage', <allowed storage type>, key, location, numel)",
            ),
            _ => self.fail("persistent id is not a storage reference"),
        }
    }
}
