//! Helpers shared by the test files: the test data, and the GPU tests' twins.
//!
//! The GPU tests are `#[ignore]`d, each with the device it needs as the reason; run them with
//! `--ignored` and a name filter: `wgpu` (a Vulkan adapter: CI uses Mesa's lavapipe, see
//! `.ci/run`) or `cuda` (an NVIDIA GPU: `benches/device/gpu_step_check.sh`).

/// `rel` under the workspace's `tests/data` (origin and licence: `tests/data/README.md`).
#[allow(dead_code)]
pub fn test_data(rel: &str) -> std::path::PathBuf {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data");
    let p = std::path::Path::new(root).join(rel);
    assert!(p.exists(), "test data {} is missing", p.display());
    p
}

/// A wgpu test and its CUDA twin, each running `$check` on its backend; both ignored unless
/// asked for (`--ignored`).
#[allow(unused_macros)]
macro_rules! on_wgpu_and_cuda {
    ($(#[$doc:meta])* $wgpu:ident, $cuda:ident, $check:ident) => {
        $(#[$doc])*
        #[cfg(feature = "wgpu")]
        #[test]
        #[ignore = "needs a GPU: a Vulkan adapter for wgpu (CI: Mesa's lavapipe)"]
        fn $wgpu() {
            $check::<burn::backend::Wgpu>();
        }

        $(#[$doc])*
        #[cfg(feature = "cuda")]
        #[test]
        #[ignore = "needs a GPU: an NVIDIA GPU with its CUDA driver"]
        fn $cuda() {
            $check::<burn::backend::Cuda>();
        }
    };
}
