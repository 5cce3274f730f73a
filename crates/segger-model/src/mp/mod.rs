//! Message-passing primitives and the GATv2 attention-aggregation op.
//!
//! * [`gather_rows`], [`scatter_add_rows`], [`segment_max`] and [`segment_softmax`]: generic
//!   building blocks over destination-sorted edges, on any backend.
//! * [`gatv2_generic`]: GATv2's edge scores, per-destination softmax and weighted sum, written
//!   with the primitives. It is the reference implementation.
//! * [`GatBackend::gatv2`]: the op the model calls. CPU backends run the fused kernels of
//!   [`cpu`], the CubeCL backends (CUDA, wgpu) fused GPU kernels (no `[E, H, C]` tensor is
//!   built, forward or backward, and no atomics); the autodiff backend wraps them in a custom
//!   backward. [`set_fused`]`(false)` selects [`gatv2_generic`] instead.

pub mod cpu;
#[cfg(any(feature = "wgpu", feature = "cuda"))]
mod cube;

use std::sync::Arc;

use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{
    activation, IndexingUpdateOp, Int, Tensor, TensorData, TensorMetadata, TensorPrimitive,
};
use segger_graph::csr::{group_by_key, Csr};

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

/// A relation's graph as the fused kernels take it: the host view (CPU kernels) and the
/// device index tensors (GPU kernels).
#[derive(Debug, Clone)]
pub struct FusedGraph<B: Backend> {
    /// Host CSR and source grouping.
    pub host: HostGraph,
    /// Source of each edge, destination-sorted order, `[E]`.
    pub src: Tensor<B, 1, Int>,
    /// Destination of each edge, destination-sorted order, `[E]`.
    pub dst: Tensor<B, 1, Int>,
    /// Destination row pointers, `[N_dst + 1]`.
    pub row_ptr: Tensor<B, 1, Int>,
    /// Source row pointers into `src_edge`, `[N_src + 1]`.
    pub src_ptr: Tensor<B, 1, Int>,
    /// Edges grouped by source: positions in the destination-sorted order, `[E]`.
    pub src_edge: Tensor<B, 1, Int>,
}

impl<B: Backend> RelationGraph<B> {
    /// The host view of the graph for the fused CPU kernels.
    pub fn host(&self) -> HostGraph {
        HostGraph {
            csr: Arc::clone(&self.csr),
            by_src: Arc::clone(&self.by_src),
        }
    }

    /// The graph as the fused kernels take it.
    pub fn fused(&self) -> FusedGraph<B> {
        FusedGraph {
            host: self.host(),
            src: self.src.clone(),
            dst: self.dst.clone(),
            row_ptr: self.row_ptr.clone(),
            src_ptr: self.src_ptr.clone(),
            src_edge: self.src_edge.clone(),
        }
    }
}

/// Row indices of a gather together with their inverse grouping, so that the gather's backward
/// (a scatter-add) can run as a segment sum without atomics. Built once per batch on the host.
#[derive(Debug, Clone)]
pub struct RowIndex<B: Backend> {
    /// The gathered rows, `[M]`.
    pub idx: Tensor<B, 1, Int>,
    /// Group pointers: positions `group_pos[group_ptr[r]..group_ptr[r + 1]]` gather row r,
    /// `[num_rows + 1]`.
    pub group_ptr: Tensor<B, 1, Int>,
    /// Positions `0..M` grouped by the row they gather, `[M]`.
    pub group_pos: Tensor<B, 1, Int>,
    /// Number of rows of the gathered tensor.
    pub num_rows: usize,
}

impl<B: Backend> RowIndex<B> {
    /// Groups `idx` by row. Every index must lie in `0..num_rows` (callers validate them).
    pub fn new(idx: &[i64], num_rows: usize, device: &B::Device) -> Self {
        let (ptr, pos) = group_by_key(idx.len(), num_rows, |p| idx[p] as usize);
        let ptr: Vec<i64> = ptr.into_iter().map(|v| v as i64).collect();
        let pos: Vec<i64> = pos.into_iter().map(i64::from).collect();
        Self {
            idx: Tensor::from_data(TensorData::new(idx.to_vec(), [idx.len()]), device),
            group_ptr: Tensor::from_data(TensorData::new(ptr, [num_rows + 1]), device),
            group_pos: Tensor::from_data(TensorData::new(pos, [idx.len()]), device),
            num_rows,
        }
    }

