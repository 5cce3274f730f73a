//! The allow-list of globals: the callables and classes a pickle may name ([`Global`]), the
//! [`Policy`] that decides which are allowed, and how a `module.name` pair from `GLOBAL` or
//! `STACK_GLOBAL` resolves to one of them (or to an error, or to an inert placeholder).

use std::rc::Rc;

use super::{DType, PickleError, StorageSource, Value, Vm};

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
    /// "calling" it yields an [`Obj::Object`](super::Obj::Object) flagged opaque.
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

impl<'a, S: StorageSource> Vm<'a, S> {
    pub(super) fn global(&mut self, module: &str, name: &str) -> Result<Value, PickleError> {
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
}
