//! The fused GATv2 op as CubeCL kernels, for the GPU backends (CUDA and wgpu).
//!
//! Four kinds of kernel, each thread owning what it writes, so no kernel uses atomics: one
//! thread per (edge, head) for the edge scores and `dα`; one per (destination, head) for the
//! segment softmax and its backward; one per (destination, head, channel) for the aggregation
//! and the destination gradients; one per (source, head, channel) for the source gradients. A
//! destination with many edges (a nucleus with hundreds of transcripts) is then spread over
//! `H·C` threads instead of `H`. Edges are read in the
//! destination-sorted order of [`Csr`](segger_graph::csr::Csr) (`row_ptr`, `src`); the source
//! half of the backward pass walks the same edges grouped by source (`src_ptr`, `src_edge`).
//!
//! * Forward: edge scores `e = Σ_c att[h,c]·LeakyReLU(xl[j,h,c] + xr[i,h,c])` into `alpha`;
//!   their softmax over each destination's edges, `exp(e − max) / (Σ exp + 1e-16)` (PyG's),
//!   in place; `out[i] = Σ α·xl[j]`. No `[E, H, C]` tensor is built.
//! * Backward: `dα = grad[i]·xl[j]`; `de = α(dα − Σ α·dα)` in place (`[E, H]`); `grad_xr[i]` and
//!   the per-destination terms of `grad_att`; `grad_xl[j] = Σ α·grad[i] + de·att·LeakyReLU'(z)`.
//! * `grad_att` is the column sum of the per-destination terms ([`col_sum_dtype`]).
//!
//! The channel loops of the per-(edge, head) kernels are unrolled (`channels` is a compile-time
//! parameter): besides speed, this keeps the loop count of one invocation low, and Mesa's
//! lavapipe (the CI's software Vulkan) stops any invocation after 65,535 loop iterations.
//!
//! The kernels live by pass: [`edge`] (edge scores and `dα`), [`softmax`] (the segment softmax
//! and its backward) and [`aggregate`] (the destination and source passes).

mod aggregate;
mod edge;
mod softmax;

use burn::tensor::{Int, Shape, Tensor as BTensor};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::{BoolElement, CubeRuntime, FloatElement, IntElement};
use cubecl::prelude::*;

use super::elementwise::col_sum_dtype;
use super::{empty32, empty_like, float, launch_shape, wrap, Cube};
use crate::mp::{FusedGraph, NEGATIVE_SLOPE};
use aggregate::{att_part_rows, gat_src_kernel, launch_dst};
use edge::launch_edge;
use softmax::launch_segment;

/// The device index tensors of one relation, on a CubeCL backend.
pub(super) struct CubeGraph<R: CubeRuntime> {
    pub src: CubeTensor<R>,
    pub dst: CubeTensor<R>,
    pub row_ptr: CubeTensor<R>,
    pub src_ptr: CubeTensor<R>,
    pub src_edge: CubeTensor<R>,
    pub num_dst: usize,
}

impl<R: CubeRuntime> CubeGraph<R> {
    /// Takes the index tensors of a fused graph view.
    pub fn new<F: FloatElement, I: IntElement, BT: BoolElement>(
        g: &FusedGraph<Cube<R, F, I, BT>>,
    ) -> Self {
        let int =
            |t: &BTensor<Cube<R, F, I, BT>, 1, Int>| into_contiguous(t.clone().into_primitive());
        Self {
            src: int(&g.src),
            dst: int(&g.dst),
            row_ptr: int(&g.row_ptr),
            src_ptr: int(&g.src_ptr),
            src_edge: int(&g.src_edge),
            num_dst: g.host.csr.num_dst(),
        }
    }
}

/// Fused forward on a CubeCL backend: the output `[N_dst, H, C]` and the attention `[E, H]`.
#[allow(clippy::type_complexity)]
pub(super) fn forward<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement>(
    xl: BTensor<Cube<R, F, I, BT>, 3>,
    xr: BTensor<Cube<R, F, I, BT>, 3>,
    att: BTensor<Cube<R, F, I, BT>, 2>,
    g: &CubeGraph<R>,
) -> (BTensor<Cube<R, F, I, BT>, 3>, BTensor<Cube<R, F, I, BT>, 2>) {
    let [_, h, c] = xl.dims();
    let (xl, xr, att) = (float(xl), float(xr), float(att));
    let client = xl.client.clone();
    let device = xl.device.clone();
    let e = g.src.meta.shape()[0];
    let nd = g.num_dst;
    let out = empty_like(&xl, Shape::new([nd, h, c]));
    let alpha = empty32(client.clone(), device.clone(), Shape::new([e, h]));
    // Unused buffer for the kernels' backward-only arguments.
    let none = empty32(client.clone(), device, Shape::new([1]));
    launch_edge(&client, [&xl, &xr, &att, &alpha], g, (e, h, c), false);
    launch_segment(&client, &alpha, &none, g, e, h, false);
    launch_dst(
        &client,
        [&xl, &xr, &att, &alpha, &out, &none],
        g,
        (e, h, c),
        false,
    );
    (wrap(out), wrap(alpha))
}