    /// Number of gathered rows M.
    pub fn len(&self) -> usize {
        self.idx.dims()[0]
    }

    /// Whether no row is gathered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Rows `idx` of `x` `[N, W]` → `[M, W]`. Its backward sums the gradient rows per gathered row
/// ([`GatBackend::scatter_grouped`]); on the GPU backends that is a segment sum over
/// `idx.group_*`, where Burn's generic `select` backward runs one thread per column.
pub fn gather_grouped<B: GatBackend>(x: Tensor<B, 2>, idx: &RowIndex<B>) -> Tensor<B, 2> {
    B::gather_grouped(x, idx)
}

thread_local! {
    static EDGE_LANES: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Makes the GPU backends compute the edge scores and `dα` on this thread with 16 threads per
/// (edge, head), each reading every 16th channel, so that a warp reads whole rows, and a
/// reduction in shared memory; off (one thread per (edge, head) reading its channels in turn)
/// by default. A variant for measurement on a device: it has not been timed on a GPU yet.
pub fn set_edge_lanes(enabled: bool) {
    EDGE_LANES.with(|f| f.set(enabled));
}

/// Whether [`set_edge_lanes`] is on for this thread.
pub fn edge_lanes() -> bool {
    EDGE_LANES.with(|f| f.get())
}

thread_local! {
    static SPLIT_K: std::cell::Cell<Option<bool>> = const { std::cell::Cell::new(None) };
}

/// Overrides, for this thread, whether [`linear`] splits its row dimension into chunks (`None`:
/// the backend's default, [`GatBackend::SPLIT_K`]). For comparisons and benchmarks.
pub fn set_split_k(split: Option<bool>) {
    SPLIT_K.with(|f| f.set(split));
}

thread_local! {
    static EXACT_LINEAR: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Makes [`linear`] on this thread multiply without the backend's matmul: an elementwise
/// product and a sum in plain f32. For parity runs on CUDA, whose matmul rounds f32 inputs to
/// TF32 (about 1e-3 relative error) with no switch to turn that off in Burn 0.21. It builds an
/// `[N, in, out]` tensor, so it is only for small inputs such as the parity fixtures.
pub fn set_exact_linear(exact: bool) {
    EXACT_LINEAR.with(|f| f.set(exact));
}

/// How float32 matmuls are computed on the GPU backends: PyTorch's
/// `torch.set_float32_matmul_precision` for this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MatmulPrecision {
    /// Plain f32 multiply-adds (PyTorch's default, and what the reference trains with): on the
    /// GPU backends CubeCL's unit matmul, which does not use tensor cores.
    #[default]
    Highest,
    /// The backend's default matmul, which on CUDA rounds f32 inputs to TF32 on tensor cores
    /// (about 1e-3 relative error per product): PyTorch's `"high"`.
    High,
}

impl std::str::FromStr for MatmulPrecision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "highest" => Ok(Self::Highest),
            "high" => Ok(Self::High),
            other => Err(format!(
                "unknown float32 matmul precision {other:?}: expected highest or high"
            )),
        }
    }
}

