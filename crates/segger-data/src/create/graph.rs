//! Building one tile: the spatial indexes shared by the tiles of a sample ([`SampleIndex`]),
//! and [`build_tile`], which gathers a tile's transcript and boundary nodes, computes its kNN
//! edges and its positive and negative `tx__belongs__bd` pairs, and assembles the graph with
//! the tile's exact bounds ([`exact_span`]).

use std::path::PathBuf;
use std::time::Instant;

use segger_graph::knn::{knn_bipartite, knn_same, KnnParams};
use segger_graph::negative::{competing_labels, sample_labels};
use segger_graph::{
    EdgeStore, EdgeType, HeteroGraph, NodeFeatures, NodeIds, NodeStore, NodeType, BELONGS,
    NEIGHBORS_BD, NEIGHBORS_TX,
};

use super::{GraphParams, Negatives, TileStats, COMPETITORS};
use crate::error::DataError;
use crate::raw::{Sample, NO_CELL};
use crate::tile::{Tile, TileBounds};
use crate::tiling::{self, BucketIndex, Rect};

/// Spatial indexes shared by all tiles of a sample.
pub struct SampleIndex {
    tx: BucketIndex,
    bd: BucketIndex,
    /// The largest distance from a boundary's centroid to its envelope's edge.
    bd_reach: f64,
}

impl SampleIndex {
    /// Indexes a sample's transcripts and boundary centroids.
    pub fn new(s: &Sample) -> Self {
        let tx = BucketIndex::new(&s.tx.x, &s.tx.y, 32);
        let cx: Vec<f32> = s.bd.centroid.iter().map(|c| c[0]).collect();
        let cy: Vec<f32> = s.bd.centroid.iter().map(|c| c[1]).collect();
        let bd = BucketIndex::new(&cx, &cy, 4);
        let bd_reach =
            s.bd.bbox
                .iter()
                .zip(&s.bd.centroid)
                .map(|(b, c)| {
                    [c[0] - b[0], b[2] - c[0], c[1] - b[1], b[3] - c[1]]
                        .into_iter()
                        .fold(0.0f32, f32::max) as f64
                })
                .fold(0.0, f64::max);
        Self { tx, bd, bd_reach }
    }
}

/// Builds the graph of the tile with core `rect`. Transcript nodes are those within `margin`
/// of the core, in input order; boundary nodes are those whose envelope meets that region, in
/// input order. Returns `None` when the core holds no transcript.
pub fn build_tile(
    s: &Sample,
    index: &SampleIndex,
    rect: &Rect,
    p: &GraphParams,
    seed: u64,
) -> Result<Option<(Tile, TileStats)>, DataError> {
    let t0 = Instant::now();
    let outer = rect.grow(p.margin);
    let nodes = tiling::points_in(&index.tx, &s.tx.x, &s.tx.y, &outer);
    let core = nodes
        .iter()
        .filter(|&&i| rect.contains(s.tx.x[i as usize] as f64, s.tx.y[i as usize] as f64))
        .count();
    if core == 0 {
        return Ok(None);
    }
    let bds = tile_boundaries(s, index, &outer);
    let (tx, xy) = transcript_store(s, &nodes);
    let bd = boundary_store(s, &bds);
    let t1 = Instant::now();

    let graph_err = |e: segger_graph::GraphError| DataError::Format {
        path: PathBuf::from(format!("tile at x={} y={}", rect.x0, rect.y0)),
        field: "graph".into(),
        problem: e.to_string(),
    };
    let tt = knn_same(&tx.pos, tx.pos_dim, KnnParams::new(p.k_tx, p.dist_tx)).map_err(graph_err)?;
    let tb = if bds.is_empty() {
        Default::default()
    } else {
        knn_bipartite(&xy, &bd.pos, 2, KnnParams::new(p.k_bd, p.dist_bd)).map_err(graph_err)?
    };
    let t2 = Instant::now();

    let (pos_src, pos_dst) = positives(s, &nodes, &bds);
    let (belongs, negatives) =
        belongs_edges(p, &pos_src, &pos_dst, bds.len(), &xy, &bd.pos, seed).map_err(graph_err)?;
    let t3 = Instant::now();

    let stats = TileStats {
        core,
        tx: nodes.len(),
        bd: bds.len(),
        tx_tx: tt.src.len(),
        tx_bd: tb.src.len(),
        positives: pos_src.len(),
        negatives,
        tile_s: (t1 - t0).as_secs_f64(),
        knn_s: (t2 - t1).as_secs_f64(),
        labels_s: (t3 - t2).as_secs_f64(),
    };
    let mut edges = std::collections::BTreeMap::new();
    edges.insert(
        EdgeType::parse(NEIGHBORS_TX).expect("valid key"),
        EdgeStore::new(tt.src, tt.dst),
    );
    edges.insert(
        EdgeType::parse(NEIGHBORS_BD).expect("valid key"),
        EdgeStore::new(tb.src, tb.dst),
    );
    edges.insert(EdgeType::parse(BELONGS).expect("valid key"), belongs);
    let graph = HeteroGraph { tx, bd, edges };
    debug_assert_eq!(graph.num_nodes(NodeType::Bd), bds.len());
    let bounds = TileBounds {
        x: rect.x0,
        y: rect.y0,
        width: exact_span(rect.x0, rect.x1),
        height: exact_span(rect.y0, rect.y1),
        margin: p.margin,
    };
    Ok(Some((
        Tile {
            graph,
            bounds: Some(bounds),
        },
        stats,
    )))
}

