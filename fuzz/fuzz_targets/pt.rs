//! A reference Segger tile (PyTorch `.pt`: a zip holding a pickle and tensor storages) from
//! arbitrary bytes: read without a panic and without running anything, as a tile or as an
//! error. Seed corpus: `tests/data/pyg/`. Its stable-toolchain harness, run by CI with a
//! bounded number of mutations, is `mutated_and_truncated_files_give_errors_not_panics` in
//! `crates/segger-data/tests/pt_tiles.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("fuzz.pt");
    let _ = segger_data::torch::pyg::parse_pt_tile(path, data, Some(500));
});
