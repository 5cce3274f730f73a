//! `segger_spatialdata.zarr`, read back with Rust readers (zarrs, parquet): the points are the
//! rows of `segger_transcripts.parquet`, the shapes one polygon per cell, the table's cells are
//! the shapes' ids and its counts add up to the assigned transcripts, and the zarr metadata
//! carries what `spatialdata.read_zarr` needs. (benches/spatialdata/run.sh opens the same store
//! with the Python package.)
#![cfg(feature = "flex")]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Int32Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use segger_model::SeggerConfig;
use segger_predict::{predict, Accelerator, PredictConfig};
use serde_json::{json, Value};
use zarrs::array::Array as ZArray;
use zarrs::filesystem::FilesystemStore;
use zarrs::group::Group;

/// One transcript as both tables hold it.
#[derive(Debug, PartialEq)]
struct Row {
    id: i64,
    x: f32,
    y: f32,
    z: Option<f32>,
    gene: Option<String>,
    cell: Option<String>,
    score: Option<f32>,
    assigned: bool,
}

fn batches(path: &Path) -> (Vec<RecordBatch>, HashMap<String, String>) {
    let b = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
    let metadata = b.schema().metadata().clone().into();
    let batches = b.build().unwrap().map(Result::unwrap).collect();
    (batches, metadata)
}

/// The rows of a transcript table; genes may be plain or dictionary-encoded strings.
fn rows(path: &Path) -> Vec<Row> {
    let mut out = Vec::new();
    for b in batches(path).0 {
        let col = |n: &str| b.column(b.schema().index_of(n).unwrap()).clone();
        let genes = arrow_cast_strings(&col("feature_name"));
        let (ids, xs, ys, zs) = (col("transcript_id"), col("x"), col("y"), col("z"));
        let (cells, scores, assigned) = (col("segger_cell_id"), col("score"), col("assigned"));
        let cells = cells.as_string::<i32>();
        for (i, gene) in genes.into_iter().enumerate() {
            let f = |a: &Arc<dyn Array>| {
                let a = a.as_primitive::<Float32Type>();
                (!a.is_null(i)).then(|| a.value(i))
            };
            out.push(Row {
                id: ids.as_primitive::<Int64Type>().value(i),
                x: f(&xs).unwrap(),
                y: f(&ys).unwrap(),
                z: f(&zs),
                gene,
                cell: (!cells.is_null(i)).then(|| cells.value(i).to_string()),
                score: f(&scores),
                assigned: assigned.as_boolean().value(i),
            });
        }
    }
    out
}

fn arrow_cast_strings(a: &Arc<dyn Array>) -> Vec<Option<String>> {
    if let Some(d) = a.as_dictionary_opt::<Int32Type>() {
        let values = d.values().as_string::<i32>();
        d.keys()
            .iter()
            .map(|k| k.map(|k| values.value(k as usize).to_string()))
            .collect()
    } else {
        let s = a.as_string::<i32>();
        (0..s.len())
            .map(|i| (!s.is_null(i)).then(|| s.value(i).to_string()))
            .collect()
    }
}

/// A model with random weights for the sample's genes.
fn model_dir(dir: &Path, genes: &[String]) -> PathBuf {
    let mut cfg = SeggerConfig::new(genes.len());
    (cfg.hidden_channels, cfg.out_channels, cfg.heads) = (8, 4, 2);
    segger_predict::synthetic::write_model(dir, &cfg, Some(genes), 7).unwrap();
    dir.to_path_buf()
}

/// A WKB Polygon's single ring.
fn wkb_ring(b: &[u8]) -> Vec<[f64; 2]> {
    assert_eq!(b[0], 1, "little-endian WKB");
    let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    let f64_at = |o: usize| f64::from_le_bytes(b[o..o + 8].try_into().unwrap());
    assert_eq!((u32_at(1), u32_at(5)), (3, 1), "a Polygon with one ring");
    let n = u32_at(9) as usize;
    assert_eq!(b.len(), 13 + 16 * n);
    (0..n)
        .map(|i| [f64_at(13 + 16 * i), f64_at(21 + 16 * i)])
        .collect()
}

struct Store {
    root: PathBuf,
    zarr: Arc<FilesystemStore>,
}

impl Store {
    fn attrs(&self, node: &str) -> Value {
        let g = Group::open(Arc::clone(&self.zarr), node).unwrap();
        Value::Object(g.attributes().clone())
    }

