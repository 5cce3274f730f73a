//! The optimizer's kernels: AdamW steps of groups of parameters in one launch, and the sums of
//! squares of the gradient-norm clip.

use burn::tensor::{Shape, Tensor as BTensor};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::{BoolElement, CubeRuntime, FloatElement, IntElement};
use cubecl::prelude::*;

use super::{empty_like, float, rd, wrap, Cube};
use crate::mp::{AdamWParam, AdamWStep};

/// AdamW steps (see [`AdamWStep`]) of a group of parameters in one launch: the grid's y
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

/// Most parameters per launch of [`adamw_multi_kernel()`] (seven buffers each; the body is
/// unrolled per parameter).
const ADAMW_GROUP: usize = 32;

/// Threads per cube of [`adamw_multi_kernel()`].
const ADAMW_THREADS: usize = 256;

/// [`crate::mp::GatBackend::adamw_multi`]: the parameters grouped by their step's scalars,
/// each group in launches of up to [`ADAMW_GROUP`] parameters (fewer where the device binds
/// fewer buffers per kernel).
#[allow(clippy::type_complexity)]
pub(super) fn adamw_multi<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement>(
    params: Vec<AdamWParam<Cube<R, F, I, BT>>>,
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
        s: AdamWStep,
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
    let mut groups: Vec<(AdamWStep, bool, Vec<usize>)> = Vec::new();
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

/// [`crate::mp::GatBackend::adamw_step`]: [`adamw_multi`] with one parameter.
#[allow(clippy::type_complexity)]
pub(super) fn adamw_step<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement>(
    p: BTensor<Cube<R, F, I, BT>, 1>,
    g: BTensor<Cube<R, F, I, BT>, 1>,
    moments: Option<(BTensor<Cube<R, F, I, BT>, 1>, BTensor<Cube<R, F, I, BT>, 1>)>,
    grad_scale: Option<BTensor<Cube<R, F, I, BT>, 1>>,
    s: &AdamWStep,
) -> (
    BTensor<Cube<R, F, I, BT>, 1>,
    BTensor<Cube<R, F, I, BT>, 1>,
    BTensor<Cube<R, F, I, BT>, 1>,
) {
    let param = AdamWParam {
        p,
        g,
        moments,
        step: *s,
    };
    adamw_multi(vec![param], grad_scale)
        .pop()
        .expect("one parameter in, one out")
}

/// Threads per cube of [`sum_squares_multi_kernel()`].
const SUM_SQUARES_THREADS: usize = 256;

/// `out[first + i] = Σ x_i²` for every tensor `x_i` of `xs`, one cube per tensor (cube `i`
/// reads `xs[i]`), f32 accumulation: each thread sums a strided share of its cube's tensor, then
/// a tree reduction in shared memory.
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

/// Most tensors per launch of [`sum_squares_multi_kernel()`] (its body is unrolled per tensor).
const SUM_SQUARES_GROUP: usize = 64;

/// [`crate::mp::GatBackend::sum_squares`]: one launch of [`sum_squares_multi_kernel()`] per
/// group of up to [`SUM_SQUARES_GROUP`] tensors (fewer where the device binds fewer buffers per
/// kernel, as wgpu may), one cube per tensor, each writing its own slot of the output. A tensor
/// whose elements fill its buffer exactly once (contiguous, or transposed like a weight
/// gradient) is read in place; the sum does not depend on the order.
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
