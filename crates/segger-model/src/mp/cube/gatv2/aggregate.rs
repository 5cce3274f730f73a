//! The aggregation passes of the fused GATv2 op: per destination (the output, or `grad_xr` and
//! the `grad_att` terms) and per source (`grad_xl`).

use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::CubeRuntime;
use cubecl::prelude::*;

use super::{leaky, leaky_grad, CubeGraph, SEGMENT_BLOCK_DEGREE};
use crate::mp::cube::{launch_shape, rd};
use crate::mp::NEGATIVE_SLOPE;

/// Launches the destination pass (aggregation, or `grad_xr` and the `grad_att` terms) with one
/// thread per (destination, head, channel) or, for high mean in-degree, one cube per
/// (destination, head).
#[allow(clippy::too_many_arguments)]
pub(super) fn launch_dst<R: CubeRuntime>(
    client: &ComputeClient<R>,
    [xl, xr, att, weight, out, att_part]: [&CubeTensor<R>; 6],
    g: &CubeGraph<R>,
    (e, h, c): (usize, usize, usize),
    backward: bool,
) {
    let nd = g.num_dst;
    let dtypes = [xl.dtype.into(), g.src.dtype.into()];
    if dst_blocks(e, nd, c) {
        let n = (nd * h) as u32;
        let x = n.min(65_535);
        gat_dst_block_kernel::launch::<R>(
            client,
            CubeCount::Static(x, n.div_ceil(x), 1),
            CubeDim::new_1d(DST_THREADS as u32),
            xl.clone().into_tensor_arg(),
            xr.clone().into_tensor_arg(),
            att.clone().into_tensor_arg(),
            weight.clone().into_tensor_arg(),
            g.src.clone().into_tensor_arg(),
            g.row_ptr.clone().into_tensor_arg(),
            out.clone().into_tensor_arg(),
            att_part.clone().into_tensor_arg(),
            nd as u32,
            h as u32,
            c as u32,
            NEGATIVE_SLOPE,
            backward,
            dtypes,
        );
    } else {
        let group = if backward { DST_ATT_GROUP } else { 1 };
        let (count, dim) = launch_shape(client, nd.div_ceil(group) * h * c);
        gat_dst_kernel::launch::<R>(
            client,
            count,
            dim,
            xl.clone().into_tensor_arg(),
            xr.clone().into_tensor_arg(),
            att.clone().into_tensor_arg(),
            weight.clone().into_tensor_arg(),
            g.src.clone().into_tensor_arg(),
            g.row_ptr.clone().into_tensor_arg(),
            out.clone().into_tensor_arg(),
            att_part.clone().into_tensor_arg(),
            nd as u32,
            h as u32,
            c as u32,
            group as u32,
            NEGATIVE_SLOPE,
            backward,
            dtypes,
        );
    }
}

/// Whether [`launch_dst`] runs [`gat_dst_block_kernel()`] (one cube per (destination, head), for
/// a high mean in-degree) rather than [`gat_dst_kernel()`].
fn dst_blocks(e: usize, nd: usize, c: usize) -> bool {
    e > SEGMENT_BLOCK_DEGREE * nd && c <= DST_THREADS
}

/// Destinations per thread of [`gat_dst_kernel()`]'s backward, which sums their `grad_att` terms
/// into one f32 partial: the partials take `[⌈N_dst / 4⌉, H, C]` rather than `[N_dst, H, C]`
/// (for the seed model's hidden layers at a batch of 41,984 transcripts, 10.7 MB rather than
/// 43 MB, which on an 80 GB card would take a page of CubeCL's 1.27 GB pool of its own).
const DST_ATT_GROUP: usize = 4;

/// The rows of [`gat_dst_kernel()`]'s or [`gat_dst_block_kernel()`]'s `grad_att` partials.
pub(super) fn att_part_rows(e: usize, nd: usize, c: usize) -> usize {
    if dst_blocks(e, nd, c) {
        nd
    } else {
        nd.div_ceil(DST_ATT_GROUP)
    }
}

