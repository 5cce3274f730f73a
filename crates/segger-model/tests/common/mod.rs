//! Helpers shared by the test files: the test data, and the opt-in switches of the GPU tests.

/// `rel` under the workspace's `tests/data` (origin and licence: `tests/data/README.md`).
#[allow(dead_code)]
pub fn test_data(rel: &str) -> std::path::PathBuf {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data");
    let p = std::path::Path::new(root).join(rel);
    assert!(p.exists(), "test data {} is missing", p.display());
    p
}

/// Whether the wgpu tests run (`SEGGER_WGPU_TEST=1`, with a Vulkan adapter present: CI installs
/// Mesa's lavapipe); says so on stderr when they are skipped.
#[allow(dead_code)]
pub fn wgpu_test() -> bool {
    opted_in(
        "SEGGER_WGPU_TEST",
        "with a Vulkan adapter present (CI uses lavapipe)",
    )
}

/// Whether the CUDA tests run (`SEGGER_CUDA_TEST=1`, on a machine with an NVIDIA GPU); says so
/// on stderr when they are skipped.
#[allow(dead_code)]
pub fn cuda_test() -> bool {
    opted_in("SEGGER_CUDA_TEST", "on a machine with an NVIDIA GPU")
}

fn opted_in(var: &str, hint: &str) -> bool {
    let on = std::env::var(var).as_deref() == Ok("1");
    if !on {
        eprintln!("skipped: set {var}=1 {hint}");
    }
    on
}

/// A wgpu test (`SEGGER_WGPU_TEST=1`) and its CUDA twin (`SEGGER_CUDA_TEST=1`), each running
/// `$check` on its backend.
#[allow(unused_macros)]
macro_rules! on_wgpu_and_cuda {
    ($(#[$doc:meta])* $wgpu:ident, $cuda:ident, $check:ident) => {
        $(#[$doc])*
        #[cfg(feature = "wgpu")]
        #[test]
        fn $wgpu() {
            if common::wgpu_test() {
                $check::<burn::backend::Wgpu>();
            }
        }

        $(#[$doc])*
        #[cfg(feature = "cuda")]
        #[test]
        fn $cuda() {
            if common::cuda_test() {
                $check::<burn::backend::Cuda>();
            }
        }
    };
}
