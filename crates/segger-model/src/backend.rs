//! Where the model runs: the accelerator a user asks for, the probe that tells whether a CUDA
//! device answers, and the on-disk caches of compiled GPU kernels. Shared by training and
//! prediction, so that both choose a backend the same way.

use serde::{Deserialize, Serialize};

use crate::mp::GatBackend;

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

/// The requested backend is not there: not built into this binary, or no device answers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// The binary was built without the backend.
    #[error(
        "--accelerator {accelerator}: this binary was built without {missing}; rebuild with {fix}"
    )]
    NotBuilt {
        /// The accelerator asked for.
        accelerator: &'static str,
        /// What the build lacks.
        missing: &'static str,
        /// How to build it in.
        fix: &'static str,
    },
    /// CUDA is built in, but no driver loads or no device answers.
    #[error("--accelerator cuda: no CUDA driver or device found (libcuda could not be loaded or reports no device)")]
    NoCudaDevice,
}

/// Work that runs on whichever backend [`dispatch`] picks: training and prediction each
/// implement it once, generic over the backend.
pub trait BackendJob {
    /// What the job returns.
    type Output;
    /// Runs on backend `B` with `devices` (at least one); `backend` names it in words
    /// (`cpu (flex)`, `wgpu`, `cuda`).
    fn run<B: GatBackend>(self, devices: Vec<B::Device>, backend: &'static str) -> Self::Output;
}

/// Runs `job` on the backend of `accelerator` (`Auto` resolved first, [`Accelerator::resolve`])
/// with `devices` devices: the CPU backend is one device; wgpu's is the default adapter, or
/// discrete GPUs `0..devices` when there are several; CUDA's are devices `0..devices`. The GPU
/// backends' kernel caches are turned on first ([`kernel_cache`]). The one place that maps an
/// accelerator to a Burn backend type.
pub fn dispatch<J: BackendJob>(
    accelerator: Accelerator,
    devices: usize,
    job: J,
) -> Result<J::Output, BackendError> {
    let _ = devices;
    match accelerator.resolve() {
        Accelerator::Cpu => {
            #[cfg(feature = "flex")]
            {
                Ok(job.run::<burn::backend::Flex>(vec![Default::default()], "cpu (flex)"))
            }
            #[cfg(all(not(feature = "flex"), feature = "ndarray"))]
            {
                Ok(job.run::<burn::backend::NdArray>(vec![Default::default()], "cpu (ndarray)"))
            }
            #[cfg(not(any(feature = "flex", feature = "ndarray")))]
            {
                let _ = job;
                Err(BackendError::NotBuilt {
                    accelerator: "cpu",
                    missing: "a CPU backend",
                    fix: "the cargo feature `flex`",
                })
            }
        }
        Accelerator::Wgpu => {
            #[cfg(feature = "wgpu")]
            {
                use burn::backend::wgpu::WgpuDevice;
                kernel_cache();
                let list: Vec<WgpuDevice> = if devices <= 1 {
                    vec![WgpuDevice::DefaultDevice]
                } else {
                    (0..devices).map(WgpuDevice::DiscreteGpu).collect()
                };
                Ok(job.run::<burn::backend::Wgpu>(list, "wgpu"))
            }
            #[cfg(not(feature = "wgpu"))]
            {
                let _ = job;
                Err(BackendError::NotBuilt {
                    accelerator: "wgpu",
                    missing: "the cargo feature `wgpu`",
                    fix: "`--features wgpu`",
                })
            }
        }
        Accelerator::Cuda => {
            #[cfg(feature = "cuda")]
            {
                if !cuda_available() {
                    return Err(BackendError::NoCudaDevice);
                }
                kernel_cache();
                let list: Vec<burn::backend::cuda::CudaDevice> = (0..devices.max(1))
                    .map(burn::backend::cuda::CudaDevice::new)
                    .collect();
                Ok(job.run::<burn::backend::Cuda>(list, "cuda"))
            }
            #[cfg(not(feature = "cuda"))]
            {
                let _ = job;
                Err(BackendError::NotBuilt {
                    accelerator: "cuda",
                    missing: "the cargo feature `cuda`",
                    fix: "`--features cuda`",
                })
            }
        }
        Accelerator::Auto => unreachable!("resolve() returns a concrete accelerator"),
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

    /// Records where it ran.
    struct Probe;

    impl BackendJob for Probe {
        type Output = (&'static str, usize);

        fn run<B: GatBackend>(
            self,
            devices: Vec<B::Device>,
            backend: &'static str,
        ) -> Self::Output {
            (backend, devices.len())
        }
    }

    #[test]
    fn dispatch_runs_the_job_on_the_backend_asked_for() {
        #[cfg(feature = "flex")]
        assert_eq!(dispatch(Accelerator::Cpu, 1, Probe), Ok(("cpu (flex)", 1)));
        #[cfg(not(feature = "wgpu"))]
        assert_eq!(
            dispatch(Accelerator::Wgpu, 1, Probe).unwrap_err().to_string(),
            "--accelerator wgpu: this binary was built without the cargo feature `wgpu`; rebuild with `--features wgpu`"
        );
        #[cfg(not(feature = "cuda"))]
        assert!(matches!(
            dispatch(Accelerator::Cuda, 2, Probe),
            Err(BackendError::NotBuilt {
                accelerator: "cuda",
                ..
            })
        ));
    }
}
