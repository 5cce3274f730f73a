//! The model's message passing on wgpu (run in CI on Mesa's lavapipe software Vulkan): the
//! fused CubeCL GATv2 kernels against the generic-op reference, on wgpu and on the CPU.
//! Needs the `wgpu` feature and a Vulkan adapter: the tests are ignored unless asked for
//! (`--ignored wgpu`; `.ci/run` runs them after installing `mesa-vulkan-drivers`).
#![cfg(feature = "wgpu")]

#[macro_use]
mod common;

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
    // 4 heads × 8, the last 20 destinations have no incoming edge; a destination count that is
    // not a multiple of the backward's destinations per thread (4).
    let (ns, nd, e) = (300usize, 283usize, 1200usize);
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
#[ignore = "needs a GPU: a Vulkan adapter for wgpu (CI: Mesa's lavapipe)"]
fn fused_gatv2_on_wgpu_matches_the_generic_ops() {
    let mut all = cases();
    all.extend(fixture_cases());
    compare_with_generic::<Autodiff<Wgpu>>(all);
}

/// The same on CUDA, on a machine with an NVIDIA GPU (`--ignored cuda`).
#[cfg(feature = "cuda")]
#[test]
#[ignore = "needs a GPU: an NVIDIA GPU with its CUDA driver"]
fn fused_gatv2_on_cuda_matches_the_generic_ops() {
    let mut all = cases();
    all.extend(fixture_cases());
    compare_with_generic::<Autodiff<burn::backend::Cuda>>(all);
}

on_wgpu_and_cuda!(
    /// The edge kernel's lane variant (`mp::set_edge_lanes`: 16 threads per (edge, head)) inside
    /// the fused op, against the generic ops, on the same graphs as the default kernel.
    edge_lanes_on_wgpu_match_the_generic_ops,
    edge_lanes_on_cuda_match_the_generic_ops,
    edge_lanes_match_generic
);

fn edge_lanes_match_generic<G: GatBackend>() {
    let mut all = cases();
    all.extend(fixture_cases());
    // 3 heads × 40 channels: two full rounds of 16 lanes and a partial one.
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let (ns, nd, e) = (700usize, 600usize, 2500usize);
    all.push(Case {
        name: "3 heads × 40 channels",
        ns,
        nd,
        s: (0..e).map(|_| rng.random_range(0..ns as i64)).collect(),
        d: (0..e).map(|_| rng.random_range(0..nd as i64)).collect(),
        h: 3,
        c: 40,
    });
    // The variant really runs: it sums the channels in another order than the default kernel,
    // so some output differs in its last bits.
    let last = all.last().expect("a case");
    let mut rng = ChaCha8Rng::seed_from_u64(14);
    let mut v = |k: usize| -> Vec<f32> { (0..k).map(|_| rng.random_range(-1.0..1.0)).collect() };
    let (hc, sizes) = (last.h * last.c, (last.ns, last.nd));
    let vals = [v(last.ns * hc), v(last.nd * hc), v(hc), v(last.nd * hc)];
    let out = |lanes: bool| {
        mp::set_edge_lanes(lanes);
        run::<Autodiff<G>>(true, &last.s, &last.d, sizes, &vals, last.h, last.c)
    };
    let (with, without) = (out(true), out(false));
    assert_ne!(
        with[0], without[0],
        "the lane variant gave bit-identical outputs"
    );
    mp::set_edge_lanes(true);
    compare_with_generic::<Autodiff<G>>(all);
    mp::set_edge_lanes(false);
}

