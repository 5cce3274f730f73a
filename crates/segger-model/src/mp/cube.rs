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
//! * `grad_att` is the column sum of the per-destination terms ([`super::col_sum`]).
//!
//! The channel loops of the per-(edge, head) kernels are unrolled (`channels` is a compile-time
//! parameter): besides speed, this keeps the loop count of one invocation low, and Mesa's
//! lavapipe (the CI's software Vulkan) stops any invocation after 65,535 loop iterations.
//! Outputs are allocated with contiguous strides because the kernels index linearly, and the
//! CUDA runtime pads rows narrower than 16 bytes by default.

use burn::tensor::{Int, Shape, Tensor as BTensor, TensorPrimitive};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::{BoolElement, CubeBackend, CubeRuntime, FloatElement, IntElement};
use cubecl::calculate_cube_count_elemwise;
use cubecl::prelude::*;

use super::{NEGATIVE_SLOPE, SOFTMAX_EPS};

#[cube]
fn leaky<F: Float>(z: F, slope: F) -> F {
    select(z > F::new(0.0), z, z * slope)
}

#[cube]
fn leaky_grad<F: Float>(z: F, slope: F) -> F {
    select(z > F::new(0.0), F::new(1.0), slope)
}

/// Edge scores (forward) or `dα = grad[i]·xl[j]` (backward, `grad` in place of `att` and
/// `xr`): one thread per (edge, head).
#[allow(clippy::too_many_arguments)]
#[cube(launch)]
fn gat_edge_kernel<F: Float, I: Numeric>(
    xl: &Tensor<F>,
    xr: &Tensor<F>,
    att: &Tensor<F>,
    src: &Tensor<I>,
    dst: &Tensor<I>,
    out: &mut Tensor<F>,
    num_edges: u32,
    heads: u32,
    slope: f32,
    #[comptime] channels: usize,
    #[comptime] backward: bool,
    #[define(F, I)] _dtypes: [StorageType; 2],
) {
    let heads = heads as usize;
    if ABSOLUTE_POS >= num_edges as usize * heads {
        terminate!();
    }
    let k = ABSOLUTE_POS / heads;
    let h = ABSOLUTE_POS % heads;
    let hc = heads * channels;
    let j = u32::cast_from(src[k]) as usize;
    let i = u32::cast_from(dst[k]) as usize;
    let base_l = j * hc + h * channels;
    let base_r = i * hc + h * channels;
    let slope = F::cast_from(slope);
    let mut s = F::new(0.0);
    if backward {
        // `xr` is the output gradient here.
        #[unroll]
        for c in 0..channels {
            s += xr[base_r + c] * xl[base_l + c];
        }
    } else {
        let base_a = h * channels;
        #[unroll]
        for c in 0..channels {
            s += att[base_a + c] * leaky::<F>(xl[base_l + c] + xr[base_r + c], slope);
        }
    }
    out[k * heads + h] = s;
}

/// Forward: the scores of each destination's edges become their softmax, in place. Backward
/// (`dalpha` given): `dα` becomes `de = α(dα − Σ α·dα)`, in place. One thread per
/// (destination, head).
#[allow(clippy::too_many_arguments)]
#[cube(launch)]
fn gat_segment_kernel<F: Float, I: Numeric>(
    alpha: &mut Tensor<F>,
    dalpha: &mut Tensor<F>,
    row_ptr: &Tensor<I>,
    num_dst: u32,
    heads: u32,
    eps: f32,
    #[comptime] backward: bool,
    #[define(F, I)] _dtypes: [StorageType; 2],
) {
    let heads = heads as usize;
    if ABSOLUTE_POS >= num_dst as usize * heads {
        terminate!();
    }
    let i = ABSOLUTE_POS / heads;
    let h = ABSOLUTE_POS % heads;
    let start = u32::cast_from(row_ptr[i]) as usize;
    let end = u32::cast_from(row_ptr[i + 1]) as usize;
    if backward {
        let mut dot = F::new(0.0);
        for k in start..end {
            dot += alpha[k * heads + h] * dalpha[k * heads + h];
        }
        for k in start..end {
            let q = k * heads + h;
            dalpha[q] = alpha[q] * (dalpha[q] - dot);
        }
    } else {
        let mut m = F::new(0.0);
        for k in start..end {
            let s = alpha[k * heads + h];
            m = select(k == start || s > m, s, m);
        }
        let mut sum = F::new(0.0);
        for k in start..end {
            let w = (alpha[k * heads + h] - m).exp();
            alpha[k * heads + h] = w;
            sum += w;
        }
        let inv = F::new(1.0) / (sum + F::cast_from(eps));
        for k in start..end {
            alpha[k * heads + h] *= inv;
        }
    }
}

