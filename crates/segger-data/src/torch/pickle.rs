//! A restricted pickle interpreter for `torch.save` files.
//!
//! Only the opcodes listed in [`Vm::run`] are understood (protocols 2 to 5, binary opcodes;
//! the text opcodes of protocol 0 are refused). Nothing is ever imported or called: a `GLOBAL`
//! names one of the callables in [`Global`], each of which this module re-implements as a
//! data transformation (build a dict, rebuild a tensor from its storage, ...). A global outside
//! the [`Policy`]'s allow-list is refused with an error naming it, or, in the lenient
//! checkpoint policy, kept as an inert placeholder that is never called.
//!
//! Objects live in an arena owned by [`Pickle`], referenced by index, so reference cycles
//! (PyG stores point back at their `HeteroData`) cost nothing and are freed with the arena.
//! Every length read from the stream is checked against the bytes that remain; tensors are
//! checked against their storages and counted against a byte budget, so hostile input gives an
//! error, not a panic, a huge allocation or a hang.

use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;

/// An error of the interpreter, with the byte offset of the opcode that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PickleError {
    /// Offset of the failing opcode in the pickle stream.
    pub offset: usize,
    /// What went wrong.
    pub problem: String,
}

impl std::fmt::Display for PickleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "byte {}: {}", self.offset, self.problem)
    }
}

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

    fn from_storage_class(name: &str) -> Option<Self> {
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

fn f16_to_f32(h: u16) -> f32 {
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

/// The callables and classes a pickle may name, each re-implemented as data handling.
#[derive(Debug, Clone, PartialEq)]
pub enum Global {
    /// `collections.OrderedDict`.
    OrderedDict,
    /// `collections.defaultdict` (the factory is ignored).
    DefaultDict,
    /// `builtins.set` / `__builtin__.set`.
    Set,
    /// `builtins.frozenset` / `__builtin__.frozenset`.
    FrozenSet,
    /// `builtins.bytes` / `__builtin__.bytes` (protocol 2 writes `b''` as `bytes()`).
    EmptyBytes,
    /// `torch._utils._rebuild_tensor_v2`.
    RebuildTensorV2,
    /// `torch._utils._rebuild_parameter` (a parameter is loaded as its tensor).
    RebuildParameter,
    /// `torch.FloatStorage`, `torch.LongStorage`, ...: storage types in persistent ids.
    Storage(DType),
    /// `_codecs.encode` (only `(str, "latin1")`, how protocol 2 writes `bytes`).
    CodecsEncode,
    /// `numpy.core.multiarray._reconstruct` (also `numpy._core`).
    NpReconstruct,
    /// `numpy.ndarray`.
    NpNdarray,
    /// `numpy.dtype`.
    NpDtype,
    /// `numpy.core.multiarray.scalar` (numpy scalars such as `np.float64(0.1)`).
    NpScalar,
    /// An allowed class whose instances are kept as plain data (PyG's `HeteroData`,
    /// `NodeStorage`, ...): construction records the arguments, `BUILD` records the state.
    Class(Rc<str>),
    /// A global outside the allow-list, kept inert (lenient policy only): it is never called;
    /// "calling" it yields an [`Obj::Object`] flagged opaque.
    Opaque(Rc<str>),
}

/// Which globals a pickle may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// PyG `HeteroData` tiles: only [`TILE_GLOBALS`]; anything else is an error.
    Tile,
    /// Lightning checkpoints: [`CHECKPOINT_GLOBALS`] are interpreted; any other global is kept
    /// as an inert [`Global::Opaque`] placeholder (checkpoints also pickle optimiser, callback
    /// and hyper-parameter objects that are irrelevant to the weights). Reading such a
    /// placeholder where a value is needed is an error naming the global.
    Checkpoint,
}

/// The globals a PyG tile may name (the `pickle_globals` of the reference fixtures, plus the
/// Python 3 / numpy 2 spellings and the other storage types).
pub const TILE_GLOBALS: &[&str] = &[
    "__builtin__.set",
    "builtins.set",
    "__builtin__.bytes",
    "builtins.bytes",
    "_codecs.encode",
    "collections.OrderedDict",
    "collections.defaultdict",
    "numpy.core.multiarray._reconstruct",
    "numpy._core.multiarray._reconstruct",
    "numpy.dtype",
    "numpy.ndarray",
    "torch.FloatStorage",
    "torch.DoubleStorage",
    "torch.HalfStorage",
    "torch.BFloat16Storage",
    "torch.LongStorage",
    "torch.IntStorage",
    "torch.ShortStorage",
    "torch.CharStorage",
    "torch.ByteStorage",
    "torch.BoolStorage",
    "torch._utils._rebuild_tensor_v2",
    "torch_geometric.data.feature_store.TensorAttr",
    "torch_geometric.data.graph_store.EdgeAttr",
    "torch_geometric.data.hetero_data.HeteroData",
    "torch_geometric.data.storage.AttrType",
    "torch_geometric.data.storage.BaseStorage",
    "torch_geometric.data.storage.EdgeStorage",
    "torch_geometric.data.storage.NodeStorage",
];

/// The globals a checkpoint's pickle may name and that are interpreted (beyond
/// [`TILE_GLOBALS`]); others become inert placeholders.
pub const CHECKPOINT_GLOBALS: &[&str] = &[
    "torch._utils._rebuild_parameter",
    "__builtin__.frozenset",
    "builtins.frozenset",
    "numpy.core.multiarray.scalar",
    "numpy._core.multiarray.scalar",
];

fn resolve(full: &str, policy: Policy) -> Option<Global> {
    let allowed = TILE_GLOBALS.contains(&full)
        || (policy == Policy::Checkpoint && CHECKPOINT_GLOBALS.contains(&full));
    if !allowed {
        return match policy {
            Policy::Tile => None,
            Policy::Checkpoint => Some(Global::Opaque(full.into())),
        };
    }
    Some(match full {
        "collections.OrderedDict" => Global::OrderedDict,
        "collections.defaultdict" => Global::DefaultDict,
        "__builtin__.set" | "builtins.set" => Global::Set,
        "__builtin__.frozenset" | "builtins.frozenset" => Global::FrozenSet,
        "__builtin__.bytes" | "builtins.bytes" => Global::EmptyBytes,
        "torch._utils._rebuild_tensor_v2" => Global::RebuildTensorV2,
        "torch._utils._rebuild_parameter" => Global::RebuildParameter,
        "_codecs.encode" => Global::CodecsEncode,
        "numpy.core.multiarray._reconstruct" | "numpy._core.multiarray._reconstruct" => {
            Global::NpReconstruct
        }
        "numpy.ndarray" => Global::NpNdarray,
        "numpy.dtype" => Global::NpDtype,
        "numpy.core.multiarray.scalar" | "numpy._core.multiarray.scalar" => Global::NpScalar,
        _ => match full
            .strip_prefix("torch.")
            .and_then(DType::from_storage_class)
        {
            Some(d) => Global::Storage(d),
            None => Global::Class(full.into()),
        },
    })
}

/// A value on the stack or in a container. Compound values live in the [`Pickle`] arena.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `None`.
    None,
    /// `True` / `False`.
    Bool(bool),
    /// An integer that fits `i64`.
    Int(i64),
    /// A larger integer: little-endian two's complement bytes.
    BigInt(Rc<[u8]>),
    /// A float.
    Float(f64),
    /// A `str`.
    Str(Rc<str>),
    /// A `bytes` object.
    Bytes(Rc<[u8]>),
    /// A global (a class or function), never called.
    Global(Global),
    /// A compound object: index into the arena.
    Obj(usize),
}

