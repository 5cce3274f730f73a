//! From the collected per-transcript results to the files users load.
//!
//! | file | content |
//! |---|---|
//! | `segger_transcripts.parquet` | `transcript_id`, `x`, `y`, `z`, `feature_name`, `segger_cell_id`, `score`, `assigned` |
//! | `segger_cells.parquet` | `cell_id`, `x`, `y`, `transcript_count`, `area`, `source` |
//! | `segger_adata.h5ad` | AnnData: cells × genes CSR counts, obs = cells (+ centroids), var = genes |
//! | `segger_cell_boundaries.geojson` | a convex-hull polygon per cell (FeatureCollection) |
//! | `segger_baysor_segmentation.csv` + `segger_baysor_polygons.json` | Baysor-style assignments and polygons for `xeniumranger import-segmentation` |
//! | `segger_spatialdata.zarr/` | SpatialData store: points `transcripts`, shapes `cells`, table `table` ([`crate::spatialdata`]) |
//! | `segmentation_log.json` | settings, counts, timings |

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{BooleanBuilder, Float32Builder, StringBuilder};
use arrow_array::{ArrayRef, Float32Array, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use rayon::prelude::*;
use serde::Serialize;

use crate::geometry::{cell_polygon, polygon_area};
use crate::input::ResolvedInput;
use crate::model_dir::ModelDir;
use crate::state::{CellKind, CellTable, Collected, TxRecord, UnionFind, NO_CELL, NO_GENE};
use crate::{
    CellTypes, DuplicateIds, PredictConfig, PredictError, PredictSummary, Quartiles, Timings,
};

/// Name of the transcript table.
pub const TRANSCRIPTS_FILE: &str = "segger_transcripts.parquet";
/// Name of the cell table.
pub const CELLS_FILE: &str = "segger_cells.parquet";
/// Name of the AnnData file.
pub const ADATA_FILE: &str = "segger_adata.h5ad";
/// Name of the cell polygons.
pub const BOUNDARIES_FILE: &str = "segger_cell_boundaries.geojson";
/// Name of the Baysor-style transcript assignments.
pub const BAYSOR_CSV_FILE: &str = "segger_baysor_segmentation.csv";
/// Name of the Baysor-style polygons.
pub const BAYSOR_POLYGONS_FILE: &str = "segger_baysor_polygons.json";
/// Name of the SpatialData store (a folder).
pub const SPATIALDATA_FILE: &str = "segger_spatialdata.zarr";
/// Name of the log.
pub const LOG_FILE: &str = "segmentation_log.json";

/// Padding (µm) of the box drawn for a cell whose transcripts have no hull with an area.
const DEGENERATE_PAD: f64 = 0.5;

/// One cell's aggregates.
#[derive(Debug, Clone)]
pub struct CellAgg {
    /// Centroid x (mean of its transcripts).
    pub x: f64,
    /// Centroid y.
    pub y: f64,
    /// Transcripts.
    pub count: u32,
    /// Area of the convex hull of its transcripts (0 for fewer than 3 non-collinear points).
    pub area: f64,
    /// Closed polygon ring drawn for the cell.
    pub ring: Vec<[f64; 2]>,
    /// `(gene, count)` sorted by gene.
    pub genes: Vec<(u32, u32)>,
}

/// The final segmentation: unique transcripts sorted by id, cells with at least one
/// transcript.
#[derive(Debug)]
pub struct Resolved {
    /// Records sorted by transcript id, each id once; `cell` indexes `cell_ids`.
    pub records: Vec<TxRecord>,
    /// Cell ids.
    pub cell_ids: Vec<String>,
    /// Cell kinds.
    pub cell_kinds: Vec<CellKind>,
    /// Cell aggregates.
    pub aggs: Vec<CellAgg>,
    /// Duplicate decisions removed (one transcript decided by more than one tile).
    pub duplicates: usize,
    /// Transcripts merged into another with the same id ([`DuplicateIds::Merge`]).
    pub merged: usize,
    /// Components below `min_transcripts`.
    pub components_dropped: usize,
    /// Unassigned transcripts that joined no new cell and went to a boundary the reach or the
    /// lone reach had kept from them ([`PredictConfig::return_reach`]).
    pub returned: usize,
    /// What the cell-type stage did (`cell_types` not off).
    pub cell_types: Option<crate::cell_types::TypeStats>,
    /// Tiles predicted.
    pub tiles: usize,
}

/// A prefix no boundary id starts with, so `prefix + number` cannot collide with one.
fn component_prefix(boundary_ids: &HashSet<String>) -> String {
    let mut prefix = "segger-cc-".to_string();
    while boundary_ids.iter().any(|b| b.starts_with(&prefix)) {
        prefix.insert(0, 'x');
    }
    prefix
}

/// Whether two records with one id are the same transcript (seen by two tiles): same position
/// and gene.
fn same_transcript(a: &TxRecord, b: &TxRecord) -> bool {
    let same = |p: f32, q: f32| p == q || (p.is_nan() && q.is_nan());
    same(a.x, b.x) && same(a.y, b.y) && same(a.z, b.z) && a.gene == b.gene
}

/// The ids that name more than one transcript (different positions or genes) in `records`,
/// sorted by id: how many such ids, how many records differ from their id's first, and the
/// first such id with two of its records.
fn shared_ids(records: &[TxRecord]) -> (usize, usize, Option<(TxRecord, TxRecord)>) {
    let (mut ids, mut others) = (0, 0);
    let mut first = None;
    for group in records.chunk_by(|a, b| a.id == b.id) {
        let mut differ = group[1..].iter().filter(|r| !same_transcript(&group[0], r));
        if let Some(other) = differ.next() {
            ids += 1;
            others += 1 + differ.count();
            first.get_or_insert((group[0], *other));
        }
    }
    (ids, others, first)
}

/// De-duplicates (higher score wins), groups unassigned transcripts into components
/// (`use_cc`), drops empty cells and computes every cell's aggregates.
///
/// A transcript that two tiles decided (tiles without core bounds overlap) is kept once, with
/// its higher score. An id shared by different transcripts (another position or gene) is an
/// error unless `cfg.duplicate_ids` is [`DuplicateIds::Merge`], which keeps the record with the
/// higher score and counts the others in [`Resolved::merged`].
pub fn resolve(col: Collected, cfg: &PredictConfig) -> Result<Resolved, PredictError> {
    let Collected {
        mut records,
        mut cells,
        links,
        mut near,
        mut below,
        mut fallback,
        boundary_ids,
        tiles,
        ..
    } = col;
    let key = |r: &TxRecord| if r.score.is_nan() { -1.0 } else { r.score };
    records.par_sort_unstable_by(|a, b| a.id.cmp(&b.id).then(key(b).total_cmp(&key(a))));
    let (shared, merged, example) = shared_ids(&records);
    if shared > 0 && cfg.duplicate_ids == DuplicateIds::Error {
        let (a, b) = example.expect("one example per shared id");
        return Err(PredictError::Input(format!(
            "--input: {shared} transcript ids name more than one transcript across the tiles, e.g. id {} at ({}, {}) gene {} and at ({}, {}) gene {}; the tiles come from different samples or were not made by one dataset creation (pass --duplicate_ids merge to keep one transcript per id, the higher score)",
            a.id, a.x, a.y, a.gene, b.x, b.y, b.gene
        )));
    }
    if merged > 0 {
        tracing::warn!(
            "--duplicate_ids merge: {merged} transcripts share their id with another and were merged into it ({shared} ids)"
        );
    }
    let before = records.len();
    records.dedup_by_key(|r| r.id);
    let duplicates = before - records.len() - merged;
    if duplicates > 0 {
        tracing::warn!(
            "{duplicates} transcripts were decided by more than one tile (no core bounds, or overlapping cores): the higher score was kept"
        );
    }

    let k = match cfg.cell_types {
        CellTypes::Off => None,
        CellTypes::Auto => Some(None),
        CellTypes::Fixed(k) => Some(Some(k)),
    };
    let cell_types = k.map(|k| {
        let prefix = component_prefix(&boundary_ids);
        let mut next = 0usize;
        near.par_sort_unstable();
        near.dedup();
        below.par_sort_unstable();
        below.dedup_by_key(|b| b.0);
        let join = crate::cell_types::Join {
            below: &below,
            neighbours: cfg.join_neighbours,
        };
        crate::cell_types::apply(
            &mut records,
            &mut cells,
            &near,
            crate::cell_types::Stage {
                join,
                k,
                make_cells: cfg.use_cc,
                border_rounds: cfg.border_rounds,
            },
            || {
                next += 1;
                format!("{prefix}{next}")
            },
        )
    });
    let typed = cell_types.as_ref().is_some_and(|t| t.applied());
    let components_dropped = if !typed && cfg.use_cc && !links.is_empty() {
        join_components(
            &mut records,
            &links,
            &mut cells,
            &boundary_ids,
            cfg.min_transcripts,
        )
    } else {
        0
    };
    let returned = return_unassigned(&mut records, &mut fallback);
    let (cell_ids, cell_kinds) = keep_used_cells(&mut records, cells);
    let aggs = aggregate_cells(&records, cell_ids.len());
    Ok(Resolved {
        records,
        cell_ids,
        cell_kinds,
        aggs,
        duplicates,
        merged,
        components_dropped,
        returned,
        cell_types,
        tiles,
    })
}

/// Gives each still unassigned transcript of `records` (sorted by id) its fallback boundary
/// (`fallback`: `(id, cell)`, the best candidate within the return reach; for an id decided
/// by two tiles, the first after sorting). Returns how many went back.
fn return_unassigned(records: &mut [TxRecord], fallback: &mut Vec<(i64, u32)>) -> usize {
    fallback.par_sort_unstable();
    fallback.dedup_by_key(|f| f.0);
    let mut returned = 0;
    for &(id, cell) in fallback.iter() {
        if let Ok(at) = records.binary_search_by_key(&id, |r| r.id) {
            if records[at].cell == NO_CELL {
                records[at].cell = cell;
                returned += 1;
            }
        }
    }
    returned
}

/// Joins the unassigned transcripts of `records` (sorted by id) along `links` into connected
/// components; components of at least `min_transcripts` become cells of `cells` (named after
/// the boundaries' id style, [`component_prefix`]). Returns how many were dropped as too small.
fn join_components(
    records: &mut [TxRecord],
    links: &[(i64, i64)],
    cells: &mut CellTable,
    boundary_ids: &HashSet<String>,
    min_transcripts: usize,
) -> usize {
    let n = records.len();
    let find = |id: i64| records.binary_search_by_key(&id, |r| r.id).ok();
    let mut uf = UnionFind::new(n);
    let mut linked = vec![false; n];
    for &(a, b) in links {
        if let (Some(ia), Some(ib)) = (find(a), find(b)) {
            if records[ia].cell == NO_CELL && records[ib].cell == NO_CELL {
                uf.union(ia as u32, ib as u32);
                linked[ia] = true;
                linked[ib] = true;
            }
        }
    }
    let prefix = component_prefix(boundary_ids);
    let mut comp: HashMap<u32, u32> = HashMap::new();
    let mut dropped: HashSet<u32> = HashSet::new();
    let mut next = 0usize;
    for i in 0..n {
        if !linked[i] {
            continue;
        }
        let r = uf.find(i as u32);
        if (uf.set_size(r) as usize) < min_transcripts {
            dropped.insert(r);
            continue;
        }
        let c = *comp.entry(r).or_insert_with(|| {
            next += 1;
            cells.push_component(format!("{prefix}{next}"))
        });
        records[i].cell = c;
    }
    dropped.len()
}

/// Keeps the cells of `cells` that hold transcripts, in the table's order, and renumbers the
/// records' cells to match: the kept cells' ids and kinds.
fn keep_used_cells(records: &mut [TxRecord], mut cells: CellTable) -> (Vec<String>, Vec<CellKind>) {
    let mut counts = vec![0u32; cells.len()];
    for r in records.iter() {
        if r.cell != NO_CELL {
            counts[r.cell as usize] += 1;
        }
    }
    let mut remap = vec![NO_CELL; cells.len()];
    let mut cell_ids = Vec::new();
    let mut cell_kinds = Vec::new();
    for (i, &c) in counts.iter().enumerate() {
        if c > 0 {
            remap[i] = cell_ids.len() as u32;
            cell_ids.push(std::mem::take(&mut cells.ids[i]));
            cell_kinds.push(cells.kinds[i]);
        }
    }
    for r in records.iter_mut() {
        if r.cell != NO_CELL {
            r.cell = remap[r.cell as usize];
        }
    }

    (cell_ids, cell_kinds)
}

/// Every cell's aggregates (centroid, count, hull area, polygon, gene counts), from the
/// records' cells `0..nc`: transcripts grouped by cell (counting sort), each cell in parallel.
fn aggregate_cells(records: &[TxRecord], nc: usize) -> Vec<CellAgg> {
    let mut offsets = vec![0usize; nc + 1];
    for r in records.iter() {
        if r.cell != NO_CELL {
            offsets[r.cell as usize + 1] += 1;
        }
    }
    for i in 0..nc {
        offsets[i + 1] += offsets[i];
    }
    let mut fill = offsets.clone();
    let mut order = vec![0u32; offsets[nc]];
    for (i, r) in records.iter().enumerate() {
        if r.cell != NO_CELL {
            let c = r.cell as usize;
            order[fill[c]] = i as u32;
            fill[c] += 1;
        }
    }
    (0..nc)
        .into_par_iter()
        .map(|c| {
            let members = &order[offsets[c]..offsets[c + 1]];
            let pts: Vec<[f64; 2]> = members
                .iter()
                .map(|&i| {
                    let r = &records[i as usize];
                    [r.x as f64, r.y as f64]
                })
                .collect();
            let n = pts.len() as f64;
            let x = pts.iter().map(|p| p[0]).sum::<f64>() / n;
            let y = pts.iter().map(|p| p[1]).sum::<f64>() / n;
            let hull = crate::geometry::convex_hull(&pts);
            let area = polygon_area(&hull);
            let ring = cell_polygon(&pts, DEGENERATE_PAD);
            let mut g: Vec<u32> = members
                .iter()
                .map(|&i| records[i as usize].gene)
                .filter(|&g| g != NO_GENE)
                .collect();
            g.sort_unstable();
            let mut genes: Vec<(u32, u32)> = Vec::new();
            for v in g {
                match genes.last_mut() {
                    Some((gg, k)) if *gg == v => *k += 1,
                    _ => genes.push((v, 1)),
                }
            }
            CellAgg {
                x,
                y,
                count: members.len() as u32,
                area,
                ring,
                genes,
            }
        })
        .collect()
}

pub(crate) fn rt(path: &Path, e: impl std::fmt::Display) -> PredictError {
    PredictError::Runtime(format!("{}: {e}", path.display()))
}

/// Writes every output file into `dir` and returns the counts (timings are filled in by the
/// caller).
pub fn write_all(
    dir: &Path,
    res: &Resolved,
    genes: &[String],
    cfg: &PredictConfig,
    input: &ResolvedInput,
    backend: &str,
) -> Result<PredictSummary, PredictError> {
    let jobs: Vec<Box<dyn Fn() -> Result<(), PredictError> + Sync + Send + '_>> = vec![
        Box::new(|| write_transcripts(&dir.join(TRANSCRIPTS_FILE), res, genes)),
        Box::new(|| write_cells(&dir.join(CELLS_FILE), res)),
        Box::new(|| crate::h5ad::write_h5ad(&dir.join(ADATA_FILE), res, genes)),
        Box::new(|| write_geojson(&dir.join(BOUNDARIES_FILE), res)),
        Box::new(|| {
            write_baysor(
                &dir.join(BAYSOR_CSV_FILE),
                &dir.join(BAYSOR_POLYGONS_FILE),
                res,
                genes,
            )
        }),
        Box::new(|| {
            crate::spatialdata::write_spatialdata(&dir.join(SPATIALDATA_FILE), res, genes)
                .map_err(PredictError::from)
        }),
    ];
    jobs.par_iter()
        .map(|j| j())
        .collect::<Result<Vec<()>, _>>()?;

    let n = res.records.len();
    let mut by_boundary = 0;
    let mut by_component = 0;
    for r in &res.records {
        if r.cell != NO_CELL {
            match res.cell_kinds[r.cell as usize] {
                CellKind::Boundary => by_boundary += 1,
                CellKind::Component => by_component += 1,
            }
        }
    }
    let mut per_cell: Vec<u32> = res.aggs.iter().map(|a| a.count).collect();
    per_cell.sort_unstable();
    let component_cells = res
        .cell_kinds
        .iter()
        .filter(|k| **k == CellKind::Component)
        .count();
    Ok(PredictSummary {
        output: dir.to_path_buf(),
        backend: backend.to_string(),
        input_kind: input.kind.clone(),
        tiles: res.tiles,
        transcripts: n,
        assigned_to_boundary: by_boundary,
        assigned_to_component: by_component,
        unassigned: n - by_boundary - by_component,
        assigned_percent: 100.0 * (by_boundary + by_component) as f64 / n.max(1) as f64,
        cells: res.cell_ids.len(),
        boundary_cells: res.cell_ids.len() - component_cells,
        component_cells,
        components_dropped: res.components_dropped,
        returned_within_reach: res.returned,
        cell_types: res.cell_types.clone(),
        transcripts_per_cell: Quartiles::of_sorted(&per_cell),
        duplicates_resolved: res.duplicates,
        ids_merged: res.merged,
        transcripts_per_second: 0.0,
        timings: Timings::default(),
        score_cut: cfg.cut(),
        score_cut_source: String::new(),
    })
}

