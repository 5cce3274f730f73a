//! kNN graph construction (1M points, k = 5, 3-D) and batch collation.

#[global_allocator]
static GLOBAL: segger_benches::Allocator = segger_benches::Allocator;

use criterion::{criterion_group, Criterion, Throughput};
use segger_benches::{random_points, synthetic_tile};
use segger_graph::knn::{knn_same, KnnParams};
use segger_graph::Batch;

fn knn(c: &mut Criterion) {
    let mut g = c.benchmark_group("knn");
    g.sample_size(10);
    let n = 1_000_000;
    // Xenium-like density: 0.4 transcripts per square micrometre, 10 µm deep.
    let side = (n as f32 / 0.4).sqrt();
    let pts: Vec<f32> = random_points(1, n, 3, side)
        .chunks(3)
        .flat_map(|p| [p[0], p[1], p[2] / side * 10.0])
        .collect();
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("knn_1M_k5_3d", |b| {
        b.iter(|| knn_same(&pts, 3, KnnParams::new(5, 5.0)).unwrap())
    });
    g.finish();
}

fn collate(c: &mut Criterion) {
    let tiles: Vec<_> = (0..4).map(|s| synthetic_tile(s, 10_300, 106)).collect();
    let refs: Vec<_> = tiles.iter().collect();
    let mut g = c.benchmark_group("collate");
    g.throughput(Throughput::Elements(41_200));
    g.bench_function("batch_4x10k", |b| b.iter(|| Batch::collate(&refs).unwrap()));
    g.finish();
}

criterion_group!(benches, knn, collate);
fn main() {
    segger_benches::configure_allocator();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
