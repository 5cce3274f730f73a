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
//! Precision: whatever the backend's float type (f32, f16 or bf16), every kernel reads its
//! inputs as f32, accumulates in f32 and rounds once when it writes; the attention weights and
//! their gradients (`[E, H]`) and the per-destination `grad_att` terms stay f32 throughout, and
//! `grad_att` is summed in f32 before its one rounding to the storage type.
//!
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
fn leaky(z: f32, slope: f32) -> f32 {
    select(z > 0.0, z, z * slope)
}

#[cube]
fn leaky_grad(z: f32, slope: f32) -> f32 {
    select(z > 0.0, 1.0, slope)
}

/// An element of `t` as f32: every kernel computes and accumulates in f32 whatever the storage
/// type (f32, f16 or bf16), and rounds once when it writes.
#[cube]
fn rd<F: Float>(t: &Tensor<F>, i: usize) -> f32 {
    f32::cast_from(t[i])
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
    out: &mut Tensor<f32>,
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
    let base = (j * hc + h * channels, i * hc + h * channels, h * channels);
    let mut s = 0.0f32;
    #[unroll]
    for c in 0..channels {
        s += edge_term(xl, xr, att, base, c, slope, backward);
    }
    out[k * heads + h] = s;
}

/// Channel `c`'s term of an edge score, `att[h,c]·LeakyReLU(xl[j,h,c] + xr[i,h,c])`, or of `dα`,
/// `grad[i,h,c]·xl[j,h,c]` (backward, the output gradient passed as `xr`); `base` holds the
/// offsets of `(xl[j,h,0], xr[i,h,0], att[h,0])`.
#[cube]
fn edge_term<F: Float>(
    xl: &Tensor<F>,
    xr: &Tensor<F>,
    att: &Tensor<F>,
    base: (usize, usize, usize),
    c: usize,
    slope: f32,
    #[comptime] backward: bool,
) -> f32 {
    let (base_l, base_r, base_a) = base;
    if backward {
        rd(xr, base_r + c) * rd(xl, base_l + c)
    } else {
        rd(att, base_a + c) * leaky(rd(xl, base_l + c) + rd(xr, base_r + c), slope)
    }
}

/// Lanes per (edge, head) of [`gat_edge_lanes_kernel`].
const EDGE_LANES: usize = 16;
/// (edge, head) pairs per cube of [`gat_edge_lanes_kernel`].
const EDGE_PAIRS: usize = 16;

/// [`gat_edge_kernel`] with [`EDGE_LANES`] threads per (edge, head): lane `l` takes channels
/// `l, l + 16, …`, so the lanes of one pair read consecutive elements of its rows, and their
/// partial sums meet in shared memory. Cubes of [`EDGE_LANES`] × [`EDGE_PAIRS`] threads, numbered
/// over a 2-D grid.
#[allow(clippy::too_many_arguments)]
#[cube(launch)]
fn gat_edge_lanes_kernel<F: Float, I: Numeric>(
    xl: &Tensor<F>,
    xr: &Tensor<F>,
    att: &Tensor<F>,
    src: &Tensor<I>,
    dst: &Tensor<I>,
    out: &mut Tensor<f32>,
    num_edges: u32,
    heads: u32,
    slope: f32,
    #[comptime] channels: usize,
    #[comptime] backward: bool,
    #[define(F, I)] _dtypes: [StorageType; 2],
) {
    let mut shared = SharedMemory::<f32>::new(EDGE_LANES * EDGE_PAIRS);
    let lane = UNIT_POS_X as usize;
    let slot = UNIT_POS_Y as usize;
    let heads = heads as usize;
    let pair = CUBE_POS * EDGE_PAIRS + slot;
    let total = num_edges as usize * heads;
    let rounds = comptime!(channels.div_ceil(EDGE_LANES));
    let mut s = 0.0f32;
    if pair < total {
        let k = pair / heads;
        let h = pair % heads;
        let hc = heads * channels;
        let j = u32::cast_from(src[k]) as usize;
        let i = u32::cast_from(dst[k]) as usize;
        let base = (j * hc + h * channels, i * hc + h * channels, h * channels);
        #[unroll]
        for q in 0..rounds {
            let c = q * EDGE_LANES + lane;
            if c < channels {
                s += edge_term(xl, xr, att, base, c, slope, backward);
            }
        }
    }
    let at = slot * EDGE_LANES + lane;
    shared[at] = s;
    sync_cube();
    #[unroll]
    for r in 1usize..5usize {
        let stride = EDGE_LANES >> r;
        if lane < stride {
            shared[at] += shared[at + stride];
        }
        sync_cube();
    }
    if lane == 0 && pair < total {
        out[pair] = shared[at];
    }
}