/// The kernel itself, without autodiff: `Wgpu::fused_forward` must give the fused result
/// (not `None`) and agree with the generic ops.
#[test]
#[ignore = "needs a GPU: a Vulkan adapter for wgpu (CI: Mesa's lavapipe)"]
fn wgpu_has_a_fused_forward_kernel() {
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
#[ignore = "needs a GPU: a Vulkan adapter for wgpu (CI: Mesa's lavapipe)"]
fn grouped_gather_and_split_linear_on_wgpu_match_the_cpu() {
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

on_wgpu_and_cuda!(
    /// The one-kernel AdamW step on the GPU against the generic ops on the CPU, over three steps
    /// (the first one without moments), on fresh random values with a wide range of magnitudes.
    adamw_kernel_on_wgpu_matches_the_generic_ops,
    adamw_kernel_on_cuda_matches_the_generic_ops,
    adamw_matches_generic
);

on_wgpu_and_cuda!(
    /// The column-sum kernel (bias gradients, the chunk sums of the split weight gradient,
    /// `grad_att`) on the GPU against sums in f64 on the host: no rows, one row, one cube's rows and one
    /// more, several cubes with a ragged last one, and widths from one column to many column tiles.
    col_sum_kernel_on_wgpu_matches_the_host,
    col_sum_kernel_on_cuda_matches_the_host,
    col_sum_matches_host
);

on_wgpu_and_cuda!(
    /// The squared norms of the gradient clip on the GPU against f64 sums on the host: 70 tensors (more
    /// than one launch's group), from one element to 70,001, one of them a transposed view read in
    /// place.
    sum_squares_kernel_on_wgpu_matches_the_host,
    sum_squares_kernel_on_cuda_matches_the_host,
    sum_squares_matches_host
);

fn sum_squares_matches_host<G: GatBackend>() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let dev = Default::default();
    let mut want = Vec::new();
    let mut xs = Vec::new();
    for i in 0..70usize {
        let (r, c) = match i {
            0 => (1, 1),
            1 => (70_001, 1),
            _ => (1 + (i * 37) % 97, 1 + (i * 13) % 61),
        };
        let v: Vec<f32> = (0..r * c).map(|_| rng.random_range(-2.0f32..2.0)).collect();
        want.push(v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>());
        // Every third tensor is a transposed view of a [c, r] buffer holding the same elements.
        let t = if i % 3 == 2 {
            let vt: Vec<f32> = (0..r * c).map(|k| v[(k % r) * c + k / r]).collect();
            Tensor::<G, 2>::from_data(TensorData::new(vt, [c, r]), &dev).transpose()
        } else {
            Tensor::<G, 2>::from_data(TensorData::new(v, [r, c]), &dev)
        };
        xs.push(t.into_primitive().tensor());
    }
    let got = tensor_values(G::sum_squares(xs));
    assert_eq!(got.len(), want.len());
    for (i, (w, g)) in want.iter().zip(&got).enumerate() {
        assert!(
            (w - *g as f64).abs() <= 1e-5 * w.max(1.0),
            "tensor {i}: {g} against {w}"
        );
    }
}

fn col_sum_matches_host<G: GatBackend>() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let dev = Default::default();
    for (rows, cols) in [
        (0usize, 5usize),
        (1, 1),
        (256, 64),
        (257, 33),
        (5_000, 64),
        (41_000, 16),
        (41, 4_096),
        (70_001, 3),
    ] {
        let x: Vec<f32> = (0..rows * cols)
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect();
        let want: Vec<f64> = (0..cols)
            .map(|c| (0..rows).map(|r| x[r * cols + c] as f64).sum())
            .collect();
        let t = Tensor::<G, 2>::from_data(TensorData::new(x, [rows, cols]), &dev);
        let got = tensor_values(G::col_sum(t));
        assert_eq!(got.len(), cols, "{rows} × {cols}");
        // f32 accumulation over `rows` terms of magnitude ≤ 1.
        let tol = 1e-6 * (rows as f64).max(1.0);
        for (c, (w, g)) in want.iter().zip(&got).enumerate() {
            assert!(
                (w - *g as f64).abs() <= tol,
                "{rows} × {cols}, column {c}: {g} against {w}"
            );
        }
    }
}

on_wgpu_and_cuda!(
    /// `mp::matmul` at the default float32 precision (`Highest`: CubeCL's unit matmul, plain f32
    /// multiply-adds) against f64 products on the host, in the shapes the model multiplies: a
    /// layer's `x Wᵀ` (a transposed weight), the input gradient `dy W`, the weight gradient `xᵀ dy`
    /// (a transposed view) and its split form, a batch of per-chunk products, at small sizes and
    /// at the seed batch's. Burn's own matmul
    /// is printed beside it; on CUDA it rounds to TF32 (about 1e-3), so there the test also shows
    /// that the switch takes another kernel.
    unit_matmul_on_wgpu_matches_the_host,
    unit_matmul_on_cuda_matches_the_host,
    unit_matmul_matches_host
);