/// A dict (also `OrderedDict` and `defaultdict`), in insertion order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dict {
    /// Key-value pairs in insertion order.
    pub items: Vec<(Value, Value)>,
    index: HashMap<Key, usize>,
}

/// A numpy array rebuilt by `_reconstruct` + `BUILD`.
#[derive(Debug, Clone, PartialEq)]
pub struct NdArray {
    /// Shape.
    pub shape: Vec<usize>,
    /// The dtype's descriptor: `O8` for objects, `f4`, `i8`, ...
    pub descr: String,
    /// Byte order character from the dtype's state (`|`, `<`, `>`, `=`).
    pub byteorder: String,
    /// True for Fortran (column-major) order.
    pub fortran: bool,
    /// The data: a list of objects (object arrays) or raw bytes.
    pub data: Value,
}

/// An arena object.
#[derive(Debug, Clone, PartialEq)]
pub enum Obj {
    /// A tuple.
    Tuple(Vec<Value>),
    /// A list.
    List(Vec<Value>),
    /// A dict.
    Dict(Dict),
    /// A set or frozenset.
    Set(Vec<Value>),
    /// An instance of an allowed data class or of an opaque global.
    Object {
        /// `module.name` of its class (or of the opaque callable that made it).
        class: Rc<str>,
        /// The construction arguments (a tuple value).
        args: Value,
        /// The state set by `BUILD`, if any.
        state: Option<Value>,
        /// True when the class is outside the allow-list (lenient policy).
        opaque: bool,
        /// Items set by `SETITEM(S)` on an opaque dict subclass (e.g. Lightning's
        /// `AttributeDict`); empty otherwise.
        items: Dict,
    },
    /// A persistent-id storage reference (before a tensor is rebuilt on it).
    Storage {
        /// Element type.
        dtype: DType,
        /// Storage key (zip member `data/KEY`).
        key: String,
        /// Number of elements.
        numel: usize,
    },
    /// A rebuilt tensor.
    Tensor(Tensor),
    /// A numpy array (possibly still empty, before `BUILD`).
    NdArray(NdArray),
    /// A numpy dtype.
    NpDtype {
        /// Descriptor, e.g. `O8`, `f8`, `<i8`.
        descr: String,
        /// Byte order from `BUILD`, `|` when unknown.
        byteorder: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    None,
    Int(i64),
    Float(u64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    Global(String),
    Tuple(Vec<Key>),
    Id(usize),
}

/// Strings and bytes longer than this are keyed by identity in dicts (bounds hashing cost).
const MAX_KEY_STR: usize = 1024;
/// Tuples deeper or longer than this are keyed by identity in dicts.
const MAX_KEY_DEPTH: usize = 3;
const MAX_KEY_TUPLE: usize = 8;
/// Copying work allowed per byte of pickle (plus a fixed allowance): real files copy each
/// item about once.
const WORK_PER_BYTE: usize = 8;
const WORK_BASE: usize = 1 << 20;
/// Tensors with more dimensions are refused.
const MAX_RANK: usize = 64;

/// Where tensor bytes come from: the zip members `data/KEY`.
pub trait StorageSource {
    /// The bytes of storage `key`, or a description of why they are unavailable.
    fn storage(&self, key: &str) -> Result<&[u8], String>;
}

/// The result of running a pickle: the arena, the root value and the globals it named.
#[derive(Debug, Clone)]
pub struct Pickle {
    arena: Vec<Obj>,
    /// The unpickled value.
    pub root: Value,
    /// Every global the stream named, as `module.name`.
    pub globals: BTreeSet<String>,
    /// The highest protocol announced by `PROTO` (0 when absent).
    pub protocol: u8,
}

impl Pickle {
    /// The arena object a value refers to.
    pub fn obj(&self, v: &Value) -> Option<&Obj> {
        match v {
            Value::Obj(i) => self.arena.get(*i),
            _ => None,
        }
    }

    /// The dict a value refers to (also the items of an opaque dict subclass that has some).
    pub fn dict(&self, v: &Value) -> Option<&Dict> {
        match self.obj(v) {
            Some(Obj::Dict(d)) => Some(d),
            Some(Obj::Object { items, .. }) if !items.items.is_empty() => Some(items),
            _ => None,
        }
    }

    /// The items of a tuple or list value.
    pub fn seq(&self, v: &Value) -> Option<&[Value]> {
        match self.obj(v) {
            Some(Obj::Tuple(t)) | Some(Obj::List(t)) => Some(t),
            _ => None,
        }
    }

    /// The tensor a value refers to.
    pub fn tensor(&self, v: &Value) -> Option<&Tensor> {
        match self.obj(v) {
            Some(Obj::Tensor(t)) => Some(t),
            _ => None,
        }
    }

    /// Looks up a string key in a dict value.
    pub fn get<'p>(&'p self, dict: &Value, key: &str) -> Option<&'p Value> {
        let d = self.dict(dict)?;
        d.index
            .get(&Key::Str(key.into()))
            .map(|&i| &d.items[i].1)
            .or_else(|| {
                d.items
                    .iter()
                    .find(|(k, _)| matches!(k, Value::Str(s) if &**s == key))
                    .map(|(_, v)| v)
            })
    }

