//! What a finished `segger predict` reports.

use std::path::PathBuf;

use serde::Serialize;

use crate::input::InputKind;

/// First quartile, median and third quartile (linear interpolation, as numpy's default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Quartiles {
    /// 25th percentile.
    pub q1: f64,
    /// 50th percentile.
    pub median: f64,
    /// 75th percentile.
    pub q3: f64,
}

impl Quartiles {
    /// Quartiles of sorted values (all zero when empty).
    pub fn of_sorted(v: &[u32]) -> Self {
        let q = |p: f64| -> f64 {
            if v.is_empty() {
                return 0.0;
            }
            let pos = p * (v.len() - 1) as f64;
            let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
            let f = pos - lo as f64;
            v[lo] as f64 * (1.0 - f) + v[hi] as f64 * f
        };
        Self {
            q1: q(0.25),
            median: q(0.5),
            q3: q(0.75),
        }
    }
}

/// Wall seconds of the stages.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Timings {
    /// Building tiles from a raw sample (0 for a dataset input).
    pub create_dataset_s: f64,
    /// Reading the tiles, the forward passes and the scoring.
    pub tiles_s: f64,
    /// Of `tiles_s`: waiting for the tile reader.
    pub tiles_wait_s: f64,
    /// Of `tiles_s`: moving batches to the device and the forward passes.
    pub model_s: f64,
    /// Of `tiles_s`: kNN candidates, scores, links.
    pub scoring_s: f64,
    /// De-duplication and connected components.
    pub resolve_s: f64,
    /// Writing every output.
    pub write_s: f64,
    /// The whole run.
    pub total_s: f64,
}

/// What a finished prediction reports (also the counts of `segmentation_log.json`).
#[derive(Debug, Clone, Serialize)]
pub struct PredictSummary {
    /// The output directory.
    pub output: PathBuf,
    /// The backend, in words.
    pub backend: String,
    /// What `--input` was.
    pub input_kind: InputKind,
    /// Tiles predicted.
    pub tiles: usize,
    /// Transcripts in the output (each exactly once).
    pub transcripts: usize,
    /// Transcripts assigned to an input boundary (score ≥ cut).
    pub assigned_to_boundary: usize,
    /// Transcripts in a connected-component cell (`--use_cc`).
    pub assigned_to_component: usize,
    /// Transcripts in no cell.
    pub unassigned: usize,
    /// Percentage of transcripts in a cell (boundary or component).
    pub assigned_percent: f64,
    /// Cells with at least one transcript.
    pub cells: usize,
    /// Of which input boundaries.
    pub boundary_cells: usize,
    /// Of which connected components.
    pub component_cells: usize,
    /// Components dropped for having fewer than `min_transcripts` transcripts.
    pub components_dropped: usize,
    /// Unassigned transcripts that joined no new cell and went to a boundary within the return
    /// reach (`--return_reach`).
    pub returned_within_reach: usize,
    /// What the cell-type stage did (`--cell_types`), when on.
    pub cell_types: Option<crate::cell_types::TypeStats>,
    /// Transcripts per cell.
    pub transcripts_per_cell: Quartiles,
    /// Transcripts that more than one tile decided (tiles without core bounds, or overlapping
    /// cores); the higher score was kept.
    pub duplicates_resolved: usize,
    /// Transcripts merged into another transcript with the same id (`--duplicate_ids merge`).
    pub ids_merged: usize,
    /// Transcripts per second over the whole run.
    pub transcripts_per_second: f64,
    /// Stage timings.
    pub timings: Timings,
    /// The score cut used.
    pub score_cut: f32,
    /// Where it came from: `--score_cut`, `calibration.json` or `default`.
    pub score_cut_source: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quartiles_interpolate_like_numpy() {
        let q = Quartiles::of_sorted(&[1, 2, 3, 4]);
        assert_eq!(q.q1, 1.75);
        assert_eq!(q.median, 2.5);
        assert_eq!(q.q3, 3.25);
        assert_eq!(Quartiles::of_sorted(&[]).median, 0.0);
    }
}
