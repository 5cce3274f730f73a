//! The memory pools CubeCL 0.10's CUDA runtime builds for a device, so that a training step's
//! allocations can be replayed through the same pools on another CubeCL runtime (wgpu, which
//! takes its pools as an option) and the CUDA pool's size predicted without a GPU.
//!
//! CubeCL's CUDA runtime starts every device with its `SubSlices` preset and no way to change
//! it (Burn 0.21 starts the server with default options). The preset derives everything from
//! the device's memory `T` (`cuDeviceTotalMem`): the largest page is `T / 4`, and below it come
//! pools whose pages are 4× smaller each step while they stay at least 32 MiB, each taking
//! slices up to a fraction of its page. An allocation goes to the first pool whose largest slice
//! fits it, and a pool only ever grows by whole pages. So the reserved size is a sum of pages,
//! and one tensor just above a pool's largest slice moves into a pool whose page is 4× larger.

/// Row alignment of CUDA allocations in CubeCL (`cuMemAllocPitch`'s).
pub const CUDA_ALIGNMENT: u64 = 512;

const MIB: u64 = 1 << 20;

/// One memory pool of the preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    /// Every allocation its own page; takes allocations of at most `max_alloc` bytes.
    Exclusive {
        /// Largest allocation the pool takes.
        max_alloc: u64,
    },
    /// Pages of `page_size` bytes cut into slices of at most `max_slice` bytes.
    Sliced {
        /// Bytes per page.
        page_size: u64,
        /// Largest slice the pool takes.
        max_slice: u64,
    },
}

/// The pools of CubeCL 0.10's `MemoryConfiguration::SubSlices` for a CUDA device with
/// `total_memory` bytes, in the order CubeCL tries them (`cubecl-runtime`
/// `MemoryManagement::from_configuration`, written out again here).
pub fn cuda_sub_slices(total_memory: u64) -> Vec<Pool> {
    let max_page = total_memory / 4;
    let mut pools = vec![Pool::Exclusive { max_alloc: 0 }];
    let (mut pages, mut slices) = (Vec::new(), Vec::new());
    let mut current = max_page;
    let mut base = pools.len() as u32;
    while current >= 32 * MIB {
        current = (current / 4).next_multiple_of(CUDA_ALIGNMENT);
        slices.push(current / 2u64.pow(base));
        pages.push(current);
        base += 1;
    }
    for (&page_size, &max_slice) in pages.iter().zip(&slices).rev() {
        pools.push(Pool::Sliced {
            page_size,
            max_slice,
        });
    }
    let top = max_page / CUDA_ALIGNMENT * CUDA_ALIGNMENT;
    pools.push(Pool::Sliced {
        page_size: top,
        max_slice: top,
    });
    pools
}

/// Device memory (`cuDeviceTotalMem`, bytes) of a card this project has measured on: `h100`
/// (80 GB HBM3) and `h200`; any other value is read as MiB. The two presets are inferred from
/// the pool sizes measured on those cards (session 3: 1,682.5 MiB on the H100, one page of each
/// of four pools; 1,302 MiB on the H200), so they reproduce those sizes by construction of the
/// total; what a replay tests is which pools and how many pages a step takes.
pub fn device_memory(name: &str) -> Option<u64> {
    match name {
        "h100" => Some(81_080 * MIB),
        "h200" => Some(143_170 * MIB),
        mib => mib.parse::<u64>().ok().map(|m| m * MIB),
    }
}

/// The pool an allocation of `size` bytes lands in, as an index into `pools`.
pub fn pool_of(pools: &[Pool], size: u64) -> Option<usize> {
    pools.iter().position(|p| match *p {
        Pool::Exclusive { max_alloc } => size <= max_alloc,
        Pool::Sliced { max_slice, .. } => size <= max_slice,
    })
}

/// The same pools as CubeCL's memory configuration, for `RuntimeOptions::memory_config`.
#[cfg(feature = "wgpu")]
pub fn memory_configuration(
    pools: &[Pool],
) -> cubecl_runtime::memory_management::MemoryConfiguration {
    use cubecl_runtime::memory_management::{MemoryConfiguration, MemoryPoolOptions, PoolType};
    MemoryConfiguration::Custom {
        pool_options: pools
            .iter()
            .map(|p| MemoryPoolOptions {
                pool_type: match *p {
                    Pool::Exclusive { max_alloc } => PoolType::ExclusivePages {
                        max_alloc_size: max_alloc,
                    },
                    Pool::Sliced {
                        page_size,
                        max_slice,
                    } => PoolType::SlicedPages {
                        page_size,
                        max_slice_size: max_slice,
                    },
                },
                dealloc_period: None,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sliced(pools: &[Pool]) -> Vec<(f64, f64)> {
        pools
            .iter()
            .filter_map(|p| match *p {
                Pool::Sliced {
                    page_size,
                    max_slice,
                } => Some((page_size as f64 / MIB as f64, max_slice as f64 / MIB as f64)),
                Pool::Exclusive { .. } => None,
            })
            .collect()
    }

    #[test]
    fn h100_pools_and_where_a_seed_batch_activation_lands() {
        let pools = cuda_sub_slices(device_memory("h100").unwrap());
        let s = sliced(&pools);
        // Pages 19.8, 79.2, 316.7, 1,266.9, 5,067.5 MiB and the T/4 page.
        let want = [
            (19.79, 0.62),
            (79.18, 4.95),
            (316.72, 39.59),
            (1266.88, 316.72),
            (5067.5, 2533.75),
            (20270.0, 20270.0),
        ];
        assert_eq!(s.len(), want.len(), "{s:?}");
        for ((page, slice), (wp, ws)) in s.iter().zip(want) {
            assert!(
                (page - wp).abs() < 0.01 && (slice - ws).abs() < 0.01,
                "{s:?}"
            );
        }
        // The seed batch's [41,984 × 256] f32 activation (42.99 MB) is over the 316.7 MiB
        // pool's largest slice, so it takes a 1,266.9 MiB page; 40,000 rows would not.
        assert_eq!(pool_of(&pools, 41_984 * 256 * 4), Some(4));
        assert_eq!(pool_of(&pools, 40_000 * 256 * 4), Some(3));
        // Four pages, one of each pool below it: the 1,682.5 MiB measured in session 3.
        let four: f64 = s[..4].iter().map(|p| p.0).sum();
        assert!((four - 1682.5).abs() < 0.5, "{four}");
    }

    #[test]
    fn h200_pools_take_the_activation_in_the_559_mib_pages() {
        let pools = cuda_sub_slices(device_memory("h200").unwrap());
        let s = sliced(&pools);
        assert_eq!(s.len(), 7, "{s:?}");
        assert!(
            (s[3].0 - 559.26).abs() < 0.01 && (s[3].1 - 69.91).abs() < 0.01,
            "{s:?}"
        );
        assert_eq!(pool_of(&pools, 41_984 * 256 * 4), Some(4));
        // Two of those pages and one each of the three smaller pools: the 1,302 MiB measured.
        let pages = 2.0 * s[3].0 + s[2].0 + s[1].0 + s[0].0;
        assert!((pages - 1302.0).abs() < 1.0, "{pages}");
        // Nothing but the exclusive pool takes an empty allocation.
        assert_eq!(pool_of(&pools, 0), Some(0));
        assert_eq!(pool_of(&pools, 1), Some(1));
    }
}
