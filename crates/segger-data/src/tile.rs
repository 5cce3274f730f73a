//! The `segger-tile/1` format: one safetensors file per tile.
//!
//! | tensor | dtype | shape |
//! |---|---|---|
//! | `tx.x` | I64 / F32 | `[N_tx]` tokens or `[N_tx, F]` embeddings |
//! | `tx.pos` | F32 | `[N_tx, 2 or 3]` |
//! | `tx.id` | I64 | `[N_tx]` |
//! | `bd.x` | F32 | `[N_bd, 4]` |
//! | `bd.pos` | F32 | `[N_bd, 2]` |
//! | `{rel}.edge_index` | I64 | `[2, E]` |
//! | `tx__belongs__bd.edge_label_index` | I64 | `[2, L]` |
//! | `tx__belongs__bd.edge_label` | F32 | `[L]` |
//!
//! Header metadata: `format` = `segger-tile/1`, `bd.id` (JSON array of strings) and `tile`
//! (JSON object with `x`, `y`, `width`, `height`, `margin`).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use segger_graph::{
    EdgeStore, EdgeType, HeteroGraph, LabelStore, NodeFeatures, NodeIds, NodeStore, NodeType,
    NEIGHBORS_BD, NEIGHBORS_TX,
};
use serde::{Deserialize, Serialize};

use crate::error::DataError;

/// The value of the `format` metadata key.
pub const TILE_FORMAT: &str = "segger-tile/1";

/// Spatial extent of a tile, in micrometres.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TileBounds {
    /// Left edge of the tile's core.
    pub x: f64,
    /// Bottom edge of the tile's core.
    pub y: f64,
    /// Width of the core.
    pub width: f64,
    /// Height of the core.
    pub height: f64,
    /// Context margin added around the core.
    #[serde(default)]
    pub margin: f64,
}

impl TileBounds {
    /// The file name the format prescribes: `tiles_x{X}_y{Y}_{W}_{H}.safetensors`.
    pub fn file_name(&self) -> String {
        format!(
            "tiles_x{}_y{}_{}_{}.safetensors",
            self.x.floor() as i64,
            self.y.floor() as i64,
            self.width.round() as i64,
            self.height.round() as i64
        )
    }
}

/// One tile: its graph and its bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct Tile {
    /// The heterogeneous graph (boundary ids are in `graph.bd.ids`).
    pub graph: HeteroGraph,
    /// Where the tile lies, when known.
    pub bounds: Option<TileBounds>,
}

struct Reader<'a> {
    path: &'a Path,
    st: SafeTensors<'a>,
}

/// The two rows of a `[2, E]` index tensor (an edge index or a label index).
type PairRows = (Vec<i64>, Vec<i64>);

