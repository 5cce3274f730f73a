//! The points and shapes elements: parquet files inside their zarr groups, as spatialdata's
//! `write_points` (dask's `to_parquet`) and `write_shapes` (geopandas' GeoParquet, WKB) lay
//! them out, with the pandas metadata that restores their index and categories.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::BinaryBuilder;
use arrow_array::types::Int32Type;
use arrow_array::{
    ArrayRef, DictionaryArray, Float32Array, Int32Array, Int64Array, RecordBatch, StringArray,
};
use arrow_schema::{ArrowError, DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde_json::{json, Value};

use super::{element_attrs, io, SpatialDataError, Zarr};
use super::{FEATURE_KEY, POINTS_CELL_KEY, POINTS_ELEMENT, SHAPES_ELEMENT};
use crate::outputs::Resolved;
use crate::state::TxRecord;

/// Points element format.
const POINTS_FORMAT: &str = "0.2";
/// Shapes element format.
const SHAPES_FORMAT: &str = "0.3";
/// Rows per record batch (and parquet row group).
const ROWS_PER_BATCH: usize = 1 << 16;
/// The row-number column dask writes as the points' index.
const DASK_INDEX: &str = "__null_dask_index__";

fn parquet_writer(path: &Path, schema: Arc<Schema>) -> Result<ArrowWriter<File>, SpatialDataError> {
    let file = File::create(path).map_err(io(path))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    ArrowWriter::try_new(file, schema, Some(props)).map_err(|source| SpatialDataError::Parquet {
        path: path.to_path_buf(),
        source,
    })
}

fn pq_err(path: &Path) -> impl Fn(parquet::errors::ParquetError) -> SpatialDataError + '_ {
    move |source| SpatialDataError::Parquet {
        path: path.to_path_buf(),
        source,
    }
}

fn arrow_err(path: &Path) -> impl Fn(ArrowError) -> SpatialDataError + '_ {
    move |source| SpatialDataError::Arrow {
        path: path.to_path_buf(),
        source,
    }
}

/// One column of pyarrow's `pandas` schema metadata.
fn pandas_column(name: &str, pandas_type: &str, numpy_type: &str, metadata: Value) -> Value {
    json!({
        "name": name,
        "field_name": name,
        "pandas_type": pandas_type,
        "numpy_type": numpy_type,
        "metadata": metadata,
    })
}

/// pyarrow's `pandas` schema metadata: the columns (the index column last) and which column is
/// the index, so that pandas, dask and geopandas restore the index and the dtypes.
fn pandas_metadata(index: &str, columns: Vec<Value>) -> String {
    json!({
        "index_columns": [index],
        "column_indexes": [{
            "name": null, "field_name": null, "pandas_type": "unicode", "numpy_type": "object",
            "metadata": { "encoding": "UTF-8" },
        }],
        "columns": columns,
        "attributes": {},
        "creator": { "library": "segger-rs", "version": env!("CARGO_PKG_VERSION") },
        "pandas_version": "2.2.0",
    })
    .to_string()
}

/// The points' schema: `x`, `y`, `z` (when any transcript has one), the gene as a categorical,
/// the columns of `segger_transcripts.parquet`, and dask's row-number index.
fn points_schema(n_genes: usize, has_z: bool) -> Arc<Schema> {
    let f32_col = |n: &str| pandas_column(n, "float32", "float32", Value::Null);
    let mut fields = vec![
        Field::new("x", DataType::Float32, false),
        Field::new("y", DataType::Float32, false),
    ];
    let mut cols = vec![f32_col("x"), f32_col("y")];
    if has_z {
        fields.push(Field::new("z", DataType::Float32, true));
        cols.push(f32_col("z"));
    }
    let dict = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
    fields.extend([
        Field::new(FEATURE_KEY, dict, true),
        Field::new("transcript_id", DataType::Int64, false),
        Field::new(POINTS_CELL_KEY, DataType::Utf8, true),
        Field::new("score", DataType::Float32, true),
        Field::new("assigned", DataType::Boolean, false),
        Field::new(DASK_INDEX, DataType::Int64, false),
    ]);
    let categories = json!({ "num_categories": n_genes, "ordered": false });
    cols.extend([
        pandas_column(FEATURE_KEY, "categorical", "int32", categories),
        pandas_column("transcript_id", "int64", "int64", Value::Null),
        pandas_column(POINTS_CELL_KEY, "unicode", "object", Value::Null),
        f32_col("score"),
        pandas_column("assigned", "bool", "bool", Value::Null),
        pandas_column(DASK_INDEX, "int64", "int64", Value::Null),
    ]);
    let metadata = HashMap::from([("pandas".to_string(), pandas_metadata(DASK_INDEX, cols))]);
    Arc::new(Schema::new_with_metadata(fields, metadata))
}

