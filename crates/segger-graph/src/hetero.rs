use std::collections::BTreeMap;
use std::fmt;

use crate::error::GraphError;

/// Key of the transcript-to-transcript kNN relation.
pub const NEIGHBORS_TX: &str = "tx__neighbors__tx";
/// Key of the transcript-to-boundary kNN relation.
pub const NEIGHBORS_BD: &str = "tx__neighbors__bd";
/// Key of the supervised transcript-belongs-to-boundary relation.
pub const BELONGS: &str = "tx__belongs__bd";

/// The two node types of a Segger graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NodeType {
    /// Transcript detections.
    Tx,
    /// Boundaries (nuclei or cells).
    Bd,
}

impl NodeType {
    /// The PyG name: `tx` or `bd`.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeType::Tx => "tx",
            NodeType::Bd => "bd",
        }
    }

    /// Parses `tx` or `bd`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "tx" => Some(NodeType::Tx),
            "bd" => Some(NodeType::Bd),
            _ => None,
        }
    }
}

impl fmt::Display for NodeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A relation `(src, rel, dst)`, written `src__rel__dst` as in PyG's `HeteroData` keys.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EdgeType {
    /// Source node type (row 0 of `edge_index`).
    pub src: NodeType,
    /// Relation name, e.g. `neighbors`.
    pub rel: String,
    /// Destination node type (row 1 of `edge_index`).
    pub dst: NodeType,
}

impl EdgeType {
    /// Builds a relation.
    pub fn new(src: NodeType, rel: &str, dst: NodeType) -> Self {
        Self {
            src,
            rel: rel.to_string(),
            dst,
        }
    }

    /// Parses `src__rel__dst`; `None` when the key does not have that shape or a node type is
    /// unknown.
    pub fn parse(key: &str) -> Option<Self> {
        let mut parts = key.split("__");
        let src = NodeType::parse(parts.next()?)?;
        let rel = parts.next()?;
        let dst = NodeType::parse(parts.next()?)?;
        if parts.next().is_some() || rel.is_empty() {
            return None;
        }
        Some(Self::new(src, rel, dst))
    }

    /// The `src__rel__dst` key.
    pub fn key(&self) -> String {
        format!("{}__{}__{}", self.src, self.rel, self.dst)
    }
}

impl fmt::Display for EdgeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

/// Node features `x` of one node type.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeFeatures {
    /// One gene token id per node (token-based transcript features), `[N]`.
    Tokens(Vec<i64>),
    /// A dense row-major float matrix `[N, width]`.
    Dense {
        /// Row-major values, `N * width` of them.
        values: Vec<f32>,
        /// Number of columns.
        width: usize,
    },
}

impl NodeFeatures {
    /// Number of rows described by the features.
    pub fn rows(&self) -> usize {
        match self {
            NodeFeatures::Tokens(t) => t.len(),
            NodeFeatures::Dense { values, width } => {
                if *width == 0 {
                    0
                } else {
                    values.len() / width
                }
            }
        }
    }
}

/// Node identifiers from the raw data.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeIds {
    /// No ids stored.
    None,
    /// Integer ids (transcripts: the instrument's `transcript_id`).
    Int(Vec<i64>),
    /// String ids (boundaries: e.g. Xenium `cell_id`).
    Str(Vec<String>),
}

impl NodeIds {
    /// Number of ids, `None` when no ids are stored.
    pub fn len(&self) -> Option<usize> {
        match self {
            NodeIds::None => None,
            NodeIds::Int(v) => Some(v.len()),
            NodeIds::Str(v) => Some(v.len()),
        }
    }

    /// Whether no ids are stored in a store that has ids, `None` when no ids are stored.
    pub fn is_empty(&self) -> Option<bool> {
        self.len().map(|n| n == 0)
    }
}

/// Features, positions and ids of one node type.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeStore {
    /// Node features `x`.
    pub x: NodeFeatures,
    /// Row-major positions `[N, pos_dim]` in micrometres.
    pub pos: Vec<f32>,
    /// 2 (x, y) or 3 (x, y, z).
    pub pos_dim: usize,
    /// Ids from the raw data.
    pub ids: NodeIds,
}

impl NodeStore {
    /// Number of nodes. Like PyG, it is counted from the positions.
    pub fn num_nodes(&self) -> usize {
        self.pos.len().checked_div(self.pos_dim).unwrap_or(0)
    }

