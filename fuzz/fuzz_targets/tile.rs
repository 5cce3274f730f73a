//! A segger tile (`.safetensors`) from arbitrary bytes: read and validated without a panic,
//! as a tile or as an error. Seed corpus: `tests/data/parity/`. Its stable-toolchain harness,
//! run by CI with a bounded number of mutations, is `mutated_safetensors_tiles_give_errors_not_panics`
//! in `crates/segger-data/tests/tiles.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("fuzz.safetensors");
    let _ = segger_data::tile::parse_tile(path, data, Some(500));
});
