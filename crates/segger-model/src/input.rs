use std::sync::Arc;

use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use segger_graph::csr::Csr;
use segger_graph::{EdgeType, HeteroGraph, NodeFeatures, NodeType};

use crate::config::{ConfigError, SeggerConfig};
use crate::mp::{self, RowIndex};
use crate::GatBackend;

/// The edges of one relation on the device, sorted by destination (CSR), with the host CSR
/// kept for kernels that run on the CPU.
#[derive(Debug, Clone)]
pub struct RelationGraph<B: Backend> {
    /// The relation.
    pub edge_type: EdgeType,
    /// Source node of each edge, in destination-sorted order, `[E]`.
    pub src: Tensor<B, 1, Int>,
    /// Destination node of each edge, in destination-sorted order, `[E]`.
    pub dst: Tensor<B, 1, Int>,
    /// Destination row pointers, `[N_dst + 1]`.
    pub row_ptr: Tensor<B, 1, Int>,
    /// Source row pointers into `src_edge`, `[N_src + 1]` (for the fused GPU backward).
    pub src_ptr: Tensor<B, 1, Int>,
    /// The edges grouped by source: positions in the destination-sorted order, `[E]`.
    pub src_edge: Tensor<B, 1, Int>,
    /// The host CSR the tensors were built from.
    pub csr: Arc<Csr>,
    /// The same edges grouped by source (for the fused CPU backward).
    pub by_src: Arc<crate::mp::cpu::SrcIndex>,
    /// Number of source nodes.
    pub num_src: usize,
    /// Number of destination nodes.
    pub num_dst: usize,
    /// When no destination has more than one incoming edge (the reversed `tx__neighbors__bd`
    /// edges of a dataset made with `--k_bd 1`): per destination, the source of its edge, or
    /// `num_src` (a row of zeros) for none. Each attention weight is then a softmax over one
    /// edge, exactly 1, so [`crate::GatConv`] gathers the sources' messages instead of
    /// computing attention.
    pub single: Option<RowIndex<B>>,
}

impl<B: Backend> RelationGraph<B> {
    /// Builds the device graph of a relation from a validated edge list.
    pub fn new(
        edge_type: EdgeType,
        src: &[i64],
        dst: &[i64],
        num_src: usize,
        num_dst: usize,
        device: &B::Device,
    ) -> Self {
        let csr = Csr::from_edges(src, dst, num_dst);
        let e = csr.num_edges();
        let to_int = |v: Vec<i64>| Tensor::<B, 1, Int>::from_data(TensorData::new(v, [e]), device);
        let src_t = to_int(csr.src.iter().map(|&v| v as i64).collect());
        let dst_t = to_int(csr.dst_of_sorted().into_iter().map(i64::from).collect());
        let rp: Vec<i64> = csr.row_ptr.iter().map(|&v| v as i64).collect();
        let row_ptr = Tensor::<B, 1, Int>::from_data(TensorData::new(rp, [num_dst + 1]), device);
        let by_src = Arc::new(crate::mp::cpu::SrcIndex::new(&csr, num_src));
        let sp: Vec<i64> = by_src.row_ptr.iter().map(|&v| v as i64).collect();
        let src_ptr = Tensor::<B, 1, Int>::from_data(TensorData::new(sp, [num_src + 1]), device);
        let src_edge = to_int(by_src.edge.iter().map(|&v| i64::from(v)).collect());
        let single = csr.row_ptr.windows(2).all(|w| w[1] - w[0] <= 1).then(|| {
            let idx: Vec<i64> = csr
                .row_ptr
                .windows(2)
                .map(|w| {
                    if w[1] > w[0] {
                        i64::from(csr.src[w[0]])
                    } else {
                        num_src as i64
                    }
                })
                .collect();
            RowIndex::new(&idx, num_src + 1, device)
        });
        Self {
            edge_type,
            src: src_t,
            dst: dst_t,
            row_ptr,
            src_ptr,
            src_edge,
            csr: Arc::new(csr),
            by_src,
            num_src,
            num_dst,
            single,
        }
    }

