//! The whole model's training step (forward + backward + clipped AdamW) on a batch shaped like
//! real training: 4 tiles × ~10,300 transcripts × ~106 nuclei, seed config.

#[global_allocator]
static GLOBAL: segger_benches::Allocator = segger_benches::Allocator;

use burn::backend::{Autodiff, Flex, NdArray};
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use criterion::{criterion_group, Criterion, Throughput};
use segger_benches::synthetic_tile;
use segger_graph::Batch;
use segger_model::{bce_with_logits, decode, mp, GatBackend, GraphInput, Segger, SeggerConfig};

fn bench_step<B>(c: &mut Criterion, name: &str, fused: bool)
where
    B: AutodiffBackend + GatBackend,
    B::InnerBackend: GatBackend,
{
    let tiles: Vec<_> = (0..4).map(|s| synthetic_tile(s, 10_300, 106)).collect();
    let refs: Vec<_> = tiles.iter().collect();
    let batch = Batch::collate(&refs).unwrap();
    let n_tx = batch.graph.tx.num_nodes();
    let cfg = SeggerConfig::new(500);
    let device = Default::default();
    let input = GraphInput::<B>::from_graph(&batch.graph, &cfg, &device).unwrap();
    let mut model = Some(Segger::<B>::init(&cfg, &device, 0).unwrap());
    let mut optim = segger_model::optim::adamw_config(1e-4).init::<B, Segger<B>>();
    let mut g = c.benchmark_group("train_step");
    g.sample_size(10);
    g.throughput(Throughput::Elements(n_tx as u64));
    g.bench_function(name, |b| {
        b.iter(|| {
            mp::set_fused(fused);
            let m = model.take().unwrap();
            let z = m.forward(&input);
            let logits = decode(
                &z,
                input.label_tx.clone().unwrap(),
                input.label_bd.clone().unwrap(),
            );
            let loss = bce_with_logits(logits, input.labels.clone().unwrap());
            let mut grads = GradientsParams::from_grads(loss.backward(), &m);
            segger_model::optim::clip_grad_norm(&m, &mut grads, 1.0);
            model = Some(optim.step(1e-4, m, grads));
        })
    });
    g.finish();
}

fn steps(c: &mut Criterion) {
    bench_step::<Autodiff<Flex>>(c, "flex_fused", true);
    bench_step::<Autodiff<NdArray>>(c, "ndarray_fused", true);
    bench_step::<Autodiff<Flex>>(c, "flex_generic", false);
}

criterion_group!(benches, steps);
fn main() {
    segger_benches::configure_allocator();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