/// One edge `k` (source `src[k]`) of the destination pass; `at` is `(heads, h, H·C, off)` with
/// `off = h·C + c`: forward,
/// `(α·xl[j], 0)` with `weight` the attention; backward, `(de·att·LeakyReLU'(z), de·LeakyReLU(z))`
/// with `weight` the `de` terms, `a = att[off]` and `r = xr[i, off]`.
#[allow(clippy::too_many_arguments)]
#[cube]
fn dst_term<F: Float, I: Numeric>(
    xl: &Tensor<F>,
    weight: &Tensor<f32>,
    src: &Tensor<I>,
    k: usize,
    at: (usize, usize, usize, usize),
    a: f32,
    r: f32,
    slope: f32,
    #[comptime] backward: bool,
) -> (f32, f32) {
    let (heads, h, hc, off) = at;
    let j = u32::cast_from(src[k]) as usize;
    let g = weight[k * heads + h];
    let l = rd(xl, j * hc + off);
    if backward {
        let z = l + r;
        (g * a * leaky_grad(z, slope), g * leaky(z, slope))
    } else {
        (g * l, 0.0f32)
    }
}

/// Forward: `out[i,h,c] = Σ α·xl[j,h,c]` over i's edges. Backward: `grad_xr[i,h,c]` and the
/// `grad_att` terms. One thread per (`group` consecutive destinations, head, channel); the
/// thread sums the `grad_att` terms of its destinations into `att_part[⌊i / group⌋, h, c]`.
/// Consecutive threads take consecutive channels of one destination, so loads stay coalesced.
#[allow(clippy::too_many_arguments)]
#[cube(launch)]
fn gat_dst_kernel<F: Float, I: Numeric>(
    xl: &Tensor<F>,
    xr: &Tensor<F>,
    att: &Tensor<F>,
    weight: &Tensor<f32>,
    src: &Tensor<I>,
    row_ptr: &Tensor<I>,
    out: &mut Tensor<F>,
    att_part: &mut Tensor<f32>,
    num_dst: u32,
    heads: u32,
    channels: u32,
    group: u32,
    slope: f32,
    #[comptime] backward: bool,
    #[define(F, I)] _dtypes: [StorageType; 2],
) {
    let heads = heads as usize;
    let channels = channels as usize;
    let group = group as usize;
    let num_dst = num_dst as usize;
    let hc = heads * channels;
    if ABSOLUTE_POS >= num_dst.div_ceil(group) * hc {
        terminate!();
    }
    let q = ABSOLUTE_POS / hc;
    let off = ABSOLUTE_POS % hc;
    let h = off / channels;
    let first = q * group;
    let mut last = first + group;
    if last > num_dst {
        last = num_dst;
    }
    let mut a = 0.0f32;
    if backward {
        a = rd(att, off);
    }
    let mut acc_att = 0.0f32;
    for i in first..last {
        let start = u32::cast_from(row_ptr[i]) as usize;
        let end = u32::cast_from(row_ptr[i + 1]) as usize;
        let mut r = 0.0f32;
        if backward {
            r = rd(xr, i * hc + off);
        }
        let mut acc = 0.0f32;
        for k in start..end {
            let (t, t_att) = dst_term(
                xl,
                weight,
                src,
                k,
                (heads, h, hc, off),
                a,
                r,
                slope,
                backward,
            );
            acc += t;
            acc_att += t_att;
        }
        out[i * hc + off] = F::cast_from(acc);
    }
    if backward {
        att_part[ABSOLUTE_POS] = acc_att;
    }
}

/// Threads of one cube of [`gat_dst_block_kernel()`].
const DST_THREADS: usize = 256;