/// Forward: the scores of each destination's edges become their softmax, in place. Backward
/// (`dalpha` given): `dα` becomes `de = α(dα − Σ α·dα)`, in place. One thread per
/// (destination, head).
#[allow(clippy::too_many_arguments)]
#[cube(launch)]
fn gat_segment_kernel<I: Numeric>(
    alpha: &mut Tensor<f32>,
    dalpha: &mut Tensor<f32>,
    row_ptr: &Tensor<I>,
    num_dst: u32,
    heads: u32,
    eps: f32,
    #[comptime] backward: bool,
    #[define(I)] _dtype: StorageType,
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
        let mut dot = 0.0f32;
        for k in start..end {
            dot += alpha[k * heads + h] * dalpha[k * heads + h];
        }
        for k in start..end {
            let q = k * heads + h;
            dalpha[q] = alpha[q] * (dalpha[q] - dot);
        }
    } else {
        let mut m = 0.0f32;
        for k in start..end {
            let s = alpha[k * heads + h];
            m = select(k == start || s > m, s, m);
        }
        let mut sum = 0.0f32;
        for k in start..end {
            let w = (alpha[k * heads + h] - m).exp();
            alpha[k * heads + h] = w;
            sum += w;
        }
        let inv = 1.0 / (sum + eps);
        for k in start..end {
            alpha[k * heads + h] *= inv;
        }
    }
}

/// Threads of one cube of [`gat_segment_block_kernel`].
const SEGMENT_THREADS: usize = 64;

/// Mean in-degree above which the segment softmax runs one cube per (destination, head)
/// ([`gat_segment_block_kernel`]) instead of one thread: a nucleus with hundreds of incoming
/// transcripts would otherwise be three serial passes over its edges in one thread.
const SEGMENT_BLOCK_DEGREE: usize = 16;

/// Reduces `shared[0..SEGMENT_THREADS]` into `shared[0]` (max or sum); all threads take part.
#[cube]
fn block_reduce(shared: &mut SharedMemory<f32>, t: usize, #[comptime] max: bool) {
    sync_cube();
    #[unroll]
    for k in 1usize..7usize {
        let stride = SEGMENT_THREADS >> k;
        if t < stride {
            if max {
                let (a, b) = (shared[t], shared[t + stride]);
                shared[t] = select(b > a, b, a);
            } else {
                shared[t] += shared[t + stride];
            }
        }
        sync_cube();
    }
}

/// [`gat_segment_kernel`] with one cube of [`SEGMENT_THREADS`] threads per (destination,
/// head): each pass strides over the destination's edges and ends in a tree reduction in shared
/// memory. Cubes are numbered over a 2-D grid (`CUBE_POS`), so any number of segments fits.
#[allow(clippy::too_many_arguments)]
#[cube(launch)]
fn gat_segment_block_kernel<I: Numeric>(
    alpha: &mut Tensor<f32>,
    dalpha: &mut Tensor<f32>,
    row_ptr: &Tensor<I>,
    num_dst: u32,
    heads: u32,
    eps: f32,
    #[comptime] backward: bool,
    #[define(I)] _dtype: StorageType,
) {
    let heads = heads as usize;
    let seg = CUBE_POS;
    if seg >= num_dst as usize * heads {
        terminate!();
    }
    let mut shared = SharedMemory::<f32>::new(SEGMENT_THREADS);
    let t = UNIT_POS as usize;
    let i = seg / heads;
    let h = seg % heads;
    let start = u32::cast_from(row_ptr[i]) as usize;
    let end = u32::cast_from(row_ptr[i + 1]) as usize;
    let rounds = (end - start).div_ceil(SEGMENT_THREADS);
    if backward {
        let mut dot = 0.0f32;
        for r in 0..rounds {
            let k = start + r * SEGMENT_THREADS + t;
            if k < end {
                dot += alpha[k * heads + h] * dalpha[k * heads + h];
            }
        }
        shared[t] = dot;
        block_reduce(&mut shared, t, false);
        let dot = shared[0];
        for r in 0..rounds {
            let k = start + r * SEGMENT_THREADS + t;
            if k < end {
                let q = k * heads + h;
                dalpha[q] = alpha[q] * (dalpha[q] - dot);
            }
        }
    } else {
        // The segment's first score starts every thread's maximum (no infinities needed).
        let mut m = 0.0f32;
        if start < end {
            m = alpha[start * heads + h];
        }
        for r in 0..rounds {
            let k = start + r * SEGMENT_THREADS + t;
            if k < end {
                let s = alpha[k * heads + h];
                m = select(s > m, s, m);
            }
        }
        shared[t] = m;
        block_reduce(&mut shared, t, true);
        let m = shared[0];
        sync_cube();
        let mut sum = 0.0f32;
        for r in 0..rounds {
            let k = start + r * SEGMENT_THREADS + t;
            if k < end {
                let w = (alpha[k * heads + h] - m).exp();
                alpha[k * heads + h] = w;
                sum += w;
            }
        }
        shared[t] = sum;
        block_reduce(&mut shared, t, false);
        let inv = 1.0 / (shared[0] + eps);
        for r in 0..rounds {
            let k = start + r * SEGMENT_THREADS + t;
            if k < end {
                alpha[k * heads + h] *= inv;
            }
        }
    }
}