/// The record batch of `chunk`, the records from row `start` on.
fn points_batch(
    schema: &Arc<Schema>,
    start: usize,
    chunk: &[TxRecord],
    res: &Resolved,
    genes: &ArrayRef,
) -> Result<RecordBatch, ArrowError> {
    let n_genes = genes.len();
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(Float32Array::from_iter_values(chunk.iter().map(|r| r.x))),
        Arc::new(Float32Array::from_iter_values(chunk.iter().map(|r| r.y))),
    ];
    if schema.column_with_name("z").is_some() {
        let z = chunk.iter().map(|r| (!r.z.is_nan()).then_some(r.z));
        cols.push(Arc::new(Float32Array::from_iter(z)));
    }
    let keys = chunk
        .iter()
        .map(|r| ((r.gene as usize) < n_genes).then_some(r.gene as i32));
    let keys = Int32Array::from_iter(keys);
    cols.push(Arc::new(DictionaryArray::<Int32Type>::try_new(
        keys,
        Arc::clone(genes),
    )?));
    cols.push(Arc::new(Int64Array::from_iter_values(
        chunk.iter().map(|r| r.id),
    )));
    cols.extend(crate::outputs::assignment_columns(chunk, res));
    let rows = start as i64..(start + chunk.len()) as i64;
    cols.push(Arc::new(Int64Array::from_iter_values(rows)));
    RecordBatch::try_new(Arc::clone(schema), cols)
}

/// `points/transcripts`: every record in the order of `segger_transcripts.parquet`, written
/// batch by batch into `points.parquet/part.0.parquet` (dask's layout).
pub(super) fn write_points(
    z: &Zarr,
    res: &Resolved,
    genes: &[String],
) -> Result<(), SpatialDataError> {
    let node = format!("/points/{POINTS_ELEMENT}");
    let has_z = res.records.iter().any(|r| !r.z.is_nan());
    let axes: &[&str] = if has_z { &["x", "y", "z"] } else { &["x", "y"] };
    let sd_attrs = json!({
        "feature_key": FEATURE_KEY,
        "instance_key": POINTS_CELL_KEY,
        "version": POINTS_FORMAT,
    });
    z.group(&node, element_attrs("ngff:points", axes, sd_attrs))?;
    let dir = z.dir(&node).join("points.parquet");
    std::fs::create_dir(&dir).map_err(io(&dir))?;
    let path = dir.join("part.0.parquet");
    let schema = points_schema(genes.len(), has_z);
    let mut w = parquet_writer(&path, Arc::clone(&schema))?;
    let genes: ArrayRef = Arc::new(StringArray::from_iter_values(genes));
    for (b, chunk) in res.records.chunks(ROWS_PER_BATCH).enumerate() {
        let batch = points_batch(&schema, b * ROWS_PER_BATCH, chunk, res, &genes)
            .map_err(arrow_err(&path))?;
        w.write(&batch).map_err(pq_err(&path))?;
    }
    w.close().map_err(pq_err(&path))?;
    Ok(())
}

/// Appends `ring` as a little-endian WKB Polygon with one (closed) ring.
pub(super) fn wkb_polygon(ring: &[[f64; 2]], out: &mut Vec<u8>) {
    out.push(1);
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&(ring.len() as u32).to_le_bytes());
    for p in ring {
        out.extend_from_slice(&p[0].to_le_bytes());
        out.extend_from_slice(&p[1].to_le_bytes());
    }
}

