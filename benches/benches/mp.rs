//! Message passing: the primitives and one GATv2 attention-aggregation op, forward and
//! backward, generic tensor ops against the fused kernels, at three sizes.

#[global_allocator]
static GLOBAL: segger_benches::Allocator = segger_benches::Allocator;

use burn::backend::{Autodiff, Flex};
use burn::tensor::{Distribution, Int, Tensor, TensorData};
use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use segger_benches::{random_conv, random_edges};
use segger_graph::{EdgeType, NodeType};
use segger_model::mp::{self, GatBackend};
use segger_model::RelationGraph;

type B = Flex;
type AD = Autodiff<Flex>;

fn layer(c: &mut Criterion) {
    let (h, ch) = (4usize, 16usize);
    let mut g = c.benchmark_group("gatv2_fwd_bwd");
    g.sample_size(10);
    for (name, n, e) in [
        ("tile_10k_30k", 10_000usize, 30_000usize),
        ("batch_41k_123k", 41_000, 123_000),
        ("200k_1M", 200_000, 1_000_000),
    ] {
        let (s, d) = random_edges(1, n, n, e);
        let graph = RelationGraph::<AD>::new(
            EdgeType::new(NodeType::Tx, "neighbors", NodeType::Tx),
            &s,
            &d,
            n,
            n,
            &Default::default(),
        );
        let dev = Default::default();
        let xl = Tensor::<AD, 3>::random([n, h, ch], Distribution::Normal(0.0, 1.0), &dev);
        let xr = Tensor::<AD, 3>::random([n, h, ch], Distribution::Normal(0.0, 1.0), &dev);
        let att = Tensor::<AD, 2>::random([h, ch], Distribution::Normal(0.0, 1.0), &dev);
        g.throughput(Throughput::Elements(e as u64));
        for fused in [true, false] {
            if !fused && n > 50_000 {
                // The generic path at 200k/1M takes several seconds per step; measure it with
                // `--bench mp -- 200k_1M` explicitly if needed.
                continue;
            }
            let id = BenchmarkId::new(if fused { "fused" } else { "generic" }, name);
            g.bench_function(id, |b| {
                b.iter(|| {
                    mp::set_fused(fused);
                    let (l, r, a) = (
                        xl.clone().require_grad(),
                        xr.clone().require_grad(),
                        att.clone().require_grad(),
                    );
                    let out = AD::gatv2(l.clone(), r, a, &graph);
                    let grads = out.sum().backward();
                    l.grad(&grads).unwrap()
                })
            });
        }
    }
    g.finish();
}

/// One whole GATv2 layer (lin_l, lin_r, attention, aggregation, bias), 64 → 4 heads × 16,
/// forward and backward, as in the PyTorch comparison (PyTorch CPU, 2 threads:
/// 1,604 ms at 200k nodes / 1M edges on this machine type).
fn whole_layer(c: &mut Criterion) {
    let (fin, h, ch) = (64usize, 4usize, 16usize);
    let mut g = c.benchmark_group("gatv2_layer_64_to_4x16_fwd_bwd");
    g.sample_size(10);
    for (name, n, e) in [
        ("batch_41k_123k", 41_000usize, 123_000usize),
        ("200k_1M", 200_000, 1_000_000),
    ] {
        let (s, d) = random_edges(3, n, n, e);
        let dev = Default::default();
        let graph = RelationGraph::<AD>::new(
            EdgeType::new(NodeType::Tx, "neighbors", NodeType::Tx),
            &s,
            &d,
            n,
            n,
            &dev,
        );
        let conv = random_conv::<AD>(fin, h, ch, &dev);
        let x = Tensor::<AD, 2>::random([n, fin], Distribution::Normal(0.0, 1.0), &dev);
        g.throughput(Throughput::Elements(e as u64));
        g.bench_function(BenchmarkId::new("fused", name), |b| {
            b.iter(|| {
                mp::set_fused(true);
                let xi = x.clone().require_grad();
                let out = conv.forward(xi.clone(), xi.clone(), &graph);
                let grads = out.sum().backward();
                xi.grad(&grads).unwrap()
            })
        });
    }
    g.finish();
}

fn primitives(c: &mut Criterion) {
    let (n, e, w) = (41_000usize, 123_000usize, 256usize);
    let (s, d) = random_edges(2, n, n, e);
    let dev = Default::default();
    let x = Tensor::<B, 2>::random([n, w], Distribution::Normal(0.0, 1.0), &dev);
    let src = Tensor::<B, 1, Int>::from_data(TensorData::new(s, [e]), &dev);
    let dst = Tensor::<B, 1, Int>::from_data(TensorData::new(d, [e]), &dev);
    let vals = Tensor::<B, 2>::random([e, w], Distribution::Normal(0.0, 1.0), &dev);
    let mut g = c.benchmark_group("primitives_123k_edges_x256");
    g.sample_size(10);
    g.bench_function("gather_rows", |b| {
        b.iter(|| mp::gather_rows(x.clone(), src.clone()))
    });
    g.bench_function("scatter_add_rows", |b| {
        b.iter(|| mp::scatter_add_rows(vals.clone(), dst.clone(), n))
    });
    g.finish();
}

criterion_group!(benches, layer, whole_layer, primitives);
fn main() {
    segger_benches::configure_allocator();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
