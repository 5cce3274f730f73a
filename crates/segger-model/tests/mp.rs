//! The message-passing primitives, and the fused GATv2 kernels against the generic
//! implementation on random graphs.

use burn::backend::{Autodiff, Flex, NdArray};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use segger_graph::csr::Csr;
use segger_graph::{EdgeType, NodeType};
use segger_model::mp::{self, gatv2_generic, GatBackend};
use segger_model::pyg::tensor_values;
use segger_model::RelationGraph;

type F = Flex;

/// A random bipartite graph: `nd` destinations, destination 0 has `hub` incoming edges, the
/// last 10% of destinations have none.
fn random_edges(seed: u64, ns: usize, nd: usize, avg: usize, hub: usize) -> (Vec<i64>, Vec<i64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut s, mut d) = (Vec::new(), Vec::new());
    let live = nd - nd / 10;
    for _ in 0..hub {
        s.push(rng.random_range(0..ns as i64));
        d.push(0);
    }
    for _ in 0..live * avg {
        s.push(rng.random_range(0..ns as i64));
        d.push(rng.random_range(1..live as i64));
    }
    (s, d)
}

fn graph<B: Backend>(s: &[i64], d: &[i64], ns: usize, nd: usize) -> RelationGraph<B> {
    RelationGraph::new(
        EdgeType::new(NodeType::Tx, "neighbors", NodeType::Bd),
        s,
        d,
        ns,
        nd,
        &Default::default(),
    )
}

fn max_rel(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30);
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

#[test]
fn scatter_add_and_gather_rows() {
    let dev = Default::default();
    let v = Tensor::<F, 2>::from_data(
        TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], [3, 2]),
        &dev,
    );
    let idx = Tensor::<F, 1, Int>::from_data(TensorData::new(vec![2i64, 0, 2], [3]), &dev);
    let out = mp::scatter_add_rows(v.clone(), idx.clone(), 4);
    assert_eq!(
        tensor_values(out),
        vec![3.0, 4.0, 0.0, 0.0, 6.0, 8.0, 0.0, 0.0]
    );
    let g = mp::gather_rows(v, idx);
    assert_eq!(tensor_values(g), vec![5.0, 6.0, 1.0, 2.0, 5.0, 6.0]);
}

/// `mp::relu` (a recorded op keeping its output) against Burn's ReLU (which keeps its input):
/// the same values and, through a product that makes every output's gradient different, the
/// same input gradient, exactly, with negative, zero and positive inputs.
#[test]
fn relu_keeping_its_output_matches_burns() {
    type A = Autodiff<F>;
    let dev = Default::default();
    let x: Vec<f32> = vec![-2.0, -0.0, 0.0, 1e-30, 3.5, -1e-30, 7.0, -4.0, 0.5];
    let w: Vec<f32> = (1..=9).map(|i| i as f32 * 0.25).collect();
    let run = |ours: bool| {
        let xi = Tensor::<A, 2>::from_data(TensorData::new(x.clone(), [3, 3]), &dev).require_grad();
        let wi = Tensor::<A, 2>::from_data(TensorData::new(w.clone(), [3, 3]), &dev);
        let y = if ours {
            mp::relu(xi.clone())
        } else {
            burn::tensor::activation::relu(xi.clone())
        };
        // A second use of the output, as the next layer's linear makes.
        let loss = (y.clone() * wi).sum() + y.clone().sum();
        let g = loss.backward();
        (tensor_values(y), tensor_values(xi.grad(&g).unwrap()))
    };
    let (ours, burns) = (run(true), run(false));
    assert_eq!(ours, burns);
    assert_eq!(ours.1, vec![0.0, 0.0, 0.0, 2.0, 2.25, 0.0, 2.75, 0.0, 3.25]);
}

#[test]
fn segment_max_and_softmax() {
    let dev = Default::default();
    // Destinations: 0 <- edges {0, 1}, 1 <- none, 2 <- edge {2}. Two heads.
    let csr = Csr::from_edges(&[0, 1, 2], &[0, 0, 2], 3);
    let e = Tensor::<F, 2>::from_data(
        TensorData::new(vec![1.0f32, -5.0, 3.0, -7.0, 100.0, 0.5], [3, 2]),
        &dev,
    );
    assert_eq!(
        tensor_values(mp::segment_max(e.clone(), &csr)),
        vec![3.0, -5.0, 0.0, 0.0, 100.0, 0.5]
    );
    let dst = Tensor::<F, 1, Int>::from_data(TensorData::new(vec![0i64, 0, 2], [3]), &dev);
    let a = tensor_values(mp::segment_softmax(e, dst, &csr));
    let want0 = 1.0 / (1.0 + (2.0f32).exp());
    assert!(
        (a[0] - want0).abs() < 1e-6 && (a[2] - (1.0 - want0)).abs() < 1e-6,
        "{a:?}"
    );
    assert!((a[1] - 1.0 / (1.0 + (-2.0f32).exp())).abs() < 1e-6, "{a:?}");
    // A single edge gets weight 1, even with a large score (stable).
    assert!((a[4] - 1.0).abs() < 1e-6 && (a[5] - 1.0).abs() < 1e-6);
}