static MATMUL_TF32: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Sets the float32 matmul precision of the GPU backends for the whole process (default
/// [`MatmulPrecision::Highest`]). The CPU backends always multiply in plain f32; f16 and bf16
/// tensors always take the backend's default matmul.
pub fn set_float32_matmul_precision(p: MatmulPrecision) {
    MATMUL_TF32.store(
        p == MatmulPrecision::High,
        std::sync::atomic::Ordering::Relaxed,
    );
}

/// Sets the float32 matmul precision for as long as the returned guard lives; dropping it
/// restores the precision that was set before. `train` and `predict` hold one for their run, so
/// a program that embeds them keeps its own setting afterwards.
pub fn scoped_float32_matmul_precision(p: MatmulPrecision) -> MatmulPrecisionGuard {
    let previous = float32_matmul_precision();
    set_float32_matmul_precision(p);
    MatmulPrecisionGuard { previous }
}

/// Restores the float32 matmul precision when dropped ([`scoped_float32_matmul_precision`]).
#[must_use = "the precision is restored when the guard is dropped"]
#[derive(Debug)]
pub struct MatmulPrecisionGuard {
    previous: MatmulPrecision,
}

impl Drop for MatmulPrecisionGuard {
    fn drop(&mut self) {
        set_float32_matmul_precision(self.previous);
    }
}

/// The float32 matmul precision set by [`set_float32_matmul_precision`].
pub fn float32_matmul_precision() -> MatmulPrecision {
    if MATMUL_TF32.load(std::sync::atomic::Ordering::Relaxed) {
        MatmulPrecision::High
    } else {
        MatmulPrecision::Highest
    }
}

/// `a · b` for rank-2 or batched rank-3 tensors through [`GatBackend::matmul`], so that the
/// GPU backends follow [`float32_matmul_precision`]. Every matmul of the model's layers and of
/// their recorded backward passes goes through here.
pub fn matmul<B: GatBackend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(B::matmul(
        a.into_primitive().tensor(),
        b.into_primitive().tensor(),
    )))
}

/// Whether [`linear`] and [`add_bias`] cut `n` rows into chunks of [`SPLIT_K_ROWS`] on this
/// thread: on the GPU backends (or as [`set_split_k`] says) and for `n > 2 · SPLIT_K_ROWS`.
pub fn splits_rows<B: GatBackend>(n: usize) -> bool {
    SPLIT_K.with(|f| f.get()).unwrap_or(B::SPLIT_K) && n > 2 * SPLIT_K_ROWS
}

/// Rows per chunk of [`linear`]'s split form.
pub const SPLIT_K_ROWS: usize = 1024;

/// `x` `[N, W]` as `[chunks, SPLIT_K_ROWS, W]`, the last chunk zero-padded.
fn into_chunks<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 3> {
    let [n, w] = x.dims();
    let chunks = n.div_ceil(SPLIT_K_ROWS);
    let pad = chunks * SPLIT_K_ROWS - n;
    let x = if pad > 0 {
        let device = x.device();
        Tensor::cat(vec![x, Tensor::zeros([pad, w], &device)], 0)
    } else {
        x
    };
    x.reshape([chunks, SPLIT_K_ROWS, w])
}

/// `x Wᵀ` for `x` `[N, in]` and `w` `[out, in]` (PyTorch's Linear without bias), through
/// [`GatBackend::dense`].
///
/// On the autodiff backend of the GPU backends ([`GatBackend::SPLIT_K`]) this is one recorded
/// op whose weight gradient `xᵀ dy`, a product whose inner dimension is N, is computed by
/// [`weight_grad`]: for `N > 2 · SPLIT_K_ROWS` as a batch of short products over chunks of
/// [`SPLIT_K_ROWS`] rows summed by [`GatBackend::col_sum`] (Burn's CubeCL matmul otherwise runs
/// it with little parallelism). The CPU backends use Burn's autodiff matmul.
pub fn linear<B: GatBackend>(x: Tensor<B, 2>, w: Tensor<B, 2>) -> Tensor<B, 2> {
    let [n, _] = x.dims();
    let fout = w.dims()[0];
    if EXACT_LINEAR.with(|f| f.get()) {
        return (x.unsqueeze_dim::<3>(2) * w.transpose().unsqueeze::<3>())
            .sum_dim(1)
            .reshape([n, fout]);
    }
    B::dense(x, w)
}

/// The weight gradient of [`linear`], `(xᵀ dy)ᵀ` `[out, in]` for `x` `[N, in]` and `dy`
/// `[N, out]`; with `split`, the rows are cut into chunks of [`SPLIT_K_ROWS`] (the last one
/// zero-padded), multiplied chunk by chunk, and the products summed by [`GatBackend::col_sum`].
pub fn weight_grad<B: GatBackend>(x: Tensor<B, 2>, dy: Tensor<B, 2>, split: bool) -> Tensor<B, 2> {
    let [_, fin] = x.dims();
    let fout = dy.dims()[1];
    if !split {
        return matmul(x.transpose(), dy).transpose();
    }
    let x = into_chunks(x);
    let dy = into_chunks(dy);
    let chunks = x.dims()[0];
    let per_chunk = matmul(x.swap_dims(1, 2), dy).reshape([chunks, fin * fout]);
    B::col_sum(per_chunk).reshape([fin, fout]).transpose()
}

