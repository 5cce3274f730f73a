//! Elementwise and reduction kernels besides the GATv2 op: ReLU and its backward, column sums,
//! and the backward of a grouped gather.

use burn::tensor::{Shape, Tensor as BTensor};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_contiguous_dtype;
use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::{BoolElement, CubeRuntime, FloatElement, IntElement};
use cubecl::prelude::*;

use super::{empty_like, float, launch_shape, rd, wrap, Cube};
use crate::mp::RowIndex;

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

/// [`relu_kernel()`] on `x` (and `grad` for the backward), a new tensor of `x`'s shape and type.
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

/// Columns per cube of [`col_sum_kernel()`] (one warp's width: a row's loads are coalesced).
const COL_SUM_COLS: usize = 32;
/// Row lanes per cube of [`col_sum_kernel()`].
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

/// Launches [`col_sum_kernel()`] on `x` `[rows, cols]` (contiguous) with `rows_per_cube` rows per
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
/// [`col_sum_kernel()`]: chunks of [`COL_SUM_ROWS`] rows into f32 partial sums, then the partial
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

/// [`crate::mp::GatBackend::col_sum`] on a CubeCL backend: [`col_sum_dtype`] in the input's
/// type.
pub(super) fn col_sum<R: CubeRuntime, F: FloatElement, I: IntElement, BT: BoolElement>(
    x: BTensor<Cube<R, F, I, BT>, 2>,
) -> BTensor<Cube<R, F, I, BT>, 1> {
    let cols = x.dims()[1];
    let x = x.into_primitive().tensor();
    let dtype = x.dtype;
    wrap::<R, F, I, BT, 2>(col_sum_dtype(x, dtype)).reshape([cols])
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
    idx: &RowIndex<Cube<R, F, I, BT>>,
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
