//! Message-passing primitives and the GATv2 attention-aggregation op.
//!
//! * [`gather_rows`], [`scatter_add_rows`], [`segment_max`] and [`segment_softmax`]: generic
//!   building blocks over destination-sorted edges, on any backend.
//! * [`gatv2_generic`]: GATv2's edge scores, per-destination softmax and weighted sum, written
//!   with the primitives. It is the reference implementation.
//! * [`GatBackend::gatv2`]: the op the model calls. CPU backends run the fused kernels of
//!   [`cpu`] (no `[E, H, C]` tensor is built, forward or backward); the autodiff backend wraps
//!   them in a custom backward; other backends fall back to [`gatv2_generic`].

pub mod cpu;

use std::sync::Arc;

use burn::tensor::backend::Backend;
use burn::tensor::{activation, IndexingUpdateOp, Int, Tensor, TensorData};
use segger_graph::csr::Csr;

use crate::input::RelationGraph;

/// Constant added to the softmax denominator, as PyG's `softmax` does.
pub const SOFTMAX_EPS: f32 = 1e-16;
/// Negative slope of GATv2's LeakyReLU.
pub const NEGATIVE_SLOPE: f32 = 0.2;

/// Rows `idx` of `x` (PyG's `index_select` / gather).
pub fn gather_rows<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    idx: Tensor<B, 1, Int>,
) -> Tensor<B, D> {
    x.select(0, idx)
}

/// Sums rows of `values` into `n` output rows: `out[idx[k]] += values[k]` (scatter-add).
pub fn scatter_add_rows<B: Backend, const D: usize>(
    values: Tensor<B, D>,
    idx: Tensor<B, 1, Int>,
    n: usize,
) -> Tensor<B, D> {
    let mut shape = values.dims();
    shape[0] = n;
    Tensor::zeros(shape, &values.device()).select_assign(0, idx, values, IndexingUpdateOp::Add)
}

/// Per-destination maximum of edge values `[E, H]` whose edges are sorted by destination as
/// in `csr`; a destination without edges gets 0. The result is detached from autodiff (it is
/// only used to stabilise the softmax, as in PyG). Computed on the host.
pub fn segment_max<B: Backend>(values: Tensor<B, 2>, csr: &Csr) -> Tensor<B, 2> {
    let [e, h] = values.dims();
    let device = values.device();
    let v: Vec<f32> = values
        .detach()
        .into_data()
        .convert::<f32>()
        .to_vec()
        .expect("float data");
    assert_eq!(e, csr.num_edges(), "values must have one row per edge");
    let mut out = vec![0f32; csr.num_dst() * h];
    for (i, w) in csr.row_ptr.windows(2).enumerate() {
        if w[0] == w[1] {
            continue;
        }
        for hh in 0..h {
            out[i * h + hh] = (w[0]..w[1])
                .map(|k| v[k * h + hh])
                .fold(f32::NEG_INFINITY, f32::max);
        }
    }
    Tensor::from_data(TensorData::new(out, [csr.num_dst(), h]), &device)
}

/// Softmax of edge scores `[E, H]` over each destination's incoming edges, numerically
/// stabilised by the (detached) segment maximum: `exp(e - max) / (sum exp(e - max) + 1e-16)`.
pub fn segment_softmax<B: Backend>(
    scores: Tensor<B, 2>,
    dst: Tensor<B, 1, Int>,
    csr: &Csr,
) -> Tensor<B, 2> {
    let m = gather_rows(segment_max(scores.clone(), csr), dst.clone());
    let p = (scores - m).exp();
    let denom =
        gather_rows(scatter_add_rows(p.clone(), dst.clone(), csr.num_dst()), dst) + SOFTMAX_EPS;
    p / denom
}

/// GATv2 attention and aggregation with generic tensor ops (the reference implementation).
///
/// `xl` `[N_src, H, C]` are the transformed sources, `xr` `[N_dst, H, C]` the transformed
/// destinations, `att` `[H, C]`. For an edge j→i:
/// `e = Σ_c att[h,c]·LeakyReLU(xl[j,h,c] + xr[i,h,c])`, `α = softmax over i's edges`,
/// `out[i,h] = Σ_j α·xl[j,h]`. Returns `[N_dst, H, C]`; rows without edges are 0.
pub fn gatv2_generic<B: Backend>(
    xl: Tensor<B, 3>,
    xr: Tensor<B, 3>,
    att: Tensor<B, 2>,
    g: &RelationGraph<B>,
) -> Tensor<B, 3> {
    let [_, h, c] = xl.dims();
    let e = g.num_edges();
    let xj = gather_rows(xl, g.src.clone());
    let xi = gather_rows(xr, g.dst.clone());
    let s = activation::leaky_relu(xj.clone() + xi, NEGATIVE_SLOPE as f64);
    let scores = (s * att.unsqueeze::<3>()).sum_dim(2).reshape([e, h]);
    let alpha = segment_softmax(scores, g.dst.clone(), &g.csr);
    let msg = xj * alpha.reshape([e, h, 1]);
    let _ = c;
    scatter_add_rows(msg, g.dst.clone(), g.num_dst)
}

thread_local! {
    static FUSED: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
}

/// Enables or disables the fused kernels for model calls made on this thread (enabled by
/// default). Disabled, every backend runs [`gatv2_generic`]: for comparisons and benchmarks.
pub fn set_fused(enabled: bool) {
    FUSED.with(|f| f.set(enabled));
}

/// Whether the fused kernels are enabled on this thread.
pub fn fused_enabled() -> bool {
    FUSED.with(|f| f.get())
}