    /// Number of edges.
    pub fn num_edges(&self) -> usize {
        self.csr.num_edges()
    }
}

/// A graph (one tile or a collated batch) ready for the model: features and, per configured
/// relation, the destination-sorted edges; optionally the supervised label pairs.
#[derive(Debug, Clone)]
pub struct GraphInput<B: Backend> {
    /// Transcript token ids `[N_tx]`, grouped by token (token models).
    pub tx_tokens: Option<RowIndex<B>>,
    /// Dense transcript features `[N_tx, F]` (embedding models).
    pub tx_features: Option<Tensor<B, 2>>,
    /// Boundary features `[N_bd, bd_features]`.
    pub bd_x: Tensor<B, 2>,
    /// One graph per configured relation, in config order.
    pub relations: Vec<RelationGraph<B>>,
    /// Number of transcripts.
    pub num_tx: usize,
    /// Transcript rows the layers compute: `num_tx`, or where the layers split rows into chunks
    /// ([`mp::splits_rows`]: the GPU backends) `num_tx` rounded up to a multiple of
    /// [`mp::SPLIT_K_ROWS`] with padding transcripts that have no edges and no labels (token 0
    /// or zero features). Their rows never reach a real transcript, a boundary or the loss, so
    /// they change no result and no gradient; they spare every split linear, bias and column
    /// sum its own zero-padding. [`Segger::forward`](crate::Segger::forward) drops them.
    pub tx_rows: usize,
    /// Number of boundaries.
    pub num_bd: usize,
    /// `tx__belongs__bd.edge_label_index` row 0, `[L]`, grouped by transcript.
    pub label_tx: Option<RowIndex<B>>,
    /// `tx__belongs__bd.edge_label_index` row 1, `[L]`, grouped by boundary.
    pub label_bd: Option<RowIndex<B>>,
    /// `tx__belongs__bd.edge_label`, `[L]`.
    pub labels: Option<Tensor<B, 1>>,
}

/// Checks, without touching a device, that a graph fits a model of `config`.
pub fn check_layout(g: &HeteroGraph, config: &SeggerConfig) -> Result<(), ConfigError> {
    match (&g.tx.x, config.tx_features) {
        (NodeFeatures::Tokens(_), None) => {}
        (NodeFeatures::Dense { width, .. }, Some(w)) if *width == w => {}
        (NodeFeatures::Tokens(_), Some(w)) => {
            return Err(ConfigError::new(
                "tx.x",
                format!("the graph has token ids but the model expects {w} dense features"),
            ))
        }
        (NodeFeatures::Dense { width, .. }, _) => {
            return Err(ConfigError::new(
                "tx.x",
                format!(
                    "the graph has {width} dense features but the model expects {}",
                    config
                        .tx_features
                        .map_or("token ids".to_string(), |w| format!("{w} features"))
                ),
            ))
        }
    }
    match &g.bd.x {
        NodeFeatures::Dense { width, .. } if *width == config.bd_features => {}
        NodeFeatures::Dense { width, .. } => {
            return Err(ConfigError::new(
                "bd.x",
                format!(
                    "the graph has {width} boundary features but the model expects {}",
                    config.bd_features
                ),
            ))
        }
        NodeFeatures::Tokens(_) => {
            return Err(ConfigError::new("bd.x", "boundary features must be dense"))
        }
    }
    for et in config.edge_types() {
        if !g.edges.contains_key(&et) && !g.edges.contains_key(&reverse(&et)) {
            return Err(missing_relation(&et));
        }
    }
    Ok(())
}

/// The relation with source and destination swapped (`bd__neighbors__tx` for
/// `tx__neighbors__bd`): a model relation that a graph lacks is built from its reverse.
pub fn reverse(et: &EdgeType) -> EdgeType {
    EdgeType::new(et.dst, &et.rel, et.src)
}

fn missing_relation(et: &EdgeType) -> ConfigError {
    ConfigError::new(
        format!("{}.edge_index", et.key()),
        "the graph lacks this relation of the model (and its reverse)",
    )
}

