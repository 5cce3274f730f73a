//! The whole model's training step (forward + backward + clipped AdamW) on a batch shaped like
//! real training: 4 tiles × ~10,300 transcripts × ~106 nuclei, seed config.

#[global_allocator]
static GLOBAL: segger_benches::Allocator = segger_benches::Allocator;

use burn::backend::{Autodiff, Flex, NdArray};
use burn::tensor::backend::AutodiffBackend;
use criterion::{criterion_group, Criterion, Throughput};
use segger_benches::{seed_batch, train_step};
use segger_model::{mp, GatBackend, GraphInput, Segger, SeggerConfig};

fn bench_step<B>(c: &mut Criterion, name: &str, fused: bool)
where
    B: AutodiffBackend + GatBackend,
    B::InnerBackend: GatBackend,
{
    let batch = seed_batch();
    let n_tx = batch.graph.tx.num_nodes();
    let cfg = SeggerConfig::new(500);
    let device = Default::default();
    let input = GraphInput::<B>::from_graph(&batch.graph, &cfg, &device).unwrap();
    let mut model = Some(Segger::<B>::init(&cfg, &device, 0).unwrap());
    let mut optim = segger_model::optim::clipped_adamw::<B, Segger<B>>(1e-4, 1.0);
    let mut g = c.benchmark_group("train_step");
    g.sample_size(10);
    g.throughput(Throughput::Elements(n_tx as u64));
    g.bench_function(name, |b| {
        b.iter(|| {
            mp::set_fused(fused);
            let (m, _loss) = train_step(model.take().unwrap(), &mut optim, &input);
            model = Some(m);
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
