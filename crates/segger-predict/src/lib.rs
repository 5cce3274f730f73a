//! # segger-predict
//!
//! Segmentation with a trained Segger model: every transcript of a sample is assigned to a
//! cell, tile by tile, and the results are written in the formats users load.
//!
//! * [`ModelDir`]: a trained run's directory (`model.safetensors`, `config.json`, and the gene
//!   vocabulary in `vocab.json` or through `run_config.json`), checked before anything runs.
//! * [`predict`]: the whole `segger predict` job: input checks, tiles streamed in batches
//!   through the model on the chosen backend, transcript-to-boundary scores on fresh kNN
//!   candidates, margins resolved (each transcript exactly once), optional connected components
//!   of the unassigned transcripts, then the outputs ([`outputs`]) written to a temporary
//!   directory and renamed into place.
//! * [`cell_types`]: the cell-type stage (`--cell_types auto|K`, on by default).
//! * [`geometry`]: convex hulls and polygon areas of cells.
//! * [`spatialdata`]: the SpatialData store (`segger_spatialdata.zarr`) among the outputs.
//!
//! Per transcript, only a 32-byte record is kept between the tiles and the outputs; tiles,
//! graphs and embeddings live for one batch.
#![warn(missing_docs)]

pub mod cell_types;
mod config;
pub mod geometry;
mod h5ad;
mod input;
mod model_dir;
pub mod outputs;
mod run;
mod score;
pub mod spatialdata;
mod state;
mod summary;
pub mod synthetic;

pub use config::{
    BatchSize, CellTypes, DuplicateIds, PredictConfig, PredictError, DEFAULT_INNER_REACH,
    DEFAULT_LONE_REACH, DEFAULT_RAW_TILE_SIZE, DEFAULT_REACH, DEFAULT_RETURN_REACH,
    DEFAULT_SCORE_CUT, LONE_RATIO, MAX_RAW_TILE_SIZE,
};
pub use input::{raw_platform, resolve_tiles, InputKind, ResolvedInput};
pub use model_dir::{ModelDir, VocabSource};
pub use run::{predict, PREDICT_OUTPUT};
pub use score::{NEIGHBOURHOOD_RADIUS, NEIGHBOURHOOD_SIZE, PROFILE_PRIOR, PROFILE_REACH};
pub use segger_model::backend::Accelerator;
pub use state::{CellKind, TxRecord, NO_CELL, NO_GENE};
pub use summary::{PredictSummary, Quartiles, Timings};