/// Relative error ‖got − want‖∞ / ‖want‖∞ of a `[batch, m, n]` product.
fn matmul_error(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0.0f64, |m, w| m.max(w.abs())).max(1e-30);
    got.iter()
        .zip(want)
        .fold(0.0f64, |m, (g, w)| m.max((*g as f64 - w).abs()))
        / scale
}

/// Element `(r, c)` of matrix `b` of a batch of `[rows, cols]` matrices stored row-major, or
/// stored as their transposes (`[cols, rows]` each) when `transposed`.
fn element(
    v: &[f32],
    transposed: bool,
    (rows, cols): (usize, usize),
    b: usize,
    r: usize,
    c: usize,
) -> f64 {
    let i = if transposed {
        (b * cols + c) * rows + r
    } else {
        (b * rows + r) * cols + c
    };
    v[i] as f64
}

fn unit_matmul_matches_host<G: GatBackend>() {
    use segger_model::mp::{float32_matmul_precision, MatmulPrecision};
    assert_eq!(float32_matmul_precision(), MatmulPrecision::Highest);
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let dev = Default::default();
    // (batch, m, k, n, lhs stored transposed, rhs stored transposed)
    for (batch, m, k, n, lt, rt) in [
        (1usize, 3_000usize, 256usize, 64usize, false, true),
        (1, 3_000, 64, 256, false, false),
        (1, 256, 3_000, 64, true, false),
        (1, 1, 1, 1, false, false),
        (1, 17, 5, 3, false, true),
        (6, 48, 1_024, 40, true, false),
        // The seed model's other shapes: the first layer's `x Wᵀ` (8 inputs) and `dy W`, the
        // boundaries' input layer, and the split weight gradient of the first layer.
        (1, 3_000, 8, 256, false, true),
        (1, 3_000, 256, 8, false, false),
        (1, 424, 4, 8, false, true),
        (3, 8, 1_024, 256, true, false),
        (3, 256, 1_024, 256, true, false),
        (1, 41_984, 256, 256, false, true),
        (41, 256, 1_024, 256, true, false),
        (41, 256, 1_024, 64, true, false),
    ] {
        let mut values =
            |len: usize| -> Vec<f32> { (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect() };
        // Stored as [batch, k, m] when transposed, then viewed as [batch, m, k].
        let a = values(batch * m * k);
        let b = values(batch * k * n);
        let at = |bi: usize, i: usize, p: usize| element(&a, lt, (m, k), bi, i, p);
        let bt = |bi: usize, p: usize, j: usize| element(&b, rt, (k, n), bi, p, j);
        let mut want = vec![0.0f64; batch * m * n];
        for bi in 0..batch {
            for i in 0..m {
                for j in 0..n {
                    want[(bi * m + i) * n + j] = (0..k).map(|p| at(bi, i, p) * bt(bi, p, j)).sum();
                }
            }
        }
        let ta = Tensor::<G, 3>::from_data(
            TensorData::new(a, if lt { [batch, k, m] } else { [batch, m, k] }),
            &dev,
        );
        let tb = Tensor::<G, 3>::from_data(
            TensorData::new(b, if rt { [batch, n, k] } else { [batch, k, n] }),
            &dev,
        );
        let ta = if lt { ta.swap_dims(1, 2) } else { ta };
        let tb = if rt { tb.swap_dims(1, 2) } else { tb };
        let what =
            format!("[{batch}, {m}, {k}] · [{batch}, {k}, {n}] (lhs transposed {lt}, rhs {rt})");
        let burn = tensor_values(ta.clone().matmul(tb.clone()));
        let eb = matmul_error(&burn, &want);
        let unit = if batch == 1 {
            let [a2, b2] = [ta.clone(), tb.clone()].map(|t| t.squeeze_dim::<2>(0));
            tensor_values(mp::matmul(a2, b2))
        } else {
            tensor_values(mp::matmul(ta.clone(), tb.clone()))
        };
        let eu = matmul_error(&unit, &want);
        eprintln!("{what}: unit matmul {eu:.2e}, Burn's matmul {eb:.2e}");
        // f32 products summed over k terms.
        assert!(eu <= 2e-6 * (k as f64).sqrt().max(1.0), "{what}: {eu:.2e}");
    }
}

on_wgpu_and_cuda!(
    /// The multi-tensor AdamW step on the GPU against the generic ops on the CPU, parameter by
    /// parameter: 41 parameters from one element to 70,001, with steps 1, 2 and 5 mixed (three
    /// groups of step scalars, one of them larger than one launch), with and without a clip
    /// coefficient.
    adamw_multi_kernel_on_wgpu_matches_the_generic_ops,
    adamw_multi_kernel_on_cuda_matches_the_generic_ops,
    adamw_multi_matches_generic
);

fn adamw_multi_matches_generic<G: GatBackend>() {
    use burn::backend::Flex;
    use segger_model::mp::{adamw_generic, AdamWParam, AdamWStep};
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let dev_c = Default::default();
    let dev_g = Default::default();
    let t1 =
        |v: &[f32]| Tensor::<Flex, 1>::from_data(TensorData::new(v.to_vec(), [v.len()]), &dev_c);
    let t2 = |v: &[f32]| Tensor::<G, 1>::from_data(TensorData::new(v.to_vec(), [v.len()]), &dev_g);
    for scale in [None, Some(0.37f32)] {
        let mut want = Vec::new();
        let mut params = Vec::new();
        for k in 0..41usize {
            let n = match k {
                0 => 1,
                1 => 70_001,
                _ => 1 + (k * 211) % 3000,
            };
            let mut vals = |lo: f32| -> Vec<f32> {
                (0..n)
                    .map(|_| rng.random_range(lo..1.0f32) * 10f32.powi(rng.random_range(-6..2)))
                    .collect()
            };
            let (p, g) = (vals(-1.0), vals(-1.0));
            // Steps 1, 2 and 5 for the first six; step 2 for the rest (35 in all: two launches).
            let t = if k < 6 { [1u32, 2, 5][k % 3] } else { 2 };
            let moments = (t > 1).then(|| (vals(-1.0), vals(0.0)));
            let s = AdamWStep::new(1e-3, 1e-2, 0.9, 0.999, 1e-8, t);
            let gs: Vec<f32> = g.iter().map(|x| x * scale.unwrap_or(1.0)).collect();
            let (pc, mc, vc) = adamw_generic(
                t1(&p),
                t1(&gs),
                moments.as_ref().map(|(m, v)| (t1(m), t1(v))),
                &s,
            );
            want.push((
                p.clone(),
                tensor_values(pc),
                tensor_values(mc),
                tensor_values(vc),
            ));
            params.push(AdamWParam {
                p: t2(&p),
                g: t2(&g),
                moments: moments.as_ref().map(|(m, v)| (t2(m), t2(v))),
                step: s,
            });
        }
        let got = G::adamw_multi(params, scale.map(|c| t2(&[c])));
        assert_eq!(got.len(), want.len());
        for (k, ((p0, pc, mc, vc), (pg, mg, vg))) in want.iter().zip(got).enumerate() {
            let pg = tensor_values(pg);
            let max_update = pc
                .iter()
                .zip(p0)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            let excess = pc.iter().zip(&pg).fold(0f32, |m, (a, b)| {
                m.max((a - b).abs() - 4.0 * f32::EPSILON * a.abs())
            });
            assert!(max_update > 0.0, "parameter {k}: did not move");
            assert!(
                excess <= 1e-5 * max_update,
                "parameter {k} (scale {scale:?}): {excess:.2e} beyond 4 ulp (largest update {max_update:.2e})"
            );
            for (what, a, b) in [("m", mc, tensor_values(mg)), ("v", vc, tensor_values(vg))] {
                let e = rel_err(a, &b);
                assert!(e < 1e-5, "parameter {k} (scale {scale:?}): {what}: {e:.2e}");
            }
        }
    }
}

fn adamw_matches_generic<G: GatBackend>() {
    use burn::backend::Flex;
    use segger_model::mp::{adamw_generic, AdamWStep};
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    // 70,001 elements: more than one launch block, not a multiple of any block size.
    let n = 70_001;
    let mut vals = |scale: f32| -> Vec<f32> {
        (0..n)
            .map(|_| rng.random_range(-1.0f32..1.0) * scale * 10f32.powi(rng.random_range(-6..2)))
            .collect()
    };
    let p0 = vals(1.0);
    let dev_c = Default::default();
    let dev_g = Default::default();
    let t1 = |v: &[f32]| Tensor::<Flex, 1>::from_data(TensorData::new(v.to_vec(), [n]), &dev_c);
    let t2 = |v: &[f32]| Tensor::<G, 1>::from_data(TensorData::new(v.to_vec(), [n]), &dev_g);
    let (mut pc, mut mvc) = (t1(&p0), None);
    let (mut pg, mut mvg) = (t2(&p0), None);
    let mut prev = p0.clone();
    for t in 1..=3u32 {
        let g = vals(1.0);
        let s = AdamWStep::new(1e-3, 1e-2, 0.9, 0.999, 1e-8, t);
        let (p, m, v) = adamw_generic(pc, t1(&g), mvc, &s);
        (pc, mvc) = (p, Some((m, v)));
        let (p, m, v) = G::adamw_step(pg, t2(&g), mvg, None, &s);
        (pg, mvg) = (p, Some((m, v)));
        let (mc, vc) = mvc.clone().unwrap();
        let (mg, vg) = mvg.clone().unwrap();
        // The parameter: within 4 ulp of its value (the final rounding of p·decay − update can
        // differ by an ulp where a GPU fuses the multiply-add) plus 1e-5 of the largest update.
        let (new_c, new_g) = (tensor_values(pc.clone()), tensor_values(pg.clone()));
        let max_update = new_c
            .iter()
            .zip(&prev)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        let excess = new_c.iter().zip(&new_g).fold(0f32, |m, (a, b)| {
            m.max((a - b).abs() - 4.0 * f32::EPSILON * a.abs())
        });
        eprintln!("step {t}: p: beyond 4 ulp {excess:.2e}, largest update {max_update:.2e}");
        assert!(max_update > 0.0, "step {t}: the parameters did not move");
        assert!(
            excess <= 1e-5 * max_update,
            "step {t}: p: {excess:.2e} beyond 4 ulp (largest update {max_update:.2e})"
        );
        assert!(
            new_g.iter().all(|x| x.is_finite()),
            "step {t}: p: not finite"
        );
        for (what, a, b) in [
            ("m", tensor_values(mc), tensor_values(mg)),
            ("v", tensor_values(vc), tensor_values(vg)),
        ] {
            let e = rel_err(&a, &b);
            eprintln!("step {t}: {what}: relative error {e:.2e}");
            assert!(e < 1e-5, "step {t}: {what}: {e:.2e}");
            assert!(a.iter().any(|x| *x != 0.0), "step {t}: {what}: all zero");
            assert!(
                b.iter().all(|x| x.is_finite()),
                "step {t}: {what}: not finite"
            );
        }
        prev = new_c;
    }
}

/// A batch over 2 × [`mp::SPLIT_K_ROWS`] transcripts on wgpu: the GPU input pads the transcripts
/// to a multiple of [`mp::SPLIT_K_ROWS`], and embeddings, logits, loss and every gradient must
/// still match the unpadded CPU run. Three copies of the parity tile (3,423 transcripts, padded
/// to 4,096), the `small` parity weights.
#[test]
#[ignore = "needs a GPU: a Vulkan adapter for wgpu (CI: Mesa's lavapipe)"]
fn padded_batch_on_wgpu_matches_the_cpu() {
    use burn::optim::GradientsParams;
    use segger_model::pyg::load_pyg_state_dict;
    use segger_model::{bce_with_logits, decode, GraphInput, NamedParam};
    let dir = std::env::var_os("SEGGER_PARITY_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| common::test_data("parity"));
    let weights = dir.join("small.weights.safetensors");
    let tile = segger_data::read_tile(&dir.join("tile.safetensors"), None).expect("tile");
    let batch = segger_graph::Batch::collate(&[&tile.graph, &tile.graph, &tile.graph]).unwrap();

    fn run<B: AutodiffBackend + GatBackend>(
        weights: &std::path::Path,
        graph: &segger_graph::HeteroGraph,
    ) -> (usize, Vec<Vec<f32>>) {
        let dev = Default::default();
        let model = load_pyg_state_dict::<B>(weights, None, &dev).unwrap();
        let input = GraphInput::<B>::from_graph(graph, &model.config, &dev).unwrap();
        let z = model.forward(&input);
        assert_eq!(z.tx.dims()[0], input.num_tx);
        let logits = decode(
            &z,
            input.label_tx.clone().unwrap(),
            input.label_bd.clone().unwrap(),
        );
        let loss = bce_with_logits(logits.clone(), input.labels.clone().unwrap());
        let gp = GradientsParams::from_grads(loss.backward(), &model);
        let mut out = vec![
            tensor_values(z.tx),
            tensor_values(z.bd),
            tensor_values(logits),
            tensor_values(loss),
        ];
        for (_, p) in model.named_params() {
            out.push(
                match &p {
                    NamedParam::D1(t) => gp.get::<B::InnerBackend, 1>(t.id).map(tensor_values),
                    NamedParam::D2(t) => gp.get::<B::InnerBackend, 2>(t.id).map(tensor_values),
                }
                .unwrap_or_default(),
            );
        }
        (input.tx_rows, out)
    }
    let (rows_cpu, cpu) = run::<Autodiff<Flex>>(&weights, &batch.graph);
    let (rows_gpu, gpu) = run::<Autodiff<Wgpu>>(&weights, &batch.graph);
    assert_eq!(rows_cpu, 3 * 1141, "no padding on the CPU");
    assert_eq!(
        rows_gpu, 4096,
        "padded to a multiple of SPLIT_K_ROWS on wgpu"
    );
    for (k, (a, b)) in cpu.iter().zip(&gpu).enumerate() {
        assert_eq!(a.len(), b.len(), "output {k}");
        let e = rel_err(a, b);
        // Embeddings, logits, loss to 1e-5; gradients to 1e-3 (the parity fixtures' gradients
        // move by up to 1e-4 under one-ulp changes, see tests/parity.rs).
        let tol = if k < 4 { 1e-5 } else { 1e-3 };
        assert!(e < tol, "output {k}: relative error {e:.2e}");
    }
}

/// The fused op, forward and backward, with f16 or bf16 storage on the GPU backend `H` against
/// the fused op in f32 on the CPU fed the same (rounded) values: ‖half − f32‖ / ‖f32‖ within
/// `tol` for the output and the three gradients, on every random graph of [`cases`] (empty
/// destinations, a hub with 5,000 edges, 1 to 8 heads). The kernels accumulate in f32;
/// accumulating in half precision over the hub's 5,000 edges would miss these bounds.
///
/// The f32 reference runs on the CPU because Burn 0.21 keeps one default float type per device,
/// set by the first backend that uses it: after `Wgpu<f16>` has run, `Tensor::<Wgpu>::from_data`
/// of f32 data makes f16 tensors too. For the same reason each half-precision test runs in a
/// process of its own (they are `#[ignore]`d; CI and the device script name them).
fn half_matches_f32<H: GatBackend>(what: &str, tol: f64) {
    type S = Flex;
    use burn::tensor::Element;
    let et = EdgeType::new(NodeType::Tx, "neighbors", NodeType::Bd);
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    for case in cases() {
        let (h, c) = (case.h, case.c);
        let (dh, ds) = (Default::default(), Default::default());
        let gh = RelationGraph::<H>::new(et.clone(), &case.s, &case.d, case.ns, case.nd, &dh);
        let gs = RelationGraph::<S>::new(et.clone(), &case.s, &case.d, case.ns, case.nd, &ds);
        let mut rand =
            |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-1.0..1.0)).collect() };
        let inputs = [
            (rand(case.ns * h * c), vec![case.ns, h, c]),
            (rand(case.nd * h * c), vec![case.nd, h, c]),
            (rand(case.nd * h * c), vec![case.nd, h, c]),
        ];
        let att_v = rand(h * c);
        // The half tensors, and the f32 tensors of exactly their (rounded) values.
        // `from_data` keeps the data's element type, so convert to the backend's first.
        let half_data =
            |v: Vec<f32>, s: Vec<usize>| TensorData::new(v, s).convert::<H::FloatElem>();
        let half: Vec<Tensor<H, 3>> = inputs
            .iter()
            .map(|(v, s)| Tensor::from_data(half_data(v.clone(), s.clone()), &dh))
            .collect();
        assert_eq!(
            half[0].dtype(),
            H::FloatElem::dtype(),
            "{what}: inputs in half precision"
        );
        let full: Vec<Tensor<S, 3>> = half
            .iter()
            .zip(&inputs)
            .map(|(t, (_, s))| {
                Tensor::from_data(TensorData::new(tensor_values(t.clone()), s.clone()), &ds)
            })
            .collect();
        let att_h = Tensor::<H, 2>::from_data(half_data(att_v, vec![h, c]), &dh);
        let att_s =
            Tensor::<S, 2>::from_data(TensorData::new(tensor_values(att_h.clone()), [h, c]), &ds);
        let run_h = {
            let (out, alpha) =
                H::fused_forward(half[0].clone(), half[1].clone(), att_h.clone(), &gh.fused())
                    .expect("fused kernel");
            let (gl, gr, ga) = H::fused_backward(
                half[2].clone(),
                half[0].clone(),
                half[1].clone(),
                att_h,
                alpha,
                &gh.fused(),
            )
            .expect("fused kernel");
            for (t, name) in [(&out, "out"), (&gl, "d xl"), (&gr, "d xr")] {
                assert_eq!(
                    t.dtype(),
                    H::FloatElem::dtype(),
                    "{what}: {name} in half precision"
                );
            }
            assert_eq!(
                ga.dtype(),
                H::FloatElem::dtype(),
                "{what}: d att in half precision"
            );
            [
                tensor_values(out),
                tensor_values(gl),
                tensor_values(gr),
                tensor_values(ga),
            ]
        };
        let run_s = {
            let (out, alpha) =
                S::fused_forward(full[0].clone(), full[1].clone(), att_s.clone(), &gs.fused())
                    .expect("fused kernel");
            let (gl, gr, ga) = S::fused_backward(
                full[2].clone(),
                full[0].clone(),
                full[1].clone(),
                att_s,
                alpha,
                &gs.fused(),
            )
            .expect("fused kernel");
            [
                tensor_values(out),
                tensor_values(gl),
                tensor_values(gr),
                tensor_values(ga),
            ]
        };
        for (k, name) in ["out", "d xl", "d xr", "d att"].iter().enumerate() {
            let (a, b) = (&run_h[k], &run_s[k]);
            assert!(
                a.iter().all(|x| x.is_finite()),
                "{what} {}: {name}: not finite",
                case.name
            );
            let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
            let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
            let e = (num / den.max(1e-300)).sqrt();
            eprintln!("{what} {}: {name}: ‖half − f32‖/‖f32‖ = {e:.2e}", case.name);
            assert!(
                e < tol,
                "{what} {}: {name}: {e:.2e} over {tol:.0e}",
                case.name
            );
            // Rounding to half precision must show: otherwise the backend stores f32.
            assert!(e > 0.0, "{what} {}: {name}: identical to f32", case.name);
        }
    }
}