/// Forward: `out[i,h,c] = Σ α·xl[j,h,c]` over i's edges. Backward: `grad_xr[i,h,c]` and the
/// per-destination `grad_att` terms. One thread per (destination, head, channel).
#[allow(clippy::too_many_arguments)]
#[cube(launch)]
fn gat_dst_kernel<F: Float, I: Numeric>(
    xl: &Tensor<F>,
    xr: &Tensor<F>,
    att: &Tensor<F>,
    weight: &Tensor<F>,
    src: &Tensor<I>,
    row_ptr: &Tensor<I>,
    out: &mut Tensor<F>,
    att_part: &mut Tensor<F>,
    num_dst: u32,
    heads: u32,
    channels: u32,
    slope: f32,
    #[comptime] backward: bool,
    #[define(F, I)] _dtypes: [StorageType; 2],
) {
    let heads = heads as usize;
    let channels = channels as usize;
    let hc = heads * channels;
    if ABSOLUTE_POS >= num_dst as usize * hc {
        terminate!();
    }
    let i = ABSOLUTE_POS / hc;
    let h = (ABSOLUTE_POS % hc) / channels;
    let c = ABSOLUTE_POS % channels;
    let start = u32::cast_from(row_ptr[i]) as usize;
    let end = u32::cast_from(row_ptr[i + 1]) as usize;
    let off = h * channels + c;
    let mut acc = F::new(0.0);
    if backward {
        let slope = F::cast_from(slope);
        let a = att[off];
        let r = xr[i * hc + off];
        let mut acc_att = F::new(0.0);
        for k in start..end {
            let j = u32::cast_from(src[k]) as usize;
            let z = xl[j * hc + off] + r;
            let g = weight[k * heads + h];
            acc += g * a * leaky_grad::<F>(z, slope);
            acc_att += g * leaky::<F>(z, slope);
        }
        att_part[ABSOLUTE_POS] = acc_att;
    } else {
        for k in start..end {
            let j = u32::cast_from(src[k]) as usize;
            acc += weight[k * heads + h] * xl[j * hc + off];
        }
    }
    out[ABSOLUTE_POS] = acc;
}

/// Backward: `grad_xl[j,h,c] = Σ α·grad[i,h,c] + de·att[h,c]·LeakyReLU'(z)` over j's edges.
/// One thread per (source, head, channel).
#[allow(clippy::too_many_arguments)]
#[cube(launch)]
fn gat_src_kernel<F: Float, I: Numeric>(
    grad: &Tensor<F>,
    xl: &Tensor<F>,
    xr: &Tensor<F>,
    att: &Tensor<F>,
    alpha: &Tensor<F>,
    de: &Tensor<F>,
    dst: &Tensor<I>,
    src_ptr: &Tensor<I>,
    src_edge: &Tensor<I>,
    grad_xl: &mut Tensor<F>,
    num_src: u32,
    heads: u32,
    channels: u32,
    slope: f32,
    #[define(F, I)] _dtypes: [StorageType; 2],
) {
    let heads = heads as usize;
    let channels = channels as usize;
    let hc = heads * channels;
    if ABSOLUTE_POS >= num_src as usize * hc {
        terminate!();
    }
    let j = ABSOLUTE_POS / hc;
    let h = (ABSOLUTE_POS % hc) / channels;
    let c = ABSOLUTE_POS % channels;
    let off = h * channels + c;
    let slope = F::cast_from(slope);
    let a = att[off];
    let l = xl[ABSOLUTE_POS];
    let start = u32::cast_from(src_ptr[j]) as usize;
    let end = u32::cast_from(src_ptr[j + 1]) as usize;
    let mut acc = F::new(0.0);
    for p in start..end {
        let k = u32::cast_from(src_edge[p]) as usize;
        let i = u32::cast_from(dst[k]) as usize;
        let q = k * heads + h;
        let z = l + xr[i * hc + off];
        acc += alpha[q] * grad[i * hc + off] + de[q] * a * leaky_grad::<F>(z, slope);
    }
    grad_xl[ABSOLUTE_POS] = acc;
}

