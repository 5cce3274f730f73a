//! The choice of matmul for f32 products on the CubeCL backends.

use burn_cubecl::tensor::CubeTensor;
use burn_cubecl::CubeRuntime;

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
