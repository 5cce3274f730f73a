//! The model's message passing on wgpu (run in CI on Mesa's lavapipe software Vulkan): the
//! fused CubeCL GATv2 kernels against the generic-op reference, on wgpu and on the CPU.
//! Needs the `wgpu` feature and a Vulkan adapter; opt in with `SEGGER_WGPU_TEST=1`
//! (`.ci/run` sets it after installing `mesa-vulkan-drivers`).
#![cfg(feature = "wgpu")]

use burn::backend::{Autodiff, Flex, Wgpu};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use segger_graph::{EdgeType, NodeType};
use segger_model::mp::{self, GatBackend};
use segger_model::pyg::tensor_values;
use segger_model::RelationGraph;

/// Output and gradients (`xl`, `xr`, `att`) of `sum(gatv2(..) * w)`.
#[allow(clippy::too_many_arguments)]
fn run<B: AutodiffBackend + GatBackend>(
    fused: bool,
    s: &[i64],
    d: &[i64],
    (ns, nd): (usize, usize),
    vals: &[Vec<f32>; 4],
    h: usize,
    c: usize,
) -> Vec<Vec<f32>> {
    mp::set_fused(fused);
    let dev = Default::default();
    let g = RelationGraph::<B>::new(
        EdgeType::new(NodeType::Tx, "neighbors", NodeType::Bd),
        s,
        d,
        ns,
        nd,
        &dev,
    );
    let t3 = |v: &Vec<f32>, n: usize| {
        Tensor::<B, 3>::from_data(TensorData::new(v.clone(), [n, h, c]), &dev).require_grad()
    };
    let (xl, xr) = (t3(&vals[0], ns), t3(&vals[1], nd));
    let att =
        Tensor::<B, 2>::from_data(TensorData::new(vals[2].clone(), [h, c]), &dev).require_grad();
    let w = Tensor::<B, 3>::from_data(TensorData::new(vals[3].clone(), [nd, h, c]), &dev);
    let out = B::gatv2(xl.clone(), xr.clone(), att.clone(), &g);
    let grads = (out.clone() * w).sum().backward();
    mp::set_fused(true);
    vec![
        tensor_values(out),
        tensor_values(xl.grad(&grads).unwrap()),
        tensor_values(xr.grad(&grads).unwrap()),
        tensor_values(att.grad(&grads).unwrap()),
    ]
}

/// Largest difference relative to the largest magnitude of `want`.
fn rel_err(want: &[f32], got: &[f32]) -> f32 {
    assert_eq!(want.len(), got.len());
    let scale = want.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-30);
    want.iter().zip(got).fold(0f32, |m, (a, b)| {
        m.max(if b.is_nan() {
            f32::INFINITY
        } else {
            (a - b).abs()
        })
    }) / scale
}

struct Case {
    name: &'static str,
    ns: usize,
    nd: usize,
    s: Vec<i64>,
    d: Vec<i64>,
    h: usize,
    c: usize,
}

/// Random graphs with the shapes the issue names: destinations without incoming edges, one
/// destination with thousands of incoming edges, 1 head and 8 heads.
fn cases() -> Vec<Case> {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut out = Vec::new();
    // 4 heads × 8, the last 20 destinations have no incoming edge.
    let (ns, nd, e) = (300usize, 280usize, 1200usize);
    let s = (0..e).map(|_| rng.random_range(0..ns as i64)).collect();
    let d = (0..e)
        .map(|_| rng.random_range(0..(nd - 20) as i64))
        .collect();
    out.push(Case {
        name: "4 heads, empty destinations",
        ns,
        nd,
        s,
        d,
        h: 4,
        c: 8,
    });
    // One hub destination with 5,000 incoming edges, 1 head × 16.
    let (ns, nd) = (2000usize, 50usize);
    let mut s: Vec<i64> = (0..5000).map(|_| rng.random_range(0..ns as i64)).collect();
    let mut d: Vec<i64> = vec![7; 5000];
    for _ in 0..400 {
        s.push(rng.random_range(0..ns as i64));
        d.push(rng.random_range(0..nd as i64));
    }
    out.push(Case {
        name: "1 head, 5,000-edge hub",
        ns,
        nd,
        s,
        d,
        h: 1,
        c: 16,
    });
    // 8 heads × 4, sources without outgoing edges.
    let (ns, nd, e) = (500usize, 400usize, 3000usize);
    let s = (0..e)
        .map(|_| rng.random_range(0..(ns - 50) as i64))
        .collect();
    let d = (0..e).map(|_| rng.random_range(0..nd as i64)).collect();
    out.push(Case {
        name: "8 heads",
        ns,
        nd,
        s,
        d,
        h: 8,
        c: 4,
    });
    out
}

