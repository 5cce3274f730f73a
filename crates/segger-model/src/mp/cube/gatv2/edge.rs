//! The edge pass of the fused GATv2 op: edge scores (forward) or `dα` (backward), per (edge,
//! head).

use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::CubeRuntime;
use cubecl::prelude::*;

use super::{leaky, CubeGraph};
use crate::mp::cube::{launch_shape, rd};
use crate::mp::NEGATIVE_SLOPE;

/// Launches the edge kernel, one thread per (edge, head) or, with
/// [`crate::mp::set_edge_lanes`], [`EDGE_LANES`] threads per (edge, head): the scores into `out`
/// (forward), or `dα` with the output gradient passed as `xr` (backward).
pub(super) fn launch_edge<R: CubeRuntime>(
    client: &ComputeClient<R>,
    [xl, xr, att, out]: [&CubeTensor<R>; 4],
    g: &CubeGraph<R>,
    (e, h, c): (usize, usize, usize),
    backward: bool,
) {
    if crate::mp::edge_lanes() {
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

/// Lanes per (edge, head) of [`gat_edge_lanes_kernel()`].
const EDGE_LANES: usize = 16;
/// (edge, head) pairs per cube of [`gat_edge_lanes_kernel()`].
const EDGE_PAIRS: usize = 16;

/// [`gat_edge_kernel()`] with [`EDGE_LANES`] threads per (edge, head): lane `l` takes channels
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