/// `max(x, 0)`, through [`GatBackend::relu_keep_output`]. Burn's autodiff ReLU keeps its input
/// for the backward pass. Between the model's layers the ReLU's output is also the next layer's
/// input, which that layer's linear ops keep anyway, so this one keeps the output instead
/// (`y > 0` exactly where `x > 0`): one `[N, H·C]` activation less per layer, the same
/// gradients. On the GPU backends both directions are one elementwise kernel
/// ([`GatBackend::relu_grad`] backwards), without the boolean mask Burn's ReLU builds.
pub fn relu<B: GatBackend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    B::relu_keep_output(x)
}

/// `x + b` for `x` `[N, W]` and a bias `b` `[W]` broadcast over the rows, through
/// [`GatBackend::add_bias`]. On the autodiff backend of the GPU backends the bias gradient is
/// [`GatBackend::col_sum`] of the output gradient: one or two launches of a column-sum kernel.
pub fn add_bias<B: GatBackend>(x: Tensor<B, 2>, b: Tensor<B, 1>) -> Tensor<B, 2> {
    B::add_bias(x, b)
}

/// Column sums of `x` `[N, W]`, `[W]`, in two stages (within chunks of [`SPLIT_K_ROWS`] rows,
/// then over the chunks) so that no reduction runs over all N rows serially: how the GPU
/// backends summed columns with Burn's reductions before their column-sum kernel
/// ([`GatBackend::col_sum`]); kept for comparison in the benches.
pub fn col_sum<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 1> {
    let [n, w] = x.dims();
    if n <= 2 * SPLIT_K_ROWS {
        return x.sum_dim(0).reshape([w]);
    }
    let x = into_chunks(x);
    let chunks = x.dims()[0];
    x.sum_dim(1).reshape([chunks, w]).sum_dim(0).reshape([w])
}

/// Backends that provide GATv2 message passing. The default methods are the generic
/// implementation; CPU backends override the `fused_*` methods with the kernels of [`cpu`].
pub trait GatBackend: Backend {
    /// Whether [`linear`] uses its split form by default (the GPU backends).
    const SPLIT_K: bool = false;

    /// `x Wᵀ` (see [`linear`]); the autodiff backend records it as one op.
    fn dense(x: Tensor<Self, 2>, w: Tensor<Self, 2>) -> Tensor<Self, 2> {
        matmul(x, w.transpose())
    }

    /// `lhs · rhs` (see [`matmul`]). The default is the backend's matmul; the GPU backends
    /// multiply f32 tensors in plain f32 unless [`float32_matmul_precision`] is
    /// [`MatmulPrecision::High`]. The autodiff backend keeps the default (Burn's autodiff matmul
    /// over the inner backend's default matmul): the model never calls it there, because
    /// [`GatBackend::dense`] is recorded as one op whose forward and backward products run on the
    /// inner backend.
    fn matmul(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::float_matmul(lhs, rhs)
    }

    /// ReLU (see [`relu`]); the autodiff backend records it as one op that keeps its output.
    fn relu_keep_output(x: Tensor<Self, 2>) -> Tensor<Self, 2> {
        activation::relu(x)
    }

    /// The ReLU's backward from its output `y`: `grad` where `y > 0`, else 0 (Burn's
    /// `relu_backward`; the GPU backends run one elementwise kernel without a mask).
    fn relu_grad(y: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        <Self as burn::tensor::ops::ActivationOps<Self>>::relu_backward(y, grad)
    }

    /// `x + b` over rows (see [`add_bias`]); the autodiff backend records it as one op.
    fn add_bias(x: Tensor<Self, 2>, b: Tensor<Self, 1>) -> Tensor<Self, 2> {
        x + b.unsqueeze::<2>()
    }