/// A tensor of standard normal values drawn from `rng` (Box-Muller). The tests draw their
/// inputs from their own generator, not the backend's (`Backend::seed` seeds one generator for
/// the whole process, which tests running in parallel would draw from between a seed and its
/// draws).
fn normal<B: Backend, const D: usize>(shape: [usize; D], rng: &mut ChaCha8Rng) -> Tensor<B, D> {
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n)
        .map(|_| {
            let u: f32 = 1.0 - rng.random::<f32>();
            let v: f32 = rng.random();
            (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
        })
        .collect();
    Tensor::from_data(TensorData::new(values, shape), &Default::default())
}

fn inputs<B: Backend>(
    ns: usize,
    nd: usize,
    h: usize,
    c: usize,
    seed: u64,
) -> (Tensor<B, 3>, Tensor<B, 3>, Tensor<B, 2>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (
        normal([ns, h, c], &mut rng),
        normal([nd, h, c], &mut rng),
        normal([h, c], &mut rng),
    )
}

#[test]
fn fused_forward_matches_generic() {
    for (h, c, hub) in [(1usize, 7usize, 3000usize), (8, 16, 5000), (4, 16, 0)] {
        let (ns, nd) = (500, 120);
        let (s, d) = random_edges(h as u64, ns, nd, 4, hub);
        let g = graph::<F>(&s, &d, ns, nd);
        let (xl, xr, att) = inputs::<F>(ns, nd, h, c, 3);
        let reference = tensor_values(gatv2_generic(xl.clone(), xr.clone(), att.clone(), &g));
        let (out, alpha) = mp::cpu_forward(xl, xr, att, &g.host());
        let fused = tensor_values(out);
        assert!(
            max_rel(&fused, &reference) <= 1e-5,
            "h={h} c={c}: {}",
            max_rel(&fused, &reference)
        );
        // Destinations without edges output 0; attention weights of each segment sum to 1.
        let hc = h * c;
        assert!(fused[(nd - 1) * hc..].iter().all(|v| *v == 0.0));
        let alpha = tensor_values(alpha);
        let csr = &g.csr;
        for i in [0usize, 5] {
            for hh in 0..h {
                let sum: f32 = (csr.row_ptr[i]..csr.row_ptr[i + 1])
                    .map(|k| alpha[k * h + hh])
                    .sum();
                if csr.row_ptr[i + 1] > csr.row_ptr[i] {
                    assert!((sum - 1.0).abs() < 1e-4, "segment {i} head {hh}: {sum}");
                }
            }
        }
    }
}

/// Gradients of `sum(out * w)` with respect to xl, xr and att.
fn grads<B: burn::tensor::backend::AutodiffBackend + GatBackend>(
    fused: bool,
    s: &[i64],
    d: &[i64],
    ns: usize,
    nd: usize,
    h: usize,
    c: usize,
) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    mp::set_fused(fused);
    let g = graph::<B>(s, d, ns, nd);
    let (xl, xr, att) = inputs::<B>(ns, nd, h, c, 11);
    let (xl, xr, att) = (xl.require_grad(), xr.require_grad(), att.require_grad());
    let w = normal::<B, 3>([nd, h, c], &mut ChaCha8Rng::seed_from_u64(12));
    let out = B::gatv2(xl.clone(), xr.clone(), att.clone(), &g);
    let o = tensor_values(out.clone());
    let gr = (out * w).sum().backward();
    mp::set_fused(true);
    (
        o,
        tensor_values(xl.grad(&gr).unwrap()),
        tensor_values(xr.grad(&gr).unwrap()),
        tensor_values(att.grad(&gr).unwrap()),
    )
}

fn check_backward<B: burn::tensor::backend::AutodiffBackend + GatBackend>() {
    for (h, c, hub) in [(1usize, 5usize, 4000usize), (8, 8, 2000), (2, 16, 0)] {
        let (ns, nd) = (400, 90);
        let (s, d) = random_edges(100 + h as u64, ns, nd, 5, hub);
        let a = grads::<B>(true, &s, &d, ns, nd, h, c);
        let b = grads::<B>(false, &s, &d, ns, nd, h, c);
        for (what, x, y) in [
            ("out", &a.0, &b.0),
            ("d xl", &a.1, &b.1),
            ("d xr", &a.2, &b.2),
            ("d att", &a.3, &b.3),
        ] {
            let err = max_rel(x, y);
            assert!(
                err <= 1e-5,
                "h={h} c={c} hub={hub}: {what} relative error {err:.2e}"
            );
            assert!(y.iter().any(|v| *v != 0.0), "{what} is all zero");
        }
    }
}