/// The parity fixtures' shapes: 1,141 sources, 7 hub destinations with ~490 edges each,
/// 2 heads × 8 or 16 channels and 4 heads × 16 or 64.
fn fixture_cases() -> Vec<Case> {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut out = Vec::new();
    for (h, c) in [(2usize, 8usize), (2, 16), (4, 16), (4, 64)] {
        let (ns, nd, e) = (1141usize, 7usize, 3423usize);
        let s = (0..e).map(|_| rng.random_range(0..ns as i64)).collect();
        let d = (0..e).map(|_| rng.random_range(0..nd as i64)).collect();
        out.push(Case {
            name: "fixture-shaped hubs",
            ns,
            nd,
            s,
            d,
            h,
            c,
        });
    }
    out
}

fn compare_with_generic<G: AutodiffBackend + GatBackend>(cases: Vec<Case>) {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    for case in cases {
        let (h, c) = (case.h, case.c);
        // xl holds odd and xr even multiples of 1/4096, so that no xl + xr is exactly 0, where
        // LeakyReLU has no derivative (the two paths may legitimately differ there).
        let mut grid = |k: usize, odd: i32| -> Vec<f32> {
            (0..k)
                .map(|_| (2 * rng.random_range(-2048..2048) + odd) as f32 / 4096.0)
                .collect()
        };
        let (xl, xr) = (grid(case.ns * h * c, 1), grid(case.nd * h * c, 0));
        let mut v =
            |k: usize| -> Vec<f32> { (0..k).map(|_| rng.random_range(-1.0..1.0)).collect() };
        let vals = [xl, xr, v(h * c), v(case.nd * h * c)];
        let sizes = (case.ns, case.nd);
        let reference = run::<Autodiff<Flex>>(false, &case.s, &case.d, sizes, &vals, h, c);
        let gpu_generic = run::<G>(false, &case.s, &case.d, sizes, &vals, h, c);
        let gpu_fused = run::<G>(true, &case.s, &case.d, sizes, &vals, h, c);
        for (k, what) in ["out", "d xl", "d xr", "d att"].iter().enumerate() {
            let e_fused = rel_err(&gpu_generic[k], &gpu_fused[k]);
            let e_cpu = rel_err(&reference[k], &gpu_fused[k]);
            eprintln!(
                "{} ({h}×{c}): {what}: fused vs generic on the GPU backend {e_fused:.2e}, vs generic on the CPU {e_cpu:.2e}",
                case.name
            );
            assert!(
                e_fused < 1e-5,
                "{}: {what}: fused differs by {e_fused:.2e}",
                case.name
            );
            assert!(
                e_cpu < 1e-5,
                "{}: {what}: differs from the CPU by {e_cpu:.2e}",
                case.name
            );
        }
        // Destinations without edges get exactly 0.
        let (nd, hc) = (case.nd, h * c);
        let used: std::collections::HashSet<i64> = case.d.iter().copied().collect();
        for i in (0..nd).filter(|i| !used.contains(&(*i as i64))) {
            assert!(gpu_fused[0][i * hc..(i + 1) * hc].iter().all(|&x| x == 0.0));
        }
    }
}

#[test]
fn fused_gatv2_on_wgpu_matches_the_generic_ops() {
    if std::env::var("SEGGER_WGPU_TEST").as_deref() != Ok("1") {
        eprintln!(
            "skipped: set SEGGER_WGPU_TEST=1 with a Vulkan adapter present (CI uses lavapipe)"
        );
        return;
    }
    let mut all = cases();
    all.extend(fixture_cases());
    compare_with_generic::<Autodiff<Wgpu>>(all);
}

/// The same on CUDA: opt in with `SEGGER_CUDA_TEST=1` on a machine with an NVIDIA GPU.
#[cfg(feature = "cuda")]
#[test]
fn fused_gatv2_on_cuda_matches_the_generic_ops() {
    if std::env::var("SEGGER_CUDA_TEST").as_deref() != Ok("1") {
        eprintln!("skipped: set SEGGER_CUDA_TEST=1 on a machine with an NVIDIA GPU");
        return;
    }
    let mut all = cases();
    all.extend(fixture_cases());
    compare_with_generic::<Autodiff<burn::backend::Cuda>>(all);
}

