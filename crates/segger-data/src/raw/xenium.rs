//! 10x Genomics Xenium: `transcripts.parquet` and `nucleus_boundaries.parquet` (or
//! `cell_boundaries.parquet` with [`BoundaryKind::Cell`]); vertex rows `cell_id`,
//! `vertex_x`, `vertex_y`. Coordinates are in micrometres. The default quality filter is
//! `qv >= 20`.

use std::path::Path;

use super::boundaries::read_vertex_rings;
use super::platform::{load_platform, PlatformFiles};
use super::tx_columns::{split_names, Defaults};
use super::{BoundaryKind, RawOptions, Sample};
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
    let files = PlatformFiles {
        tx_names: &[
            "transcripts.parquet",
            "transcripts.csv.gz",
            "transcripts.csv",
        ],
        tx_suffixes: &[],
        bd_names: match opts.boundaries {
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
        },
        bd_suffixes: &[],
        bd_dirs: &[],
        bd_other_settings: match opts.boundaries {
            BoundaryKind::Nucleus => &[
                ("cell_boundaries.parquet", "--boundaries cell"),
                ("cell_boundaries.csv.gz", "--boundaries cell"),
            ],
            BoundaryKind::Cell => &[
                ("nucleus_boundaries.parquet", "--boundaries nucleus"),
                ("nucleus_boundaries.csv.gz", "--boundaries nucleus"),
            ],
        },
        bd_what: "boundaries",
        defaults: &DEFAULTS,
        alt_cell: &[],
        default_min_qv: Some(DEFAULT_MIN_QV),
        default_scale: 1.0,
    };
    load_platform(input, opts, &files, |bd_file, scale| {
        let id = split_names(opts.columns.bd_id.as_deref().unwrap_or("cell_id"));
        let groups = read_vertex_rings(
            bd_file,
            &id,
            opts.columns.bd_x.as_deref().unwrap_or("vertex_x"),
            opts.columns.bd_y.as_deref().unwrap_or("vertex_y"),
            scale,
        )?;
        Ok((groups, id))
    })
}
