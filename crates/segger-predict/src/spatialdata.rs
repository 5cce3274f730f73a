//! `segger_spatialdata.zarr`: the segmentation as a SpatialData store, for scverse users
//! (`spatialdata.read_zarr`).
//!
//! The store follows SpatialData's on-disk format as the `spatialdata` Python package writes
//! it since 0.6 (container format 0.2 on zarr v3; checked with 0.7.3, docs/prediction.md):
//!
//! ```text
//! segger_spatialdata.zarr/
//! ├── zarr.json                          spatialdata_attrs {version: "0.2"}
//! ├── points/transcripts/                points format 0.2
//! │   ├── zarr.json                      axes, coordinateTransformations, spatialdata_attrs
//! │   └── points.parquet/part.0.parquet  one row per transcript
//! ├── shapes/cells/                      shapes format 0.3
//! │   ├── zarr.json
//! │   └── shapes.parquet                 GeoParquet: WKB polygons indexed by cell id
//! └── tables/table/                      AnnData on zarr (encoding 0.1.0), tables format 0.2
//! ```
//!
//! Zarr groups and arrays are written with `zarrs`; the two parquet files with the workspace's
//! `parquet` crate, the points batch by batch as `segger_transcripts.parquet` is written.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{json, Map, Value};
use zarrs::array::builder::ArrayBuilderFillValue;
use zarrs::array::codec::ZstdCodec;
use zarrs::array::{ArrayBuilder, ArrayMetadataOptions, DataType, Element};
use zarrs::filesystem::FilesystemStore;
use zarrs::group::GroupBuilder;

use crate::outputs::Resolved;
use crate::PredictError;

mod parquet_elements;
mod table;

/// Name of the points element (the transcripts).
pub const POINTS_ELEMENT: &str = "transcripts";
/// Name of the shapes element (the cell polygons).
pub const SHAPES_ELEMENT: &str = "cells";
/// Name of the table (cells × genes counts).
pub const TABLE_ELEMENT: &str = "table";
/// The coordinate system of every element: the input's micrometres, unchanged.
pub const COORDINATE_SYSTEM: &str = "global";
/// The points' gene column (their `feature_key`).
pub const FEATURE_KEY: &str = "feature_name";
/// The points' cell column (their `instance_key`), null when unassigned.
pub const POINTS_CELL_KEY: &str = "segger_cell_id";
/// The table's `obs` column naming the shapes element of each cell (`region_key`).
pub const REGION_KEY: &str = "region";
/// The table's `obs` column of cell ids, which index the shapes (`instance_key`).
pub const INSTANCE_KEY: &str = "cell_id";

/// SpatialData container format written (zarr v3; read by spatialdata ≥ 0.6).
const CONTAINER_FORMAT: &str = "0.2";

/// Elements per chunk along the first axis of the table's arrays.
const CHUNK: u64 = 1 << 18;
/// zstd level of the table's arrays (AnnData's zarr v3 default codec is zstd too).
const ZSTD_LEVEL: i32 = 3;

/// Why the SpatialData store could not be written; each variant names the file or zarr node.
#[derive(Debug, thiserror::Error)]
pub enum SpatialDataError {
    /// The file system failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The file system's error.
        #[source]
        source: std::io::Error,
    },
    /// A parquet file (points or shapes) could not be written.
    #[error("{}: {source}", path.display())]
    Parquet {
        /// The parquet file.
        path: PathBuf,
        /// The parquet writer's error.
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// A record batch could not be built (the columns do not fit the schema).
    #[error("{}: {source}", path.display())]
    Arrow {
        /// The parquet file.
        path: PathBuf,
        /// Arrow's error.
        #[source]
        source: arrow_schema::ArrowError,
    },
    /// A zarr group or array could not be created or stored.
    #[error("{}: zarr node {node}: {source}", store.display())]
    Zarr {
        /// The store.
        store: PathBuf,
        /// The node's path inside the store.
        node: String,
        /// zarrs's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl From<SpatialDataError> for PredictError {
    /// A file system failure stays [`PredictError::Io`] (exit code 1); the others become
    /// [`PredictError::Runtime`] with the file and the whole cause, as the other writers report.
    fn from(e: SpatialDataError) -> Self {
        match e {
            SpatialDataError::Io { path, source } => PredictError::Io { path, source },
            other => PredictError::Runtime(error_chain(&other)),
        }
    }
}

/// An error and its sources, joined by `": "` (a source already in the text is not repeated).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let m = s.to_string();
        if !text.contains(&m) {
            text.push_str(": ");
            text.push_str(&m);
        }
        source = s.source();
    }
    text
}

