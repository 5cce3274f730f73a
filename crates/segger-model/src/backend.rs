//! Where the model runs: the accelerator a user asks for, the probe that tells whether a CUDA
//! device answers, and the on-disk caches of compiled GPU kernels. Shared by training and
//! prediction, so that both choose a backend the same way.

use serde::{Deserialize, Serialize};

/// Where the model runs (`--accelerator`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accelerator {
    /// The CPU backend (`flex`, or `ndarray` when built with that feature only).
    Cpu,
    /// A GPU through wgpu (Vulkan, Metal, DX12); cargo feature `wgpu`.
    Wgpu,
    /// An NVIDIA GPU through CUDA; cargo feature `cuda`.
    Cuda,
    /// CUDA when built in and a device answers, else the CPU.
    Auto,
}

impl std::str::FromStr for Accelerator {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "cpu" => Ok(Self::Cpu),
            "wgpu" | "gpu-wgpu" | "vulkan" => Ok(Self::Wgpu),
            "cuda" | "gpu" => Ok(Self::Cuda),
            "auto" => Ok(Self::Auto),
            other => Err(format!(
                "unknown accelerator {other:?}: expected cpu, wgpu, cuda or auto"
            )),
        }
    }
}

impl Accelerator {
    /// `Auto` made concrete ([`Accelerator::Auto`]: CUDA when built in and a device answers,
    /// else the CPU); the others unchanged.
    pub fn resolve(self) -> Self {
        match self {
            Self::Auto if cfg!(feature = "cuda") && cuda_available() => Self::Cuda,
            Self::Auto => Self::Cpu,
            a => a,
        }
    }
}

/// Turns on the on-disk caches of compiled GPU kernels and autotune results
/// ([`crate::kernel_cache`]) before the first GPU device is used, and logs where they are
/// (once). CubeCL reads its configuration when the first device starts, so this runs before any
/// device is touched, [`cuda_available`]'s probe included.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
pub fn kernel_cache() {
    static LOGGED: std::sync::Once = std::sync::Once::new();
    let cache = crate::kernel_cache::configure_kernel_cache();
    LOGGED.call_once(|| tracing::info!("GPU: {cache}"));
}

/// Whether a CUDA device can be initialised (the driver library loads and device 0 answers).
/// Always false without the cargo feature `cuda`.
pub fn cuda_available() -> bool {
    #[cfg(feature = "cuda")]
    {
        // Probing starts the device, which fixes CubeCL's configuration: caches first.
        kernel_cache();
        std::panic::catch_unwind(|| {
            let d = burn::backend::cuda::CudaDevice::new(0);
            let t = burn::tensor::Tensor::<burn::backend::Cuda, 1>::ones([1], &d);
            t.into_data();
        })
        .is_ok()
    }
    #[cfg(not(feature = "cuda"))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accelerators_parse_and_auto_resolves_to_a_concrete_one() {
        assert_eq!("CPU".parse::<Accelerator>(), Ok(Accelerator::Cpu));
        assert_eq!("vulkan".parse::<Accelerator>(), Ok(Accelerator::Wgpu));
        assert_eq!("gpu".parse::<Accelerator>(), Ok(Accelerator::Cuda));
        assert!("tpu".parse::<Accelerator>().unwrap_err().contains("tpu"));
        let r = Accelerator::Auto.resolve();
        assert!(matches!(r, Accelerator::Cpu | Accelerator::Cuda));
        if !cfg!(feature = "cuda") {
            assert_eq!(r, Accelerator::Cpu);
        }
        assert_eq!(Accelerator::Wgpu.resolve(), Accelerator::Wgpu);
    }
}