/// The boundary nodes of a tile whose transcript region is `outer`: the boundaries whose
/// envelope meets it, in input order.
fn tile_boundaries(s: &Sample, index: &SampleIndex, outer: &Rect) -> Vec<u32> {
    let reach = outer.grow(index.bd_reach);
    let mut bds: Vec<u32> = Vec::new();
    index.bd.candidates(&reach, |b| {
        let e = s.bd.bbox[b as usize];
        let (x0, y0, x1, y1) = (e[0] as f64, e[1] as f64, e[2] as f64, e[3] as f64);
        if x1 >= outer.x0 && x0 < outer.x1 && y1 >= outer.y0 && y0 < outer.y1 {
            bds.push(b);
        }
    });
    bds.sort_unstable();
    bds
}

/// The transcript node store of a tile (positions, gene tokens or embedding rows and ids of
/// `nodes`, in order), and the nodes' 2-D positions for the transcript-to-boundary kNN.
fn transcript_store(s: &Sample, nodes: &[u32]) -> (NodeStore, Vec<f32>) {
    let dim = if s.tx.z.is_some() { 3 } else { 2 };
    let n = nodes.len();
    let mut pos = Vec::with_capacity(n * dim);
    let mut xy = Vec::with_capacity(n * 2);
    for &i in nodes {
        let i = i as usize;
        pos.push(s.tx.x[i]);
        pos.push(s.tx.y[i]);
        xy.push(s.tx.x[i]);
        xy.push(s.tx.y[i]);
        if let Some(z) = &s.tx.z {
            pos.push(z[i]);
        }
    }
    let x = match &s.embedding {
        None => NodeFeatures::Tokens(
            nodes
                .iter()
                .map(|&i| s.tx.gene[i as usize] as i64)
                .collect(),
        ),
        Some(e) => {
            let mut values = Vec::with_capacity(n * e.width);
            for &i in nodes {
                let g = s.tx.gene[i as usize] as usize;
                values.extend_from_slice(&e.values[g * e.width..(g + 1) * e.width]);
            }
            NodeFeatures::Dense {
                values,
                width: e.width,
            }
        }
    };
    let ids: Vec<i64> = nodes.iter().map(|&i| s.tx.id[i as usize]).collect();
    let store = NodeStore {
        x,
        pos,
        pos_dim: dim,
        ids: NodeIds::Int(ids),
    };
    (store, xy)
}