/// Launches the edge kernel, one thread per (edge, head) or, with [`super::set_edge_lanes`],
/// [`EDGE_LANES`] threads per (edge, head): the scores into `out` (forward), or `dα` with the
/// output gradient passed as `xr` (backward).
fn launch_edge<R: CubeRuntime>(
    client: &ComputeClient<R>,
    [xl, xr, att, out]: [&CubeTensor<R>; 4],
    g: &CubeGraph<R>,
    (e, h, c): (usize, usize, usize),
    backward: bool,
) {
    if super::edge_lanes() {
        let n = (e * h).div_ceil(EDGE_PAIRS).max(1) as u32;
        let x = n.min(65_535);
        gat_edge_lanes_kernel::launch::<R>(
            client,
            CubeCount::Static(x, n.div_ceil(x), 1),
            CubeDim::new_2d(EDGE_LANES as u32, EDGE_PAIRS as u32),
            xl.clone().into_tensor_arg(),
            xr.clone().into_tensor_arg(),
            att.clone().into_tensor_arg(),
            g.src.clone().into_tensor_arg(),
            g.dst.clone().into_tensor_arg(),
            out.clone().into_tensor_arg(),
            e as u32,
            h as u32,
            NEGATIVE_SLOPE,
            c,
            backward,
            [xl.dtype.into(), g.src.dtype.into()],
        );
        return;
    }
    let (count, dim) = launch_shape(client, e * h);
    gat_edge_kernel::launch::<R>(
        client,
        count,
        dim,
        xl.clone().into_tensor_arg(),
        xr.clone().into_tensor_arg(),
        att.clone().into_tensor_arg(),
        g.src.clone().into_tensor_arg(),
        g.dst.clone().into_tensor_arg(),
        out.clone().into_tensor_arg(),
        e as u32,
        h as u32,
        NEGATIVE_SLOPE,
        c,
        backward,
        [xl.dtype.into(), g.src.dtype.into()],
    );
}

/// Launches the segment softmax (or its backward) with one thread or, for high mean in-degree,
/// one cube per (destination, head).
#[allow(clippy::too_many_arguments)]
fn launch_segment<R: CubeRuntime>(
    client: &ComputeClient<R>,
    alpha: &CubeTensor<R>,
    dalpha: &CubeTensor<R>,
    g: &CubeGraph<R>,
    e: usize,
    h: usize,
    backward: bool,
) {
    let nd = g.num_dst;
    if e > SEGMENT_BLOCK_DEGREE * nd {
        let n = (nd * h) as u32;
        let x = n.min(65_535);
        gat_segment_block_kernel::launch::<R>(
            client,
            CubeCount::Static(x, n.div_ceil(x), 1),
            CubeDim::new_1d(SEGMENT_THREADS as u32),
            alpha.clone().into_tensor_arg(),
            dalpha.clone().into_tensor_arg(),
            g.row_ptr.clone().into_tensor_arg(),
            nd as u32,
            h as u32,
            SOFTMAX_EPS,
            backward,
            g.src.dtype.into(),
        );
    } else {
        let (count, dim) = launch_shape(client, nd * h);
        gat_segment_kernel::launch::<R>(
            client,
            count,
            dim,
            alpha.clone().into_tensor_arg(),
            dalpha.clone().into_tensor_arg(),
            g.row_ptr.clone().into_tensor_arg(),
            nd as u32,
            h as u32,
            SOFTMAX_EPS,
            backward,
            g.src.dtype.into(),
        );
    }
}