const ROWS_PER_BATCH: usize = 1 << 16;

fn parquet_writer(path: &Path, schema: Arc<Schema>) -> Result<ArrowWriter<File>, PredictError> {
    let file = File::create(path).map_err(|e| rt(path, e))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    ArrowWriter::try_new(file, schema, Some(props)).map_err(|e| rt(path, e))
}

/// `segger_transcripts.parquet`, sorted by transcript id.
fn write_transcripts(path: &Path, res: &Resolved, genes: &[String]) -> Result<(), PredictError> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("transcript_id", DataType::Int64, false),
        Field::new("x", DataType::Float32, false),
        Field::new("y", DataType::Float32, false),
        Field::new("z", DataType::Float32, true),
        Field::new("feature_name", DataType::Utf8, true),
        Field::new("segger_cell_id", DataType::Utf8, true),
        Field::new("score", DataType::Float32, true),
        Field::new("assigned", DataType::Boolean, false),
    ]));
    let mut w = parquet_writer(path, Arc::clone(&schema))?;
    for chunk in res.records.chunks(ROWS_PER_BATCH) {
        let ids = Int64Array::from_iter_values(chunk.iter().map(|r| r.id));
        let xs = Float32Array::from_iter_values(chunk.iter().map(|r| r.x));
        let ys = Float32Array::from_iter_values(chunk.iter().map(|r| r.y));
        let mut zs = Float32Builder::with_capacity(chunk.len());
        let mut feat = StringBuilder::with_capacity(chunk.len(), chunk.len() * 8);
        for r in chunk {
            zs.append_option((!r.z.is_nan()).then_some(r.z));
            feat.append_option(genes.get(r.gene as usize));
        }
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(ids),
            Arc::new(xs),
            Arc::new(ys),
            Arc::new(zs.finish()),
            Arc::new(feat.finish()),
        ];
        cols.extend(assignment_columns(chunk, res));
        let batch = RecordBatch::try_new(Arc::clone(&schema), cols).map_err(|e| rt(path, e))?;
        w.write(&batch).map_err(|e| rt(path, e))?;
    }
    w.close().map_err(|e| rt(path, e))?;
    Ok(())
}