    /// The class name and `BUILD` state of an object value.
    pub fn object<'p>(&'p self, v: &Value) -> Option<(&'p str, Option<&'p Value>, bool)> {
        match self.obj(v) {
            Some(Obj::Object {
                class,
                state,
                opaque,
                ..
            }) => Some((class, state.as_ref(), *opaque)),
            _ => None,
        }
    }

    /// A short description of a value for error messages (`str`, `tensor float32 [3, 2]`,
    /// `opaque object torch.fx...`, ...).
    pub fn describe(&self, v: &Value) -> String {
        match v {
            Value::None => "None".into(),
            Value::Bool(b) => format!("bool {b}"),
            Value::Int(i) => format!("int {i}"),
            Value::BigInt(_) => "big int".into(),
            Value::Float(f) => format!("float {f}"),
            Value::Str(s) => format!("str {:?}", truncate(s, 40)),
            Value::Bytes(b) => format!("bytes[{}]", b.len()),
            Value::Global(g) => format!("global {g:?}"),
            Value::Obj(_) => match self.obj(v) {
                Some(Obj::Tuple(t)) => format!("tuple of {}", t.len()),
                Some(Obj::List(t)) => format!("list of {}", t.len()),
                Some(Obj::Dict(d)) => format!("dict of {}", d.items.len()),
                Some(Obj::Set(s)) => format!("set of {}", s.len()),
                Some(Obj::Object { class, opaque, .. }) => {
                    if *opaque {
                        format!("object of the non-allowed global {class}")
                    } else {
                        format!("{class} object")
                    }
                }
                Some(Obj::Storage { dtype, .. }) => format!("{} storage", dtype.name()),
                Some(Obj::Tensor(t)) => format!("tensor {} {:?}", t.dtype.name(), t.shape),
                Some(Obj::NdArray(a)) => format!("numpy array {} {:?}", a.descr, a.shape),
                Some(Obj::NpDtype { descr, .. }) => format!("numpy dtype {descr}"),
                None => "dangling reference".into(),
            },
        }
    }

    /// The strings of a numpy object array or a list/tuple of `str`; `None` for anything
    /// else.
    pub fn strings(&self, v: &Value) -> Option<Vec<String>> {
        let items = match self.obj(v)? {
            Obj::NdArray(a) => {
                if !a.descr.starts_with('O') {
                    return None;
                }
                let items = self.seq(&a.data)?;
                let n: usize = a.shape.iter().product();
                if items.len() != n {
                    return None;
                }
                items
            }
            Obj::List(t) | Obj::Tuple(t) => t,
            _ => return None,
        };
        items
            .iter()
            .map(|x| match x {
                Value::Str(s) => Some(s.to_string()),
                _ => None,
            })
            .collect()
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let t: String = s.chars().take(n).collect();
        format!("{t}...")
    }
}

/// The interpreter. Create with [`Vm::new`], run with [`Vm::run`].
pub struct Vm<'a, S: StorageSource> {
    data: &'a [u8],
    pos: usize,
    op_start: usize,
    policy: Policy,
    storages: &'a S,
    budget: usize,
    work: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    arena: Vec<Obj>,
    globals: BTreeSet<String>,
    protocol: u8,
}

impl<'a, S: StorageSource> Vm<'a, S> {
    /// An interpreter over `data` (the `data.pkl` member), taking tensor bytes from
    /// `storages`. At most `budget` bytes of tensor data are materialised in total.
    pub fn new(data: &'a [u8], policy: Policy, storages: &'a S, budget: usize) -> Self {
        Self {
            data,
            pos: 0,
            op_start: 0,
            policy,
            storages,
            budget,
            work: data
                .len()
                .saturating_mul(WORK_PER_BYTE)
                .saturating_add(WORK_BASE),
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
            arena: Vec::new(),
            globals: BTreeSet::new(),
            protocol: 0,
        }
    }

    fn fail<T>(&self, problem: impl Into<String>) -> Result<T, PickleError> {
        Err(PickleError {
            offset: self.op_start,
            problem: problem.into(),
        })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], PickleError> {
        let data = self.data;
        match self.pos.checked_add(n) {
            Some(end) if end <= data.len() => {
                let s = &data[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            _ => self.fail(format!(
                "needs {n} more bytes but the stream ends at byte {}",
                data.len()
            )),
        }
    }

    fn u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }

    fn le<const N: usize>(&mut self) -> Result<[u8; N], PickleError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn len_u32(&mut self) -> Result<usize, PickleError> {
        Ok(u32::from_le_bytes(self.le::<4>()?) as usize)
    }

    fn len_u64(&mut self) -> Result<usize, PickleError> {
        let n = u64::from_le_bytes(self.le::<8>()?);
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn line(&mut self) -> Result<&'a str, PickleError> {
        let data = self.data;
        let rest = &data[self.pos.min(data.len())..];
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            return self.fail("unterminated text argument");
        };
        let s = std::str::from_utf8(&rest[..nl]).or_else(|_| self.fail("text is not UTF-8"))?;
        self.pos += nl + 1;
        Ok(s)
    }

    fn text(&mut self, n: usize) -> Result<Rc<str>, PickleError> {
        let b = self.take(n)?;
        match std::str::from_utf8(b) {
            Ok(s) => Ok(s.into()),
            Err(_) => self.fail("string is not valid UTF-8"),
        }
    }

    fn bytes(&mut self, n: usize) -> Result<Rc<[u8]>, PickleError> {
        Ok(self.take(n)?.into())
    }

    fn push(&mut self, v: Value) {
        self.stack.push(v);
    }

    fn alloc(&mut self, o: Obj) -> Value {
        self.arena.push(o);
        Value::Obj(self.arena.len() - 1)
    }