/// The kernel itself, without autodiff: `Wgpu::fused_forward` must give the fused result
/// (not `None`) and agree with the generic ops.
#[test]
fn wgpu_has_a_fused_forward_kernel() {
    if std::env::var("SEGGER_WGPU_TEST").as_deref() != Ok("1") {
        eprintln!("skipped: set SEGGER_WGPU_TEST=1");
        return;
    }
    let case = &cases()[0];
    let (h, c) = (case.h, case.c);
    let dev = Default::default();
    let g = RelationGraph::<Wgpu>::new(
        EdgeType::new(NodeType::Tx, "neighbors", NodeType::Bd),
        &case.s,
        &case.d,
        case.ns,
        case.nd,
        &dev,
    );
    let xl = Tensor::<Wgpu, 3>::random([case.ns, h, c], burn::tensor::Distribution::Default, &dev);
    let xr = Tensor::<Wgpu, 3>::random([case.nd, h, c], burn::tensor::Distribution::Default, &dev);
    let att = Tensor::<Wgpu, 2>::random([h, c], burn::tensor::Distribution::Default, &dev);
    let (out, alpha) = Wgpu::fused_forward(xl.clone(), xr.clone(), att.clone(), &g.fused())
        .expect("wgpu has a fused kernel");
    let generic = mp::gatv2_generic(xl, xr, att, &g);
    let err = rel_err(&tensor_values(generic), &tensor_values(out));
    assert!(err < 1e-5, "fused forward differs by {err:.2e}");
    // Attention weights of each destination sum to 1 (or 0 without edges).
    let a = tensor_values(alpha);
    for (i, w) in g.csr.row_ptr.windows(2).enumerate() {
        for hh in 0..h {
            let s: f32 = (w[0]..w[1]).map(|k| a[k * h + hh]).sum();
            let want = if w[0] == w[1] { 0.0 } else { 1.0 };
            assert!(
                (s - want).abs() < 1e-5,
                "destination {i} head {hh}: Σα = {s}"
            );
        }
    }
}

/// The grouped gather (embedding lookup, `decode`), the split linear and the chunked bias on wgpu: values and
/// gradients against the generic ops on the CPU.
#[test]
fn grouped_gather_and_split_linear_on_wgpu_match_the_cpu() {
    if std::env::var("SEGGER_WGPU_TEST").as_deref() != Ok("1") {
        eprintln!("skipped: set SEGGER_WGPU_TEST=1");
        return;
    }
    fn run<B: AutodiffBackend + GatBackend>(
        (split, exact): (bool, bool),
        idx: &[i64],
        x: &[f32],
        w: &[f32],
        (n, fin, fout): (usize, usize, usize),
    ) -> Vec<Vec<f32>> {
        mp::set_split_k(Some(split));
        mp::set_exact_linear(exact);
        let dev = Default::default();
        let xt =
            Tensor::<B, 2>::from_data(TensorData::new(x.to_vec(), [n, fin]), &dev).require_grad();
        let wt = Tensor::<B, 2>::from_data(TensorData::new(w.to_vec(), [fout, fin]), &dev)
            .require_grad();
        let bias: Vec<f32> = (0..fout).map(|i| i as f32 * 0.1 - 0.5).collect();
        let bt = Tensor::<B, 1>::from_data(TensorData::new(bias, [fout]), &dev).require_grad();
        let y = mp::add_bias(mp::linear(xt.clone(), wt.clone()), bt.clone());
        let rows = mp::RowIndex::<B>::new(idx, n, &dev);
        let g = mp::gather_grouped(y.clone(), &rows);
        let weights = Tensor::<B, 1>::from_data(
            TensorData::new(
                (0..idx.len())
                    .map(|i| (i % 7) as f32 - 3.0)
                    .collect::<Vec<_>>(),
                [idx.len()],
            ),
            &dev,
        );
        let loss = (g.sum_dim(1).squeeze_dim::<1>(1) * weights).sum();
        let grads = loss.backward();
        mp::set_split_k(None);
        mp::set_exact_linear(false);
        vec![
            tensor_values(y),
            tensor_values(xt.grad(&grads).unwrap()),
            tensor_values(wt.grad(&grads).unwrap()),
            tensor_values(bt.grad(&grads).unwrap()),
        ]
    }
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    // 5,000 rows: split into 5 chunks, the last one padded. Row 0 is gathered 3,000 times,
    // rows ≥ 4,000 never.
    let (n, fin, fout) = (5000usize, 8usize, 16usize);
    let mut idx: Vec<i64> = vec![0; 3000];
    idx.extend((0..6000).map(|_| rng.random_range(0..4000)));
    let x: Vec<f32> = (0..n * fin).map(|_| rng.random_range(-1.0..1.0)).collect();
    let w: Vec<f32> = (0..fout * fin)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let cpu = run::<Autodiff<Flex>>((false, false), &idx, &x, &w, (n, fin, fout));
    for split in [(false, false), (true, false), (false, true)] {
        let gpu = run::<Autodiff<Wgpu>>(split, &idx, &x, &w, (n, fin, fout));
        for (k, what) in ["y", "d x", "d w", "d bias"].iter().enumerate() {
            let e = rel_err(&cpu[k], &gpu[k]);
            eprintln!("(split, exact) {split:?}: {what}: relative error {e:.2e}");
            assert!(e < 1e-5, "(split, exact) {split:?}: {what}: {e:.2e}");
        }
    }
}
