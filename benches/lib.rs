//! Shared inputs for the criterion benches: synthetic tiles shaped like real Segger training
//! tiles (Xenium-like density, the reference's kNN settings and label counts).

use std::collections::BTreeMap;

pub mod cuda_pools;

/// The allocator the `segger` binary uses, so that benches measure the same thing.
pub use mimalloc::MiMalloc as Allocator;

/// Configures the allocator as the `segger` binary does: freed memory is kept for reuse
/// rather than returned to the OS (`mi_option_purge_delay = -1`).
pub fn configure_allocator() {
    // SAFETY: sets a plain integer option of mimalloc; 15 is `mi_option_purge_delay` in the
    // vendored mimalloc (v2 and v3), -1 disables purging.
    unsafe { libmimalloc_sys::mi_option_set(15, -1) };
}

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use segger_graph::knn::{knn_bipartite, knn_same, KnnParams};
use segger_graph::negative::sample_labels;
use segger_graph::{
    EdgeStore, EdgeType, HeteroGraph, NodeFeatures, NodeIds, NodeStore, BELONGS, NEIGHBORS_BD,
    NEIGHBORS_TX,
};

/// A synthetic tile: `n_tx` transcripts (3-D, 500 genes) and `n_bd` nuclei over a square of
/// Xenium-like density; 3 tx→tx edges per transcript (self included, as in the reference),
/// 3 tx→bd edges per transcript; every sixth transcript is a positive of its nearest nucleus,
/// with 5 negatives per positive.
pub fn synthetic_tile(seed: u64, n_tx: usize, n_bd: usize) -> HeteroGraph {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let side = (n_tx as f32 / 0.25).sqrt();
    let pos: Vec<f32> = (0..n_tx)
        .flat_map(|_| {
            [
                rng.random_range(0.0..side),
                rng.random_range(0.0..side),
                rng.random_range(0.0..10.0),
            ]
        })
        .collect();
    let bd_pos: Vec<f32> = (0..n_bd * 2).map(|_| rng.random_range(0.0..side)).collect();
    let xy: Vec<f32> = pos.chunks(3).flat_map(|p| [p[0], p[1]]).collect();
    let tt = knn_same(
        &pos,
        3,
        KnnParams {
            k: 3,
            radius: 1e6,
            keep_self: true,
        },
    )
    .unwrap();
    let tb = knn_bipartite(&xy, &bd_pos, 2, KnnParams::new(3, 1e6)).unwrap();
    let (mut ps, mut pd) = (Vec::new(), Vec::new());
    for t in (0..n_tx).step_by(6) {
        ps.push(t as i64);
        pd.push(tb.dst[t * 3]);
    }
    let labels = sample_labels(&ps, &pd, n_bd, 5.0, seed);
    let mut edges = BTreeMap::new();
    edges.insert(
        EdgeType::parse(NEIGHBORS_TX).unwrap(),
        EdgeStore::new(tt.src, tt.dst),
    );
    edges.insert(
        EdgeType::parse(NEIGHBORS_BD).unwrap(),
        EdgeStore::new(tb.src, tb.dst),
    );
    let mut belongs = EdgeStore::new(ps, pd);
    belongs.labels = Some(labels);
    edges.insert(EdgeType::parse(BELONGS).unwrap(), belongs);
    HeteroGraph {
        tx: NodeStore {
            x: NodeFeatures::Tokens((0..n_tx).map(|_| rng.random_range(0..500)).collect()),
            pos,
            pos_dim: 3,
            ids: NodeIds::Int((0..n_tx as i64).collect()),
        },
        bd: NodeStore {
            x: NodeFeatures::Dense {
                values: (0..n_bd * 4).map(|_| rng.random_range(0.0..1.0)).collect(),
                width: 4,
            },
            pos: bd_pos,
            pos_dim: 2,
            ids: NodeIds::Str((0..n_bd).map(|i| format!("cell-{i}")).collect()),
        },
        edges,
    }
}