/// f16 storage on wgpu (Mesa's lavapipe in CI) against f32 on the CPU. Run it alone:
/// `cargo test -p segger-model --features wgpu --test wgpu -- --ignored --exact
/// fused_gatv2_half_f16_on_wgpu_matches_f32` (see [`half_matches_f32`]).
#[test]
#[ignore = "needs a GPU (a Vulkan adapter); run it alone: f16 sets the device's float type"]
fn fused_gatv2_half_f16_on_wgpu_matches_f32() {
    half_matches_f32::<Wgpu<burn::tensor::f16>>("wgpu f16", 2e-3);
}

/// f16 on CUDA against f32 on the CPU; run it alone.
#[cfg(feature = "cuda")]
#[test]
#[ignore = "needs a GPU (NVIDIA, CUDA); run it alone: f16 sets the device's float type"]
fn fused_gatv2_half_f16_on_cuda_matches_f32() {
    half_matches_f32::<burn::backend::Cuda<burn::tensor::f16>>("cuda f16", 2e-3);
}

/// bf16 on CUDA against f32 on the CPU; run it alone.
#[cfg(feature = "cuda")]
#[test]
#[ignore = "needs a GPU (NVIDIA, CUDA); run it alone: bf16 sets the device's float type"]
fn fused_gatv2_half_bf16_on_cuda_matches_f32() {
    half_matches_f32::<burn::backend::Cuda<burn::tensor::bf16>>("cuda bf16", 1e-2);
}

