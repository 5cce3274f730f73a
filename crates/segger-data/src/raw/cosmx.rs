//! NanoString CosMx: `*_tx_file.csv(.gz)` (`x_global_px`, `y_global_px`, `target`, `cell`,
//! `CellComp`) and `*-polygons.csv(.gz)` or `*_polygons.csv(.gz)` (vertex rows `cell`,
//! `x_global_px`, `y_global_px`).
//!
//! Coordinates are pixels; the default scale is [`DEFAULT_PIXEL_SIZE`] µm per pixel (override
//! with `--scale`). Cell keys are the `cell` column, or `fov` and `cell_ID` (`cellID` in the
//! polygon file) joined with `_` when it is absent. Nuclear transcripts have `CellComp` equal to
//! `Nuclear`. `z` is a z-slice index, so the default is 2-D (`--z_column z` to use it).
//! Transcript ids are row numbers unless the file has `transcript_id`.

use std::path::Path;

use super::boundaries::read_vertex_rings;
use super::columns::col_err;
use super::files::file_columns;
use super::platform::{load_platform, PlatformFiles};
use super::tx_columns::{split_names, Defaults};
use super::{RawOptions, Sample};
use crate::error::DataError;

/// CosMx pixel size in micrometres (CosMx SMI, 0.12028 µm per pixel).
pub const DEFAULT_PIXEL_SIZE: f64 = 0.12028;

/// The CosMx transcript column names.
pub(crate) const DEFAULTS: Defaults<'static> = Defaults {
    x: "x_global_px",
    y: "y_global_px",
    z: None,
    gene: "target",
    cell: &["cell"],
    id: Some("transcript_id"),
    nuclear: Some("CellComp"),
    nuclear_value: "Nuclear",
    qv: None,
};

/// Loads a CosMx flat-file export directory.
pub fn load(input: &Path, opts: &RawOptions) -> Result<Sample, DataError> {
    let files = PlatformFiles {
        // Exports renamed without the sample's prefix too.
        tx_names: &["tx_file.csv.gz", "tx_file.csv", "tx_file.parquet"],
        tx_suffixes: &["_tx_file.csv.gz", "_tx_file.csv", "_tx_file.parquet"],
        bd_names: &["polygons.csv.gz", "polygons.csv", "polygons.parquet"],
        bd_suffixes: &[
            "-polygons.csv.gz",
            "-polygons.csv",
            "_polygons.csv.gz",
            "_polygons.csv",
            "-polygons.parquet",
        ],
        bd_dirs: &[],
        bd_other_settings: &[],
        bd_what: "polygons",
        defaults: &DEFAULTS,
        alt_cell: &[&["fov", "cell_ID"]],
        default_min_qv: None,
        default_scale: DEFAULT_PIXEL_SIZE,
    };
    load_platform(input, opts, &files, |bd_file, scale| {
        let id = polygon_id_columns(bd_file, opts)?;
        let groups = read_vertex_rings(
            bd_file,
            &id,
            opts.columns.bd_x.as_deref().unwrap_or("x_global_px"),
            opts.columns.bd_y.as_deref().unwrap_or("y_global_px"),
            scale,
        )?;
        Ok((groups, id))
    })
}

/// The polygon file's boundary id column(s): `--boundary_id_column`, else `cell`, else the
/// pair `fov`, `cellID`.
fn polygon_id_columns(bd_file: &Path, opts: &RawOptions) -> Result<Vec<String>, DataError> {
    Ok(match opts.columns.bd_id.as_deref() {
        Some(s) => split_names(s),
        None => {
            let have = file_columns(bd_file)?;
            if have.iter().any(|h| h == "cell") {
                vec!["cell".to_string()]
            } else if have.iter().any(|h| h == "fov") && have.iter().any(|h| h == "cellID") {
                vec!["fov".to_string(), "cellID".to_string()]
            } else {
                return Err(col_err(
                    bd_file,
                    "cell",
                    format!(
                        "column is missing, and so is the pair fov, cellID (the file has: {})",
                        have.join(", ")
                    ),
                ));
            }
        }
    })
}