/// The assignment of each record as the three columns every transcript table carries:
/// `segger_cell_id` (null when unassigned), `score` (null when not scored) and `assigned`
/// (true when the cell is a boundary, false for a new cell or none).
pub(crate) fn assignment_columns(chunk: &[TxRecord], res: &Resolved) -> [ArrayRef; 3] {
    let mut cell = StringBuilder::with_capacity(chunk.len(), chunk.len() * 12);
    let mut score = Float32Builder::with_capacity(chunk.len());
    let mut assigned = BooleanBuilder::with_capacity(chunk.len());
    for r in chunk {
        score.append_option((!r.score.is_nan()).then_some(r.score));
        if r.cell == NO_CELL {
            cell.append_null();
            assigned.append_value(false);
        } else {
            cell.append_value(&res.cell_ids[r.cell as usize]);
            assigned.append_value(res.cell_kinds[r.cell as usize] == CellKind::Boundary);
        }
    }
    [
        Arc::new(cell.finish()),
        Arc::new(score.finish()),
        Arc::new(assigned.finish()),
    ]
}

fn kind_name(k: CellKind) -> &'static str {
    match k {
        CellKind::Boundary => "boundary",
        CellKind::Component => "component",
    }
}

/// `segger_cells.parquet`: one row per cell.
fn write_cells(path: &Path, res: &Resolved) -> Result<(), PredictError> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("cell_id", DataType::Utf8, false),
        Field::new("x", DataType::Float64, false),
        Field::new("y", DataType::Float64, false),
        Field::new("transcript_count", DataType::Int64, false),
        Field::new("area", DataType::Float64, false),
        Field::new("source", DataType::Utf8, false),
    ]));
    let mut w = parquet_writer(path, Arc::clone(&schema))?;
    let cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(res.cell_ids.iter())),
        Arc::new(Float64Array::from_iter_values(res.aggs.iter().map(|a| a.x))),
        Arc::new(Float64Array::from_iter_values(res.aggs.iter().map(|a| a.y))),
        Arc::new(Int64Array::from_iter_values(
            res.aggs.iter().map(|a| a.count as i64),
        )),
        Arc::new(Float64Array::from_iter_values(
            res.aggs.iter().map(|a| a.area),
        )),
        Arc::new(StringArray::from_iter_values(
            res.cell_kinds.iter().map(|k| kind_name(*k)),
        )),
    ];
    let batch = RecordBatch::try_new(Arc::clone(&schema), cols).map_err(|e| rt(path, e))?;
    w.write(&batch).map_err(|e| rt(path, e))?;
    w.close().map_err(|e| rt(path, e))?;
    Ok(())
}

