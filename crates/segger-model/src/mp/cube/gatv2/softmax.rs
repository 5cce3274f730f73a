//! The segment softmax of the fused GATv2 op over each destination's edges, and its backward.

use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::CubeRuntime;
use cubecl::prelude::*;

use super::{CubeGraph, SEGMENT_BLOCK_DEGREE};
use crate::mp::cube::launch_shape;
use crate::mp::SOFTMAX_EPS;

/// Launches the segment softmax (or its backward) with one thread or, for high mean in-degree,
/// one cube per (destination, head).
#[allow(clippy::too_many_arguments)]
pub(super) fn launch_segment<R: CubeRuntime>(
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

/// Threads of one cube of [`gat_segment_block_kernel()`].
const SEGMENT_THREADS: usize = 64;

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

/// [`gat_segment_kernel()`] with one cube of [`SEGMENT_THREADS`] threads per (destination,
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
