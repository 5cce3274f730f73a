//! PyG `HeteroData` tiles (`processed/*.pt`, written by the reference's `torch.save`) and
//! their conversion to [`Tile`].
//!
//! Quirks of real Segger tiles that the conversion handles:
//!
//! * `bd.x` holds one all-NaN row per polygon *vertex*, not per boundary (a bug of the
//!   reference). Like PyG, the boundary count comes from `bd.pos`; features whose row count
//!   differs from it are unusable and are replaced by zeros of the same width, which is what the
//!   reference model effectively sees (`nan_to_num`). Remaining NaNs are replaced by 0 too.
//!   Both cases log a warning.
//! * An empty `tx__belongs__bd.edge_index` may be stored 1-D with shape `[0]`.
//! * A one-edge `edge_label_index` may be stored 1-D with shape `[2]` (and its `edge_label`
//!   0-D).
//!
//! Tile bounds come from the file name `tiles_x=X_y=Y_w=W_h=H.pt`. The margin is not recorded
//! anywhere in a Segger dataset; [`SEGGER_DEFAULT_MARGIN`] (the reference's default, 10 µm) is
//! assumed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use segger_graph::{
    EdgeStore, EdgeType, HeteroGraph, LabelStore, NodeFeatures, NodeIds, NodeStore,
};

use super::pickle::{Obj, Pickle, Policy, Tensor, Value};
use super::{parse_torch, TorchArchive};
use crate::error::DataError;
use crate::tile::{Tile, TileBounds};

/// The margin (µm) assumed for tiles converted from Segger: the default `margin` of the
/// reference's `STSampleParquet` / `STInMemoryDataset`, which the `.pt` files do not record.
pub const SEGGER_DEFAULT_MARGIN: f64 = 10.0;

/// Width of the boundary features Segger computes (area, convexity, elongation, circularity),
/// used when `bd.x` is missing.
const BD_FEATURES: usize = 4;

/// Boundary feature widths above this are refused when `bd.x` must be rebuilt as zeros (a
/// bound on what a damaged file can make the reader allocate).
const MAX_BD_FEATURES: usize = 4096;

/// One attribute of a PyG store.
#[derive(Debug, Clone, PartialEq)]
pub enum PygValue {
    /// A tensor.
    Tensor(Tensor),
    /// A numpy object array (or list) of strings, e.g. `bd.id`.
    Strings(Vec<String>),
    /// A Python int (e.g. an explicit `num_nodes`).
    Int(i64),
    /// A Python float.
    Float(f64),
    /// Anything else, described.
    Other(String),
}

/// A `HeteroData` object read from a `.pt` file, flattened to `store.attr` entries.
#[derive(Debug, Clone, PartialEq)]
pub struct PygHeteroData {
    /// Every attribute, keyed `tx.pos`, `tx__neighbors__tx.edge_index`, ...
    pub entries: BTreeMap<String, PygValue>,
    /// Node types, in the file's order.
    pub node_types: Vec<String>,
    /// Edge types as `src__rel__dst`, in the file's order.
    pub edge_types: Vec<String>,
    /// The archive's zip member names.
    pub members: Vec<String>,
    /// The pickle globals the file names.
    pub globals: BTreeSet<String>,
    /// The pickle protocol.
    pub protocol: u8,
}

impl PygHeteroData {
    /// The tensor stored under `key`, if it is one.
    pub fn tensor(&self, key: &str) -> Option<&Tensor> {
        match self.entries.get(key) {
            Some(PygValue::Tensor(t)) => Some(t),
            _ => None,
        }
    }
}

fn store_entries(
    path: &Path,
    p: &Pickle,
    store: &Value,
    name: &str,
    out: &mut BTreeMap<String, PygValue>,
) -> Result<(), DataError> {
    let bad = |problem: String| DataError::format(path, name, problem);
    let Some((class, state, _)) = p.object(store) else {
        return Err(bad(format!(
            "store is a {}, expected a PyG storage",
            p.describe(store)
        )));
    };
    let state = state.ok_or_else(|| bad(format!("{class} has no state")))?;
    let mapping = p
        .get(state, "_mapping")
        .ok_or_else(|| bad(format!("{class} state has no _mapping")))?;
    let d = p
        .dict(mapping)
        .ok_or_else(|| bad(format!("_mapping is a {}", p.describe(mapping))))?;
    for (k, v) in &d.items {
        let Value::Str(attr) = k else {
            return Err(bad(format!(
                "_mapping has a non-string key ({})",
                p.describe(k)
            )));
        };
        let value = match v {
            Value::Int(i) => PygValue::Int(*i),
            Value::Float(f) => PygValue::Float(*f),
            _ => match p.obj(v) {
                Some(Obj::Tensor(t)) => PygValue::Tensor(t.clone()),
                _ => match p.strings(v) {
                    Some(s) => PygValue::Strings(s),
                    None => PygValue::Other(p.describe(v)),
                },
            },
        };
        out.insert(format!("{name}.{attr}"), value);
    }
    Ok(())
}