/// Host-side graph data the fused CPU kernels need.
#[derive(Debug, Clone)]
pub struct HostGraph {
    /// Edges sorted by destination.
    pub csr: Arc<Csr>,
    /// The same edges grouped by source.
    pub by_src: Arc<cpu::SrcIndex>,
}

impl<B: Backend> RelationGraph<B> {
    /// The host view of the graph for the fused CPU kernels.
    pub fn host(&self) -> HostGraph {
        HostGraph {
            csr: Arc::clone(&self.csr),
            by_src: Arc::clone(&self.by_src),
        }
    }
}

/// Backends that provide GATv2 message passing. The default methods are the generic
/// implementation; CPU backends override the `fused_*` methods with the kernels of [`cpu`].
pub trait GatBackend: Backend {
    /// GATv2 attention + aggregation, `[N_dst, H, C]` (see [`gatv2_generic`]).
    fn gatv2(
        xl: Tensor<Self, 3>,
        xr: Tensor<Self, 3>,
        att: Tensor<Self, 2>,
        g: &RelationGraph<Self>,
    ) -> Tensor<Self, 3> {
        match Self::fused_forward(xl.clone(), xr.clone(), att.clone(), &g.host()) {
            Some((out, _alpha)) => out,
            None => gatv2_generic(xl, xr, att, g),
        }
    }

    /// Fused forward: the output `[N_dst, H, C]` and the attention weights `[E, H]` (in
    /// destination-sorted edge order), or `None` when this backend has no fused kernel.
    fn fused_forward(
        _xl: Tensor<Self, 3>,
        _xr: Tensor<Self, 3>,
        _att: Tensor<Self, 2>,
        _g: &HostGraph,
    ) -> Option<(Tensor<Self, 3>, Tensor<Self, 2>)> {
        None
    }

    /// Fused backward: gradients of `xl`, `xr` and `att` given the output gradient and the
    /// forward's attention weights, or `None` when this backend has no fused kernel.
    fn fused_backward(
        _grad: Tensor<Self, 3>,
        _xl: Tensor<Self, 3>,
        _xr: Tensor<Self, 3>,
        _att: Tensor<Self, 2>,
        _alpha: Tensor<Self, 2>,
        _g: &HostGraph,
    ) -> Option<(Tensor<Self, 3>, Tensor<Self, 3>, Tensor<Self, 2>)> {
        None
    }
}

fn host_vec<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().expect("float data")
}

/// Runs the fused CPU forward on any backend by moving data through the host.
pub fn cpu_forward<B: Backend>(
    xl: Tensor<B, 3>,
    xr: Tensor<B, 3>,
    att: Tensor<B, 2>,
    g: &HostGraph,
) -> (Tensor<B, 3>, Tensor<B, 2>) {
    let [_, h, c] = xl.dims();
    let device = xl.device();
    let nd = g.csr.num_dst();
    let (out, alpha) = cpu::forward(&host_vec(xl), &host_vec(xr), &host_vec(att), h, c, &g.csr);
    (
        Tensor::from_data(TensorData::new(out, [nd, h, c]), &device),
        Tensor::from_data(TensorData::new(alpha, [g.csr.num_edges(), h]), &device),
    )
}

/// Runs the fused CPU backward on any backend by moving data through the host.
pub fn cpu_backward<B: Backend>(
    grad: Tensor<B, 3>,
    xl: Tensor<B, 3>,
    xr: Tensor<B, 3>,
    att: Tensor<B, 2>,
    alpha: Tensor<B, 2>,
    g: &HostGraph,
) -> (Tensor<B, 3>, Tensor<B, 3>, Tensor<B, 2>) {
    let [ns, h, c] = xl.dims();
    let nd = xr.dims()[0];
    let device = xl.device();
    let (gxl, gxr, gatt) = cpu::backward(
        &host_vec(grad),
        &host_vec(xl),
        &host_vec(xr),
        &host_vec(att),
        &host_vec(alpha),
        h,
        c,
        &g.csr,
        &g.by_src,
    );
    (
        Tensor::from_data(TensorData::new(gxl, [ns, h, c]), &device),
        Tensor::from_data(TensorData::new(gxr, [nd, h, c]), &device),
        Tensor::from_data(TensorData::new(gatt, [h, c]), &device),
    )
}

macro_rules! cpu_gat_backend {
    ($ty:ty) => {
        impl GatBackend for $ty {
            fn fused_forward(
                xl: Tensor<Self, 3>,
                xr: Tensor<Self, 3>,
                att: Tensor<Self, 2>,
                g: &HostGraph,
            ) -> Option<(Tensor<Self, 3>, Tensor<Self, 2>)> {
                fused_enabled().then(|| cpu_forward(xl, xr, att, g))
            }

            fn fused_backward(
                grad: Tensor<Self, 3>,
                xl: Tensor<Self, 3>,
                xr: Tensor<Self, 3>,
                att: Tensor<Self, 2>,
                alpha: Tensor<Self, 2>,
                g: &HostGraph,
            ) -> Option<(Tensor<Self, 3>, Tensor<Self, 3>, Tensor<Self, 2>)> {
                Some(cpu_backward(grad, xl, xr, att, alpha, g))
            }
        }
    };
}

#[cfg(feature = "flex")]
cpu_gat_backend!(burn::backend::Flex);
#[cfg(feature = "ndarray")]
cpu_gat_backend!(burn::backend::NdArray);
#[cfg(feature = "wgpu")]
impl GatBackend for burn::backend::Wgpu {}
#[cfg(feature = "cuda")]
impl GatBackend for burn::backend::Cuda {}

mod autodiff;
