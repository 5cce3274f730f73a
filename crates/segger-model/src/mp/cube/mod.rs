//! The message-passing ops as CubeCL kernels, for the GPU backends (CUDA and wgpu), and the
//! [`GatBackend`] implementation of the CubeCL backends that runs them:
//!
//! * [`gatv2`]: the fused GATv2 op, forward and backward (edge scores, segment softmax,
//!   aggregation and its gradients);
//! * [`optim`]: AdamW steps of groups of parameters, and the sums of squares of the gradient
//!   norm;
//! * [`elementwise`]: ReLU and its backward, column sums, and the backward of a grouped gather;
//! * [`matmul`]: the f32 matmul without TF32.
//!
//! | Kernel | Computes | Thread grid (cube count / cube dim: what one unit does) |
//! |---|---|---|
//! | `gat_edge_kernel` | edge scores `e` (forward) or `dα` (backward), `[E, H]` f32 | elementwise over `E·H`: one (edge, head), its channels unrolled |
//! | `gat_edge_lanes_kernel` | the same, with [`set_edge_lanes`](super::set_edge_lanes) | `⌈E·H / 16⌉` on a 2-D grid / 16 × 16: lane `x` of (edge, head) pair `y`, every 16th channel; lanes meet in shared memory |
//! | `gat_segment_kernel` | softmax of each destination's scores in place (forward); `de = α(dα − Σ α·dα)` in place (backward) | elementwise over `N_dst·H`: one (destination, head), serial passes over its edges |
//! | `gat_segment_block_kernel` | the same, for mean in-degree > 16 | `N_dst·H` on a 2-D grid / 64: a cube per (destination, head), a unit strides over its edges; tree reductions in shared memory |
//! | `gat_dst_kernel` | `out = Σ α·xl[j]` (forward); `grad_xr` and f32 `grad_att` partials (backward) | elementwise over `⌈N_dst / g⌉·H·C`: `g` destinations (1 forward, 4 backward) × one (head, channel) |
//! | `gat_dst_block_kernel` | the same, for mean in-degree > 16 and `C ≤ 256` | `N_dst·H` on a 2-D grid / 256: a cube per (destination, head), a unit one channel of every `256 / C`-th edge; parts meet in shared memory |
//! | `gat_src_kernel` | `grad_xl[j] = Σ α·grad[i] + de·att·LeakyReLU'(z)` | elementwise over `N_src·H·C`: one (source, head, channel), over its edges grouped by source |
//! | `scatter_grouped_kernel` | backward of a grouped gather: each row's gathered positions summed | elementwise over `rows·width`: one (row, column) |
//! | `relu_kernel` | ReLU, or its backward from the output | elementwise over the elements: one element |
//! | `col_sum_kernel` | column sums of chunks of rows, f32 accumulation (`grad_att`, `col_sum`) | `⌈cols / 32⌉ × chunks` / 32 × 8: one column, every 8th row of the chunk; row lanes meet in shared memory |
//! | `sum_squares_multi_kernel` | `Σ x²` of each of up to 64 tensors | one cube per tensor / 256: a strided share of the tensor; tree reduction in shared memory |
//! | `adamw_multi_kernel` | AdamW steps of up to 32 parameters sharing the step's scalars | `⌈longest / 256⌉ × parameters` / 256: one element of parameter `CUBE_POS_Y` |
//! | CubeCL's unit matmul | f32 `lhs · rhs`, plain multiply-adds | `cubek`'s `Strategy::SimpleUnit` picks its own grid |
//!
//! "Elementwise over `n`" is [`launch_shape`]: CubeCL's default cube dim for an elementwise
//! problem of `n` units (up to 8 planes of the device's plane width) and enough cubes to cover
//! them, a unit past `n` returning at once. "On a 2-D grid": the cubes are numbered over x and y
//! (`CUBE_POS`), since one axis holds at most 65,535 of them.
//!
//! Precision: whatever the backend's float type (f32, f16 or bf16), every kernel reads its
//! inputs as f32, accumulates in f32 and rounds once when it writes; the attention weights and
//! their gradients (`[E, H]`) and the per-destination `grad_att` terms stay f32 throughout, and
//! `grad_att` is summed in f32 before its one rounding to the storage type.
//!
//! Outputs are allocated with contiguous strides because the kernels index linearly, and the
//! CUDA runtime pads rows narrower than 16 bytes by default.

mod elementwise;
mod gatv2;
mod matmul;
mod optim;

use burn::tensor::ops::FloatTensor;
use burn::tensor::{Shape, Tensor as BTensor, TensorPrimitive};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::{BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};
use cubecl::calculate_cube_count_elemwise;
use cubecl::prelude::*;

use super::{
    float32_matmul_precision, fused_enabled, AdamWParam, AdamWStep, FusedGraph, GatBackend,
    MatmulPrecision, RowIndex,
};
use gatv2::CubeGraph;