/// Fused backward on a CubeCL backend: the gradients of `xl`, `xr` and `att`.
#[allow(clippy::type_complexity)]
pub(super) fn backward<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement>(
    grad: BTensor<Cube<R, F, I, BT>, 3>,
    xl: BTensor<Cube<R, F, I, BT>, 3>,
    xr: BTensor<Cube<R, F, I, BT>, 3>,
    att: BTensor<Cube<R, F, I, BT>, 2>,
    alpha: BTensor<Cube<R, F, I, BT>, 2>,
    g: &CubeGraph<R>,
) -> (
    BTensor<Cube<R, F, I, BT>, 3>,
    BTensor<Cube<R, F, I, BT>, 3>,
    BTensor<Cube<R, F, I, BT>, 2>,
) {
    let [ns, h, c] = xl.dims();
    let (grad, xl, xr, att, alpha) = (float(grad), float(xl), float(xr), float(att), float(alpha));
    let client = xl.client.clone();
    let device = xl.device.clone();
    let e = g.src.meta.shape()[0];
    let nd = g.num_dst;
    let new = |shape: Shape| empty_like(&xl, shape);
    let dtype = xl.dtype;
    let de = empty32(client.clone(), device.clone(), Shape::new([e, h]));
    let grad_xr = new(Shape::new([nd, h, c]));
    let att_rows = att_part_rows(e, nd, c);
    let att_part = empty32(client.clone(), device.clone(), Shape::new([att_rows, h, c]));
    let grad_xl = new(Shape::new([ns, h, c]));
    let dtypes = [xl.dtype.into(), g.src.dtype.into()];

    // dα per (edge, head): the edge kernel with the output gradient in place of xr.
    launch_edge(&client, [&xl, &grad, &att, &de], g, (e, h, c), true);
    launch_segment(&client, &alpha, &de, g, e, h, true);
    launch_dst(
        &client,
        [&xl, &xr, &att, &de, &grad_xr, &att_part],
        g,
        (e, h, c),
        true,
    );
    let (count, dim) = launch_shape(&client, ns * h * c);
    gat_src_kernel::launch::<R>(
        &client,
        count,
        dim,
        grad.into_tensor_arg(),
        xl.into_tensor_arg(),
        xr.into_tensor_arg(),
        att.into_tensor_arg(),
        alpha.into_tensor_arg(),
        de.into_tensor_arg(),
        g.dst.clone().into_tensor_arg(),
        g.src_ptr.clone().into_tensor_arg(),
        g.src_edge.clone().into_tensor_arg(),
        grad_xl.clone().into_tensor_arg(),
        ns as u32,
        h as u32,
        c as u32,
        NEGATIVE_SLOPE,
        dtypes,
    );
    // The per-destination terms are f32; so is their sum, rounded once to the storage type.
    let att_part = wrap::<R, F, I, BT, 3>(att_part).reshape([att_rows, h * c]);
    let grad_att = wrap::<R, F, I, BT, 2>(col_sum_dtype(att_part.into_primitive().tensor(), dtype))
        .reshape([h, c]);
    (wrap(grad_xl), wrap(grad_xr), grad_att)
}

/// Mean in-degree above which the segment softmax runs one cube per (destination, head)
/// (`gat_segment_block_kernel` in [`softmax`]) instead of one thread: a nucleus with hundreds
/// of incoming transcripts would otherwise be three serial passes over its edges in one thread.
pub(super) const SEGMENT_BLOCK_DEGREE: usize = 16;

#[cube]
fn leaky(z: f32, slope: f32) -> f32 {
    select(z > 0.0, z, z * slope)
}

#[cube]
fn leaky_grad(z: f32, slope: f32) -> f32 {
    select(z > 0.0, 1.0, slope)
}