/// GeoParquet's `geo` metadata: one WKB Polygon column, no CRS (a null `crs` means
/// "unknown"; a missing one would mean longitude/latitude), and the bounding box.
fn geo_metadata(res: &Resolved) -> String {
    let mut b = [
        f64::INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NEG_INFINITY,
    ];
    for p in res.aggs.iter().flat_map(|a| a.ring.iter()) {
        b = [
            b[0].min(p[0]),
            b[1].min(p[1]),
            b[2].max(p[0]),
            b[3].max(p[1]),
        ];
    }
    json!({
        "version": "1.0.0",
        "primary_column": "geometry",
        "columns": { "geometry": {
            "encoding": "WKB", "geometry_types": ["Polygon"], "crs": null, "bbox": b,
        } },
        "creator": { "library": "segger-rs", "version": env!("CARGO_PKG_VERSION") },
    })
    .to_string()
}

/// `shapes/cells`: one polygon per cell (the rings of `segger_cell_boundaries.geojson`),
/// indexed by cell id, as GeoParquet with WKB geometries.
pub(super) fn write_shapes(z: &Zarr, res: &Resolved) -> Result<(), SpatialDataError> {
    let node = format!("/shapes/{SHAPES_ELEMENT}");
    let sd_attrs = json!({ "version": SHAPES_FORMAT });
    z.group(&node, element_attrs("ngff:shapes", &["x", "y"], sd_attrs))?;
    let path = z.dir(&node).join("shapes.parquet");
    let wkb = HashMap::from([
        (
            "ARROW:extension:name".to_string(),
            "geoarrow.wkb".to_string(),
        ),
        ("ARROW:extension:metadata".to_string(), "{}".to_string()),
    ]);
    let fields = vec![
        Field::new("geometry", DataType::Binary, false).with_metadata(wkb),
        Field::new(super::INSTANCE_KEY, DataType::Utf8, false),
    ];
    let pandas = pandas_metadata(
        super::INSTANCE_KEY,
        vec![
            pandas_column("geometry", "bytes", "object", Value::Null),
            pandas_column(super::INSTANCE_KEY, "unicode", "object", Value::Null),
        ],
    );
    let metadata = HashMap::from([
        ("geo".to_string(), geo_metadata(res)),
        ("pandas".to_string(), pandas),
    ]);
    let schema = Arc::new(Schema::new_with_metadata(fields, metadata));
    let mut w = parquet_writer(&path, Arc::clone(&schema))?;
    let mut buf = Vec::new();
    for (b, aggs) in res.aggs.chunks(ROWS_PER_BATCH).enumerate() {
        let ids = &res.cell_ids[b * ROWS_PER_BATCH..b * ROWS_PER_BATCH + aggs.len()];
        let bytes: usize = aggs.iter().map(|a| 13 + 16 * a.ring.len()).sum();
        let mut geometry = BinaryBuilder::with_capacity(aggs.len(), bytes);
        for a in aggs {
            buf.clear();
            wkb_polygon(&a.ring, &mut buf);
            geometry.append_value(&buf);
        }
        let cols: Vec<ArrayRef> = vec![
            Arc::new(geometry.finish()),
            Arc::new(StringArray::from_iter_values(ids)),
        ];
        let batch = RecordBatch::try_new(Arc::clone(&schema), cols).map_err(arrow_err(&path))?;
        w.write(&batch).map_err(pq_err(&path))?;
    }
    w.close().map_err(pq_err(&path))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wkb_of_a_triangle() {
        let mut out = Vec::new();
        wkb_polygon(&[[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [0.0, 0.0]], &mut out);
        assert_eq!(out.len(), 13 + 4 * 16);
        assert_eq!(&out[..9], &[1, 3, 0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(&out[9..13], &4u32.to_le_bytes());
        let y2 = &out[13 + 2 * 16 + 8..13 + 3 * 16];
        assert_eq!(f64::from_le_bytes(y2.try_into().unwrap()), 2.0);
    }

    #[test]
    fn the_pandas_metadata_names_the_index_and_the_categories() {
        let s = points_schema(7, false);
        let m: Value = serde_json::from_str(&s.metadata()["pandas"]).unwrap();
        assert_eq!(m["index_columns"], json!([DASK_INDEX]));
        let cols = m["columns"].as_array().unwrap();
        assert_eq!(cols.len(), s.fields().len());
        let gene = cols.iter().find(|c| c["name"] == FEATURE_KEY).unwrap();
        assert_eq!(gene["metadata"]["num_categories"], 7);
        assert!(s.column_with_name("z").is_none());
        assert!(points_schema(7, true).column_with_name("z").is_some());
    }
}
