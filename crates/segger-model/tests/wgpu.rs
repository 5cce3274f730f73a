//! The model's message passing on wgpu (run in CI on Mesa's lavapipe software Vulkan) against
//! the CPU. Needs the `wgpu` feature and a Vulkan adapter; opt in with `SEGGER_WGPU_TEST=1`
//! (`.ci/run` sets it after installing `mesa-vulkan-drivers`).
#![cfg(feature = "wgpu")]

use burn::backend::{Autodiff, Flex, Wgpu};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use segger_graph::{EdgeType, NodeType};
use segger_model::mp::GatBackend;
use segger_model::pyg::tensor_values;
use segger_model::RelationGraph;

fn run<B: AutodiffBackend + GatBackend>(
    s: &[i64],
    d: &[i64],
    n: usize,
    vals: &[Vec<f32>; 4],
    h: usize,
    c: usize,
) -> Vec<Vec<f32>> {
    let dev = Default::default();
    let g = RelationGraph::<B>::new(
        EdgeType::new(NodeType::Tx, "neighbors", NodeType::Tx),
        s,
        d,
        n,
        n,
        &dev,
    );
    let t3 = |v: &Vec<f32>| {
        Tensor::<B, 3>::from_data(TensorData::new(v.clone(), [n, h, c]), &dev).require_grad()
    };
    let (xl, xr) = (t3(&vals[0]), t3(&vals[1]));
    let att =
        Tensor::<B, 2>::from_data(TensorData::new(vals[2].clone(), [h, c]), &dev).require_grad();
    let w = Tensor::<B, 3>::from_data(TensorData::new(vals[3].clone(), [n, h, c]), &dev);
    let out = B::gatv2(xl.clone(), xr.clone(), att.clone(), &g);
    let grads = (out.clone() * w).sum().backward();
    vec![
        tensor_values(out),
        tensor_values(xl.grad(&grads).unwrap()),
        tensor_values(xr.grad(&grads).unwrap()),
        tensor_values(att.grad(&grads).unwrap()),
    ]
}

#[test]
fn gatv2_on_wgpu_matches_cpu() {
    if std::env::var("SEGGER_WGPU_TEST").as_deref() != Ok("1") {
        eprintln!(
            "skipped: set SEGGER_WGPU_TEST=1 with a Vulkan adapter present (CI uses lavapipe)"
        );
        return;
    }
    let (n, e, h, c) = (300usize, 1200usize, 4usize, 8usize);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let s: Vec<i64> = (0..e).map(|_| rng.random_range(0..n as i64)).collect();
    let d: Vec<i64> = (0..e)
        .map(|_| rng.random_range(0..(n - 20) as i64))
        .collect();
    let mut v = |k: usize| -> Vec<f32> { (0..k).map(|_| rng.random_range(-1.0..1.0)).collect() };
    let vals = [v(n * h * c), v(n * h * c), v(h * c), v(n * h * c)];
    let cpu = run::<Autodiff<Flex>>(&s, &d, n, &vals, h, c);
    let gpu = run::<Autodiff<Wgpu>>(&s, &d, n, &vals, h, c);
    for (k, what) in ["out", "d xl", "d xr", "d att"].iter().enumerate() {
        let scale = cpu[k].iter().fold(0f32, |m, x| m.max(x.abs()));
        let err = cpu[k]
            .iter()
            .zip(&gpu[k])
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()))
            / scale;
        eprintln!("{what}: relative error {err:.2e}");
        assert!(err < 1e-4, "{what}: wgpu differs from the CPU by {err:.2e}");
    }
}