/// Random points for kNN benches, `n` rows of `dim` coordinates in a square of side `side`.
pub fn random_points(seed: u64, n: usize, dim: usize, side: f32) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n * dim).map(|_| rng.random_range(0.0..side)).collect()
}

/// A random edge list with `e` edges from `ns` sources to `nd` destinations.
pub fn random_edges(seed: u64, ns: usize, nd: usize, e: usize) -> (Vec<i64>, Vec<i64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..e)
        .map(|_| {
            (
                rng.random_range(0..ns as i64),
                rng.random_range(0..nd as i64),
            )
        })
        .unzip()
}

/// The training batch of the step benches: 4 synthetic tiles × 10,300 transcripts × 106
/// nuclei, collated.
pub fn seed_batch() -> segger_graph::Batch {
    seed_batch_of(10_300)
}

/// [`seed_batch`] with `n_tx` transcripts per tile instead of 10,300 (106 nuclei each).
pub fn seed_batch_of(n_tx: usize) -> segger_graph::Batch {
    let tiles: Vec<_> = (0..4).map(|s| synthetic_tile(s, n_tx, 106)).collect();
    let refs: Vec<_> = tiles.iter().collect();
    segger_graph::Batch::collate(&refs).unwrap()
}

/// One training step as `segger train` runs it: forward, BCE on the label pairs, backward and
/// an optimiser step at learning rate 1e-4 (`optim` from
/// [`segger_model::optim::clipped_adamw`] clips the global norm at 1.0 first). Returns the
/// updated model and the loss.
pub fn train_step<B, O>(
    model: segger_model::Segger<B>,
    optim: &mut O,
    input: &segger_model::GraphInput<B>,
) -> (segger_model::Segger<B>, burn::tensor::Tensor<B, 1>)
where
    B: burn::tensor::backend::AutodiffBackend + segger_model::GatBackend,
    B::InnerBackend: segger_model::GatBackend,
    O: burn::optim::Optimizer<segger_model::Segger<B>, B>,
{
    let loss = label_loss(&model.forward(input), input);
    let grads = burn::optim::GradientsParams::from_grads(loss.backward(), &model);
    (optim.step(1e-4, model, grads), loss)
}

/// The training loss of embeddings `z`: BCE-with-logits on the batch's label pairs.
pub fn label_loss<B: segger_model::GatBackend>(
    z: &segger_model::Embeddings<B>,
    input: &segger_model::GraphInput<B>,
) -> burn::tensor::Tensor<B, 1> {
    let logits = segger_model::decode(
        z,
        input.label_tx.clone().unwrap(),
        input.label_bd.clone().unwrap(),
    );
    segger_model::bce_with_logits(logits, input.labels.clone().unwrap())
}

/// A GATv2 layer `fin` → `heads` × `channels` with N(0, 0.1) random parameters.
pub fn random_conv<B: segger_model::GatBackend>(
    fin: usize,
    heads: usize,
    channels: usize,
    device: &B::Device,
) -> segger_model::GatConv<B> {
    use burn::module::Param;
    use burn::tensor::{Distribution, Tensor};
    let p2 = |r: usize, c: usize| {
        Param::from_tensor(Tensor::<B, 2>::random(
            [r, c],
            Distribution::Normal(0.0, 0.1),
            device,
        ))
    };
    let p1 = |r: usize| {
        Param::from_tensor(Tensor::<B, 1>::random(
            [r],
            Distribution::Normal(0.0, 0.1),
            device,
        ))
    };
    segger_model::GatConv {
        lin_l_weight: p2(heads * channels, fin),
        lin_l_bias: p1(heads * channels),
        lin_r_weight: p2(heads * channels, fin),
        lin_r_bias: p1(heads * channels),
        att: p2(heads, channels),
        bias: p1(heads * channels),
        heads,
        channels,
    }
}