    /// Column sums of `x` `[N, W]`, `[W]`: bias gradients, and the chunk sums of
    /// [`weight_grad`]. The generic version is one `sum_dim` (the CPU backends sum each column
    /// in one pass); the GPU backends run a kernel.
    fn col_sum(x: Tensor<Self, 2>) -> Tensor<Self, 1> {
        let w = x.dims()[1];
        x.sum_dim(0).reshape([w])
    }

    /// Rows `idx.idx` of `x` (see [`gather_grouped`]).
    fn gather_grouped(x: Tensor<Self, 2>, idx: &RowIndex<Self>) -> Tensor<Self, 2> {
        x.select(0, idx.idx.clone())
    }

    /// The gather's backward: `out[r] = Σ values[p]` over the positions p that gather row r,
    /// `[idx.num_rows, W]`.
    fn scatter_grouped(values: Tensor<Self, 2>, idx: &RowIndex<Self>) -> Tensor<Self, 2> {
        scatter_add_rows(values, idx.idx.clone(), idx.num_rows)
    }

    /// GATv2 attention + aggregation, `[N_dst, H, C]` (see [`gatv2_generic`]).
    fn gatv2(
        xl: Tensor<Self, 3>,
        xr: Tensor<Self, 3>,
        att: Tensor<Self, 2>,
        g: &RelationGraph<Self>,
    ) -> Tensor<Self, 3> {
        match Self::fused_forward(xl.clone(), xr.clone(), att.clone(), &g.fused()) {
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
        _g: &FusedGraph<Self>,
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
        _g: &FusedGraph<Self>,
    ) -> Option<(Tensor<Self, 3>, Tensor<Self, 3>, Tensor<Self, 2>)> {
        None
    }

    /// One AdamW step on a flattened parameter `p` with gradient `g` (times `grad_scale[0]`,
    /// the gradient clip's coefficient, when given) and moments `(m, v)` (`None` on the first
    /// step): the new `(p, m, v)`, with PyTorch's arithmetic (see [`AdamWStep`]). The generic version is a dozen element-wise ops; the GPU backends run one
    /// kernel.
    fn adamw_step(
        p: Tensor<Self, 1>,
        g: Tensor<Self, 1>,
        moments: Option<(Tensor<Self, 1>, Tensor<Self, 1>)>,
        grad_scale: Option<Tensor<Self, 1>>,
        s: &AdamWStep,
    ) -> (Tensor<Self, 1>, Tensor<Self, 1>, Tensor<Self, 1>) {
        let g = match grad_scale {
            Some(c) => g * c,
            None => g,
        };
        adamw_generic(p, g, moments, s)
    }

    /// [`Self::adamw_step`] for many parameters at once (each with its own step scalars; the
    /// clip coefficient `grad_scale` is shared): the new `(p, m, v)` of each, in order. The
    /// generic version steps them one by one; the GPU backends launch one kernel per group of
    /// parameters that share their step's scalars.
    #[allow(clippy::type_complexity)]
    fn adamw_multi(
        params: Vec<AdamWParam<Self>>,
        grad_scale: Option<Tensor<Self, 1>>,
    ) -> Vec<(Tensor<Self, 1>, Tensor<Self, 1>, Tensor<Self, 1>)> {
        params
            .into_iter()
            .map(|a| Self::adamw_step(a.p, a.g, a.moments, grad_scale.clone(), &a.step))
            .collect()
    }

    /// `[Σ x²]` for each tensor of `xs` (any rank; not empty), `[xs.len()]`: the squared norms
    /// of the gradient clip. The generic version takes three ops per tensor; the GPU backends
    /// one launch, reading a transposed gradient in place.
    fn sum_squares(xs: Vec<FloatTensor<Self>>) -> Tensor<Self, 1> {
        let sums = xs
            .into_iter()
            .map(|x| {
                let n = x.shape().num_elements();
                let x = Tensor::<Self, 1>::from_primitive(TensorPrimitive::Float(
                    Self::float_reshape(x, burn::tensor::Shape::new([n])),
                ));
                (x.clone() * x).sum()
            })
            .collect();
        Tensor::cat(sums, 0)
    }
}

/// One parameter of [`GatBackend::adamw_multi`], flattened.
#[derive(Debug)]
pub struct AdamWParam<B: Backend> {
    /// The parameter.
    pub p: Tensor<B, 1>,
    /// Its gradient (before the clip coefficient).
    pub g: Tensor<B, 1>,
    /// Its moments `(m, v)`; `None` on its first step.
    pub moments: Option<(Tensor<B, 1>, Tensor<B, 1>)>,
    /// The step's scalars.
    pub step: AdamWStep,
}

/// The scalars of one AdamW step, rounded to f32 as PyTorch rounds its Python floats:
/// `p ← p·decay`; `m ← m + (1 − β₁)(g − m)`; `v ← β₂·v + (1 − β₂)·g²`;
/// `p ← p − step_size · m / (√v / bc2_sqrt + ε)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWStep {
    /// `1 − lr · weight_decay`.
    pub decay: f32,
    /// `1 − β₁`.
    pub one_minus_beta_1: f32,
    /// `β₂`.
    pub beta_2: f32,
    /// `1 − β₂`.
    pub one_minus_beta_2: f32,
    /// `lr / (1 − β₁ᵗ)`.
    pub step_size: f32,
    /// `√(1 − β₂ᵗ)`.
    pub bc2_sqrt: f32,
    /// `ε`.
    pub epsilon: f32,
}

