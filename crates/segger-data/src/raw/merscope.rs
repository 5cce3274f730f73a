//! Vizgen MERSCOPE: `detected_transcripts.parquet` / `.csv` (`global_x`, `global_y`, `gene`,
//! `cell_id`) and a boundary parquet with one WKB geometry per row (`EntityID`, `Geometry`;
//! default files `cellpose_nucleus_micron_space.parquet` for nuclei and
//! `cell_boundaries.parquet` / `cellpose_micron_space.parquet` / `cells_cellpose.parquet` for
//! cells).
//!
//! Coordinates are in micrometres. `global_z` is a z-plane index, not micrometres, so the
//! default is 2-D; pass `--z_column global_z` to use it. Transcript ids are row numbers
//! unless `--id_column` names an integer column (MERSCOPE's `transcript_id` is a gene-level
//! string). Several rows for one `EntityID` (one per z-plane) keep the largest polygon;
//! multi-polygons keep their largest part; holes are ignored.
//!
//! Older exports ship their cell boundaries only as one HDF5 file per field of view,
//! `cell_boundaries/feature_data_<fov>.hdf5` (`featuredata/<cell_id>/zIndex_<z>/p_0/coordinates`):
//! when no boundary parquet is found, that folder is read (`raw/merscope_hdf5.rs`), with the
//! same z-plane rule (every z-plane's polygon is offered for its cell, the largest is kept, the
//! others are counted as duplicates). `--boundaries_file` may name such a folder or one
//! `.hdf5` / `.h5` file.

use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::Array;
use arrow_schema::DataType;

use super::boundaries::RingGroups;
use super::columns::{self, col_err};
use super::files::for_each_batch;
use super::merscope_hdf5;
use super::platform::{load_platform, PlatformFiles};
use super::tx_columns::{split_names, Defaults};
use super::{wkb, BoundaryKind, RawOptions, Sample};
use crate::error::DataError;

/// The MERSCOPE column names.
pub(crate) const DEFAULTS: Defaults<'static> = Defaults {
    x: "global_x",
    y: "global_y",
    z: None,
    gene: "gene",
    cell: &["cell_id"],
    id: None,
    nuclear: Some("overlaps_nucleus"),
    nuclear_value: "1",
    qv: None,
};

/// Reads WKB boundaries: `id` columns and a binary `geometry` column.
pub(crate) fn read_wkb_rings(
    file: &Path,
    id: &[String],
    geometry: &str,
    scale: f64,
) -> Result<RingGroups, DataError> {
    let mut wanted = id.to_vec();
    wanted.push(geometry.to_string());
    let mut groups = RingGroups::default();
    for_each_batch(file, &wanted, |b, row0| {
        let keys = columns::joined_keys(b, file, id)?;
        let arr = columns::require(b, file, geometry)?;
        let get = |i: usize| -> Option<&[u8]> {
            if arr.is_null(i) {
                return None;
            }
            match arr.data_type() {
                DataType::Binary => Some(arr.as_binary::<i32>().value(i)),
                DataType::LargeBinary => Some(arr.as_binary::<i64>().value(i)),
                DataType::BinaryView => Some(arr.as_binary_view().value(i)),
                _ => None,
            }
        };
        if !matches!(
            arr.data_type(),
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView
        ) {
            return Err(col_err(
                file,
                geometry,
                format!("wrong column type {}, expected WKB binary", arr.data_type()),
            ));
        }
        for (i, k) in keys.iter().enumerate() {
            let row = row0 + i as u64;
            let Some(k) = k else {
                return Err(col_err(
                    file,
                    &id.join(","),
                    format!("null boundary id at row {row}"),
                ));
            };
            let Some(bytes) = get(i) else {
                return Err(col_err(
                    file,
                    geometry,
                    format!("null geometry at row {row}"),
                ));
            };
            let rings = wkb::parse(bytes)
                .map_err(|e| col_err(file, geometry, format!("row {row}: {e}")))?;
            if rings.parts.len() > 1 {
                groups.multipart += 1;
            }
            let ring: Vec<[f64; 2]> = rings
                .largest()
                .unwrap_or_default()
                .into_iter()
                .map(|p| [p[0] * scale, p[1] * scale])
                .collect();
            groups.push_ring(k, ring);
        }
        Ok(())
    })?;
    Ok(groups)
}

/// Loads a MERSCOPE output directory.
pub fn load(input: &Path, opts: &RawOptions) -> Result<Sample, DataError> {
    let files = PlatformFiles {
        tx_names: &[
            "detected_transcripts.parquet",
            "detected_transcripts.csv",
            "detected_transcripts.csv.gz",
        ],
        tx_suffixes: &[],
        bd_names: match opts.boundaries {
            // MERSCOPE exports ship cell boundaries only; a nucleus segmentation (vpt's) is used
            // when there is one, else the cells' (the summary names the file read).
            BoundaryKind::Nucleus => &[
                "cellpose_nucleus_micron_space.parquet",
                "nucleus_boundaries.parquet",
                "cell_boundaries.parquet",
                "cellpose_micron_space.parquet",
                "cells_cellpose.parquet",
            ],
            BoundaryKind::Cell => &[
                "cell_boundaries.parquet",
                "cellpose_micron_space.parquet",
                "cells_cellpose.parquet",
            ],
        },
        bd_suffixes: &[],
        // Older exports: one HDF5 file per field of view (cell boundaries).
        bd_dirs: &["cell_boundaries"],
        bd_other_settings: &[],
        bd_what: "boundaries",
        defaults: &DEFAULTS,
        alt_cell: &[],
        default_min_qv: None,
        default_scale: 1.0,
    };
    load_platform(input, opts, &files, |bd_file, scale| {
        if merscope_hdf5::is_hdf5_boundaries(bd_file) {
            let groups = merscope_hdf5::read_feature_rings(bd_file, scale)?;
            return Ok((groups, vec!["featuredata".to_string()]));
        }
        let id = split_names(opts.columns.bd_id.as_deref().unwrap_or("EntityID"));
        let geometry = opts.columns.bd_geometry.as_deref().unwrap_or("Geometry");
        let groups = read_wkb_rings(bd_file, &id, geometry, scale)?;
        Ok((groups, id))
    })
}