    fn pop(&mut self) -> Result<Value, PickleError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return self.fail("stack underflow");
        }
        Ok(self.stack.pop().expect("checked above"))
    }

    fn top(&mut self) -> Result<&mut Value, PickleError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return self.fail("stack underflow");
        }
        Ok(self.stack.last_mut().expect("checked above"))
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>, PickleError> {
        let Some(m) = self.marks.pop() else {
            return self.fail("no MARK on the stack");
        };
        Ok(self.stack.split_off(m))
    }

    fn key(&self, v: &Value, depth: usize) -> Key {
        match v {
            Value::None => Key::None,
            Value::Bool(b) => Key::Int(*b as i64),
            Value::Int(i) => Key::Int(*i),
            Value::Float(f) => {
                if f.fract() == 0.0 && f.abs() < 9.0e15 {
                    Key::Int(*f as i64)
                } else {
                    Key::Float(f.to_bits())
                }
            }
            Value::Str(s) if s.len() <= MAX_KEY_STR => Key::Str(s.clone()),
            Value::Bytes(b) if b.len() <= MAX_KEY_STR => Key::Bytes(b.clone()),
            Value::Str(s) => Key::Id(s.as_ptr() as usize),
            Value::Bytes(b) => Key::Id(b.as_ptr() as usize),
            Value::BigInt(b) => Key::Bytes(b.clone()),
            Value::Global(g) => Key::Global(format!("{g:?}")),
            Value::Obj(i) => match self.arena.get(*i) {
                Some(Obj::Tuple(t)) if depth < MAX_KEY_DEPTH && t.len() <= MAX_KEY_TUPLE => {
                    Key::Tuple(t.iter().map(|x| self.key(x, depth + 1)).collect())
                }
                _ => Key::Id(*i),
            },
        }
    }

    fn dict_set(&mut self, target: &Value, k: Value, v: Value) -> Result<(), PickleError> {
        let key = self.key(&k, 0);
        let Value::Obj(i) = target else {
            return self.fail("SETITEM on a value that is not a dict");
        };
        match self.arena.get_mut(*i) {
            Some(Obj::Dict(d)) => {
                if let Some(&at) = d.index.get(&key) {
                    d.items[at].1 = v;
                } else {
                    d.index.insert(key, d.items.len());
                    d.items.push((k, v));
                }
                Ok(())
            }
            // Opaque dict subclasses keep their items.
            Some(Obj::Object {
                opaque: true,
                items: d,
                ..
            }) => {
                if let Some(&at) = d.index.get(&key) {
                    d.items[at].1 = v;
                } else {
                    d.index.insert(key, d.items.len());
                    d.items.push((k, v));
                }
                Ok(())
            }
            _ => self.fail("SETITEM on a value that is not a dict"),
        }
    }

    fn list_extend(&mut self, target: &Value, items: Vec<Value>) -> Result<(), PickleError> {
        let Value::Obj(i) = target else {
            return self.fail("APPEND on a value that is not a list");
        };
        match self.arena.get_mut(*i) {
            Some(Obj::List(l)) => {
                l.extend(items);
                Ok(())
            }
            Some(Obj::Object { opaque: true, .. }) => Ok(()),
            _ => self.fail("APPEND on a value that is not a list"),
        }
    }

    fn set_extend(&mut self, target: &Value, items: Vec<Value>) -> Result<(), PickleError> {
        let Value::Obj(i) = target else {
            return self.fail("ADDITEMS on a value that is not a set");
        };
        match self.arena.get_mut(*i) {
            Some(Obj::Set(l)) => {
                l.extend(items);
                Ok(())
            }
            Some(Obj::Object { opaque: true, .. }) => Ok(()),
            _ => self.fail("ADDITEMS on a value that is not a set"),
        }
    }

    fn global(&mut self, module: &str, name: &str) -> Result<Value, PickleError> {
        let full = format!("{module}.{name}");
        self.globals.insert(full.clone());
        match resolve(&full, self.policy) {
            Some(g) => Ok(Value::Global(g)),
            None => self.fail(format!(
                "pickle global `{full}` is not allowed (a PyG tile may only name: {})",
                TILE_GLOBALS.join(", ")
            )),
        }
    }

    /// Counts `n` units of copying work against the budget, so that inputs that make the
    /// interpreter copy the same large container over and over fail instead of hanging.
    fn charge(&mut self, n: usize) -> Result<(), PickleError> {
        match self.work.checked_sub(n) {
            Some(w) => {
                self.work = w;
                Ok(())
            }
            None => self.fail("the pickle makes the reader copy too much data (refused)"),
        }
    }

    /// A copy of the items of a tuple or list value (charged as work).
    fn seq_of(&mut self, v: &Value) -> Result<Option<Vec<Value>>, PickleError> {
        let n = match self.obj_ref(v) {
            Some(Obj::Tuple(t)) | Some(Obj::List(t)) => t.len(),
            _ => return Ok(None),
        };
        self.charge(n)?;
        Ok(match self.obj_ref(v) {
            Some(Obj::Tuple(t)) | Some(Obj::List(t)) => Some(t.clone()),
            _ => None,
        })
    }

    fn usize_tuple(&self, v: &Value, what: &str) -> Result<Vec<usize>, PickleError> {
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

    fn rebuild_tensor(&mut self, args: &[Value]) -> Result<Value, PickleError> {
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

    fn obj_ref(&self, v: &Value) -> Option<&Obj> {
        match v {
            Value::Obj(i) => self.arena.get(*i),
            _ => None,
        }
    }

    fn opaque_class(&self, v: &Value) -> Option<Rc<str>> {
        match self.obj_ref(v) {
            Some(Obj::Object {
                class,
                opaque: true,
                ..
            }) => Some(format!("{class}(...)").into()),
            _ => None,
        }
    }

    fn call(&mut self, callable: Value, args: Value) -> Result<Value, PickleError> {
        // Calling the result of an opaque call stays opaque (lenient policy only).
        if let Some(class) = self.opaque_class(&callable) {
            return Ok(self.alloc(Obj::Object {
                class,
                args,
                state: None,
                opaque: true,
                items: Dict::default(),
            }));
        }
        let Value::Global(g) = callable else {
            return self.fail(format!(
                "REDUCE on something that is not an allowed global ({})",
                describe_plain(&callable)
            ));
        };
        let Some(a) = self.seq_of(&args)? else {
            return self.fail("REDUCE arguments are not a tuple");
        };
        match g {
            Global::OrderedDict | Global::DefaultDict => {
                let d = Dict::default();
                // OrderedDict(iterable_of_pairs) is possible; protocol 2 uses SETITEMS instead.
                if g == Global::OrderedDict {
                    let pairs = match a.first() {
                        Some(p) => self.seq_of(p)?,
                        None => None,
                    };
                    if let Some(pairs) = pairs {
                        let target = self.alloc(Obj::Dict(d));
                        for p in pairs {
                            match self.seq_of(&p)?.as_deref() {
                                Some([k, v]) => self.dict_set(&target, k.clone(), v.clone())?,
                                _ => return self.fail("OrderedDict item is not a pair"),
                            }
                        }
                        return Ok(target);
                    }
                }
                Ok(self.alloc(Obj::Dict(d)))
            }
            Global::Set | Global::FrozenSet => {
                let items = match a.first() {
                    None => Vec::new(),
                    Some(v) => {
                        let n = match self.obj_ref(v) {
                            Some(Obj::List(l)) | Some(Obj::Tuple(l)) | Some(Obj::Set(l)) => l.len(),
                            _ => return self.fail("set() argument is not a list"),
                        };
                        self.charge(n)?;
                        match self.obj_ref(v) {
                            Some(Obj::List(l)) | Some(Obj::Tuple(l)) | Some(Obj::Set(l)) => {
                                l.clone()
                            }
                            _ => Vec::new(),
                        }
                    }
                };
                Ok(self.alloc(Obj::Set(items)))
            }
            Global::EmptyBytes => {
                if a.is_empty() {
                    Ok(Value::Bytes(Vec::new().into()))
                } else {
                    self.fail("bytes(...) with arguments is not supported")
                }
            }
            Global::RebuildTensorV2 => self.rebuild_tensor(&a),
            Global::RebuildParameter => match a.first() {
                Some(t @ Value::Obj(_)) if matches!(self.obj_ref(t), Some(Obj::Tensor(_))) => {
                    Ok(t.clone())
                }
                _ => self.fail("_rebuild_parameter: argument 0 is not a tensor"),
            },
            Global::CodecsEncode => match a.as_slice() {
                [Value::Str(s), Value::Str(enc)]
                    if matches!(&**enc, "latin1" | "latin-1" | "iso-8859-1") =>
                {
                    let mut out = Vec::with_capacity(s.len());
                    for c in s.chars() {
                        let c = c as u32;
                        if c > 0xFF {
                            return self.fail("_codecs.encode: character outside latin-1");
                        }
                        out.push(c as u8);
                    }
                    Ok(Value::Bytes(out.into()))
                }
                _ => self.fail("_codecs.encode: only (str, 'latin1') is supported"),
            },
            Global::NpReconstruct => {
                if !matches!(a.first(), Some(Value::Global(Global::NpNdarray))) {
                    return self.fail("_reconstruct: argument 0 is not numpy.ndarray");
                }
                Ok(self.alloc(Obj::NdArray(NdArray {
                    shape: vec![0],
                    descr: String::new(),
                    byteorder: "|".into(),
                    fortran: false,
                    data: Value::None,
                })))
            }
            Global::NpDtype => match a.first() {
                Some(Value::Str(d)) => {
                    let descr = d.to_string();
                    Ok(self.alloc(Obj::NpDtype {
                        descr,
                        byteorder: "|".into(),
                    }))
                }
                _ => self.fail("numpy.dtype: argument 0 is not a str"),
            },
            Global::NpScalar => {
                let (descr, bo) = match a.first().and_then(|d| self.obj_ref(d)) {
                    Some(Obj::NpDtype { descr, byteorder }) => (descr.clone(), byteorder.clone()),
                    _ => return self.fail("numpy scalar: argument 0 is not a dtype"),
                };
                let Some(Value::Bytes(b)) = a.get(1) else {
                    return self.fail("numpy scalar: argument 1 is not bytes");
                };
                if bo == ">" {
                    return self.fail("numpy scalar: big-endian data is not supported");
                }
                let code = descr.trim_start_matches(['<', '>', '=', '|']);
                let v = match (code, b.len()) {
                    ("f8", 8) => Value::Float(f64::from_le_bytes(b[..8].try_into().unwrap())),
                    ("f4", 4) => {
                        Value::Float(f32::from_le_bytes(b[..4].try_into().unwrap()) as f64)
                    }
                    ("i8", 8) => Value::Int(i64::from_le_bytes(b[..8].try_into().unwrap())),
                    ("i4", 4) => Value::Int(i32::from_le_bytes(b[..4].try_into().unwrap()) as i64),
                    ("b1", 1) => Value::Bool(b[0] != 0),
                    // Checkpoints may hold any numpy scalar in irrelevant places: keep it inert.
                    _ if self.policy == Policy::Checkpoint => {
                        return Ok(self.alloc(Obj::Object {
                            class: format!("numpy scalar {descr}").into(),
                            args,
                            state: None,
                            opaque: true,
                            items: Dict::default(),
                        }))
                    }
                    _ => {
                        return self.fail(format!(
                            "numpy scalar of dtype {descr} with {} bytes is not supported",
                            b.len()
                        ))
                    }
                };
                Ok(v)
            }
            Global::Class(class) => Ok(self.alloc(Obj::Object {
                class,
                args,
                state: None,
                opaque: false,
                items: Dict::default(),
            })),
            Global::Opaque(class) => Ok(self.alloc(Obj::Object {
                class,
                args,
                state: None,
                opaque: true,
                items: Dict::default(),
            })),
            Global::NpNdarray | Global::Storage(_) => {
                self.fail(format!("{g:?} cannot be called in this position"))
            }
        }
    }

    fn newobj(&mut self, cls: Value, args: Value) -> Result<Value, PickleError> {
        match cls {
            Value::Global(Global::Class(class)) => Ok(self.alloc(Obj::Object {
                class,
                args,
                state: None,
                opaque: false,
                items: Dict::default(),
            })),
            Value::Global(Global::Opaque(class)) => Ok(self.alloc(Obj::Object {
                class,
                args,
                state: None,
                opaque: true,
                items: Dict::default(),
            })),
            Value::Global(Global::OrderedDict | Global::DefaultDict) => {
                Ok(self.alloc(Obj::Dict(Dict::default())))
            }
            Value::Global(Global::Set | Global::FrozenSet) => Ok(self.alloc(Obj::Set(Vec::new()))),
            other => self.fail(format!(
                "NEWOBJ on something that is not an allowed class ({})",
                describe_plain(&other)
            )),
        }
    }

    fn build(&mut self, target: &Value, state: Value) -> Result<(), PickleError> {
        let Value::Obj(i) = target else {
            return self.fail(format!(
                "BUILD on a plain value ({})",
                describe_plain(target)
            ));
        };
        let i = *i;
        // Prepare what needs a shared borrow of the arena before taking the mutable one.
        let st = self.seq_of(&state)?;
        match self.arena.get(i) {
            Some(Obj::NdArray(_)) => {
                // (version, shape, dtype, is_fortran, data)
                let Some(st) = st.filter(|s| s.len() == 5) else {
                    return self.fail("numpy array state is not a 5-tuple");
                };
                let shape = self.usize_tuple(&st[1], "numpy array shape")?;
                let (descr, byteorder) = match self.obj_ref(&st[2]) {
                    Some(Obj::NpDtype { descr, byteorder }) => (descr.clone(), byteorder.clone()),
                    _ => return self.fail("numpy array state: item 2 is not a dtype"),
                };
                let fortran = matches!(st[3], Value::Bool(true));
                let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
                let ok = match (&st[4], n) {
                    (_, None) => false,
                    (Value::Bytes(_), Some(_)) => true,
                    (v, Some(n)) => self.seq_of_len(v) == Some(n),
                };
                if !ok {
                    return self.fail(format!(
                        "numpy array data does not match its shape {shape:?}"
                    ));
                }
                self.arena[i] = Obj::NdArray(NdArray {
                    shape,
                    descr,
                    byteorder,
                    fortran,
                    data: st[4].clone(),
                });
                Ok(())
            }
            Some(Obj::NpDtype { descr, .. }) => {
                // (version, byteorder, subarray, names, fields, elsize, alignment, flags)
                let bo = match st.as_deref().and_then(|s| s.get(1)) {
                    Some(Value::Str(b)) => b.to_string(),
                    _ => return self.fail("numpy dtype state has no byte order"),
                };
                let descr = descr.clone();
                self.arena[i] = Obj::NpDtype {
                    descr,
                    byteorder: bo,
                };
                Ok(())
            }
            Some(Obj::Object { .. }) => {
                if let Some(Obj::Object { state: s, .. }) = self.arena.get_mut(i) {
                    *s = Some(state);
                }
                Ok(())
            }
            // Dict subclasses and parameters may carry an instance __dict__; it is irrelevant.
            Some(Obj::Dict(_)) | Some(Obj::Tensor(_)) | Some(Obj::Set(_)) => Ok(()),
            _ => self.fail("BUILD on an object that has no state"),
        }
    }

    fn seq_of_len(&self, v: &Value) -> Option<usize> {
        match self.obj_ref(v) {
            Some(Obj::Tuple(t)) | Some(Obj::List(t)) => Some(t.len()),
            _ => None,
        }
    }

    fn persistent_load(&mut self, pid: Value) -> Result<Value, PickleError> {
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

    /// Runs the stream to `STOP` and returns the result.
    ///
    /// Opcodes understood: `PROTO FRAME STOP MARK POP POP_MARK DUP NONE NEWTRUE NEWFALSE
    /// BININT BININT1 BININT2 LONG1 LONG4 BINFLOAT BINUNICODE SHORT_BINUNICODE BINUNICODE8
    /// BINSTRING SHORT_BINSTRING BINBYTES SHORT_BINBYTES BINBYTES8 EMPTY_TUPLE TUPLE TUPLE1
    /// TUPLE2 TUPLE3 EMPTY_LIST LIST APPEND APPENDS EMPTY_DICT DICT SETITEM SETITEMS EMPTY_SET
    /// ADDITEMS FROZENSET GLOBAL STACK_GLOBAL REDUCE NEWOBJ NEWOBJ_EX BUILD BINPUT LONG_BINPUT
    /// MEMOIZE BINGET LONG_BINGET BINPERSID`.
    pub fn run(mut self) -> Result<Pickle, PickleError> {
        loop {
            self.op_start = self.pos;
            if self.pos >= self.data.len() {
                return self.fail("stream ends without STOP");
            }
            let op = self.u8()?;
            match op {
                0x80 => {
                    // PROTO
                    let p = self.u8()?;
                    if p > 5 {
                        return self.fail(format!("unsupported pickle protocol {p}"));
                    }
                    self.protocol = self.protocol.max(p);
                }
                0x95 => {
                    // FRAME: framing is transparent.
                    self.take(8)?;
                }
                b'.' => {
                    // STOP
                    let root = self.pop()?;
                    return Ok(Pickle {
                        arena: self.arena,
                        root,
                        globals: self.globals,
                        protocol: self.protocol,
                    });
                }
                b'(' => self.marks.push(self.stack.len()),
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.push(v);
                }
                b'N' => self.push(Value::None),
                0x88 => self.push(Value::Bool(true)),
                0x89 => self.push(Value::Bool(false)),
                b'J' => {
                    let v = i32::from_le_bytes(self.le::<4>()?);
                    self.push(Value::Int(v as i64));
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Value::Int(v as i64));
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.le::<2>()?);
                    self.push(Value::Int(v as i64));
                }
                0x8a | 0x8b => {
                    // LONG1 / LONG4
                    let n = if op == 0x8a {
                        self.u8()? as usize
                    } else {
                        let n = i32::from_le_bytes(self.le::<4>()?);
                        if n < 0 {
                            return self.fail("LONG4 with a negative length");
                        }
                        n as usize
                    };
                    let b = self.take(n)?;
                    if n == 0 {
                        self.push(Value::Int(0));
                    } else if n <= 8 {
                        let neg = b[n - 1] & 0x80 != 0;
                        let mut a = [if neg { 0xFF } else { 0 }; 8];
                        a[..n].copy_from_slice(b);
                        self.push(Value::Int(i64::from_le_bytes(a)));
                    } else {
                        self.push(Value::BigInt(b.into()));
                    }
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.le::<8>()?);
                    self.push(Value::Float(v));
                }
                b'X' => {
                    let n = self.len_u32()?;
                    let s = self.text(n)?;
                    self.push(Value::Str(s));
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let s = self.text(n)?;
                    self.push(Value::Str(s));
                }
                0x8d => {
                    let n = self.len_u64()?;
                    let s = self.text(n)?;
                    self.push(Value::Str(s));
                }
                b'T' => {
                    // BINSTRING (Python 2 str): read as latin-1 text.
                    let n = i32::from_le_bytes(self.le::<4>()?);
                    if n < 0 {
                        return self.fail("BINSTRING with a negative length");
                    }
                    let b = self.take(n as usize)?;
                    self.push(Value::Str(
                        b.iter().map(|&c| c as char).collect::<String>().into(),
                    ));
                }
                b'U' => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    self.push(Value::Str(
                        b.iter().map(|&c| c as char).collect::<String>().into(),
                    ));
                }
                b'B' => {
                    let n = self.len_u32()?;
                    let b = self.bytes(n)?;
                    self.push(Value::Bytes(b));
                }
                b'C' => {
                    let n = self.u8()? as usize;
                    let b = self.bytes(n)?;
                    self.push(Value::Bytes(b));
                }
                0x8e => {
                    let n = self.len_u64()?;
                    let b = self.bytes(n)?;
                    self.push(Value::Bytes(b));
                }
                b')' => {
                    let v = self.alloc(Obj::Tuple(Vec::new()));
                    self.push(v);
                }
                b't' => {
                    let items = self.pop_mark()?;
                    let v = self.alloc(Obj::Tuple(items));
                    self.push(v);
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    let v = self.alloc(Obj::Tuple(items));
                    self.push(v);
                }
                b']' => {
                    let v = self.alloc(Obj::List(Vec::new()));
                    self.push(v);
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    let v = self.alloc(Obj::List(items));
                    self.push(v);
                }
                b'a' => {
                    let item = self.pop()?;
                    let target = self.top()?.clone();
                    self.list_extend(&target, vec![item])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    let target = self.top()?.clone();
                    self.list_extend(&target, items)?;
                }
                b'}' => {
                    let v = self.alloc(Obj::Dict(Dict::default()));
                    self.push(v);
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    if items.len() % 2 != 0 {
                        return self.fail("DICT with an odd number of items");
                    }
                    let target = self.alloc(Obj::Dict(Dict::default()));
                    let mut it = items.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        self.dict_set(&target, k, v)?;
                    }
                    self.push(target);
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    let target = self.top()?.clone();
                    self.dict_set(&target, k, v)?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    if items.len() % 2 != 0 {
                        return self.fail("SETITEMS with an odd number of items");
                    }
                    let target = self.top()?.clone();
                    let mut it = items.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        self.dict_set(&target, k, v)?;
                    }
                }
                0x8f => {
                    let v = self.alloc(Obj::Set(Vec::new()));
                    self.push(v);
                }
                0x90 => {
                    let items = self.pop_mark()?;
                    let target = self.top()?.clone();
                    self.set_extend(&target, items)?;
                }
                0x91 => {
                    let items = self.pop_mark()?;
                    let v = self.alloc(Obj::Set(items));
                    self.push(v);
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let g = self.global(module, name)?;
                    self.push(g);
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Value::Str(m), Value::Str(n)) = (module, name) else {
                        return self.fail("STACK_GLOBAL operands are not strings");
                    };
                    let g = self.global(&m, &n)?;
                    self.push(g);
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let v = self.call(callable, args)?;
                    self.push(v);
                }
                0x81 => {
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    let v = self.newobj(cls, args)?;
                    self.push(v);
                }
                0x92 => {
                    let _kwargs = self.pop()?;
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    let v = self.newobj(cls, args)?;
                    self.push(v);
                }
                b'b' => {
                    let state = self.pop()?;
                    let target = self.top()?.clone();
                    self.build(&target, state)?;
                }
                b'q' => {
                    let i = self.u8()? as u32;
                    let v = self.top()?.clone();
                    self.memo.insert(i, v);
                }
                b'r' => {
                    let i = u32::from_le_bytes(self.le::<4>()?);
                    let v = self.top()?.clone();
                    self.memo.insert(i, v);
                }
                0x94 => {
                    let i =
                        u32::try_from(self.memo.len()).or_else(|_| self.fail("memo is full"))?;
                    let v = self.top()?.clone();
                    self.memo.insert(i, v);
                }
                b'h' | b'j' => {
                    let i = if op == b'h' {
                        self.u8()? as u32
                    } else {
                        u32::from_le_bytes(self.le::<4>()?)
                    };
                    let Some(v) = self.memo.get(&i).cloned() else {
                        return self.fail(format!("memo entry {i} is not set"));
                    };
                    self.push(v);
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let v = self.persistent_load(pid)?;
                    self.push(v);
                }
                other => {
                    return self.fail(format!(
                        "unsupported pickle opcode 0x{other:02x} ({:?})",
                        other as char
                    ))
                }
            }
        }
    }
}