/// A JSON string literal.
fn js(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialise")
}

fn ring_json(ring: &[[f64; 2]]) -> String {
    let mut out = String::with_capacity(ring.len() * 24);
    out.push('[');
    for (i, p) in ring.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!("[{},{}]", p[0], p[1]));
    }
    out.push(']');
    out
}

/// `segger_cell_boundaries.geojson`: a FeatureCollection with one Polygon per cell.
fn write_geojson(path: &Path, res: &Resolved) -> Result<(), PredictError> {
    let f = File::create(path).map_err(|e| rt(path, e))?;
    let mut w = BufWriter::new(f);
    let io = |e: std::io::Error| rt(path, e);
    w.write_all(b"{\"type\":\"FeatureCollection\",\"features\":[")
        .map_err(io)?;
    for (c, a) in res.aggs.iter().enumerate() {
        if c > 0 {
            w.write_all(b",\n").map_err(io)?;
        }
        let id = js(&res.cell_ids[c]);
        write!(
            w,
            "{{\"type\":\"Feature\",\"id\":{id},\"geometry\":{{\"type\":\"Polygon\",\"coordinates\":[{}]}},\"properties\":{{\"cell_id\":{id},\"objectType\":\"cell\",\"transcript_count\":{},\"area\":{},\"source\":\"{}\"}}}}",
            ring_json(&a.ring),
            a.count,
            a.area,
            kind_name(res.cell_kinds[c])
        )
        .map_err(io)?;
    }
    w.write_all(b"]}\n").map_err(io)?;
    w.flush().map_err(io)
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn csv_field(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\"")).into()
    } else {
        s.into()
    }
}