/// Maps a file system error on `path`.
fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpatialDataError + '_ {
    move |source| SpatialDataError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `res` as a SpatialData store at `path` (a folder that must not exist yet): points
/// `transcripts` (every record, in the order of `segger_transcripts.parquet`), shapes `cells`
/// (each cell's polygon) and table `table` (cells × genes counts annotating `cells`). A
/// segmentation without cells gets the points only: SpatialData refuses empty shapes.
pub(crate) fn write_spatialdata(
    path: &Path,
    res: &Resolved,
    genes: &[String],
) -> Result<(), SpatialDataError> {
    let t = std::time::Instant::now();
    std::fs::create_dir(path).map_err(io(path))?;
    let z = Zarr::open(path)?;
    z.group(
        "/",
        json!({
            "spatialdata_attrs": { "version": CONTAINER_FORMAT },
            "segger": { "writer": "segger predict", "version": env!("CARGO_PKG_VERSION") },
        }),
    )?;
    for g in ["points", "shapes", "tables"] {
        z.group(&format!("/{g}"), json!({}))?;
    }
    parquet_elements::write_points(&z, res, genes)?;
    if !res.cell_ids.is_empty() {
        parquet_elements::write_shapes(&z, res)?;
        table::write_table(&z, res, genes)?;
    }
    tracing::debug!(
        "{} written in {:.3} s",
        path.display(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The `coordinateTransformations` of a points or shapes element with these axes: the identity
/// to the `global` coordinate system, in micrometres.
fn identity_to_global(axes: &[&str]) -> Value {
    let axes: Vec<Value> = axes
        .iter()
        .map(|a| json!({ "name": a, "type": "space", "unit": "micrometer" }))
        .collect();
    let name: String = axes.iter().filter_map(|a| a["name"].as_str()).collect();
    json!([{
        "type": "identity",
        "input": { "name": name, "axes": axes },
        "output": { "name": COORDINATE_SYSTEM, "axes": axes },
    }])
}

/// The attributes of a points or shapes element's group (`_write_metadata` and
/// `overwrite_coordinate_transformations_non_raster` in spatialdata).
fn element_attrs(encoding: &str, axes: &[&str], spatialdata_attrs: Value) -> Value {
    json!({
        "encoding-type": encoding,
        "axes": axes,
        "coordinateTransformations": identity_to_global(axes),
        "spatialdata_attrs": spatialdata_attrs,
    })
}

/// A JSON object's map (empty for anything else).
fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// A zarr v3 store on the file system, written node by node.
struct Zarr {
    /// The store's folder.
    root: PathBuf,
    store: Arc<FilesystemStore>,
}

impl Zarr {
    fn open(root: &Path) -> Result<Self, SpatialDataError> {
        let store = FilesystemStore::new(root).map_err(|e| SpatialDataError::Zarr {
            store: root.to_path_buf(),
            node: "/".into(),
            source: Box::new(e),
        })?;
        Ok(Self {
            root: root.to_path_buf(),
            store: Arc::new(store),
        })
    }

    /// The folder of `node` (`/a/b`).
    fn dir(&self, node: &str) -> PathBuf {
        self.root.join(node.trim_start_matches('/'))
    }

    fn err(
        &self,
        node: &str,
        e: impl std::error::Error + Send + Sync + 'static,
    ) -> SpatialDataError {
        SpatialDataError::Zarr {
            store: self.root.clone(),
            node: node.to_string(),
            source: Box::new(e),
        }
    }

    /// Writes the group `node` with `attrs` (a JSON object).
    fn group(&self, node: &str, attrs: Value) -> Result<(), SpatialDataError> {
        let g = GroupBuilder::new()
            .attributes(object(attrs))
            .build(Arc::clone(&self.store), node)
            .map_err(|e| self.err(node, e))?;
        g.store_metadata().map_err(|e| self.err(node, e))
    }

    /// Writes the array `node` of `shape` (row-major `data`, chunked along the first axis,
    /// zstd-compressed) with `attrs`. A zero-dimensional array holds one element.
    fn array<T: Element>(
        &self,
        node: &str,
        shape: &[u64],
        dtype: DataType,
        fill: impl Into<ArrayBuilderFillValue>,
        data: &[T],
        attrs: Value,
    ) -> Result<(), SpatialDataError> {
        let chunk: Vec<u64> = shape
            .iter()
            .enumerate()
            .map(|(i, &n)| if i == 0 { n.clamp(1, CHUNK) } else { n.max(1) })
            .collect();
        let a = ArrayBuilder::new(shape.to_vec(), chunk, dtype, fill)
            .bytes_to_bytes_codecs(vec![Arc::new(ZstdCodec::new(ZSTD_LEVEL, false))])
            .attributes(object(attrs))
            .build(Arc::clone(&self.store), node)
            .map_err(|e| self.err(node, e))?;
        // No `_zarrs` provenance attribute: AnnData's elements carry only their encoding.
        let options = ArrayMetadataOptions::default().with_include_zarrs_metadata(false);
        a.store_metadata_opt(&options)
            .map_err(|e| self.err(node, e))?;
        if !data.is_empty() {
            a.store_array_subset(&a.subset_all(), data)
                .map_err(|e| self.err(node, e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Collected, TxRecord, NO_CELL};
    use crate::PredictConfig;

    /// Resolved records at `x = i`, 2-D, gene `i % 3`; `cells[i]` names the cell of record i.
    fn resolved(cells: &[Option<&str>]) -> Resolved {
        let mut col = Collected::default();
        for (i, c) in cells.iter().enumerate() {
            let cell = c.map_or(NO_CELL, |c| col.cells.intern(c));
            col.records.push(TxRecord {
                id: i as i64,
                x: i as f32,
                y: (i * i) as f32,
                z: f32::NAN,
                gene: (i % 3) as u32,
                cell,
                score: 0.9,
            });
        }
        let cfg = PredictConfig::new(PathBuf::new(), PathBuf::new(), PathBuf::new());
        crate::outputs::resolve(col, &cfg).unwrap()
    }

    fn attrs(node: &Path) -> Value {
        let text = std::fs::read_to_string(node.join("zarr.json")).unwrap();
        serde_json::from_str::<Value>(&text).unwrap()["attributes"].clone()
    }

    #[test]
    fn two_dimensional_points_have_no_z_axis() {
        let tmp = tempfile::tempdir().unwrap();
        let store = tmp.path().join("s.zarr");
        let genes = ["A", "B", "C"].map(String::from);
        let res = resolved(&[Some("c1"), Some("c1"), Some("c1"), None, Some("c2")]);
        write_spatialdata(&store, &res, &genes).unwrap();
        let points = attrs(&store.join("points/transcripts"));
        assert_eq!(points["axes"], json!(["x", "y"]));
        assert_eq!(
            points["coordinateTransformations"][0]["input"]["name"],
            "xy"
        );
        assert!(store.join("shapes/cells/shapes.parquet").is_file());
        assert_eq!(attrs(&store.join("tables/table/X"))["shape"], json!([2, 3]));
    }

    #[test]
    fn without_cells_only_the_points_are_written() {
        let tmp = tempfile::tempdir().unwrap();
        let store = tmp.path().join("s.zarr");
        let res = resolved(&[None, None]);
        write_spatialdata(&store, &res, &["A".to_string()]).unwrap();
        assert!(store
            .join("points/transcripts/points.parquet/part.0.parquet")
            .is_file());
        assert!(!store.join("shapes/cells").exists());
        assert!(!store.join("tables/table").exists());
        let again = write_spatialdata(&store, &res, &[]).unwrap_err();
        assert!(matches!(again, SpatialDataError::Io { .. }), "{again}");
    }

    #[test]
    fn the_transformation_is_the_identity_to_global_in_micrometres() {
        let t = identity_to_global(&["x", "y", "z"]);
        assert_eq!(t[0]["type"], "identity");
        assert_eq!(t[0]["input"]["name"], "xyz");
        assert_eq!(t[0]["output"]["name"], "global");
        assert_eq!(t[0]["output"]["axes"][2]["unit"], "micrometer");
        assert_eq!(t[0]["input"]["axes"], t[0]["output"]["axes"]);
    }

    #[test]
    fn errors_keep_their_cause_and_io_errors_stay_io() {
        let e = SpatialDataError::Io {
            path: "/x".into(),
            source: std::io::Error::other("disk full"),
        };
        assert!(matches!(PredictError::from(e), PredictError::Io { .. }));
        let e = SpatialDataError::Zarr {
            store: "/s.zarr".into(),
            node: "/tables/table/X".into(),
            source: Box::new(std::io::Error::other("bad chunk")),
        };
        let p = PredictError::from(e);
        assert_eq!(p.exit_code(), 1);
        assert_eq!(
            p.to_string(),
            "/s.zarr: zarr node /tables/table/X: bad chunk"
        );
    }
}
