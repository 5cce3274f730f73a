//! The on-disk GPU kernel caches (`kernel_cache`): with `SEGGER_KERNEL_CACHE=<dir>`, CubeCL's
//! configuration points both caches under `<dir>`, and (with the feature `autotune`) an
//! autotuned op on wgpu writes its result there. A test file of its own: CubeCL's configuration is set once per process.
#![cfg(feature = "wgpu")]

use burn::backend::Wgpu;
use burn::tensor::{Distribution, Tensor};
use segger_model::kernel_cache::{
    cache_paths, configure_kernel_cache, KernelCache, KERNEL_CACHE_ENV,
};

#[test]
#[ignore = "needs a GPU: a Vulkan adapter for wgpu (CI: Mesa's lavapipe)"]
fn kernel_caches_on_wgpu_go_where_segger_kernel_cache_says() {
    let dir = std::env::temp_dir().join(format!("segger-kernel-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::env::set_var(KERNEL_CACHE_ENV, &dir);
    let decided = configure_kernel_cache();
    if let KernelCache::ConfigFile(f) = &decided {
        eprintln!("skipped: {} decides the caches here", f.display());
        return;
    }
    assert_eq!(decided, KernelCache::Dir(dir.clone()));
    // A second call keeps the first decision.
    std::env::set_var(KERNEL_CACHE_ENV, "off");
    assert_eq!(configure_kernel_cache(), KernelCache::Dir(dir.clone()));

    assert_eq!(
        cache_paths(),
        (Some(dir.join("compilation")), Some(dir.join("autotune")))
    );

    // With Burn's autotune (feature `autotune`), a matmul is autotuned on first use and its
    // result must land in the cache directory.
    if cfg!(feature = "autotune") {
        let device = Default::default();
        let a = Tensor::<Wgpu, 2>::random([256, 128], Distribution::Default, &device);
        let b = Tensor::<Wgpu, 2>::random([128, 64], Distribution::Default, &device);
        let _ = a.matmul(b).sum().into_scalar();
        let files = walk(&dir.join("autotune"));
        assert!(
            !files.is_empty(),
            "no autotune result was written under {}",
            dir.display()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