    fn array<T: zarrs::array::ElementOwned>(&self, node: &str) -> (Vec<T>, Value) {
        let a = ZArray::open(Arc::clone(&self.zarr), node).unwrap();
        let v: Vec<T> = a.retrieve_array_subset(&a.subset_all()).unwrap();
        (v, Value::Object(a.attributes().clone()))
    }
}

#[test]
fn the_spatialdata_store_holds_the_transcripts_cells_and_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let sample = segger_predict::synthetic::write_dataset(&data, 6000, 12, 60.0, 1).unwrap();
    let model = model_dir(&tmp.path().join("model"), &sample.genes);
    let out = tmp.path().join("out");
    let mut cfg = PredictConfig::new(model, data, out.clone());
    cfg.accelerator = Accelerator::Cpu;
    cfg.min_transcripts = 3;
    let summary = predict(&cfg).unwrap();
    let root = out.join("segger_spatialdata.zarr");
    let log: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("segmentation_log.json")).unwrap())
            .unwrap();
    assert!(log["outputs"]
        .as_array()
        .unwrap()
        .contains(&json!("segger_spatialdata.zarr")));
    let store = Store {
        zarr: Arc::new(FilesystemStore::new(&root).unwrap()),
        root,
    };

    // Points: the rows of segger_transcripts.parquet, in its order, with dask's row index.
    let tx = rows(&out.join("segger_transcripts.parquet"));
    let points_parquet = store
        .root
        .join("points/transcripts/points.parquet/part.0.parquet");
    assert_eq!(rows(&points_parquet), tx);
    assert_eq!(tx.len(), summary.transcripts);
    let (pb, pandas) = batches(&points_parquet);
    let index: Vec<i64> = pb
        .iter()
        .flat_map(|b| {
            let c = b.column(b.schema().index_of("__null_dask_index__").unwrap());
            c.as_primitive::<Int64Type>().values().to_vec()
        })
        .collect();
    assert_eq!(index, (0..tx.len() as i64).collect::<Vec<_>>());
    let pandas: Value = serde_json::from_str(&pandas["pandas"]).unwrap();
    assert_eq!(pandas["index_columns"], json!(["__null_dask_index__"]));
    let points = store.attrs("/points/transcripts");
    assert_eq!(points["encoding-type"], "ngff:points");
    assert_eq!(points["axes"], json!(["x", "y", "z"]));
    assert_eq!(
        points["spatialdata_attrs"],
        json!({"feature_key": "feature_name", "instance_key": "segger_cell_id", "version": "0.2"})
    );
    identity_to_global(&points, 3);

    // Shapes: one polygon per cell holding transcripts, the geojson's ring, indexed by cell id.
    let mut per_cell: BTreeMap<&str, usize> = BTreeMap::new();
    for r in &tx {
        if let Some(c) = &r.cell {
            *per_cell.entry(c).or_default() += 1;
        }
    }
    let shapes_parquet = store.root.join("shapes/cells/shapes.parquet");
    let (sb, meta) = batches(&shapes_parquet);
    let mut shape_ids: Vec<String> = Vec::new();
    let mut rings: HashMap<String, Vec<[f64; 2]>> = HashMap::new();
    for b in &sb {
        let ids = b
            .column(b.schema().index_of("cell_id").unwrap())
            .as_string::<i32>();
        let geom = b
            .column(b.schema().index_of("geometry").unwrap())
            .as_binary::<i32>();
        for i in 0..b.num_rows() {
            let ring = wkb_ring(geom.value(i));
            assert!(
                ring.len() >= 4 && ring.first() == ring.last(),
                "a closed ring"
            );
            shape_ids.push(ids.value(i).to_string());
            rings.insert(ids.value(i).to_string(), ring);
        }
    }
    assert_eq!(shape_ids.len(), per_cell.len(), "one row per cell");
    assert_eq!(
        shape_ids.iter().map(String::as_str).collect::<HashSet<_>>(),
        per_cell.keys().copied().collect::<HashSet<_>>()
    );
    let gj: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("segger_cell_boundaries.geojson")).unwrap(),
    )
    .unwrap();
    for f in gj["features"].as_array().unwrap() {
        let ring: Vec<[f64; 2]> =
            serde_json::from_value(f["geometry"]["coordinates"][0].clone()).unwrap();
        assert_eq!(rings[f["id"].as_str().unwrap()], ring);
    }
    let geo: Value = serde_json::from_str(&meta["geo"]).unwrap();
    let col = &geo["columns"]["geometry"];
    assert_eq!(col["encoding"], "WKB");
    assert_eq!(col["geometry_types"], json!(["Polygon"]));
    assert!(col["crs"].is_null(), "no CRS: micrometres, not degrees");
    let pandas: Value = serde_json::from_str(&meta["pandas"]).unwrap();
    assert_eq!(pandas["index_columns"], json!(["cell_id"]));
    let shapes = store.attrs("/shapes/cells");
    assert_eq!(shapes["encoding-type"], "ngff:shapes");
    assert_eq!(shapes["spatialdata_attrs"], json!({"version": "0.3"}));
    identity_to_global(&shapes, 2);

    check_table(&store, &tx, &shape_ids, &sample.genes);
    assert_eq!(store.attrs("/")["spatialdata_attrs"]["version"], "0.2");
}