/// Extracts the `HeteroData` of an unpickled tile archive.
pub fn hetero_from_archive(path: &Path, a: TorchArchive) -> Result<PygHeteroData, DataError> {
    let p = &a.pickle;
    let root = &p.root;
    let err = |field: &str, problem: String| DataError::format(path, field, problem);
    let state = match p.object(root) {
        Some(("torch_geometric.data.hetero_data.HeteroData", Some(s), _)) => s,
        _ => {
            return Err(err(
                "data.pkl",
                format!(
                    "the pickled object is a {}, expected a torch_geometric HeteroData",
                    p.describe(root)
                ),
            ))
        }
    };
    let mut entries = BTreeMap::new();
    let mut node_types = Vec::new();
    let mut edge_types = Vec::new();
    if let Some(nodes) = p.get(state, "_node_store_dict") {
        let d = p.dict(nodes).ok_or_else(|| {
            err(
                "_node_store_dict",
                format!("is a {}, expected a dict", p.describe(nodes)),
            )
        })?;
        for (k, store) in &d.items {
            let Value::Str(name) = k else {
                return Err(err(
                    "_node_store_dict",
                    format!("has a non-string key ({})", p.describe(k)),
                ));
            };
            store_entries(path, p, store, name, &mut entries)?;
            node_types.push(name.to_string());
        }
    }
    if let Some(edges) = p.get(state, "_edge_store_dict") {
        let d = p.dict(edges).ok_or_else(|| {
            err(
                "_edge_store_dict",
                format!("is a {}, expected a dict", p.describe(edges)),
            )
        })?;
        for (k, store) in &d.items {
            let name = match p.seq(k) {
                Some([Value::Str(s), Value::Str(r), Value::Str(t)]) => format!("{s}__{r}__{t}"),
                _ => {
                    return Err(err(
                        "_edge_store_dict",
                        format!(
                            "has a key that is not a (src, rel, dst) tuple ({})",
                            p.describe(k)
                        ),
                    ))
                }
            };
            store_entries(path, p, store, &name, &mut entries)?;
            edge_types.push(name);
        }
    }
    Ok(PygHeteroData {
        entries,
        node_types,
        edge_types,
        members: a.members,
        globals: a.pickle.globals.clone(),
        protocol: a.pickle.protocol,
    })
}

/// Parses the bytes of a PyG `HeteroData` `.pt` file; `path` names it in errors.
pub fn parse_pyg(path: &Path, bytes: &[u8]) -> Result<PygHeteroData, DataError> {
    let a = parse_torch(path, bytes, Policy::Tile)?;
    hetero_from_archive(path, a)
}

/// Reads a PyG `HeteroData` `.pt` file.
pub fn read_pyg(path: &Path) -> Result<PygHeteroData, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    parse_pyg(path, &bytes)
}

/// True when `path` has the `.pt` extension of PyG tiles.
pub fn is_pt_file(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "pt")
}

/// True when `path` is a `.pt` file named like a Segger tile: the reference's own pattern
/// `tiles_x*_y*_*_*.pt`. Other `.pt` files of a `processed/` directory (PyG's
/// `pre_transform.pt` and `pre_filter.pt`) are not tiles.
pub fn is_pt_tile(path: &Path) -> bool {
    is_pt_file(path)
        && path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| glob_match(b"tiles_x*_y*_*_*.pt", n.as_bytes()))
}

