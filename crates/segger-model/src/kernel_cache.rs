//! On-disk caches of compiled GPU kernels and autotune results.
//!
//! CubeCL compiles every kernel the first time a program launches it, and with Burn's
//! `autotune` feature it also benchmarks matmul and reduction kernels on first use: several
//! seconds before the first training step on CUDA (7 s on an H200, 51 s with Burn's generic
//! ops). With the caches on disk the next run starts in 0.2 s. CubeCL keeps autotune results in
//! a default place, but keeps compiled kernels (CUDA's PTX; wgpu's WGSL shaders are not cached)
//! only when told to, in a `cubecl.toml`. [`configure_kernel_cache`] turns both on, in one
//! directory, for the GPU commands of `segger` unless the user decides:
//!
//! * a `cubecl.toml`, `CubeCL.toml`, `burn.toml` or `Burn.toml` in the working directory or one
//!   of its parents: CubeCL reads it and nothing is changed;
//! * `SEGGER_KERNEL_CACHE=off`: CubeCL's defaults (no kernel cache);
//! * `SEGGER_KERNEL_CACHE=<dir>`: the caches go under `<dir>`;
//! * otherwise under the user's cache directory, `segger/cubecl` (on Linux
//!   `$XDG_CACHE_HOME/segger/cubecl` or `~/.cache/segger/cubecl`).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use cubecl::config::cache::CacheConfig;
use cubecl::config::{CubeClRuntimeConfig, RuntimeConfig};

/// Where the GPU kernel caches of this process are, as [`configure_kernel_cache`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelCache {
    /// Under this directory: compiled kernels in `compilation/`, autotune results in
    /// `autotune/`.
    Dir(PathBuf),
    /// This CubeCL configuration file decides.
    ConfigFile(PathBuf),
    /// `SEGGER_KERNEL_CACHE=off`: CubeCL's defaults, no compiled-kernel cache.
    Off,
    /// CubeCL was configured in this process before this crate could (its defaults, or what
    /// the embedding program set).
    AlreadyConfigured,
}

impl std::fmt::Display for KernelCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Dir(d) => write!(f, "kernel and autotune caches in {}", d.display()),
            Self::ConfigFile(p) => write!(f, "kernel caches as {} says", p.display()),
            Self::Off => f.write_str("no kernel cache (SEGGER_KERNEL_CACHE=off)"),
            Self::AlreadyConfigured => f.write_str("kernel caches as configured before"),
        }
    }
}

/// The environment variable that overrides the cache directory (`off` turns the cache off).
pub const KERNEL_CACHE_ENV: &str = "SEGGER_KERNEL_CACHE";

/// Configures CubeCL's compiled-kernel and autotune caches for this process, once (later calls
/// return the first decision); call it before the first GPU device is used. See the module
/// documentation for the rules.
pub fn configure_kernel_cache() -> KernelCache {
    static DECISION: OnceLock<KernelCache> = OnceLock::new();
    DECISION.get_or_init(decide).clone()
}

fn decide() -> KernelCache {
    if let Some(file) = std::env::current_dir()
        .ok()
        .and_then(|dir| config_file(&dir))
    {
        return KernelCache::ConfigFile(file);
    }
    let dir = match std::env::var_os(KERNEL_CACHE_ENV) {
        Some(v) if v == "off" => return KernelCache::Off,
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => match dirs::cache_dir() {
            Some(d) => d.join("segger").join("cubecl"),
            None => return KernelCache::Off,
        },
    };
    let mut storage = CubeClRuntimeConfig::storage().lock();
    if storage.is_some() {
        return KernelCache::AlreadyConfigured;
    }
    let mut config = CubeClRuntimeConfig::default().override_from_env();
    config.compilation.cache = Some(CacheConfig::File(dir.join("compilation")));
    config.autotune.cache = CacheConfig::File(dir.join("autotune"));
    *storage = Some(std::sync::Arc::new(config));
    KernelCache::Dir(dir)
}

/// The compiled-kernel and autotune cache locations of CubeCL's configuration in this process
/// (read from its files and environment first if nothing has configured it yet); `None` for a
/// cache that is off or in a place CubeCL picks (`local`, `target`, `global`).
pub fn cache_paths() -> (Option<PathBuf>, Option<PathBuf>) {
    let config = CubeClRuntimeConfig::get();
    let file = |c: &CacheConfig| match c {
        CacheConfig::File(p) => Some(p.clone()),
        _ => None,
    };
    (
        config.compilation.cache.as_ref().and_then(file),
        file(&config.autotune.cache),
    )
}

/// The CubeCL configuration file CubeCL itself would read from `dir` or its parents.
fn config_file(dir: &Path) -> Option<PathBuf> {
    let names = CubeClRuntimeConfig::file_names().iter().copied().chain(
        CubeClRuntimeConfig::section_file_names()
            .iter()
            .map(|(name, _)| *name),
    );
    let names: Vec<&str> = names.collect();
    dir.ancestors()
        .flat_map(|d| names.iter().map(move |n| d.join(n)))
        .find(|p| p.is_file())
}