/// The element's transformation: the identity to `global`, over its axes, in micrometres.
fn identity_to_global(attrs: &Value, n_axes: usize) {
    let t = &attrs["coordinateTransformations"];
    assert_eq!(t.as_array().unwrap().len(), 1);
    assert_eq!(t[0]["type"], "identity");
    assert_eq!(t[0]["output"]["name"], "global");
    let axes = t[0]["output"]["axes"].as_array().unwrap();
    assert_eq!(axes.len(), n_axes);
    assert!(axes.iter().all(|a| a["unit"] == "micrometer"));
}

/// The table: AnnData attributes, obs indexed by the shapes' ids, counts of the assigned
/// transcripts per cell and gene, linked to the shapes through `uns/spatialdata_attrs`.
fn check_table(store: &Store, tx: &[Row], shape_ids: &[String], genes: &[String]) {
    let t = store.attrs("/tables/table");
    for (k, v) in [
        ("encoding-type", "anndata"),
        ("encoding-version", "0.1.0"),
        ("spatialdata-encoding-type", "ngff:regions_table"),
        ("region", "cells"),
        ("region_key", "region"),
        ("instance_key", "cell_id"),
        ("version", "0.2"),
    ] {
        assert_eq!(t[k], v, "{k}");
    }
    let obs = store.attrs("/tables/table/obs");
    assert_eq!(obs["encoding-type"], "dataframe");
    assert_eq!(obs["_index"], "_index");
    let (index, a) = store.array::<String>("/tables/table/obs/_index");
    assert_eq!(a["encoding-type"], "string-array");
    assert_eq!(index, shape_ids, "obs index = the shapes' ids, in order");
    assert_eq!(store.array::<String>("/tables/table/obs/cell_id").0, index);
    let region = store.attrs("/tables/table/obs/region");
    assert_eq!(region["encoding-type"], "categorical");
    let (cats, _) = store.array::<String>("/tables/table/obs/region/categories");
    assert_eq!(cats, ["cells"]);
    let (codes, _) = store.array::<i8>("/tables/table/obs/region/codes");
    assert!(codes.len() == index.len() && codes.iter().all(|&c| c == 0));
    for key in ["region", "region_key", "instance_key"] {
        let node = format!("/tables/table/uns/spatialdata_attrs/{key}");
        let (v, a) = store.array::<String>(&node);
        assert_eq!(a["encoding-type"], "string");
        assert_eq!(v, [t[key].as_str().unwrap()]);
    }
    assert_eq!(store.array::<String>("/tables/table/var/_index").0, genes);

    let x = store.attrs("/tables/table/X");
    assert_eq!(x["encoding-type"], "csr_matrix");
    assert_eq!(x["shape"], json!([index.len(), genes.len()]));
    let (data, _) = store.array::<f32>("/tables/table/X/data");
    let (indices, _) = store.array::<i32>("/tables/table/X/indices");
    let (indptr, _) = store.array::<i64>("/tables/table/X/indptr");
    assert_eq!(indptr.len(), index.len() + 1);
    let mut table: HashMap<(String, String), f32> = HashMap::new();
    for (c, id) in index.iter().enumerate() {
        for k in indptr[c] as usize..indptr[c + 1] as usize {
            table.insert((id.clone(), genes[indices[k] as usize].clone()), data[k]);
        }
    }
    let mut counted: HashMap<(String, String), f32> = HashMap::new();
    for r in tx {
        if let (Some(c), Some(g)) = (&r.cell, &r.gene) {
            *counted.entry((c.clone(), g.clone())).or_default() += 1.0;
        }
    }
    assert_eq!(table, counted, "counts per cell and gene");
    let assigned = tx.iter().filter(|r| r.cell.is_some()).count();
    assert_eq!(data.iter().sum::<f32>() as usize, assigned);
}