impl<B: GatBackend> GraphInput<B> {
    /// Moves a validated graph to the device for a model with `config`. A relation of the
    /// config missing from the graph is an error; a graph without labels gives `None` labels.
    pub fn from_graph(
        g: &HeteroGraph,
        config: &SeggerConfig,
        device: &B::Device,
    ) -> Result<Self, ConfigError> {
        let n_tx = g.num_nodes(NodeType::Tx);
        let n_bd = g.num_nodes(NodeType::Bd);
        let rows = if mp::splits_rows::<B>(n_tx) {
            n_tx.next_multiple_of(mp::SPLIT_K_ROWS)
        } else {
            n_tx
        };
        let (tx_tokens, tx_features) = match (&g.tx.x, config.tx_features) {
            (NodeFeatures::Tokens(t), None) => {
                let n = config.num_tx_tokens;
                if let Some((row, v)) = t
                    .iter()
                    .enumerate()
                    .find(|(_, &v)| !(0..n as i64).contains(&v))
                {
                    return Err(ConfigError::new(
                        "tx.x",
                        format!("token id {v} at row {row} is outside the model's {n} token embeddings (num_tx_tokens)"
                    )));
                }
                let mut t = t.clone();
                t.resize(rows, 0);
                (Some(RowIndex::new(&t, n, device)), None)
            }
            (NodeFeatures::Dense { values, width }, Some(w)) if *width == w => {
                let mut v = values.clone();
                v.resize(rows * w, 0.0);
                (
                    None,
                    Some(Tensor::from_data(TensorData::new(v, [rows, w]), device)),
                )
            }
            (NodeFeatures::Tokens(_), Some(w)) => {
                return Err(ConfigError::new(
                    "tx.x",
                    format!("the graph has token ids but the model expects {w} dense features"),
                ))
            }
            (NodeFeatures::Dense { width, .. }, Some(w)) => {
                return Err(ConfigError::new(
                    "tx.x",
                    format!("the graph has {width} dense features but the model expects {w}"),
                ))
            }
            (NodeFeatures::Dense { width, .. }, None) => {
                return Err(ConfigError::new(
                    "tx.x",
                    format!("the graph has {width} dense features but the model expects token ids"),
                ))
            }
        };
        let bd_x = match &g.bd.x {
            NodeFeatures::Dense { values, width } if *width == config.bd_features => {
                Tensor::from_data(TensorData::new(values.clone(), [n_bd, *width]), device)
            }
            NodeFeatures::Dense { width, .. } => {
                return Err(ConfigError::new(
                    "bd.x",
                    format!(
                        "the graph has {width} boundary features but the model expects {}",
                        config.bd_features
                    ),
                ))
            }
            NodeFeatures::Tokens(_) => {
                return Err(ConfigError::new("bd.x", "boundary features must be dense"))
            }
        };
        let mut relations = Vec::new();
        for et in config.edge_types() {
            let nodes = |t: NodeType| if t == NodeType::Tx { rows } else { n_bd };
            let (ns, nd) = (nodes(et.src), nodes(et.dst));
            let rel = match (g.edges.get(&et), g.edges.get(&reverse(&et))) {
                (Some(es), _) => RelationGraph::new(et, &es.src, &es.dst, ns, nd, device),
                // A reverse relation: the graph's edges with source and destination swapped.
                (None, Some(es)) => RelationGraph::new(et, &es.dst, &es.src, ns, nd, device),
                (None, None) => return Err(missing_relation(&et)),
            };
            relations.push(rel);
        }
        let (mut label_tx, mut label_bd, mut labels) = (None, None, None);
        if let Some(l) = g.labels() {
            let n = l.len();
            label_tx = Some(RowIndex::new(&l.src, n_tx, device));
            label_bd = Some(RowIndex::new(&l.dst, n_bd, device));
            labels = Some(Tensor::from_data(
                TensorData::new(l.label.clone(), [n]),
                device,
            ));
        }
        Ok(Self {
            tx_tokens,
            tx_features,
            bd_x,
            relations,
            num_tx: n_tx,
            tx_rows: rows,
            num_bd: n_bd,
            label_tx,
            label_bd,
            labels,
        })
    }
}