/// Baysor's `segmentation.csv` layout (`transcript_id, cell, is_noise, x, y, z, gene,
/// assignment_confidence`) and its polygon GeometryCollection, for `xeniumranger
/// import-segmentation --transcript-assignment ... --viz-polygons ...`.
fn write_baysor(
    csv: &Path,
    polygons: &Path,
    res: &Resolved,
    genes: &[String],
) -> Result<(), PredictError> {
    let f = File::create(csv).map_err(|e| rt(csv, e))?;
    let mut w = BufWriter::with_capacity(1 << 20, f);
    let io = |e: std::io::Error| rt(csv, e);
    w.write_all(b"transcript_id,cell,is_noise,x,y,z,gene,assignment_confidence\n")
        .map_err(io)?;
    for r in &res.records {
        let (cell, noise) = if r.cell == NO_CELL {
            ("", "true")
        } else {
            (res.cell_ids[r.cell as usize].as_str(), "false")
        };
        let gene = genes.get(r.gene as usize).map_or("", String::as_str);
        let z = if r.z.is_nan() { 0.0 } else { r.z };
        let conf = if r.score.is_nan() { 0.0 } else { r.score };
        writeln!(
            w,
            "{},{},{},{},{},{},{},{}",
            r.id,
            csv_field(cell),
            noise,
            r.x,
            r.y,
            z,
            csv_field(gene),
            conf
        )
        .map_err(io)?;
    }
    w.flush().map_err(io)?;

    let f = File::create(polygons).map_err(|e| rt(polygons, e))?;
    let mut w = BufWriter::new(f);
    let io = |e: std::io::Error| rt(polygons, e);
    w.write_all(b"{\"type\":\"GeometryCollection\",\"geometries\":[")
        .map_err(io)?;
    for (c, a) in res.aggs.iter().enumerate() {
        if c > 0 {
            w.write_all(b",\n").map_err(io)?;
        }
        write!(
            w,
            "{{\"type\":\"Polygon\",\"coordinates\":[{}],\"cell\":{}}}",
            ring_json(&a.ring),
            js(&res.cell_ids[c])
        )
        .map_err(io)?;
    }
    w.write_all(b"]}\n").map_err(io)?;
    w.flush().map_err(io)
}

