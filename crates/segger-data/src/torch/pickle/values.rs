//! The value model of the interpreter: stack values ([`Value`]), the arena objects they point
//! to ([`Obj`]: tuples, lists, dicts, sets, data-class instances, storages, tensors and numpy
//! arrays), insertion-ordered dicts ([`Dict`]) and the hashable keys that index them.

use std::collections::HashMap;
use std::rc::Rc;

use super::{DType, Global, Tensor};

/// A value on the stack or in a container. Compound values live in the
/// [`Pickle`](super::Pickle) arena.
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
    pub(super) index: HashMap<Key, usize>,
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
pub(super) enum Key {
    None,
    Int(i64),
    Float(u64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    Global(String),
    Tuple(Vec<Key>),
    Id(usize),
}
