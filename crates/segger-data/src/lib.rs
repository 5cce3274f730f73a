//! # segger-data
//!
//! Segger's data layer, free of any tensor library:
//!
//! * [`tile`]: read and write `segger-tile/1` files (one safetensors file per tile, PyG-like
//!   tensor names, see `docs/tile-format.md`), with errors that name the file, the tensor and
//!   the problem.
//! * [`dataset`]: the dataset layout (`dataset.json`, `{train,val,test}_tiles/processed/`),
//!   [`TileDataset`] (lazy, memory-mapped tile access) and [`TileLoader`] (seeded shuffling
//!   and background prefetching of collated batches).
//! * [`raw`]: readers for raw Xenium, MERSCOPE and CosMx output, with filters and a gene
//!   vocabulary; [`geometry`]: polygon validation and boundary features; [`tiling`]: grid and
//!   balanced kd tiling; [`create`]: `segger create_dataset`, raw sample to tile dataset.
//! * [`torch`]: the reference implementation's own files, read without Python: PyG
//!   `HeteroData` tiles (`processed/*.pt`, accepted wherever `.safetensors` tiles are) and
//!   Lightning checkpoints (`.ckpt`: state dict and hyper-parameters), through a restricted
//!   zip + pickle reader. Converting a checkpoint into model weights (`segger
//!   import_checkpoint`) is `segger_model::checkpoint`, which knows the model's configuration
//!   and parameters.
#![warn(missing_docs)]

pub mod create;
pub mod dataset;
mod error;
pub mod geometry;
pub mod raw;
pub mod tile;
pub mod tiling;
pub mod torch;

pub use dataset::{
    DatasetInfo, LoadedBatch, Split, SplitCounts, TileDataset, TileLoader, DATASET_FORMAT,
};
pub use error::DataError;
pub use tile::{read_tile, write_tile, Tile, TileBounds, TILE_FORMAT};