impl<'a> Reader<'a> {
    fn get(&self, name: &str) -> Option<TensorView<'a>> {
        self.st.tensor(name).ok()
    }

    fn require(&self, name: &str) -> Result<TensorView<'a>, DataError> {
        self.get(name)
            .ok_or_else(|| DataError::format(self.path, name, "required tensor is missing"))
    }

    fn err(&self, name: &str, problem: impl Into<String>) -> DataError {
        DataError::format(self.path, name, problem)
    }

    fn check_dtype(&self, name: &str, v: &TensorView<'_>, want: Dtype) -> Result<(), DataError> {
        if v.dtype() != want {
            return Err(self.err(
                name,
                format!("dtype is {:?}, expected {:?}", v.dtype(), want),
            ));
        }
        Ok(())
    }

    fn f32s(&self, name: &str, v: &TensorView<'_>) -> Result<Vec<f32>, DataError> {
        self.check_dtype(name, v, Dtype::F32)?;
        Ok(v.data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect())
    }

    fn i64s(&self, name: &str, v: &TensorView<'_>) -> Result<Vec<i64>, DataError> {
        self.check_dtype(name, v, Dtype::I64)?;
        Ok(v.data()
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
            .collect())
    }

    fn matrix_f32(
        &self,
        name: &str,
        cols: Option<&[usize]>,
    ) -> Result<(Vec<f32>, usize), DataError> {
        let v = self.require(name)?;
        let shape = v.shape().to_vec();
        if shape.len() != 2 {
            return Err(self.err(
                name,
                format!("rank is {} (shape {shape:?}), expected 2", shape.len()),
            ));
        }
        if let Some(c) = cols {
            if !c.contains(&shape[1]) {
                return Err(self.err(
                    name,
                    format!(
                        "shape {shape:?} has {} columns, expected one of {c:?}",
                        shape[1]
                    ),
                ));
            }
        }
        Ok((self.f32s(name, &v)?, shape[1]))
    }

    fn pair_rows(&self, name: &str) -> Result<Option<PairRows>, DataError> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        let shape = v.shape().to_vec();
        if shape.len() != 2 || shape[0] != 2 {
            return Err(self.err(name, format!("shape is {shape:?}, expected [2, E]")));
        }
        let all = self.i64s(name, &v)?;
        let e = shape[1];
        Ok(Some((all[..e].to_vec(), all[e..].to_vec())))
    }

    /// The transcript node store: `tx.pos`, `tx.x` (I64 tokens `[N]` or F32 embeddings
    /// `[N, F]`) and the optional `tx.id`.
    fn tx_store(&self) -> Result<NodeStore, DataError> {
        let (tx_pos, tx_dim) = self.matrix_f32("tx.pos", Some(&[2, 3]))?;
        let txv = self.require("tx.x")?;
        let tx_x = match (txv.dtype(), txv.shape().len()) {
            (Dtype::I64, 1) => NodeFeatures::Tokens(self.i64s("tx.x", &txv)?),
            (Dtype::F32, 2) => NodeFeatures::Dense {
                width: txv.shape()[1],
                values: self.f32s("tx.x", &txv)?,
            },
            (Dtype::I64, n) | (Dtype::F32, n) => {
                return Err(self.err(
                    "tx.x",
                    format!(
                        "rank {n} (shape {:?}) does not fit its dtype {:?}: expected I64 [N] or F32 [N, F]",
                        txv.shape(),
                        txv.dtype()
                    ),
                ))
            }
            (d, _) => {
                return Err(self.err(
                    "tx.x",
                    format!("dtype is {d:?}, expected I64 tokens or F32 embeddings"),
                ))
            }
        };
        let tx_ids = match self.get("tx.id") {
            None => NodeIds::None,
            Some(v) => {
                if v.shape().len() != 1 {
                    return Err(self.err(
                        "tx.id",
                        format!(
                            "rank is {} (shape {:?}), expected 1",
                            v.shape().len(),
                            v.shape()
                        ),
                    ));
                }
                NodeIds::Int(self.i64s("tx.id", &v)?)
            }
        };
        Ok(NodeStore {
            x: tx_x,
            pos: tx_pos,
            pos_dim: tx_dim,
            ids: tx_ids,
        })
    }

    /// The boundary node store: `bd.pos`, `bd.x` and the ids from the `bd.id` metadata key
    /// (`md`).
    fn bd_store(&self, md: &HashMap<String, String>) -> Result<NodeStore, DataError> {
        let (bd_pos, bd_dim) = self.matrix_f32("bd.pos", Some(&[2, 3]))?;
        let (bd_x, bd_w) = self.matrix_f32("bd.x", None)?;
        let bd_ids = match md.get("bd.id") {
            None => NodeIds::None,
            Some(s) => NodeIds::Str(serde_json::from_str::<Vec<String>>(s).map_err(|e| {
                self.err(
                    "bd.id",
                    format!("metadata is not a JSON array of strings ({e})"),
                )
            })?),
        };
        Ok(NodeStore {
            x: NodeFeatures::Dense {
                values: bd_x,
                width: bd_w,
            },
            pos: bd_pos,
            pos_dim: bd_dim,
            ids: bd_ids,
        })
    }

    /// The tile's bounds from the `tile` metadata key (`md`), when present, checked to have a
    /// core of positive, finite extent.
    fn bounds(&self, md: &HashMap<String, String>) -> Result<Option<TileBounds>, DataError> {
        let bounds = match md.get("tile") {
            None => None,
            Some(s) => Some(serde_json::from_str::<TileBounds>(s).map_err(|e| {
                self.err(
                    "tile",
                    format!("metadata is not a valid JSON tile object ({e})"),
                )
            })?),
        };
        if let Some(b) = &bounds {
            // Prediction keeps the transcripts inside the core: a core of no extent would drop
            // every transcript of the tile.
            let finite = [b.x, b.y, b.width, b.height, b.margin]
                .iter()
                .all(|v| v.is_finite());
            if !finite || b.width <= 0.0 || b.height <= 0.0 || b.margin < 0.0 {
                return Err(self.err(
                    "tile",
                    format!(
                        "the core must have a positive, finite width and height and a margin ≥ 0, got x {} y {} width {} height {} margin {}",
                        b.x, b.y, b.width, b.height, b.margin
                    ),
                ));
            }
        }
        Ok(bounds)
    }

    /// The relations among the (sorted) tensor `names`: the two neighbour relations are
    /// required; each relation has an edge index and optionally both label tensors.
    fn relations(&self, names: &[&str]) -> Result<BTreeMap<EdgeType, EdgeStore>, DataError> {
        let mut edges = BTreeMap::new();
        let rels: Vec<String> = names
            .iter()
            .filter_map(|n| n.rsplit_once('.').map(|(rel, _)| rel))
            .filter(|rel| EdgeType::parse(rel).is_some())
            .map(str::to_string)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        for rel in [NEIGHBORS_TX, NEIGHBORS_BD] {
            self.require(&format!("{rel}.edge_index"))?;
        }
        for rel in rels {
            let et = EdgeType::parse(&rel).expect("filtered above");
            let ei = format!("{rel}.edge_index");
            let (src, dst) = self.pair_rows(&ei)?.ok_or_else(|| {
                self.err(
                    &ei,
                    "required tensor is missing (the relation has label tensors)",
                )
            })?;
            let mut es = EdgeStore::new(src, dst);
            let li = format!("{rel}.edge_label_index");
            let ln = format!("{rel}.edge_label");
            match (self.pair_rows(&li)?, self.get(&ln)) {
                (None, None) => {}
                (Some((ls, ld)), Some(v)) => {
                    if v.shape().len() != 1 {
                        return Err(self.err(
                            &ln,
                            format!(
                                "rank is {} (shape {:?}), expected 1",
                                v.shape().len(),
                                v.shape()
                            ),
                        ));
                    }
                    es.labels = Some(LabelStore {
                        src: ls,
                        dst: ld,
                        label: self.f32s(&ln, &v)?,
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
            edges.insert(et, es);
        }
        Ok(edges)
    }
}

fn tensor_names_known(name: &str) -> bool {
    matches!(name, "tx.x" | "tx.pos" | "tx.id" | "bd.x" | "bd.pos")
        || name.rsplit_once('.').is_some_and(|(rel, field)| {
            EdgeType::parse(rel).is_some()
                && matches!(field, "edge_index" | "edge_label_index" | "edge_label")
        })
}

/// Reads a tile file and validates its graph. `vocab`, when given, is the number of gene
/// tokens: token ids must lie below it. A `.pt` file is read as a PyG `HeteroData` tile of the
/// reference implementation ([`crate::torch::read_pt_tile`]); anything else as a
/// `segger-tile/1` file (memory-mapped).
pub fn read_tile(path: &Path, vocab: Option<usize>) -> Result<Tile, DataError> {
    if crate::torch::pyg::is_pt_file(path) {
        return crate::torch::read_pt_tile(path, vocab);
    }
    parse_tile(path, &map_file(path)?, vocab)
}

/// Memory-maps a `segger-tile/1` file for reading.
fn map_file(path: &Path) -> Result<memmap2::Mmap, DataError> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    // SAFETY: the map is read-only and its callers keep it only while they read it; tiles are
    // not modified while they are read (writers replace files atomically by rename).
    unsafe { memmap2::Mmap::map(&file) }.map_err(|e| DataError::io(path, e))
}

/// The safetensors header of a tile file's bytes; `path` is used in error messages only.
fn read_header(path: &Path, bytes: &[u8]) -> Result<safetensors::tensor::Metadata, DataError> {
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| {
        DataError::format(
            path,
            "header",
            format!("not a valid safetensors file ({e})"),
        )
    })?;
    Ok(meta)
}

/// The number of nodes (transcripts and boundaries, margins included) of a `segger-tile/1`
/// file, from its header alone (the tensors are not read): the first dimension of `tx.pos`
/// plus that of `bd.pos` (0 when absent). `None` for a reference `.pt` tile, whose size is
/// only known by reading it.
pub fn tile_nodes(path: &Path) -> Result<Option<usize>, DataError> {
    if crate::torch::pyg::is_pt_file(path) {
        return Ok(None);
    }
    let meta = read_header(path, &map_file(path)?)?;
    let rows = |name: &str| meta.info(name).and_then(|i| i.shape.first().copied());
    let tx = rows("tx.pos").ok_or_else(|| DataError::format(path, "tx.pos", "is missing"))?;
    Ok(Some(tx + rows("bd.pos").unwrap_or(0)))
}

/// Parses the bytes of a `segger-tile/1` file; `path` is used in error messages only.
pub fn parse_tile(path: &Path, bytes: &[u8], vocab: Option<usize>) -> Result<Tile, DataError> {
    let meta = read_header(path, bytes)?;
    let st = SafeTensors::deserialize(bytes).map_err(|e| {
        DataError::format(
            path,
            "header",
            format!("not a valid safetensors file ({e})"),
        )
    })?;
    let r = Reader { path, st };
    let md: HashMap<String, String> = meta.metadata().clone().unwrap_or_default();

    match md.get("format") {
        Some(f) if f == TILE_FORMAT => {}
        Some(f) => return Err(r.err("format", format!("is {f:?}, expected {TILE_FORMAT:?}"))),
        None => return Err(r.err("format", "metadata key is missing")),
    }
    let mut names: Vec<&str> = r.st.names();
    names.sort_unstable();
    if let Some(unknown) = names.iter().find(|n| !tensor_names_known(n)) {
        return Err(r.err(unknown, "unknown tensor name for segger-tile/1"));
    }

    let tx = r.tx_store()?;
    let bd = r.bd_store(&md)?;
    let bounds = r.bounds(&md)?;
    let edges = r.relations(&names)?;
    let graph = HeteroGraph { tx, bd, edges };
    graph.validate(vocab).map_err(|source| DataError::Graph {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(Tile { graph, bounds })
}

fn le_bytes_f32(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn le_bytes_i64(v: &[i64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn rows2(a: &[i64], b: &[i64]) -> Vec<u8> {
    let mut out = le_bytes_i64(a);
    out.extend(le_bytes_i64(b));
    out
}

/// Serialises a tile to `segger-tile/1` bytes. The graph is validated first.
pub fn tile_to_bytes(tile: &Tile) -> Result<Vec<u8>, String> {
    let g = &tile.graph;
    g.validate(None).map_err(|e| e.to_string())?;
    let mut owned: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    let n_tx = g.tx.num_nodes();
    match &g.tx.x {
        NodeFeatures::Tokens(t) => {
            owned.push(("tx.x".into(), Dtype::I64, vec![n_tx], le_bytes_i64(t)))
        }
        NodeFeatures::Dense { values, width } => owned.push((
            "tx.x".into(),
            Dtype::F32,
            vec![n_tx, *width],
            le_bytes_f32(values),
        )),
    }
    owned.push((
        "tx.pos".into(),
        Dtype::F32,
        vec![n_tx, g.tx.pos_dim],
        le_bytes_f32(&g.tx.pos),
    ));
    if let NodeIds::Int(ids) = &g.tx.ids {
        owned.push(("tx.id".into(), Dtype::I64, vec![n_tx], le_bytes_i64(ids)));
    }
    let n_bd = g.bd.num_nodes();
    match &g.bd.x {
        NodeFeatures::Dense { values, width } => owned.push((
            "bd.x".into(),
            Dtype::F32,
            vec![n_bd, *width],
            le_bytes_f32(values),
        )),
        NodeFeatures::Tokens(_) => return Err("bd.x: boundary features must be dense F32".into()),
    }
    owned.push((
        "bd.pos".into(),
        Dtype::F32,
        vec![n_bd, g.bd.pos_dim],
        le_bytes_f32(&g.bd.pos),
    ));
    for (et, es) in &g.edges {
        let key = et.key();
        owned.push((
            format!("{key}.edge_index"),
            Dtype::I64,
            vec![2, es.src.len()],
            rows2(&es.src, &es.dst),
        ));
        if let Some(l) = &es.labels {
            owned.push((
                format!("{key}.edge_label_index"),
                Dtype::I64,
                vec![2, l.src.len()],
                rows2(&l.src, &l.dst),
            ));
            owned.push((
                format!("{key}.edge_label"),
                Dtype::F32,
                vec![l.label.len()],
                le_bytes_f32(&l.label),
            ));
        }
    }
    let mut md = HashMap::new();
    md.insert("format".to_string(), TILE_FORMAT.to_string());
    match &g.bd.ids {
        NodeIds::Str(ids) => {
            md.insert(
                "bd.id".to_string(),
                serde_json::to_string(ids).expect("strings serialise"),
            );
        }
        NodeIds::Int(_) => return Err("bd.id: boundary ids must be strings".into()),
        NodeIds::None => {}
    }
    if let Some(b) = &tile.bounds {
        md.insert(
            "tile".to_string(),
            serde_json::to_string(b).expect("bounds serialise"),
        );
    }
    let views: Vec<(String, TensorView<'_>)> = owned
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.clone(),
                TensorView::new(*d, s.clone(), b).expect("sizes computed above"),
            )
        })
        .collect();
    serialize_safetensors(views, md)
}

/// `safetensors::serialize`, its header made byte-reproducible by
/// [`segger_fs::sorted_safetensors_header`]. Every safetensors file segger writes (tiles, model
/// weights) goes through this or that.
pub fn serialize_safetensors(
    views: Vec<(String, TensorView<'_>)>,
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>, String> {
    let bytes = safetensors::serialize(views, Some(metadata)).map_err(|e| e.to_string())?;
    segger_fs::sorted_safetensors_header(&bytes)
}

/// Writes `bytes` to `path` atomically ([`segger_fs::write_atomic`]: a temporary sibling,
/// then a rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), DataError> {
    segger_fs::write_atomic(path, bytes).map_err(|e| DataError::io(path, e))
}

/// Writes a tile to `path` atomically (temporary name, then rename).
pub fn write_tile(path: &Path, tile: &Tile) -> Result<(), DataError> {
    let bytes = tile_to_bytes(tile).map_err(|problem| {
        let (field, problem) = problem
            .split_once(": ")
            .map_or(("graph".to_string(), problem.clone()), |(f, p)| {
                (f.to_string(), p.to_string())
            });
        DataError::format(path, field, problem)
    })?;
    write_atomic(path, &bytes)
}

/// Node counts of a type, for summaries.
pub fn count(tile: &Tile, t: NodeType) -> usize {
    tile.graph.num_nodes(t)
}
