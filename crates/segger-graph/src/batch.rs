use std::collections::BTreeMap;

use crate::error::GraphError;
use crate::hetero::{
    EdgeStore, EdgeType, HeteroGraph, LabelStore, NodeFeatures, NodeIds, NodeStore, NodeType,
};

/// Where a node of a batch came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeOrigin {
    /// Index of the tile in the batch.
    pub tile: usize,
    /// Index of the node inside its tile.
    pub local: usize,
}

/// N tiles collated into one disconnected graph, as PyG's `Batch` does: node stores are
/// concatenated and each tile's edge indices are shifted by its node offsets.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// The collated graph.
    pub graph: HeteroGraph,
    /// `tx_ptr[i]..tx_ptr[i + 1]` are the transcripts of tile `i` (length N + 1).
    pub tx_ptr: Vec<usize>,
    /// `bd_ptr[i]..bd_ptr[i + 1]` are the boundaries of tile `i` (length N + 1).
    pub bd_ptr: Vec<usize>,
}

impl Batch {
    /// Collates graphs into one batch. All graphs must share the feature layout (token or
    /// dense of equal width) and position dimension of each node type. A relation missing in
    /// some tiles contributes no edges from them; label stores are concatenated from the tiles
    /// that have them.
    pub fn collate(graphs: &[&HeteroGraph]) -> Result<Self, GraphError> {
        let first = graphs.first().ok_or_else(|| GraphError::Invalid {
            field: "batch".into(),
            message: "cannot collate an empty list of graphs".into(),
        })?;
        let mut tx = first.tx.empty_like();
        let mut bd = first.bd.empty_like();
        let mut tx_ptr = vec![0usize];
        let mut bd_ptr = vec![0usize];
        let mut edges: BTreeMap<EdgeType, EdgeStore> = BTreeMap::new();
        let mut labelled: BTreeMap<EdgeType, bool> = BTreeMap::new();
        for g in graphs {
            for et in g.edges.keys() {
                edges.entry(et.clone()).or_default();
                labelled.entry(et.clone()).or_insert(false);
            }
        }
        for (i, g) in graphs.iter().enumerate() {
            let off_tx = *tx_ptr.last().unwrap();
            let off_bd = *bd_ptr.last().unwrap();
            append_nodes(&mut tx, &g.tx, NodeType::Tx, i)?;
            append_nodes(&mut bd, &g.bd, NodeType::Bd, i)?;
            tx_ptr.push(off_tx + g.tx.num_nodes());
            bd_ptr.push(off_bd + g.bd.num_nodes());
            let offset = |t: NodeType| match t {
                NodeType::Tx => off_tx as i64,
                NodeType::Bd => off_bd as i64,
            };
            for (et, es) in &g.edges {
                let (os, od) = (offset(et.src), offset(et.dst));
                let out = edges.get_mut(et).expect("relation registered above");
                out.src.extend(es.src.iter().map(|v| v + os));
                out.dst.extend(es.dst.iter().map(|v| v + od));
                if let Some(l) = &es.labels {
                    *labelled.get_mut(et).unwrap() = true;
                    let ol = out.labels.get_or_insert_with(LabelStore::default);
                    ol.src.extend(l.src.iter().map(|v| v + os));
                    ol.dst.extend(l.dst.iter().map(|v| v + od));
                    ol.label.extend_from_slice(&l.label);
                }
            }
        }
        Ok(Self {
            graph: HeteroGraph { tx, bd, edges },
            tx_ptr,
            bd_ptr,
        })
    }

    /// Number of tiles in the batch.
    pub fn num_tiles(&self) -> usize {
        self.tx_ptr.len() - 1
    }

    /// The tile and local index of batched node `index` of type `t`.
    pub fn origin(&self, t: NodeType, index: usize) -> Option<NodeOrigin> {
        let ptr = match t {
            NodeType::Tx => &self.tx_ptr,
            NodeType::Bd => &self.bd_ptr,
        };
        if index >= *ptr.last()? {
            return None;
        }
        // The last tile whose start is <= index (skipping empty tiles).
        let tile = ptr.partition_point(|&p| p <= index) - 1;
        Some(NodeOrigin {
            tile,
            local: index - ptr[tile],
        })
    }

    /// The per-node tile index of type `t` (PyG's `batch` vector).
    pub fn tile_vector(&self, t: NodeType) -> Vec<usize> {
        let ptr = match t {
            NodeType::Tx => &self.tx_ptr,
            NodeType::Bd => &self.bd_ptr,
        };
        let mut out = Vec::with_capacity(*ptr.last().unwrap_or(&0));
        for (i, w) in ptr.windows(2).enumerate() {
            out.extend(std::iter::repeat_n(i, w[1] - w[0]));
        }
        out
    }
}

fn append_nodes(
    dst: &mut NodeStore,
    src: &NodeStore,
    t: NodeType,
    tile: usize,
) -> Result<(), GraphError> {
    let mismatch = |what: &str| GraphError::Invalid {
        field: format!("{t}.{what}"),
        message: format!("tile {tile} does not match the layout of tile 0"),
    };
    if dst.pos_dim != src.pos_dim {
        return Err(mismatch("pos"));
    }
    dst.pos.extend_from_slice(&src.pos);
    match (&mut dst.x, &src.x) {
        (NodeFeatures::Tokens(a), NodeFeatures::Tokens(b)) => a.extend_from_slice(b),
        (
            NodeFeatures::Dense {
                values: a,
                width: wa,
            },
            NodeFeatures::Dense {
                values: b,
                width: wb,
            },
        ) if wa == wb => a.extend_from_slice(b),
        _ => return Err(mismatch("x")),
    }
    match (&mut dst.ids, &src.ids) {
        (NodeIds::None, NodeIds::None) => {}
        (NodeIds::Int(a), NodeIds::Int(b)) => a.extend_from_slice(b),
        (NodeIds::Str(a), NodeIds::Str(b)) => a.extend(b.iter().cloned()),
        _ => return Err(mismatch("id")),
    }
    Ok(())
}