    /// An empty store with the given feature layout.
    pub fn empty_like(&self) -> Self {
        let x = match &self.x {
            NodeFeatures::Tokens(_) => NodeFeatures::Tokens(Vec::new()),
            NodeFeatures::Dense { width, .. } => NodeFeatures::Dense {
                values: Vec::new(),
                width: *width,
            },
        };
        let ids = match &self.ids {
            NodeIds::None => NodeIds::None,
            NodeIds::Int(_) => NodeIds::Int(Vec::new()),
            NodeIds::Str(_) => NodeIds::Str(Vec::new()),
        };
        Self {
            x,
            pos: Vec::new(),
            pos_dim: self.pos_dim,
            ids,
        }
    }
}

/// Supervised pairs of a relation: `edge_label_index` and `edge_label`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LabelStore {
    /// Row 0 of `edge_label_index` (source nodes).
    pub src: Vec<i64>,
    /// Row 1 of `edge_label_index` (destination nodes).
    pub dst: Vec<i64>,
    /// `edge_label`: 1.0 positive, 0.0 negative.
    pub label: Vec<f32>,
}

impl LabelStore {
    /// Number of labelled pairs.
    pub fn len(&self) -> usize {
        self.label.len()
    }

    /// True when there are no labelled pairs.
    pub fn is_empty(&self) -> bool {
        self.label.is_empty()
    }

    /// Number of positive pairs (label 1).
    pub fn positives(&self) -> usize {
        self.label.iter().filter(|&&l| l == 1.0).count()
    }
}

/// The edges of one relation.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EdgeStore {
    /// Row 0 of `edge_index`: source node of every edge.
    pub src: Vec<i64>,
    /// Row 1 of `edge_index`: destination node of every edge.
    pub dst: Vec<i64>,
    /// Supervised pairs, where the relation has them.
    pub labels: Option<LabelStore>,
}

impl EdgeStore {
    /// An edge store without labels.
    pub fn new(src: Vec<i64>, dst: Vec<i64>) -> Self {
        Self {
            src,
            dst,
            labels: None,
        }
    }

    /// Number of edges.
    pub fn num_edges(&self) -> usize {
        self.src.len()
    }
}

/// A heterogeneous Segger graph: `tx` and `bd` node stores and one edge store per relation.
#[derive(Debug, Clone, PartialEq)]
pub struct HeteroGraph {
    /// Transcript nodes.
    pub tx: NodeStore,
    /// Boundary nodes.
    pub bd: NodeStore,
    /// Edge stores by relation.
    pub edges: BTreeMap<EdgeType, EdgeStore>,
}

/// What graphs must share to be batched together: the dimension of the positions and the
/// kind of features of both node types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Transcript positions: 2 or 3 coordinates.
    pub tx_pos_dim: usize,
    /// Boundary positions: 2 or 3 coordinates.
    pub bd_pos_dim: usize,
    /// Transcript features: `None` for gene tokens, else the width of dense features.
    pub tx_width: Option<usize>,
    /// Boundary features: `None` for tokens, else the width of dense features.
    pub bd_width: Option<usize>,
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let feat = |w: Option<usize>| w.map_or("tokens".to_string(), |w| format!("{w} features"));
        write!(
            f,
            "transcripts {}-D with {}, boundaries {}-D with {}",
            self.tx_pos_dim,
            feat(self.tx_width),
            self.bd_pos_dim,
            feat(self.bd_width)
        )
    }
}

impl HeteroGraph {
    /// The layout of this graph's nodes ([`Layout`]).
    pub fn layout(&self) -> Layout {
        let width = |x: &NodeFeatures| match x {
            NodeFeatures::Tokens(_) => None,
            NodeFeatures::Dense { width, .. } => Some(*width),
        };
        Layout {
            tx_pos_dim: self.tx.pos_dim,
            bd_pos_dim: self.bd.pos_dim,
            tx_width: width(&self.tx.x),
            bd_width: width(&self.bd.x),
        }
    }

    /// The node store of a type.
    pub fn node(&self, t: NodeType) -> &NodeStore {
        match t {
            NodeType::Tx => &self.tx,
            NodeType::Bd => &self.bd,
        }
    }

    /// Number of nodes of a type.
    pub fn num_nodes(&self, t: NodeType) -> usize {
        self.node(t).num_nodes()
    }

    /// The edge store for a `src__rel__dst` key, if present.
    pub fn edge(&self, key: &str) -> Option<&EdgeStore> {
        let et = EdgeType::parse(key)?;
        self.edges.get(&et)
    }

    /// Number of edges of a relation (0 when absent).
    pub fn num_edges(&self, key: &str) -> usize {
        self.edge(key).map_or(0, EdgeStore::num_edges)
    }

    /// The supervised pairs of `tx__belongs__bd`, if present.
    pub fn labels(&self) -> Option<&LabelStore> {
        self.edge(BELONGS).and_then(|e| e.labels.as_ref())
    }

    /// Number of positive assignments (`tx__belongs__bd.edge_index` edges).
    pub fn num_positive(&self) -> usize {
        self.num_edges(BELONGS)
    }