/// Shell-style matching where `*` matches any run of bytes (linear-time two-pointer scan).
fn glob_match(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, n));
            p += 1;
        } else if p < pattern.len() && pattern[p] == name[n] {
            p += 1;
            n += 1;
        } else if let Some((sp, sn)) = star {
            p = sp + 1;
            n = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Tile bounds from a Segger tile file name `tiles_x=X_y=Y_w=W_h=H.pt` (any extension), with
/// the margin set to [`SEGGER_DEFAULT_MARGIN`]. `None` when the name does not have that form.
pub fn bounds_from_file_name(path: &Path) -> Option<TileBounds> {
    let stem = path.file_stem()?.to_str()?;
    let rest = stem.strip_prefix("tiles_")?;
    let mut vals = [0f64; 4];
    let mut parts = rest.split('_');
    for (slot, key) in vals.iter_mut().zip(["x=", "y=", "w=", "h="]) {
        *slot = parts.next()?.strip_prefix(key)?.parse().ok()?;
        if !slot.is_finite() {
            return None;
        }
    }
    if parts.next().is_some() {
        return None;
    }
    Some(TileBounds {
        x: vals[0],
        y: vals[1],
        width: vals[2],
        height: vals[3],
        margin: SEGGER_DEFAULT_MARGIN,
    })
}

/// The result of converting a PyG tile: the tile plus what had to be repaired.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvertedTile {
    /// The tile.
    pub tile: Tile,
    /// True when `bd.x` was unusable (wrong row count, NaN or missing) and was replaced.
    pub bd_x_replaced: bool,
    /// Attributes that were present but not used (e.g. `tx.batch`).
    pub ignored: Vec<String>,
}

struct Conv<'a> {
    path: &'a Path,
    h: &'a PygHeteroData,
}