#[derive(Serialize)]
struct Log<'a> {
    format: &'static str,
    settings: &'a PredictConfig,
    model: serde_json::Value,
    input: serde_json::Value,
    backend: &'a str,
    counts: serde_json::Value,
    timings: &'a Timings,
    transcripts_per_second: f64,
    outputs: Vec<&'static str>,
}

/// `segmentation_log.json`: the settings, the counts and the timings.
pub fn write_log(
    dir: &Path,
    cfg: &PredictConfig,
    model: &ModelDir,
    input: &ResolvedInput,
    s: &PredictSummary,
) -> Result<(), PredictError> {
    let log = Log {
        format: "segger-segmentation-log/1",
        settings: cfg,
        model: serde_json::json!({
            "dir": model.dir,
            "config": model.config,
            "vocabulary": model.vocab_source,
        }),
        input: serde_json::json!({
            "kind": input.kind,
            "splits": input.splits,
            "dataset_settings": input.settings,
        }),
        backend: &s.backend,
        counts: serde_json::json!({
            "tiles": s.tiles,
            "transcripts": s.transcripts,
            "assigned_to_boundary": s.assigned_to_boundary,
            "assigned_to_component": s.assigned_to_component,
            "unassigned": s.unassigned,
            "assigned_percent": s.assigned_percent,
            "cells": s.cells,
            "boundary_cells": s.boundary_cells,
            "component_cells": s.component_cells,
            "components_dropped": s.components_dropped,
            "returned_within_reach": s.returned_within_reach,
            "cell_types": s.cell_types,
            "transcripts_per_cell": s.transcripts_per_cell,
            "duplicates_resolved": s.duplicates_resolved,
            "ids_merged": s.ids_merged,
        }),
        timings: &s.timings,
        transcripts_per_second: s.transcripts_per_second,
        outputs: vec![
            TRANSCRIPTS_FILE,
            CELLS_FILE,
            ADATA_FILE,
            BOUNDARIES_FILE,
            BAYSOR_CSV_FILE,
            BAYSOR_POLYGONS_FILE,
            SPATIALDATA_FILE,
        ],
    };
    let path = dir.join(LOG_FILE);
    let text = serde_json::to_string_pretty(&log)
        .map_err(|e| PredictError::Runtime(format!("{}: {e}", path.display())))?;
    std::fs::write(&path, text).map_err(|source| PredictError::Io { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn rec(id: i64, x: f32, cell: u32, score: f32) -> TxRecord {
        TxRecord {
            id,
            x,
            y: 0.5 * x,
            z: f32::NAN,
            gene: (id % 3) as u32,
            cell,
            score,
        }
    }

    fn cfg(use_cc: bool, min: usize) -> PredictConfig {
        let mut c = PredictConfig::new(PathBuf::new(), PathBuf::new(), PathBuf::new());
        c.use_cc = use_cc;
        c.min_transcripts = min;
        c
    }

    #[test]
    fn duplicates_keep_the_higher_score_and_empty_cells_disappear() {
        let mut col = Collected::default();
        let a = col.cells.intern("A");
        let b = col.cells.intern("B");
        col.records = vec![
            rec(5, 1.0, a, 0.6),
            rec(3, 2.0, NO_CELL, f32::NAN),
            rec(5, 1.0, b, 0.9),
            rec(7, 3.0, NO_CELL, 0.2),
            rec(3, 2.0, NO_CELL, 0.1),
        ];
        let r = resolve(col, &cfg(false, 5)).unwrap();
        assert_eq!(r.duplicates, 2);
        let ids: Vec<i64> = r.records.iter().map(|r| r.id).collect();
        assert_eq!(ids, [3, 5, 7]);
        assert_eq!(r.records[0].score, 0.1, "a score beats no score");
        assert_eq!(r.cell_ids, ["B"], "A lost its only transcript");
        assert_eq!(r.records[1].cell, 0);
        assert_eq!(r.aggs[0].count, 1);
    }

    #[test]
    fn an_id_shared_by_two_transcripts_is_an_error_unless_merged() {
        let records = || {
            vec![
                rec(5, 1.0, NO_CELL, 0.6),
                rec(5, 1.0, NO_CELL, 0.7), // the same transcript, seen by another tile
                rec(6, 2.0, NO_CELL, 0.2),
                rec(6, 4.0, NO_CELL, 0.3), // another transcript with id 6
                rec(7, 3.0, NO_CELL, 0.2),
            ]
        };
        let col = Collected {
            records: records(),
            ..Default::default()
        };
        let err = resolve(col, &cfg(false, 5)).unwrap_err().to_string();
        assert!(
            err.contains("1 transcript ids")
                && err.contains("id 6")
                && err.contains("--duplicate_ids"),
            "{err}"
        );
        let col = Collected {
            records: records(),
            ..Default::default()
        };
        let mut c = cfg(false, 5);
        c.duplicate_ids = DuplicateIds::Merge;
        let r = resolve(col, &c).unwrap();
        assert_eq!((r.duplicates, r.merged), (1, 1));
        let kept: Vec<(i64, f32)> = r.records.iter().map(|r| (r.id, r.x)).collect();
        assert_eq!(
            kept,
            [(5, 1.0), (6, 4.0), (7, 3.0)],
            "the higher score is kept"
        );
    }

    #[test]
    fn transcripts_that_join_no_new_cell_return_to_their_fallback_boundary() {
        let mut col = Collected::default();
        let a = col.cells.intern("nucleus-a");
        let b = col.cells.intern("nucleus-b");
        col.boundary_ids
            .extend(["nucleus-a".into(), "nucleus-b".into()]);
        col.records = (0..10)
            .map(|i| rec(i, i as f32, if i == 9 { b } else { NO_CELL }, 0.1))
            .collect();
        // 0-1-2 form a new cell; 4 and 5 join none; 9 is assigned already.
        col.links = vec![(0, 1), (2, 1)];
        col.fallback = vec![(4, a), (0, a), (9, a), (42, a), (5, b)];
        let r = resolve(col, &cfg(true, 3)).unwrap();
        let cell_of = |id: usize| {
            let c = r.records[id].cell;
            (c != NO_CELL).then(|| r.cell_ids[c as usize].clone())
        };
        assert_eq!(r.returned, 2);
        assert_eq!(cell_of(4).as_deref(), Some("nucleus-a"));
        assert_eq!(cell_of(5).as_deref(), Some("nucleus-b"));
        assert_eq!(cell_of(9).as_deref(), Some("nucleus-b"), "assigned: kept");
        let c0 = cell_of(0).unwrap();
        assert!(c0.contains("segger-cc-"), "the new cell keeps it: {c0}");
        assert_eq!(cell_of(3), None, "no fallback: unassigned");
        let a_at = r.cell_ids.iter().position(|c| c == "nucleus-a").unwrap();
        assert_eq!(r.aggs[a_at].count, 1);
    }

    #[test]
    fn components_join_linked_unassigned_transcripts_with_fresh_ids() {
        let mut col = Collected::default();
        let a = col.cells.intern("segger-cc-1");
        col.boundary_ids.insert("segger-cc-1".into());
        col.records = (0..10)
            .map(|i| rec(i, i as f32, if i == 9 { a } else { NO_CELL }, 0.1))
            .collect();
        // 0-1-2 (size 3), 4-5 (size 2), 8-9 where 9 is assigned (no link), 6 and 7 alone.
        col.links = vec![(0, 1), (2, 1), (4, 5), (8, 9), (42, 0)];
        let r = resolve(col, &cfg(true, 3)).unwrap();
        let cell_of = |id: usize| {
            let c = r.records[id].cell;
            (c != NO_CELL).then(|| r.cell_ids[c as usize].clone())
        };
        let c0 = cell_of(0).unwrap();
        assert_eq!(cell_of(1).as_ref(), Some(&c0));
        assert_eq!(cell_of(2).as_ref(), Some(&c0));
        assert!(
            c0.starts_with("xsegger-cc-"),
            "{c0} must not collide with input ids"
        );
        assert_eq!(
            cell_of(4),
            None,
            "a component of 2 is below min_transcripts"
        );
        assert_eq!(cell_of(8), None);
        assert_eq!(cell_of(9).as_deref(), Some("segger-cc-1"));
        assert_eq!(r.components_dropped, 1);
        assert_eq!(
            r.cell_kinds
                .iter()
                .filter(|k| **k == CellKind::Component)
                .count(),
            1
        );
        let comp = r.cell_ids.iter().position(|c| *c == c0).unwrap();
        assert_eq!(r.aggs[comp].count, 3);
        assert_eq!(r.aggs[comp].genes, [(0, 1), (1, 1), (2, 1)]);
    }
}