/// Launches the destination pass (aggregation, or `grad_xr` and the `grad_att` terms) with one
/// thread per (destination, head, channel) or, for high mean in-degree, one cube per
/// (destination, head).
#[allow(clippy::too_many_arguments)]
fn launch_dst<R: CubeRuntime>(
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

/// Whether [`launch_dst`] runs [`gat_dst_block_kernel`] (one cube per (destination, head), for
/// a high mean in-degree) rather than [`gat_dst_kernel`].
fn dst_blocks(e: usize, nd: usize, c: usize) -> bool {
    e > SEGMENT_BLOCK_DEGREE * nd && c <= DST_THREADS
}

/// Destinations per thread of [`gat_dst_kernel`]'s backward, which sums their `grad_att` terms
/// into one f32 partial: the partials take `[⌈N_dst / 4⌉, H, C]` rather than `[N_dst, H, C]`
/// (for the seed model's hidden layers at a batch of 41,984 transcripts, 10.7 MB rather than
/// 43 MB, which on an 80 GB card would take a page of CubeCL's 1.27 GB pool of its own).
const DST_ATT_GROUP: usize = 4;

/// The rows of [`gat_dst_kernel`]'s or [`gat_dst_block_kernel`]'s `grad_att` partials.
fn att_part_rows(e: usize, nd: usize, c: usize) -> usize {
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

/// Threads of one cube of [`gat_dst_block_kernel`].
const DST_THREADS: usize = 256;

/// [`gat_dst_kernel`] for destinations with many edges: one cube per (destination, head), its
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
fn gat_src_kernel<F: Float, I: Numeric>(
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
    let mut acc = 0.0f32;
    for p in start..end {
        let q = u32::cast_from(group_pos[p]) as usize;
        acc += rd(values, q * width + w);
    }
    out[ABSOLUTE_POS] = F::cast_from(acc);
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
    let out = empty_like(&values, Shape::new([idx.num_rows, width]));
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

/// `max(x, 0)` elementwise (`+0` where `x ≤ 0`), or with `grad`, the ReLU's backward from its
/// output: `grad` where `x > 0`, else 0. One thread per element, in the input's type. Burn's
/// ReLU and its backward go through a boolean mask, which CubeCL stores in 4 bytes per element:
/// for the seed model's 256-wide activations at a batch of 41,984 transcripts, 43 MB each.
#[cube(launch)]
fn relu_kernel<F: Float>(
    x: &Tensor<F>,
    grad: &Tensor<F>,
    out: &mut Tensor<F>,
    len: u32,
    #[comptime] backward: bool,
    #[define(F)] _dtype: StorageType,
) {
    if ABSOLUTE_POS >= len as usize {
        terminate!();
    }
    let v = x[ABSOLUTE_POS];
    let zero = F::cast_from(0.0f32);
    // As PyTorch: a NaN input stays NaN, and its gradient is 0 (`grad` only where `y > 0`).
    if backward {
        out[ABSOLUTE_POS] = select(v > zero, grad[ABSOLUTE_POS], zero);
    } else {
        out[ABSOLUTE_POS] = select(v <= zero, zero, v);
    }
}

/// [`relu_kernel`] on `x` (and `grad` for the backward), a new tensor of `x`'s shape and type.
pub(super) fn relu<R: CubeRuntime>(x: CubeTensor<R>, grad: Option<CubeTensor<R>>) -> CubeTensor<R> {
    let x = into_contiguous(x);
    let shape = x.meta.shape().clone();
    let len = shape.num_elements();
    let out = empty_like(&x, shape);
    let client = x.client.clone();
    let (count, dim) = launch_shape(&client, len);
    let backward = grad.is_some();
    let grad = grad.map_or_else(|| x.clone(), into_contiguous);
    let dtype = x.dtype.into();
    relu_kernel::launch::<R>(
        &client,
        count,
        dim,
        x.into_tensor_arg(),
        grad.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        len as u32,
        backward,
        dtype,
    );
    out
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

/// Columns per cube of [`col_sum_kernel`] (one warp's width: a row's loads are coalesced).
const COL_SUM_COLS: usize = 32;
/// Row lanes per cube of [`col_sum_kernel`].
const COL_SUM_LANES: usize = 8;
/// Rows summed by one cube in the first stage of [`col_sum_dtype`].
const COL_SUM_ROWS: usize = 256;

/// `out[q, col] = Σ x[r, col]` over rows `r` of chunk `q` (rows `q·rows_per_cube ..`), f32
/// accumulation: cubes of [`COL_SUM_COLS`] columns × [`COL_SUM_LANES`] row lanes, the grid's x
/// over column tiles and y over row chunks. Each lane sums every lane-th row of the chunk, then
/// the lanes meet in shared memory.
#[cube(launch)]
fn col_sum_kernel<F: Float, O: Float>(
    x: &Tensor<F>,
    out: &mut Tensor<O>,
    rows: u32,
    cols: u32,
    rows_per_cube: u32,
    #[define(F, O)] _dtypes: [StorageType; 2],
) {
    let mut shared = SharedMemory::<f32>::new(COL_SUM_COLS * COL_SUM_LANES);
    let rows = rows as usize;
    let cols = cols as usize;
    let tx = UNIT_POS_X as usize;
    let lane = UNIT_POS_Y as usize;
    let col = CUBE_POS_X as usize * COL_SUM_COLS + tx;
    let start = CUBE_POS_Y as usize * rows_per_cube as usize;
    let stop = start + rows_per_cube as usize;
    let end = select(stop < rows, stop, rows);
    let mut acc = 0.0f32;
    if col < cols && start + lane < end {
        let steps = (end - start - lane).div_ceil(COL_SUM_LANES);
        for s in 0..steps {
            acc += rd(x, (start + lane + s * COL_SUM_LANES) * cols + col);
        }
    }
    shared[lane * COL_SUM_COLS + tx] = acc;
    sync_cube();
    #[unroll]
    for k in 1usize..4usize {
        let stride = COL_SUM_LANES >> k;
        if lane < stride {
            shared[lane * COL_SUM_COLS + tx] += shared[(lane + stride) * COL_SUM_COLS + tx];
        }
        sync_cube();
    }
    if lane == 0 && col < cols {
        out[CUBE_POS_Y as usize * cols + col] = O::cast_from(shared[tx]);
    }
}

/// Launches [`col_sum_kernel`] on `x` `[rows, cols]` (contiguous) with `rows_per_cube` rows per
/// cube, into a new `[rows.div_ceil(rows_per_cube), cols]` tensor of type `dtype`.
fn launch_col_sum<R: CubeRuntime>(
    x: &CubeTensor<R>,
    (rows, cols): (usize, usize),
    rows_per_cube: usize,
    dtype: burn::tensor::DType,
) -> CubeTensor<R> {
    let chunks = rows.div_ceil(rows_per_cube).max(1);
    let out = empty_device_contiguous_dtype(
        x.client.clone(),
        x.device.clone(),
        Shape::new([chunks, cols]),
        dtype,
    );
    col_sum_kernel::launch::<R>(
        &x.client,
        CubeCount::Static(cols.div_ceil(COL_SUM_COLS) as u32, chunks as u32, 1),
        CubeDim::new_2d(COL_SUM_COLS as u32, COL_SUM_LANES as u32),
        x.clone().into_tensor_arg(),
        out.clone().into_tensor_arg(),
        rows as u32,
        cols as u32,
        rows_per_cube as u32,
        [x.dtype.into(), dtype.into()],
    );
    out
}

/// Column sums of `x` `[rows, cols]`, `[1, cols]` of type `dtype`, in at most two launches of
/// [`col_sum_kernel`]: chunks of [`COL_SUM_ROWS`] rows into f32 partial sums, then the partial
/// sums in one cube per column tile. No atomics, so the result does not vary from run to run.
pub(super) fn col_sum_dtype<R: CubeRuntime>(
    x: CubeTensor<R>,
    dtype: burn::tensor::DType,
) -> CubeTensor<R> {
    let dims = x.meta.shape().clone();
    let (rows, cols) = (dims[0], dims[1]);
    let x = into_contiguous(x);
    // The grid's y extent is at most 65,535 chunks.
    let per_cube = COL_SUM_ROWS
        .max(rows.div_ceil(65_535))
        .next_multiple_of(COL_SUM_LANES);
    if rows <= per_cube {
        launch_col_sum(&x, (rows, cols), rows.max(1), dtype)
    } else {
        let partial = launch_col_sum(&x, (rows, cols), per_cube, burn::tensor::DType::F32);
        let chunks = rows.div_ceil(per_cube);
        launch_col_sum(&partial, (chunks, cols), chunks, dtype)
    }
}

/// `lhs · rhs` (rank 2, or rank 3 batched) of f32 tensors with CubeCL's unit matmul: every
/// product a plain f32 multiply-add, no tensor cores. Burn's matmul takes CubeCL's default
/// strategy, which on CUDA runs on tensor cores with the inputs rounded to TF32, and falls back
/// to this same unit matmul where tensor cores are unavailable (wgpu on lavapipe, for one).
/// (CubeCL's double-buffered unit kernel, `Strategy::DoubleUnit`, gives wrong embeddings inside
/// the model on lavapipe, though each product shape tested alone is right; it is not used.)
pub(super) fn matmul_f32<R: CubeRuntime>(lhs: CubeTensor<R>, rhs: CubeTensor<R>) -> CubeTensor<R> {
    use burn_cubecl::kernel::matmul::init_matmul_output;
    use cubek::matmul::definition::{MatmulElems, MatmulGlobalElems};
    use cubek::matmul::launch::{launch_ref, Strategy};
    use cubek::std::InputBinding;

    let dtype = lhs.dtype;
    let out = init_matmul_output(&lhs, &rhs, dtype);
    let mut dtypes = MatmulElems::from_globals(&MatmulGlobalElems {
        lhs: dtype.into(),
        rhs: dtype.into(),
        out: dtype.into(),
    });
    let client = out.client.clone();
    launch_ref(
        &Strategy::SimpleUnit(Default::default()),
        &client,
        InputBinding::new(lhs.binding(), dtype.into()),
        InputBinding::new(rhs.binding(), dtype.into()),
        out.clone().binding(),
        &mut dtypes,
    )
    .unwrap_or_else(|e| panic!("CubeCL's unit matmul cannot run this product: {e:?}"));
    out
}

/// [`super::GatBackend::col_sum`] on a CubeCL backend: [`col_sum_dtype`] in the input's type.
pub(super) fn col_sum<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement>(
    x: BTensor<Cube<R, F, I, BT>, 2>,
) -> BTensor<Cube<R, F, I, BT>, 1> {
    let cols = x.dims()[1];
    let x = x.into_primitive().tensor();
    let dtype = x.dtype;
    wrap::<R, F, I, BT, 2>(col_sum_dtype(x, dtype)).reshape([cols])
}

/// AdamW steps (see [`super::AdamWStep`]) of a group of parameters in one launch: the grid's y
/// is the parameter (`ps[y]` and its gradient, moments and outputs), x its elements. All
/// parameters of a group share the step's scalars. `first`: the moments start at zero and `ms`,
/// `vs` are not read; `scaled`: each gradient is multiplied by `scale[0]` (the clip
/// coefficient) first.
#[allow(clippy::too_many_arguments)]
#[cube(launch)]
fn adamw_multi_kernel<F: Float>(
    ps: &Sequence<Tensor<F>>,
    gs: &Sequence<Tensor<F>>,
    ms: &Sequence<Tensor<F>>,
    vs: &Sequence<Tensor<F>>,
    scale: &Tensor<F>,
    p_out: &mut Sequence<Tensor<F>>,
    m_out: &mut Sequence<Tensor<F>>,
    v_out: &mut Sequence<Tensor<F>>,
    decay: f32,
    one_minus_beta_1: f32,
    beta_2: f32,
    one_minus_beta_2: f32,
    step_size: f32,
    bc2_sqrt: f32,
    epsilon: f32,
    #[comptime] first: bool,
    #[comptime] scaled: bool,
    #[define(F)] _dtype: StorageType,
) {
    let i = CUBE_POS_X as usize * CUBE_DIM_X as usize + UNIT_POS_X as usize;
    #[unroll]
    for t in 0..ps.len() {
        if CUBE_POS_Y as usize == t {
            let p = ps.index(t);
            if i < p.len() {
                let mut gi = rd(gs.index(t), i);
                if scaled {
                    gi *= rd(scale, 0);
                }
                let mut mi = 0.0f32;
                let mut vi = 0.0f32;
                if !first {
                    mi = rd(ms.index(t), i);
                    vi = rd(vs.index(t), i) * beta_2;
                }
                let mi = mi + one_minus_beta_1 * (gi - mi);
                let vi = vi + gi * gi * one_minus_beta_2;
                let denom = vi.sqrt() / bc2_sqrt + epsilon;
                let pi = rd(p, i) * decay;
                let po = p_out.index_mut(t);
                po[i] = F::cast_from(pi - step_size * (mi / denom));
                let mo = m_out.index_mut(t);
                mo[i] = F::cast_from(mi);
                let vo = v_out.index_mut(t);
                vo[i] = F::cast_from(vi);
            }
        }
    }
}

/// Most parameters per launch of [`adamw_multi_kernel`] (seven buffers each; the body is
/// unrolled per parameter).
const ADAMW_GROUP: usize = 32;

/// Threads per cube of [`adamw_multi_kernel`].
const ADAMW_THREADS: usize = 256;

/// [`super::GatBackend::adamw_multi`]: the parameters grouped by their step's scalars, each
/// group in launches of up to [`ADAMW_GROUP`] parameters (fewer where the device binds fewer
/// buffers per kernel).
#[allow(clippy::type_complexity)]
pub(super) fn adamw_multi<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement>(
    params: Vec<super::AdamWParam<Cube<R, F, I, BT>>>,
    grad_scale: Option<BTensor<Cube<R, F, I, BT>, 1>>,
) -> Vec<(
    BTensor<Cube<R, F, I, BT>, 1>,
    BTensor<Cube<R, F, I, BT>, 1>,
    BTensor<Cube<R, F, I, BT>, 1>,
)> {
    let Some(first_param) = params.first() else {
        return Vec::new();
    };
    let client = float(first_param.p.clone()).client;
    let bindings = client.properties().hardware.max_bindings as usize;
    let group = (bindings.saturating_sub(4) / 7).clamp(1, ADAMW_GROUP);
    let scaled = grad_scale.is_some();
    let scale = grad_scale.map(float);
    // (parameter, gradient, moments) as contiguous device tensors, in input order.
    struct Item<R: CubeRuntime> {
        p: CubeTensor<R>,
        g: CubeTensor<R>,
        mv: Option<(CubeTensor<R>, CubeTensor<R>)>,
        s: super::AdamWStep,
    }
    let items: Vec<Item<R>> = params
        .into_iter()
        .map(|a| Item {
            p: float(a.p),
            g: float(a.g),
            mv: a.moments.map(|(m, v)| (float(m), float(v))),
            s: a.step,
        })
        .collect();
    let mut out: Vec<Option<(CubeTensor<R>, CubeTensor<R>, CubeTensor<R>)>> =
        (0..items.len()).map(|_| None).collect();
    // Groups of parameters with the same step scalars and the same first-step flag.
    let mut groups: Vec<(super::AdamWStep, bool, Vec<usize>)> = Vec::new();
    for (k, it) in items.iter().enumerate() {
        let first = it.mv.is_none();
        match groups
            .iter_mut()
            .find(|(s, f, _)| *s == it.s && *f == first)
        {
            Some((_, _, ks)) => ks.push(k),
            None => groups.push((it.s, first, vec![k])),
        }
    }
    for (s, first, ks) in groups {
        for chunk in ks.chunks(group) {
            let outs: Vec<(CubeTensor<R>, CubeTensor<R>, CubeTensor<R>)> = chunk
                .iter()
                .map(|&k| {
                    let p = &items[k].p;
                    let n = p.meta.shape().num_elements();
                    let new = || empty_like(p, Shape::new([n]));
                    (new(), new(), new())
                })
                .collect();
            let longest = chunk
                .iter()
                .map(|&k| items[k].p.meta.shape().num_elements())
                .max()
                .unwrap_or(1)
                .max(1);
            let arg = |t: &CubeTensor<R>| t.clone().into_tensor_arg();
            // On the first step the moments are not read: the gradient stands in for them.
            let moment = |k: usize, which: usize| match &items[k].mv {
                Some((m, v)) => arg(if which == 0 { m } else { v }),
                None => arg(&items[k].g),
            };
            let scale_arg = match &scale {
                Some(c) => arg(c),
                None => arg(&items[chunk[0]].g),
            };
            adamw_multi_kernel::launch::<R>(
                &client,
                CubeCount::Static(
                    longest.div_ceil(ADAMW_THREADS) as u32,
                    chunk.len() as u32,
                    1,
                ),
                CubeDim::new_1d(ADAMW_THREADS as u32),
                chunk.iter().map(|&k| arg(&items[k].p)).collect(),
                chunk.iter().map(|&k| arg(&items[k].g)).collect(),
                chunk.iter().map(|&k| moment(k, 0)).collect(),
                chunk.iter().map(|&k| moment(k, 1)).collect(),
                scale_arg,
                outs.iter().map(|o| arg(&o.0)).collect(),
                outs.iter().map(|o| arg(&o.1)).collect(),
                outs.iter().map(|o| arg(&o.2)).collect(),
                s.decay,
                s.one_minus_beta_1,
                s.beta_2,
                s.one_minus_beta_2,
                s.step_size,
                s.bc2_sqrt,
                s.epsilon,
                first,
                scaled,
                items[chunk[0]].p.dtype.into(),
            );
            for (&k, o) in chunk.iter().zip(outs) {
                out[k] = Some(o);
            }
        }
    }
    out.into_iter()
        .map(|o| {
            let (p, m, v) = o.expect("every parameter was stepped");
            (wrap(p), wrap(m), wrap(v))
        })
        .collect()
}

/// Threads per cube of [`sum_squares_multi_kernel`].
const SUM_SQUARES_THREADS: usize = 256;

/// `out[first + i] = Σ x_i²` for every tensor `x_i` of `xs`, one cube per tensor (cube `i`
/// reads `xs[i]`), f32 accumulation: each thread sums a strided share of its cube's tensor, then a tree
/// reduction in shared memory.
#[cube(launch)]
fn sum_squares_multi_kernel<F: Float>(
    xs: &Sequence<Tensor<F>>,
    out: &mut Tensor<F>,
    first: u32,
    #[define(F)] _dtype: StorageType,
) {
    let mut shared = SharedMemory::<f32>::new(SUM_SQUARES_THREADS);
    let t = UNIT_POS as usize;
    let mut acc = 0.0f32;
    #[unroll]
    for i in 0..xs.len() {
        if CUBE_POS == i {
            let x = xs.index(i);
            let n = x.len();
            let rounds = n.div_ceil(SUM_SQUARES_THREADS);
            for r in 0..rounds {
                let k = r * SUM_SQUARES_THREADS + t;
                if k < n {
                    let v = f32::cast_from(x[k]);
                    acc += v * v;
                }
            }
        }
    }
    shared[t] = acc;
    sync_cube();
    #[unroll]
    for k in 1usize..9usize {
        let stride = SUM_SQUARES_THREADS >> k;
        if t < stride {
            shared[t] += shared[t + stride];
        }
        sync_cube();
    }
    if t == 0 {
        out[first as usize + CUBE_POS] = F::cast_from(shared[0]);
    }
}

/// Most tensors per launch of [`sum_squares_multi_kernel`] (its body is unrolled per tensor).
const SUM_SQUARES_GROUP: usize = 64;

/// [`super::GatBackend::sum_squares`]: one launch of [`sum_squares_multi_kernel`] per group of
/// up to [`SUM_SQUARES_GROUP`] tensors (fewer where the device binds fewer buffers per kernel,
/// as wgpu may), one cube per tensor, each writing its own slot of the output. A tensor whose
/// elements fill its buffer exactly once (contiguous, or transposed like a weight gradient) is
/// read in place; the sum does not depend on the order.
pub(super) fn sum_squares<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement>(
    xs: Vec<CubeTensor<R>>,
) -> BTensor<Cube<R, F, I, BT>, 1> {
    let out = empty_like(
        xs.first().expect("at least one tensor"),
        Shape::new([xs.len()]),
    );
    let client = out.client.clone();
    // The output, the kernel's metadata and its scalars take bindings too.
    let bindings = client.properties().hardware.max_bindings as usize;
    let group = bindings.saturating_sub(4).clamp(1, SUM_SQUARES_GROUP);
    let xs: Vec<CubeTensor<R>> = xs
        .into_iter()
        .map(|x| {
            if x.is_contiguous_buffer() && x.is_nonoverlapping() {
                x
            } else {
                into_contiguous(x)
            }
        })
        .collect();
    for (g, chunk) in xs.chunks(group).enumerate() {
        let seq = chunk.iter().map(|x| x.clone().into_tensor_arg()).collect();
        sum_squares_multi_kernel::launch::<R>(
            &client,
            CubeCount::Static(chunk.len() as u32, 1, 1),
            CubeDim::new_1d(SUM_SQUARES_THREADS as u32),
            seq,
            out.clone().into_tensor_arg(),
            (g * group) as u32,
            out.dtype.into(),
        );
    }
    wrap(out)
}

/// [`super::GatBackend::adamw_step`]: [`adamw_multi`] with one parameter.
#[allow(clippy::type_complexity)]
pub(super) fn adamw_step<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement>(
    p: BTensor<Cube<R, F, I, BT>, 1>,
    g: BTensor<Cube<R, F, I, BT>, 1>,
    moments: Option<(BTensor<Cube<R, F, I, BT>, 1>, BTensor<Cube<R, F, I, BT>, 1>)>,
    grad_scale: Option<BTensor<Cube<R, F, I, BT>, 1>>,
    s: &super::AdamWStep,
) -> (
    BTensor<Cube<R, F, I, BT>, 1>,
    BTensor<Cube<R, F, I, BT>, 1>,
    BTensor<Cube<R, F, I, BT>, 1>,
) {
    let param = super::AdamWParam {
        p,
        g,
        moments,
        step: *s,
    };
    adamw_multi(vec![param], grad_scale)
        .pop()
        .expect("one parameter in, one out")
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