/// The CubeCL backends (CUDA, wgpu) run the fused GPU kernels of this module.
impl<R, F, I, BT> GatBackend for CubeBackend<R, F, I, BT>
where
    R: CubeRuntime,
    F: FloatElement,
    I: IntElement,
    BT: BoolElement,
{
    const SPLIT_K: bool = true;

    fn scatter_grouped(values: BTensor<Self, 2>, idx: &RowIndex<Self>) -> BTensor<Self, 2> {
        elementwise::scatter_grouped(values, idx)
    }

    fn adamw_step(
        p: BTensor<Self, 1>,
        g: BTensor<Self, 1>,
        moments: Option<(BTensor<Self, 1>, BTensor<Self, 1>)>,
        grad_scale: Option<BTensor<Self, 1>>,
        s: &AdamWStep,
    ) -> (BTensor<Self, 1>, BTensor<Self, 1>, BTensor<Self, 1>) {
        optim::adamw_step(p, g, moments, grad_scale, s)
    }

    fn sum_squares(xs: Vec<FloatTensor<Self>>) -> BTensor<Self, 1> {
        optim::sum_squares::<R, F, I, BT>(xs)
    }

    fn adamw_multi(
        params: Vec<AdamWParam<Self>>,
        grad_scale: Option<BTensor<Self, 1>>,
    ) -> Vec<(BTensor<Self, 1>, BTensor<Self, 1>, BTensor<Self, 1>)> {
        optim::adamw_multi(params, grad_scale)
    }

    fn col_sum(x: BTensor<Self, 2>) -> BTensor<Self, 1> {
        elementwise::col_sum(x)
    }

    fn relu_keep_output(x: BTensor<Self, 2>) -> BTensor<Self, 2> {
        BTensor::from_primitive(TensorPrimitive::Float(elementwise::relu(
            x.into_primitive().tensor(),
            None,
        )))
    }

    fn relu_grad(y: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        elementwise::relu(y, Some(grad))
    }

    fn matmul(lhs: FloatTensor<Self>, rhs: FloatTensor<Self>) -> FloatTensor<Self> {
        if lhs.dtype == burn::tensor::DType::F32
            && float32_matmul_precision() == MatmulPrecision::Highest
        {
            matmul::matmul_f32(lhs, rhs)
        } else {
            <Self as burn::tensor::ops::FloatTensorOps<Self>>::float_matmul(lhs, rhs)
        }
    }

    fn fused_forward(
        xl: BTensor<Self, 3>,
        xr: BTensor<Self, 3>,
        att: BTensor<Self, 2>,
        g: &FusedGraph<Self>,
    ) -> Option<(BTensor<Self, 3>, BTensor<Self, 2>)> {
        fused_enabled().then(|| gatv2::forward(xl, xr, att, &CubeGraph::new(g)))
    }

    fn fused_backward(
        grad: BTensor<Self, 3>,
        xl: BTensor<Self, 3>,
        xr: BTensor<Self, 3>,
        att: BTensor<Self, 2>,
        alpha: BTensor<Self, 2>,
        g: &FusedGraph<Self>,
    ) -> Option<(BTensor<Self, 3>, BTensor<Self, 3>, BTensor<Self, 2>)> {
        Some(gatv2::backward(
            grad,
            xl,
            xr,
            att,
            alpha,
            &CubeGraph::new(g),
        ))
    }
}

type Cube<R, F, I, BT> = CubeBackend<R, F, I, BT>;

fn float<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement, const D: usize>(
    t: BTensor<Cube<R, F, I, BT>, D>,
) -> CubeTensor<R> {
    into_contiguous(t.into_primitive().tensor())
}

fn wrap<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement, const D: usize>(
    t: CubeTensor<R>,
) -> BTensor<Cube<R, F, I, BT>, D> {
    BTensor::from_primitive(TensorPrimitive::Float(t))
}

/// An uninitialised output on the device and with the element type of `like`, with contiguous
/// strides: the kernels index linearly, and the runtime's default allocation may pad rows (CUDA
/// pitches rows narrower than 16 bytes). The type is the input's, not the backend's default:
/// a kernel's element type is taken from its input, so that is what its outputs must hold.
fn empty_like<R: CubeRuntime>(like: &CubeTensor<R>, shape: Shape) -> CubeTensor<R> {
    empty_device_contiguous_dtype(like.client.clone(), like.device.clone(), shape, like.dtype)
}

/// An uninitialised contiguous f32 tensor: the attention weights and their gradients are kept
/// in f32 whatever the storage type of the features.
fn empty32<R: CubeRuntime>(
    client: ComputeClient<R>,
    device: R::Device,
    shape: Shape,
) -> CubeTensor<R> {
    empty_device_contiguous_dtype(client, device, shape, burn::tensor::DType::F32)
}

/// The cube count and cube dim of an elementwise launch over `n` units (at least one): CubeCL's
/// default cube dim for `n` units, and enough cubes to cover them.
fn launch_shape<R: CubeRuntime>(client: &ComputeClient<R>, n: usize) -> (CubeCount, CubeDim) {
    let dim = CubeDim::new(client, n.max(1));
    (calculate_cube_count_elemwise(client, n.max(1), dim), dim)
}

/// An element of `t` as f32: every kernel computes and accumulates in f32 whatever the storage
/// type (f32, f16 or bf16), and rounds once when it writes.
#[cube]
fn rd<F: Float>(t: &Tensor<F>, i: usize) -> f32 {
    f32::cast_from(t[i])
}
