//! NanoString CosMx: `*_tx_file.csv(.gz)` (`x_global_px`, `y_global_px`, `target`, `cell`,
//! `CellComp`) and `*-polygons.csv(.gz)` or `*_polygons.csv(.gz)` (vertex rows `cell`,
//! `x_global_px`, `y_global_px`), or, in exports without polygons, the cell label masks
//! `CellLabels/CellLabels_F<fov>.tif` placed by `fov_positions_file.csv` (see
//! [`super::cosmx_masks`]).
//!
//! Coordinates are pixels. The pixel size is `--pixel_size` (`--scale`), else the one the fov
//! positions file states (`x_global_mm · 1000 / x_global_px`, AtoMx exports), else
//! [`DEFAULT_PIXEL_SIZE`]; the load report says which. Cell keys are the `cell` column, or `fov`
//! and `cell_ID` (`cellID` in the polygon file) joined with `_` when it is absent. Nuclear
//! transcripts have `CellComp` equal to `Nuclear`. `z` is a z-slice index, so the default is
//! 2-D (`--z_column z` to use it). Transcript ids are row numbers unless the file has
//! `transcript_id`.

use std::path::Path;

use super::boundaries::read_vertex_rings;
use super::columns::col_err;
use super::cosmx_masks::{
    find_fov_positions, read_fov_positions, read_mask_rings, stated_pixel_size,
};
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

/// The pixel size to use and where it came from: `--pixel_size`, else the fov positions
/// file's statement, else the default.
fn pixel_size(positions: Option<&Path>, opts: &RawOptions) -> Result<(f64, String), DataError> {
    if let Some(s) = opts.scale {
        return Ok((s, "--pixel_size".into()));
    }
    if let Some(p) = positions {
        if let Some(s) = stated_pixel_size(p)? {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default();
            return Ok((s, format!("from {name}")));
        }
    }
    Ok((
        DEFAULT_PIXEL_SIZE,
        format!("default {DEFAULT_PIXEL_SIZE}, pass --pixel_size"),
    ))
}

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
        // Exports without polygons: cell label masks, one per field of view.
        bd_dirs: &["CellLabels"],
        bd_other_settings: &[],
        bd_what: "polygons",
        defaults: &DEFAULTS,
        alt_cell: &[&["fov", "cell_ID"]],
        default_min_qv: None,
        default_scale: DEFAULT_PIXEL_SIZE,
    };
    let positions = find_fov_positions(&[input]);
    let (size, source) = pixel_size(positions.as_deref(), opts)?;
    let sized = RawOptions {
        scale: Some(size),
        ..opts.clone()
    };
    let mut sample = load_platform(input, &sized, &files, |bd_file, scale| {
        if bd_file.is_dir() {
            // The positions file is in the export folder, or beside a mask folder named
            // elsewhere with --boundaries_file.
            let beside = bd_file.parent().unwrap_or(input);
            let Some(pos) = positions.clone().or_else(|| find_fov_positions(&[beside])) else {
                let mut looked = input.display().to_string();
                if beside != input {
                    looked = format!("{looked} and {}", beside.display());
                }
                return Err(DataError::Dataset {
                    path: bd_file.to_path_buf(),
                    problem: format!(
                        "cell label masks need the fov positions file (looked for \
                         fov_positions_file.csv, *_fov_positions_file.csv in {looked})"
                    ),
                });
            };
            let groups = read_mask_rings(bd_file, &read_fov_positions(&pos)?, scale)?;
            return Ok((groups, vec!["fov".into(), "label".into()]));
        }
        let id = polygon_id_columns(bd_file, opts)?;
        let groups = read_vertex_rings(
            bd_file,
            &id,
            opts.columns.bd_x.as_deref().unwrap_or("x_global_px"),
            opts.columns.bd_y.as_deref().unwrap_or("y_global_px"),
            scale,
        )?;
        Ok((groups, id))
    })?;
    sample.report.pixel_size = Some(size);
    sample.report.pixel_size_source = Some(source);
    Ok(sample)
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
