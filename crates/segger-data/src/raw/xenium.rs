//! 10x Genomics Xenium: `transcripts.parquet` and `nucleus_boundaries.parquet` (or
//! `cell_boundaries.parquet` with [`BoundaryKind::Cell`]); vertex rows `cell_id`,
//! `vertex_x`, `vertex_y`. Coordinates are in micrometres. The default quality filter is
//! `qv >= 20`.

use std::path::Path;

use super::boundaries::{build_boundaries, read_vertex_rings};
use super::files::find_file;
use super::transcripts::load_transcripts;
use super::tx_columns::{split_names, Defaults};
use super::{BoundaryKind, LoadReport, RawOptions, Sample};
use crate::error::DataError;

/// The Xenium column names.
pub(crate) const DEFAULTS: Defaults<'static> = Defaults {
    x: "x_location",
    y: "y_location",
    z: Some("z_location"),
    gene: "feature_name",
    cell: &["cell_id"],
    id: Some("transcript_id"),
    nuclear: Some("overlaps_nucleus"),
    nuclear_value: "1",
    qv: Some("qv"),
};

/// The default quality threshold.
pub const DEFAULT_MIN_QV: f32 = 20.0;

/// Loads a Xenium output directory.
pub fn load(input: &Path, opts: &RawOptions) -> Result<Sample, DataError> {
    let tx_file = find_file(
        input,
        opts.transcripts_file.as_deref(),
        &[
            "transcripts.parquet",
            "transcripts.csv.gz",
            "transcripts.csv",
        ],
        &[],
        "transcripts",
    )?;
    let bd_names: &[&str] = match opts.boundaries {
        BoundaryKind::Nucleus => &[
            "nucleus_boundaries.parquet",
            "nucleus_boundaries.csv.gz",
            "nucleus_boundaries.csv",
        ],
        BoundaryKind::Cell => &[
            "cell_boundaries.parquet",
            "cell_boundaries.csv.gz",
            "cell_boundaries.csv",
        ],
    };
    let bd_file = find_file(
        input,
        opts.boundaries_file.as_deref(),
        bd_names,
        &[],
        "boundaries",
    )?;
    let scale = opts.scale.unwrap_or(1.0);
    let mut report = LoadReport {
        boundaries_file: bd_file.clone(),
        ..Default::default()
    };
    let id = split_names(opts.columns.bd_id.as_deref().unwrap_or("cell_id"));
    let groups = read_vertex_rings(
        &bd_file,
        &id,
        opts.columns.bd_x.as_deref().unwrap_or("vertex_x"),
        opts.columns.bd_y.as_deref().unwrap_or("vertex_y"),
        scale,
    )?;
    let bd = build_boundaries(groups, &bd_file, &id.join(","), opts.strict, &mut report)?;
    let (tx, vocab, embedding) = load_transcripts(
        &tx_file,
        &DEFAULTS,
        &[],
        opts,
        &bd,
        Some(DEFAULT_MIN_QV),
        scale,
        &mut report,
    )?;
    Ok(Sample {
        tx,
        bd,
        vocab,
        embedding,
        report,
    })
}