fn describe_plain(v: &Value) -> String {
    match v {
        Value::Global(Global::Opaque(n)) | Value::Global(Global::Class(n)) => n.to_string(),
        Value::Global(g) => format!("{g:?}"),
        Value::Obj(_) => "an object".into(),
        Value::Str(_) => "a str".into(),
        Value::Int(_) => "an int".into(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoStorage;
    impl StorageSource for NoStorage {
        fn storage(&self, key: &str) -> Result<&[u8], String> {
            Err(format!("no storage {key}"))
        }
    }

    fn run(bytes: &[u8], policy: Policy) -> Result<Pickle, PickleError> {
        Vm::new(bytes, policy, &NoStorage, 1 << 20).run()
    }

    #[test]
    fn dict_of_ints_and_strings() {
        // {'a': 1, 'b': [300, -2]} at protocol 2
        let p = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01K\x01X\x01\x00\x00\x00bq\x02]q\x03(M,\x01J\xfe\xff\xff\xffeu.";
        let out = run(p, Policy::Tile).unwrap();
        assert_eq!(out.get(&out.root, "a"), Some(&Value::Int(1)));
        let b = out.get(&out.root, "b").unwrap();
        assert_eq!(out.seq(b).unwrap(), &[Value::Int(300), Value::Int(-2)]);
        assert_eq!(out.protocol, 2);
    }

    #[test]
    fn disallowed_global_is_named() {
        let p = b"\x80\x02cos\nsystem\nq\x00X\x02\x00\x00\x00lsq\x01\x85q\x02Rq\x03.";
        let e = run(p, Policy::Tile).unwrap_err();
        assert!(e.problem.contains("`os.system` is not allowed"), "{e}");
        // The lenient policy keeps it inert: nothing runs, the result is an opaque object.
        let out = run(p, Policy::Checkpoint).unwrap();
        let (class, _, opaque) = out.object(&out.root).unwrap();
        assert_eq!((class, opaque), ("os.system", true));
    }

    #[test]
    fn truncated_and_garbage_streams_fail_cleanly() {
        assert!(run(b"", Policy::Tile).is_err());
        assert!(run(b"\x80\x02", Policy::Tile).is_err());
        assert!(run(b"X\xff\xff\xff\xff", Policy::Tile).is_err());
        assert!(run(b"t.", Policy::Tile).is_err());
        assert!(run(b"h\x05.", Policy::Tile).is_err());
        assert!(run(b"\x01", Policy::Tile).is_err());
    }

    /// `pickle.dumps(obj, protocol)` by CPython 3.11 for
    /// `{'i': [0, 1, 255, 256, 65535, 65536, -1, -2**31, 2**31, 2**63-1, -2**63, 2**64],
    /// 'f': [0.5, -1e300], 's': 'h\u00e9llo', 'b': b'\x00\xff', 'e': b'', 't': (1, (2, 3)),
    /// 'set': {1}, 'fs': frozenset([2]), 'n': None, 'tf': [True, False],
    /// 'od': OrderedDict([('a', 1)]), 'long': 'x'*300}`.
    const CPYTHON_P2: &[&str] = &[
        "80027d71002858010000006971015d7102284b004b014bff4d00014dffff4a000001004affffffff",
        "4a000000808a0500000080008a08ffffffffffffff7f8a0800000000000000808a09000000000000",
        "0000016558010000006671035d710428473fe000000000000047fe37e43c8800759c655801000000",
        "737105580600000068c3a96c6c6f71065801000000627107635f636f646563730a656e636f64650a",
        "7108580300000000c3bf710958060000006c6174696e31710a86710b52710c580100000065710d63",
        "5f5f6275696c74696e5f5f0a62797465730a710e2952710f58010000007471104b014b024b038671",
        "1186711258030000007365747113635f5f6275696c74696e5f5f0a7365740a71145d71154b016185",
        "7116527117580200000066737118635f5f6275696c74696e5f5f0a66726f7a656e7365740a71195d",
        "711a4b026185711b52711c58010000006e711d4e58020000007466711e5d711f2888896558020000",
        "006f64712063636f6c6c656374696f6e730a4f726465726564446963740a71212952712258010000",
        "006171234b017358040000006c6f6e677124582c0100007878787878787878787878787878787878",
        "78787878787878787878787878787878787878787878787878787878787878787878787878787878",
        "78787878787878787878787878787878787878787878787878787878787878787878787878787878",
        "78787878787878787878787878787878787878787878787878787878787878787878787878787878",
        "78787878787878787878787878787878787878787878787878787878787878787878787878787878",
        "78787878787878787878787878787878787878787878787878787878787878787878787878787878",
        "78787878787878787878787878787878787878787878787878787878787878787878787878787878",
        "78787878787878787878787878787878787878787878787878787878787878787878787878787878",
        "7878787125752e",
    ];
    const CPYTHON_P4: &[&str] = &[
        "8004951f020000000000007d94288c0169945d94284b004b014bff4d00014dffff4a000001004aff",
        "ffffff4a000000808a0500000080008a08ffffffffffffff7f8a0800000000000000808a09000000",
        "000000000001658c0166945d9428473fe000000000000047fe37e43c8800759c658c0173948c0668",
        "c3a96c6c6f948c016294430200ff948c0165944300948c0174944b014b024b03869486948c037365",
        "74948f94284b01908c02667394284b0291948c016e944e8c027466945d94288889658c026f64948c",
        "0b636f6c6c656374696f6e73948c0b4f726465726564446963749493942952948c0161944b01738c",
        "046c6f6e6794582c0100007878787878787878787878787878787878787878787878787878787878",
        "78787878787878787878787878787878787878787878787878787878787878787878787878787878",
        "78787878787878787878787878787878787878787878787878787878787878787878787878787878",
        "78787878787878787878787878787878787878787878787878787878787878787878787878787878",
        "78787878787878787878787878787878787878787878787878787878787878787878787878787878",
        "78787878787878787878787878787878787878787878787878787878787878787878787878787878",
        "78787878787878787878787878787878787878787878787878787878787878787878787878787878",
        "7878787878787878787878787878787878787878787878787878787878787894752e",
    ];

    fn unhex(parts: &[&str]) -> Vec<u8> {
        let h: String = parts.concat();
        (0..h.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn cpython_pickles_of_protocols_2_and_4() {
        for (proto, hex) in [(2u8, CPYTHON_P2), (4, CPYTHON_P4)] {
            let out = run(&unhex(hex), Policy::Checkpoint).unwrap();
            assert_eq!(out.protocol, proto);
            let r = &out.root;
            let ints: Vec<Value> = out.seq(out.get(r, "i").unwrap()).unwrap().to_vec();
            let want = [
                0i64,
                1,
                255,
                256,
                65535,
                65536,
                -1,
                -(1 << 31),
                1 << 31,
                i64::MAX,
                i64::MIN,
            ];
            for (got, w) in ints.iter().zip(want) {
                assert_eq!(*got, Value::Int(w), "protocol {proto}");
            }
            assert!(matches!(&ints[11], Value::BigInt(b) if b.len() == 9));
            assert_eq!(
                out.seq(out.get(r, "f").unwrap()).unwrap(),
                &[Value::Float(0.5), Value::Float(-1e300)]
            );
            assert_eq!(out.get(r, "s"), Some(&Value::Str("h\u{e9}llo".into())));
            assert_eq!(out.get(r, "b"), Some(&Value::Bytes(vec![0u8, 0xff].into())));
            assert_eq!(out.get(r, "e"), Some(&Value::Bytes(Vec::new().into())));
            let t = out.seq(out.get(r, "t").unwrap()).unwrap();
            assert_eq!(t[0], Value::Int(1));
            assert_eq!(out.seq(&t[1]).unwrap(), &[Value::Int(2), Value::Int(3)]);
            for (k, v) in [("set", 1), ("fs", 2)] {
                match out.obj(out.get(r, k).unwrap()) {
                    Some(Obj::Set(s)) => assert_eq!(s, &[Value::Int(v)], "{k}"),
                    other => panic!("{k}: {other:?}"),
                }
            }
            assert_eq!(out.get(r, "n"), Some(&Value::None));
            assert_eq!(
                out.seq(out.get(r, "tf").unwrap()).unwrap(),
                &[Value::Bool(true), Value::Bool(false)]
            );
            let od = out.get(r, "od").unwrap();
            assert_eq!(out.get(od, "a"), Some(&Value::Int(1)));
            assert!(matches!(out.get(r, "long"), Some(Value::Str(s)) if s.len() == 300));
        }
    }

    #[test]
    fn half_floats_convert() {
        assert_eq!(f16_to_f32(0x3C00), 1.0);
        assert_eq!(f16_to_f32(0xC000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 5.960_464_5e-8);
        assert!(f16_to_f32(0x7E00).is_nan());
    }
}