impl Conv<'_> {
    fn err(&self, field: &str, problem: impl Into<String>) -> DataError {
        DataError::format(self.path, field, problem)
    }

    fn tensor(&self, key: &str) -> Result<Option<&Tensor>, DataError> {
        match self.h.entries.get(key) {
            None => Ok(None),
            Some(PygValue::Tensor(t)) => Ok(Some(t)),
            Some(other) => Err(self.err(key, format!("is {other:?}, expected a tensor"))),
        }
    }

    fn require(&self, key: &str) -> Result<&Tensor, DataError> {
        self.tensor(key)?
            .ok_or_else(|| self.err(key, "required tensor is missing"))
    }

    /// A float matrix `[N, C]`, row-major f32.
    fn matrix(&self, key: &str, t: &Tensor) -> Result<(Vec<f32>, usize), DataError> {
        if t.shape.len() != 2 {
            return Err(self.err(key, format!("shape is {:?}, expected [N, C]", t.shape)));
        }
        if !t.dtype.is_float() {
            return Err(self.err(
                key,
                format!("dtype is {}, expected a float type", t.dtype.name()),
            ));
        }
        Ok((t.to_f32(), t.shape[1]))
    }

    fn ints(&self, key: &str, t: &Tensor) -> Result<Vec<i64>, DataError> {
        if t.dtype.is_float() {
            return Err(self.err(
                key,
                format!("dtype is {}, expected an integer type", t.dtype.name()),
            ));
        }
        Ok(t.to_i64())
    }

    /// An index pair tensor `[2, E]`, also accepting the 1-D forms of real tiles: `[0]` for no
    /// edges and `[2]` for one edge.
    fn pairs(&self, key: &str, t: &Tensor) -> Result<(Vec<i64>, Vec<i64>), DataError> {
        let v = self.ints(key, t)?;
        match t.shape.as_slice() {
            [2, e] => Ok((v[..*e].to_vec(), v[*e..].to_vec())),
            [0] => Ok((Vec::new(), Vec::new())),
            [2] => Ok((vec![v[0]], vec![v[1]])),
            s => Err(self.err(
                key,
                format!("shape is {s:?}, expected [2, E] (or 1-D [0] / [2])"),
            )),
        }
    }

    /// The transcript node store: `tx.pos`, `tx.x` (int tokens `[N]` or float embeddings
    /// `[N, F]`) and the optional `tx.id`.
    fn tx_store(&self) -> Result<NodeStore, DataError> {
        let tpos = self.require("tx.pos")?;
        let (tx_pos, tx_dim) = self.matrix("tx.pos", tpos)?;
        let tx = self.require("tx.x")?;
        let tx_x = match (tx.dtype.is_float(), tx.shape.len()) {
            (false, 1) => NodeFeatures::Tokens(tx.to_i64()),
            (true, 2) => NodeFeatures::Dense {
                width: tx.shape[1],
                values: tx.to_f32(),
            },
            _ => {
                return Err(self.err(
                    "tx.x",
                    format!(
                        "{} {:?} is neither int tokens [N] nor float embeddings [N, F]",
                        tx.dtype.name(),
                        tx.shape
                    ),
                ))
            }
        };
        let tx_ids = match self.h.entries.get("tx.id") {
            None => NodeIds::None,
            Some(PygValue::Tensor(t)) if t.shape.len() == 1 => NodeIds::Int(self.ints("tx.id", t)?),
            Some(other) => {
                return Err(self.err(
                    "tx.id",
                    format!("is {}, expected an integer tensor [N]", short(other)),
                ))
            }
        };
        Ok(NodeStore {
            x: tx_x,
            pos: tx_pos,
            pos_dim: tx_dim,
            ids: tx_ids,
        })
    }

    /// The boundary node store, and whether `bd.x` was replaced. The node count comes from
    /// `bd.pos`, like PyG.
    fn bd_store(&self) -> Result<(NodeStore, bool), DataError> {
        let bpos = self.require("bd.pos")?;
        let (bd_pos, bd_dim) = self.matrix("bd.pos", bpos)?;
        let n_bd = bpos.shape[0];
        let (bd_x, bd_w, bd_x_replaced) = self.bd_features(n_bd)?;
        let bd_ids = match self.h.entries.get("bd.id") {
            None => NodeIds::None,
            Some(PygValue::Strings(s)) => NodeIds::Str(s.clone()),
            Some(other) => {
                return Err(self.err(
                    "bd.id",
                    format!("is {}, expected an array of strings", short(other)),
                ))
            }
        };
        let store = NodeStore {
            x: NodeFeatures::Dense {
                values: bd_x,
                width: bd_w,
            },
            pos: bd_pos,
            pos_dim: bd_dim,
            ids: bd_ids,
        };
        Ok((store, bd_x_replaced))
    }

    /// The boundary features `bd.x` of `n_bd` boundaries as (values, width, replaced): zeros
    /// when it is missing or has the wrong row count (the reference's one-row-per-vertex bug),
    /// and non-finite values replaced by 0.
    fn bd_features(&self, n_bd: usize) -> Result<(Vec<f32>, usize, bool), DataError> {
        let path = self.path;
        let mut bd_x_replaced = false;
        let (mut bd_x, bd_w) = match self.tensor("bd.x")? {
            None => {
                tracing::warn!(
                    "{}: bd.x is missing; using zero boundary features [{n_bd}, {BD_FEATURES}]",
                    path.display()
                );
                bd_x_replaced = true;
                (vec![0.0; n_bd * BD_FEATURES], BD_FEATURES)
            }
            Some(t) => {
                let (v, w) = self.matrix("bd.x", t)?;
                if w == 0 {
                    return Err(self.err("bd.x", format!("shape {:?} has no columns", t.shape)));
                }
                if t.shape[0] != n_bd && w > MAX_BD_FEATURES {
                    return Err(self.err(
                        "bd.x",
                        format!(
                            "shape {:?}: {w} feature columns is not plausible (at most \
                             {MAX_BD_FEATURES})",
                            t.shape
                        ),
                    ));
                }
                if t.shape[0] != n_bd {
                    let nan = v.iter().filter(|x| x.is_nan()).count();
                    quirk_warning(format_args!(
                        "{}: bd.x has {} rows ({nan} NaN values) but bd.pos has {n_bd} boundaries \
                         (the reference's one-row-per-polygon-vertex bug); the features are \
                         unusable and are replaced by zeros, as the reference model's nan_to_num \
                         effectively does",
                        path.display(),
                        t.shape[0]
                    ));
                    bd_x_replaced = true;
                    (vec![0.0; n_bd * w], w)
                } else {
                    (v, w)
                }
            }
        };
        let nan = bd_x.iter().filter(|x| !x.is_finite()).count();
        if nan > 0 {
            quirk_warning(format_args!(
                "{}: bd.x has {nan} non-finite values; replaced by 0 (as nan_to_num would)",
                path.display()
            ));
            bd_x_replaced = true;
            for x in bd_x.iter_mut().filter(|x| !x.is_finite()) {
                *x = 0.0;
            }
        }
        Ok((bd_x, bd_w, bd_x_replaced))
    }

    /// The edges of relation `key`: its `edge_index` and, when present, its
    /// `edge_label_index` and `edge_label` (both or neither). Their names are added to `used`.
    fn relation(
        &self,
        key: &str,
        used: &mut BTreeSet<String>,
    ) -> Result<(EdgeType, EdgeStore), DataError> {
        let Some(et) = EdgeType::parse(key) else {
            return Err(self.err(
                key,
                "relation is not a Segger src__rel__dst over node types tx and bd",
            ));
        };
        let ei = format!("{key}.edge_index");
        let li = format!("{key}.edge_label_index");
        let ln = format!("{key}.edge_label");
        let (src, dst) = self.pairs(&ei, self.require(&ei)?)?;
        let mut es = EdgeStore::new(src, dst);
        match (self.tensor(&li)?, self.tensor(&ln)?) {
            (None, None) => {}
            (Some(lt), Some(l)) => {
                let (ls, ld) = self.pairs(&li, lt)?;
                if l.shape.len() > 1 {
                    return Err(self.err(&ln, format!("shape is {:?}, expected [L]", l.shape)));
                }
                es.labels = Some(LabelStore {
                    src: ls,
                    dst: ld,
                    label: l.to_f32(),
                });
            }
            (Some(_), None) => {
                return Err(self.err(
                    &ln,
                    "required tensor is missing (edge_label_index is present)",
                ))
            }
            (None, Some(_)) => {
                return Err(self.err(&li, "required tensor is missing (edge_label is present)"))
            }
        }
        used.extend([ei, li, ln]);
        Ok((et, es))
    }
}