#[test]
fn fused_backward_matches_generic_flex() {
    check_backward::<Autodiff<Flex>>();
}

#[test]
fn fused_backward_matches_generic_ndarray() {
    check_backward::<Autodiff<NdArray>>();
}

/// On a graph where no destination has more than one edge, [`GatConv`] skips the attention
/// (each weight is a softmax over one edge): the output and the gradients of the sources,
/// `lin_l` and the bias are those of the attention path, and the attention path's gradients of
/// the destinations, `lin_r` and `att` are zero. A second edge into one destination turns the
/// shortcut off.
#[test]
fn destinations_with_one_edge_skip_the_attention() {
    use burn::module::Param;
    use segger_model::GatConv;
    type A = Autodiff<F>;
    let (ns, nd, fin, h, c) = (7usize, 40usize, 5usize, 2usize, 3usize);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let (mut s, mut d) = (Vec::new(), Vec::new());
    for j in 0..nd {
        if j % 3 != 0 {
            s.push(rng.random_range(0..ns as i64));
            d.push(j as i64);
        }
    }
    let fast = graph::<A>(&s, &d, ns, nd);
    assert!(fast.single.is_some());
    let mut full = fast.clone();
    full.single = None;
    let (mut s2, mut d2) = (s.clone(), d.clone());
    s2.push(0);
    d2.push(1);
    assert!(graph::<A>(&s2, &d2, ns, nd).single.is_none());

    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let conv = GatConv::<A> {
        lin_l_weight: Param::from_tensor(normal::<A, 2>([h * c, fin], &mut rng)),
        lin_l_bias: Param::from_tensor(normal::<A, 1>([h * c], &mut rng)),
        lin_r_weight: Param::from_tensor(normal::<A, 2>([h * c, fin], &mut rng)),
        lin_r_bias: Param::from_tensor(normal::<A, 1>([h * c], &mut rng)),
        att: Param::from_tensor(normal::<A, 2>([h, c], &mut rng)),
        bias: Param::from_tensor(normal::<A, 1>([h * c], &mut rng)),
        heads: h,
        channels: c,
    };
    let x_src = normal::<A, 2>([ns, fin], &mut rng);
    let x_dst = normal::<A, 2>([nd, fin], &mut rng);
    let w = normal::<A, 2>([nd, h * c], &mut rng);
    let run = |g: &RelationGraph<A>| {
        let (xs, xd) = (x_src.clone().require_grad(), x_dst.clone().require_grad());
        let out = conv.forward(xs.clone(), xd.clone(), g);
        let o = tensor_values(out.clone());
        let gr = (out * w.clone()).sum().backward();
        let vals = |t: Option<Tensor<burn::backend::Flex, 2>>| t.map(tensor_values);
        (
            o,
            tensor_values(xs.grad(&gr).unwrap()),
            vals(conv.lin_l_weight.grad(&gr)).unwrap(),
            tensor_values(conv.bias.grad(&gr).unwrap()),
            [
                vals(xd.grad(&gr)),
                vals(conv.lin_r_weight.grad(&gr)),
                vals(conv.att.grad(&gr)),
            ],
        )
    };
    let (o_f, xs_f, ll_f, b_f, rest_f) = run(&fast);
    let (o_a, xs_a, ll_a, b_a, rest_a) = run(&full);
    assert!(max_rel(&o_f, &o_a) < 1e-6, "output");
    assert!(max_rel(&xs_f, &xs_a) < 1e-6, "x_src gradient");
    assert!(max_rel(&ll_f, &ll_a) < 1e-6, "lin_l gradient");
    assert!(max_rel(&b_f, &b_a) < 1e-6, "bias gradient");
    // a destination without an edge outputs the bias
    let bias = tensor_values(conv.bias.val());
    assert!(max_rel(&o_f[..h * c], &bias) < 1e-6);
    for (what, g) in ["x_dst", "lin_r", "att"].iter().zip(rest_a) {
        let g = g.expect("the attention path records it");
        assert!(g.iter().all(|v| v.abs() < 1e-6), "{what} gradient {g:?}");
    }
    assert!(rest_f
        .iter()
        .all(|g| g.as_ref().is_none_or(|g| g.iter().all(|v| *v == 0.0))));
}