#[cube(launch)]
fn scatter_grouped_kernel<F: Float, I: Numeric>(
    values: &Tensor<F>,
    group_ptr: &Tensor<I>,
    group_pos: &Tensor<I>,
    out: &mut Tensor<F>,
    num_rows: u32,
    width: u32,
    #[define(F, I)] _dtypes: [StorageType; 2],
) {
    let width = width as usize;
    if ABSOLUTE_POS >= num_rows as usize * width {
        terminate!();
    }
    let r = ABSOLUTE_POS / width;
    let w = ABSOLUTE_POS % width;
    let start = u32::cast_from(group_ptr[r]) as usize;
    let end = u32::cast_from(group_ptr[r + 1]) as usize;
    let mut acc = F::new(0.0);
    for p in start..end {
        let q = u32::cast_from(group_pos[p]) as usize;
        acc += values[q * width + w];
    }
    out[ABSOLUTE_POS] = acc;
}

/// The backward of a grouped gather: one thread per (row, column) sums its gathered positions.
pub(super) fn scatter_grouped<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement>(
    values: BTensor<Cube<R, F, I, BT>, 2>,
    idx: &super::RowIndex<Cube<R, F, I, BT>>,
) -> BTensor<Cube<R, F, I, BT>, 2> {
    let width = values.dims()[1];
    let values = float(values);
    let ptr = into_contiguous(idx.group_ptr.clone().into_primitive());
    let pos = into_contiguous(idx.group_pos.clone().into_primitive());
    let client = values.client.clone();
    let out = empty::<R, F>(
        client.clone(),
        values.device.clone(),
        Shape::new([idx.num_rows, width]),
    );
    let (count, dim) = launch_shape(&client, idx.num_rows * width);
    let dtypes = [values.dtype.into(), ptr.dtype.into()];
    scatter_grouped_kernel::launch::<R>(
        &client,
        count,
        dim,
        values.into_tensor_arg(),
        ptr.into_tensor_arg(),
        pos.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        idx.num_rows as u32,
        width as u32,
        dtypes,
    );
    wrap(out)
}