/// Converts a `HeteroData` to a [`Tile`], repairing the quirks listed in the module docs, and
/// validates the graph (`vocab` bounds the token ids when given).
pub fn pyg_to_tile(
    path: &Path,
    h: &PygHeteroData,
    vocab: Option<usize>,
) -> Result<ConvertedTile, DataError> {
    let c = Conv { path, h };
    let mut used: BTreeSet<String> = BTreeSet::new();

    let tx = c.tx_store()?;
    used.extend(["tx.pos", "tx.x", "tx.id"].map(String::from));
    let (bd, bd_x_replaced) = c.bd_store()?;
    used.extend(["bd.pos", "bd.x", "bd.id"].map(String::from));

    // Relations.
    let mut edges = BTreeMap::new();
    for key in &h.edge_types {
        let (et, es) = c.relation(key, &mut used)?;
        edges.insert(et, es);
    }
    let ignored: Vec<String> = h
        .entries
        .keys()
        .filter(|k| !used.contains(*k))
        .cloned()
        .collect();
    if !ignored.is_empty() {
        tracing::debug!("{}: ignoring attributes {ignored:?}", path.display());
    }

    let graph = HeteroGraph { tx, bd, edges };
    graph.validate(vocab).map_err(|source| DataError::Graph {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(ConvertedTile {
        tile: Tile {
            graph,
            bounds: bounds_from_file_name(path),
        },
        bd_x_replaced,
        ignored,
    })
}

/// Logs a repaired quirk: the first one of the process as a warning (real datasets have it in
/// every tile), the others at debug level.
fn quirk_warning(msg: std::fmt::Arguments<'_>) {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        tracing::warn!("{msg} (further tiles with unusable bd.x are logged at debug level)");
    } else {
        tracing::debug!("{msg}");
    }
}

fn short(v: &PygValue) -> String {
    match v {
        PygValue::Tensor(t) => format!("a {} tensor {:?}", t.dtype.name(), t.shape),
        PygValue::Strings(s) => format!("{} strings", s.len()),
        PygValue::Int(i) => format!("the int {i}"),
        PygValue::Float(f) => format!("the float {f}"),
        PygValue::Other(d) => d.clone(),
    }
}

/// Parses a PyG `.pt` tile from bytes and converts it; `path` names it in errors and gives the
/// bounds.
pub fn parse_pt_tile(
    path: &Path,
    bytes: &[u8],
    vocab: Option<usize>,
) -> Result<ConvertedTile, DataError> {
    let h = parse_pyg(path, bytes)?;
    pyg_to_tile(path, &h, vocab)
}

/// Reads a PyG `.pt` tile as a [`Tile`] (see the module docs for the repairs it makes).
pub fn read_pt_tile(path: &Path, vocab: Option<usize>) -> Result<Tile, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    Ok(parse_pt_tile(path, &bytes, vocab)?.tile)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_from_segger_names() {
        let b = bounds_from_file_name(Path::new("a/tiles_x=2247_y=2199_w=33_h=35.pt")).unwrap();
        assert_eq!(
            (b.x, b.y, b.width, b.height, b.margin),
            (2247.0, 2199.0, 33.0, 35.0, 10.0)
        );
        assert!(bounds_from_file_name(Path::new("tiles_x=1_y=2_w=3.pt")).is_none());
        assert!(bounds_from_file_name(Path::new("tiles_x=1_y=2_w=3_h=4_z=5.pt")).is_none());
        assert!(bounds_from_file_name(Path::new("other.pt")).is_none());
    }

    #[test]
    fn tile_names_follow_the_reference_glob() {
        for yes in ["tiles_x=2247_y=2199_w=33_h=35.pt", "tiles_x1_y2_3_4.pt"] {
            assert!(is_pt_tile(Path::new(yes)), "{yes}");
        }
        for no in [
            "pre_transform.pt",
            "pre_filter.pt",
            "tiles_x=1_y=2.pt",
            "tiles_x=2247_y=2199_w=33_h=35.safetensors",
        ] {
            assert!(!is_pt_tile(Path::new(no)), "{no}");
        }
    }
}