    /// Checks every invariant and names the first problem found: matching lengths, indices
    /// in range, labels in {0, 1}, token ids below `vocab` (when given) and finite positions.
    pub fn validate(&self, vocab: Option<usize>) -> Result<(), GraphError> {
        for t in [NodeType::Tx, NodeType::Bd] {
            validate_node(t, self.node(t), vocab.filter(|_| t == NodeType::Tx))?;
        }
        for (et, es) in &self.edges {
            let key = et.key();
            let n_src = self.num_nodes(et.src);
            let n_dst = self.num_nodes(et.dst);
            let field = format!("{key}.edge_index");
            check_len(
                &field,
                es.src.len(),
                es.dst.len(),
                "row 0 and row 1 must have the same length",
            )?;
            check_indices(&field, &es.src, et.src, n_src)?;
            check_indices(&field, &es.dst, et.dst, n_dst)?;
            if let Some(l) = &es.labels {
                let field = format!("{key}.edge_label_index");
                check_len(
                    &field,
                    l.src.len(),
                    l.dst.len(),
                    "row 0 and row 1 must have the same length",
                )?;
                check_indices(&field, &l.src, et.src, n_src)?;
                check_indices(&field, &l.dst, et.dst, n_dst)?;
                let lfield = format!("{key}.edge_label");
                check_len(
                    &lfield,
                    l.src.len(),
                    l.label.len(),
                    "one label per edge_label_index column",
                )?;
                for (position, &value) in l.label.iter().enumerate() {
                    if value != 0.0 && value != 1.0 {
                        return Err(GraphError::BadLabel {
                            field: lfield,
                            value,
                            position,
                        });
                    }
                }
            }
        }
        Ok(())
    }
}

fn check_len(field: &str, expected: usize, actual: usize, reason: &str) -> Result<(), GraphError> {
    if expected != actual {
        return Err(GraphError::LengthMismatch {
            field: field.to_string(),
            expected,
            actual,
            reason: reason.to_string(),
        });
    }
    Ok(())
}

fn check_indices(field: &str, idx: &[i64], t: NodeType, count: usize) -> Result<(), GraphError> {
    if let Some((position, &index)) = idx
        .iter()
        .enumerate()
        .find(|(_, &i)| i < 0 || i as u64 >= count as u64)
    {
        return Err(GraphError::IndexOutOfRange {
            field: field.to_string(),
            index,
            position,
            node_type: t.to_string(),
            count,
        });
    }
    Ok(())
}

fn validate_node(t: NodeType, s: &NodeStore, vocab: Option<usize>) -> Result<(), GraphError> {
    let pos_field = format!("{t}.pos");
    if !(2..=3).contains(&s.pos_dim) {
        return Err(GraphError::Invalid {
            field: pos_field,
            message: format!("positions must have 2 or 3 columns, found {}", s.pos_dim),
        });
    }
    if !s.pos.len().is_multiple_of(s.pos_dim) {
        return Err(GraphError::Invalid {
            field: pos_field,
            message: format!("{} values do not fill rows of {}", s.pos.len(), s.pos_dim),
        });
    }
    if let Some(i) = s.pos.iter().position(|v| !v.is_finite()) {
        return Err(GraphError::NonFinite {
            field: pos_field,
            value: s.pos[i],
            row: i / s.pos_dim,
            column: i % s.pos_dim,
        });
    }
    let n = s.num_nodes();
    let x_field = format!("{t}.x");
    match &s.x {
        NodeFeatures::Tokens(tok) => {
            check_len(
                &x_field,
                n,
                tok.len(),
                "one token per node (nodes counted from pos)",
            )?;
            if let Some((position, &token)) = tok
                .iter()
                .enumerate()
                .find(|(_, &v)| v < 0 || vocab.is_some_and(|m| v as u64 >= m as u64))
            {
                return Err(GraphError::TokenOutOfVocab {
                    field: x_field,
                    token,
                    position,
                    vocab: vocab.unwrap_or(0),
                });
            }
        }
        NodeFeatures::Dense { values, width } => {
            if *width == 0 {
                return Err(GraphError::Invalid {
                    field: x_field,
                    message: "feature width is 0".into(),
                });
            }
            check_len(
                &x_field,
                n * width,
                values.len(),
                "N x width values (nodes counted from pos)",
            )?;
            if let Some(i) = values.iter().position(|v| !v.is_finite()) {
                return Err(GraphError::NonFinite {
                    field: x_field,
                    value: values[i],
                    row: i / width,
                    column: i % width,
                });
            }
        }
    }
    if let Some(len) = s.ids.len() {
        check_len(&format!("{t}.id"), n, len, "one id per node")?;
    }
    Ok(())
}