impl AdamWStep {
    /// The scalars of step `t` (1-based) for learning rate `lr`, computed in f64 and rounded.
    pub fn new(lr: f64, weight_decay: f64, beta_1: f64, beta_2: f64, epsilon: f64, t: u32) -> Self {
        let t = t as i32;
        Self {
            decay: (1.0 - lr * weight_decay) as f32,
            one_minus_beta_1: (1.0 - beta_1) as f32,
            beta_2: beta_2 as f32,
            one_minus_beta_2: (1.0 - beta_2) as f32,
            step_size: (lr / (1.0 - beta_1.powi(t))) as f32,
            bc2_sqrt: (1.0 - beta_2.powi(t)).sqrt() as f32,
            epsilon: epsilon as f32,
        }
    }
}

/// [`GatBackend::adamw_step`] with generic element-wise ops.
pub fn adamw_generic<B: Backend>(
    p: Tensor<B, 1>,
    g: Tensor<B, 1>,
    moments: Option<(Tensor<B, 1>, Tensor<B, 1>)>,
    s: &AdamWStep,
) -> (Tensor<B, 1>, Tensor<B, 1>, Tensor<B, 1>) {
    let p = p.mul_scalar(s.decay);
    let g2 = g.clone() * g.clone();
    let (m, v) = match moments {
        Some((m, v)) => (
            m.clone() + (g - m).mul_scalar(s.one_minus_beta_1),
            v.mul_scalar(s.beta_2) + g2.mul_scalar(s.one_minus_beta_2),
        ),
        None => (
            g.mul_scalar(s.one_minus_beta_1),
            g2.mul_scalar(s.one_minus_beta_2),
        ),
    };
    let denom = v
        .clone()
        .sqrt()
        .div_scalar(s.bc2_sqrt)
        .add_scalar(s.epsilon);
    let p = p - (m.clone() / denom).mul_scalar(s.step_size);
    (p, m, v)
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
                g: &FusedGraph<Self>,
            ) -> Option<(Tensor<Self, 3>, Tensor<Self, 2>)> {
                fused_enabled().then(|| cpu_forward(xl, xr, att, &g.host))
            }

            fn fused_backward(
                grad: Tensor<Self, 3>,
                xl: Tensor<Self, 3>,
                xr: Tensor<Self, 3>,
                att: Tensor<Self, 2>,
                alpha: Tensor<Self, 2>,
                g: &FusedGraph<Self>,
            ) -> Option<(Tensor<Self, 3>, Tensor<Self, 3>, Tensor<Self, 2>)> {
                Some(cpu_backward(grad, xl, xr, att, alpha, &g.host))
            }
        }
    };
}

#[cfg(feature = "flex")]
cpu_gat_backend!(burn::backend::Flex);
#[cfg(feature = "ndarray")]
cpu_gat_backend!(burn::backend::NdArray);

mod autodiff;