/// The GPU ReLU kernels (`mp::relu`: forward, and its backward from the output) against Burn's
/// ReLU on the CPU: the same values and input gradients, bit for bit, for negative, signed-zero,
/// tiny and positive inputs, in f32 and (rounded first) in f16. A NaN input stays NaN, as in
/// PyTorch (Burn's CPU ReLU makes it 0), so that an overflow is not hidden from the loss scaler;
/// its gradient is 0 in all three.
#[allow(dead_code)]
fn relu_kernels_match_burns<G: GatBackend>() {
    let x: Vec<f32> = vec![
        -2.0,
        -0.0,
        0.0,
        1e-30,
        3.5,
        -1e-30,
        7.0,
        f32::NAN,
        0.5,
        -4.0,
        1e-3,
        2.0,
    ];
    let w: Vec<f32> = (1..=12).map(|i| i as f32 * 0.25).collect();
    let bits = |v: Vec<f32>| -> Vec<u32> { v.into_iter().map(f32::to_bits).collect() };
    for half in [false, true] {
        let (xs, ws) = if half {
            let round = |v: &[f32]| -> Vec<f32> {
                v.iter()
                    .map(|&a| burn::tensor::f16::from_f32(a).to_f32())
                    .collect()
            };
            (round(&x), round(&w))
        } else {
            (x.clone(), w.clone())
        };
        let dev = Default::default();
        let xg = Tensor::<Autodiff<G>, 2>::from_data(TensorData::new(xs.clone(), [3, 4]), &dev);
        let xg = if half {
            xg.cast(burn::tensor::FloatDType::F16)
        } else {
            xg
        }
        .require_grad();
        let wg = Tensor::<Autodiff<G>, 2>::from_data(TensorData::new(ws.clone(), [3, 4]), &dev);
        let wg = if half {
            wg.cast(burn::tensor::FloatDType::F16)
        } else {
            wg
        };
        let y = mp::relu(xg.clone());
        let g = ((y.clone() * wg).sum() + y.clone().sum()).backward();
        let (yg, gg) = (
            tensor_values(y.cast(burn::tensor::FloatDType::F32)),
            tensor_values(xg.grad(&g).unwrap().cast(burn::tensor::FloatDType::F32)),
        );
        let xc = Tensor::<Autodiff<Flex>, 2>::from_data(
            TensorData::new(xs, [3, 4]),
            &Default::default(),
        )
        .require_grad();
        let wc = Tensor::<Autodiff<Flex>, 2>::from_data(
            TensorData::new(ws, [3, 4]),
            &Default::default(),
        );
        let yc = burn::tensor::activation::relu(xc.clone());
        let gc = ((yc.clone() * wc).sum() + yc.clone().sum()).backward();
        let what = if half { "f16" } else { "f32" };
        let nan = 7;
        assert!(yg[nan].is_nan(), "{what}: ReLU(NaN) = {}", yg[nan]);
        let but_nan = |v: Vec<u32>| -> Vec<u32> {
            v.into_iter()
                .enumerate()
                .filter(|&(i, _)| i != nan)
                .map(|(_, b)| b)
                .collect()
        };
        assert_eq!(
            but_nan(bits(yg)),
            but_nan(bits(tensor_values(yc))),
            "{what}: values"
        );
        assert_eq!(
            bits(gg),
            bits(tensor_values(xc.grad(&gc).unwrap())),
            "{what}: gradients"
        );
    }
}

on_wgpu_and_cuda!(
    /// The ReLU kernels against Burn's ReLU.
    relu_kernels_on_wgpu_match_burns,
    relu_kernels_on_cuda_match_burns,
    relu_kernels_match_burns
);