/// The boundary node store of a tile: centroids, the four polygon features and the ids of
/// `bds`, in order.
fn boundary_store(s: &Sample, bds: &[u32]) -> NodeStore {
    let mut bd_pos = Vec::with_capacity(bds.len() * 2);
    let mut bd_x = Vec::with_capacity(bds.len() * 4);
    let mut bd_ids = Vec::with_capacity(bds.len());
    for &b in bds {
        let b = b as usize;
        bd_pos.extend_from_slice(&s.bd.centroid[b]);
        bd_x.extend_from_slice(&s.bd.features[b]);
        bd_ids.push(s.bd.ids[b].clone());
    }
    NodeStore {
        x: NodeFeatures::Dense {
            values: bd_x,
            width: 4,
        },
        pos: bd_pos,
        pos_dim: 2,
        ids: NodeIds::Str(bd_ids),
    }
}

/// The positive `tx__belongs__bd` pairs of a tile, as local (transcript, boundary) indexes.
fn positives(s: &Sample, nodes: &[u32], bds: &[u32]) -> (Vec<i64>, Vec<i64>) {
    // Positives: the transcript's own boundary is a node of this tile and the transcript lies
    // in it (the instrument's flag, or point-in-polygon without one).
    let mut pos_src = Vec::new();
    let mut pos_dst = Vec::new();
    for (li, &i) in nodes.iter().enumerate() {
        let i = i as usize;
        let c = s.tx.cell[i];
        if c == NO_CELL {
            continue;
        }
        let Ok(lb) = bds.binary_search(&c) else {
            continue;
        };
        let inside = match &s.tx.nuclear {
            Some(f) => f[i],
            None => s.bd.contains(c as usize, s.tx.x[i], s.tx.y[i]),
        };
        if inside {
            pos_src.push(li as i64);
            pos_dst.push(lb as i64);
        }
    }
    (pos_src, pos_dst)
}

/// The `tx__belongs__bd` store of a tile: the positive pairs, labelled with negatives drawn
/// as `p.negatives` says (no labels without positives), and the number of negatives. `xy` and
/// `bd_pos` are the transcript and boundary positions of the tile, `n_bd` its boundaries.
fn belongs_edges(
    p: &GraphParams,
    pos_src: &[i64],
    pos_dst: &[i64],
    n_bd: usize,
    xy: &[f32],
    bd_pos: &[f32],
    seed: u64,
) -> Result<(EdgeStore, usize), segger_graph::GraphError> {
    let mut belongs = EdgeStore::new(pos_src.to_vec(), pos_dst.to_vec());
    let mut negatives = 0;
    if !pos_src.is_empty() {
        let labels = match p.negatives {
            Negatives::Random => sample_labels(pos_src, pos_dst, n_bd, p.neg_sampling_ratio, seed),
            Negatives::Competing => {
                // The candidates prediction compares, independent of the message-passing
                // edges' `k_bd`.
                let cand = knn_bipartite(xy, bd_pos, 2, KnnParams::new(COMPETITORS, p.dist_bd))?;
                competing_labels(pos_src, pos_dst, &cand.src, &cand.dst, p.neg_sampling_ratio)
            }
        };
        negatives = labels.src.len() - pos_src.len();
        belongs.labels = Some(labels);
    }
    Ok((belongs, negatives))
}

/// `b - a`, nudged by ulps when needed so that `a + span == b` exactly: readers then recover the
/// core's edges from the `tile` metadata (`x`, `x + width`) without rounding. (Always exact
/// when `a` and `b` are within a factor 2 of each other, as tile edges of a sample away from
/// the origin are; elsewhere best effort.)
pub fn exact_span(a: f64, b: f64) -> f64 {
    let mut w = b - a;
    for _ in 0..4 {
        let e = a + w;
        if e == b {
            break;
        }
        w = if e < b { w.next_up() } else { w.next_down() };
    }
    w
}