/// The device index tensors of one relation, on a CubeCL backend.
pub(super) struct CubeGraph<R: CubeRuntime> {
    pub src: CubeTensor<R>,
    pub dst: CubeTensor<R>,
    pub row_ptr: CubeTensor<R>,
    pub src_ptr: CubeTensor<R>,
    pub src_edge: CubeTensor<R>,
    pub num_dst: usize,
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

impl<R: CubeRuntime> CubeGraph<R> {
    /// Takes the index tensors of a fused graph view.
    pub fn new<F: FloatElement, I: IntElement, BT: BoolElement>(
        g: &super::FusedGraph<Cube<R, F, I, BT>>,
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

/// An uninitialised output with contiguous strides: the kernels index linearly, and the
/// runtime's default allocation may pad rows (CUDA pitches rows narrower than 16 bytes).
fn empty<R: CubeRuntime, F: FloatElement>(
    client: ComputeClient<R>,
    device: R::Device,
    shape: Shape,
) -> CubeTensor<R> {
    empty_device_contiguous_dtype(client, device, shape, F::dtype())
}

fn launch_shape<R: CubeRuntime>(client: &ComputeClient<R>, n: usize) -> (CubeCount, CubeDim) {
    let dim = CubeDim::new(client, n.max(1));
    (calculate_cube_count_elemwise(client, n.max(1), dim), dim)
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
    let out = empty::<R, F>(client.clone(), device.clone(), Shape::new([nd, h, c]));
    let alpha = empty::<R, F>(client.clone(), device.clone(), Shape::new([e, h]));
    // Unused buffer for the kernels' backward-only arguments.
    let none = empty::<R, F>(client.clone(), device, Shape::new([1]));
    let dtypes = [xl.dtype.into(), g.src.dtype.into()];
    let (count, dim) = launch_shape(&client, e * h);
    gat_edge_kernel::launch::<R>(
        &client,
        count,
        dim,
        xl.clone().into_tensor_arg(),
        xr.clone().into_tensor_arg(),
        att.clone().into_tensor_arg(),
        g.src.clone().into_tensor_arg(),
        g.dst.clone().into_tensor_arg(),
        alpha.clone().into_tensor_arg(),
        e as u32,
        h as u32,
        NEGATIVE_SLOPE,
        c,
        false,
        dtypes,
    );
    let (count, dim) = launch_shape(&client, nd * h);
    gat_segment_kernel::launch::<R>(
        &client,
        count,
        dim,
        alpha.clone().into_tensor_arg(),
        none.clone().into_tensor_arg(),
        g.row_ptr.clone().into_tensor_arg(),
        nd as u32,
        h as u32,
        SOFTMAX_EPS,
        false,
        dtypes,
    );
    let (count, dim) = launch_shape(&client, nd * h * c);
    gat_dst_kernel::launch::<R>(
        &client,
        count,
        dim,
        xl.into_tensor_arg(),
        xr.into_tensor_arg(),
        att.into_tensor_arg(),
        alpha.clone().into_tensor_arg(),
        g.src.clone().into_tensor_arg(),
        g.row_ptr.clone().into_tensor_arg(),
        out.clone().into_tensor_arg(),
        none.into_tensor_arg(),
        nd as u32,
        h as u32,
        c as u32,
        NEGATIVE_SLOPE,
        false,
        dtypes,
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
    let new = |shape: Shape| empty::<R, F>(client.clone(), device.clone(), shape);
    let de = new(Shape::new([e, h]));
    let grad_xr = new(Shape::new([nd, h, c]));
    let att_part = new(Shape::new([nd, h, c]));
    let grad_xl = new(Shape::new([ns, h, c]));
    let dtypes = [xl.dtype.into(), g.src.dtype.into()];

    // dα per (edge, head): the edge kernel with the output gradient in place of xr.
    let (count, dim) = launch_shape(&client, e * h);
    gat_edge_kernel::launch::<R>(
        &client,
        count,
        dim,
        xl.clone().into_tensor_arg(),
        grad.clone().into_tensor_arg(),
        att.clone().into_tensor_arg(),
        g.src.clone().into_tensor_arg(),
        g.dst.clone().into_tensor_arg(),
        de.clone().into_tensor_arg(),
        e as u32,
        h as u32,
        NEGATIVE_SLOPE,
        c,
        true,
        dtypes,
    );
    let (count, dim) = launch_shape(&client, nd * h);
    gat_segment_kernel::launch::<R>(
        &client,
        count,
        dim,
        alpha.clone().into_tensor_arg(),
        de.clone().into_tensor_arg(),
        g.row_ptr.clone().into_tensor_arg(),
        nd as u32,
        h as u32,
        SOFTMAX_EPS,
        true,
        dtypes,
    );
    let (count, dim) = launch_shape(&client, nd * h * c);
    gat_dst_kernel::launch::<R>(
        &client,
        count,
        dim,
        xl.clone().into_tensor_arg(),
        xr.clone().into_tensor_arg(),
        att.clone().into_tensor_arg(),
        de.clone().into_tensor_arg(),
        g.src.clone().into_tensor_arg(),
        g.row_ptr.clone().into_tensor_arg(),
        grad_xr.clone().into_tensor_arg(),
        att_part.clone().into_tensor_arg(),
        nd as u32,
        h as u32,
        c as u32,
        NEGATIVE_SLOPE,
        true,
        dtypes,
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
    let grad_att =
        super::col_sum(wrap::<R, F, I, BT, 3>(att_part).reshape([nd, h * c])).reshape([h, c]);
    (wrap(grad_xl), wrap(grad_xr), grad_att)
}
