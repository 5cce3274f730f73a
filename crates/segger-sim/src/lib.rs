//! Simulated tissue with ground truth, segmentation evaluation and the demo's picture.
//!
//! - [`simulate`]: a raw sample in the exact Xenium schema (`transcripts.parquet`,
//!   `nucleus_boundaries.parquet`, `cell_boundaries.parquet`) plus `ground_truth.parquet`,
//!   from packed Voronoi cells with nuclei and cell-type-specific expression.
//! - [`evaluate`]: accuracy of a segmentation against the truth (correct / wrong / unassigned,
//!   purity, completeness, adjusted Rand index) and the mutually exclusive co-expression rate.
//! - [`picture`]: a PNG of a tissue window, transcripts coloured by cell, nuclei outlined.

pub mod baselines;
pub mod error;
pub mod evaluate;
mod io;
pub mod picture;
pub mod simulate;

pub use error::SimError;