/// [`gat_dst_kernel()`] for destinations with many edges: one cube per (destination, head), its
/// [`DST_THREADS`] threads split into `DST_THREADS / channels` parts that each take every
/// part-th edge for all channels; the parts' sums then meet in shared memory.
#[allow(clippy::too_many_arguments)]
#[cube(launch)]
fn gat_dst_block_kernel<F: Float, I: Numeric>(
    xl: &Tensor<F>,
    xr: &Tensor<F>,
    att: &Tensor<F>,
    weight: &Tensor<f32>,
    src: &Tensor<I>,
    row_ptr: &Tensor<I>,
    out: &mut Tensor<F>,
    att_part: &mut Tensor<f32>,
    num_dst: u32,
    heads: u32,
    channels: u32,
    slope: f32,
    #[comptime] backward: bool,
    #[define(F, I)] _dtypes: [StorageType; 2],
) {
    let heads = heads as usize;
    let channels = channels as usize;
    let seg = CUBE_POS;
    if seg >= num_dst as usize * heads {
        terminate!();
    }
    let mut sum = SharedMemory::<f32>::new(DST_THREADS);
    let mut sum_att = SharedMemory::<f32>::new(DST_THREADS);
    let hc = heads * channels;
    let parts = DST_THREADS / channels;
    let t = UNIT_POS as usize;
    let part = t / channels;
    let c = t % channels;
    let i = seg / heads;
    let h = seg % heads;
    let off = h * channels + c;
    let start = u32::cast_from(row_ptr[i]) as usize;
    let end = u32::cast_from(row_ptr[i + 1]) as usize;
    let mut acc = 0.0f32;
    let mut acc_att = 0.0f32;
    if part < parts {
        let rounds = (end - start).div_ceil(parts);
        let mut a = 0.0f32;
        let mut r = 0.0f32;
        if backward {
            a = rd(att, off);
            r = rd(xr, i * hc + off);
        }
        for q in 0..rounds {
            let k = start + q * parts + part;
            if k < end {
                let (t, t_att) = dst_term(
                    xl,
                    weight,
                    src,
                    k,
                    (heads, h, hc, off),
                    a,
                    r,
                    slope,
                    backward,
                );
                acc += t;
                acc_att += t_att;
            }
        }
    }
    sum[t] = acc;
    sum_att[t] = acc_att;
    sync_cube();
    if part == 0 {
        let mut total = 0.0f32;
        let mut total_att = 0.0f32;
        for p in 0..parts {
            total += sum[p * channels + c];
            total_att += sum_att[p * channels + c];
        }
        out[i * hc + off] = F::cast_from(total);
        if backward {
            att_part[i * hc + off] = total_att;
        }
    }
}

/// Backward: `grad_xl[j,h,c] = Σ α·grad[i,h,c] + de·att[h,c]·LeakyReLU'(z)` over j's edges.
/// One thread per (source, head, channel).
#[allow(clippy::too_many_arguments)]
#[cube(launch)]
pub(super) fn gat_src_kernel<F: Float, I: Numeric>(
    grad: &Tensor<F>,
    xl: &Tensor<F>,
    xr: &Tensor<F>,
    att: &Tensor<F>,
    alpha: &Tensor<f32>,
    de: &Tensor<f32>,
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
    let a = rd(att, off);
    let l = rd(xl, ABSOLUTE_POS);
    let start = u32::cast_from(src_ptr[j]) as usize;
    let end = u32::cast_from(src_ptr[j + 1]) as usize;
    let mut acc = 0.0f32;
    for p in start..end {
        let k = u32::cast_from(src_edge[p]) as usize;
        let i = u32::cast_from(dst[k]) as usize;
        let q = k * heads + h;
        let z = l + rd(xr, i * hc + off);
        acc += alpha[q] * rd(grad, i * hc + off) + de[q] * a * leaky_grad(z, slope);
    }
    grad_xl[ABSOLUTE_POS] = F::cast_from(acc);
}
