//! The transcript pass: reading the transcript file block by block into [`Chunk`]s (typed
//! columns, control-probe and quality filters, cell ids matched against the boundaries),
//! merging them in file order into the sample's [`Transcripts`] with a sorted gene vocabulary,
//! and applying an optional gene embedding table.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use arrow_array::RecordBatch;
use rayon::prelude::*;

use super::boundaries::boundary_index;
use super::columns::{self, col_err, Interner};
use super::files::{file_columns, is_parquet};
use super::tx_columns::{resolve_tx_columns, Defaults, TxColumns};
use super::{
    csv_src, parquet_src, Boundaries, GeneEmbedding, LoadReport, RawOptions, Transcripts, NO_CELL,
};
use crate::error::DataError;

/// Values of the cell-id column that mean "no cell" and are not counted as unmatched.
fn is_unassigned_marker(s: &str) -> bool {
    matches!(
        s,
        "" | "UNASSIGNED" | "-1" | "0" | "nan" | "NaN" | "None" | "null"
    ) || s.ends_with("_0")
}

/// Shared, read-only state of the transcript pass.
pub(crate) struct TxContext<'a> {
    pub file: &'a Path,
    pub cols: &'a TxColumns,
    pub bd_index: &'a HashMap<String, u32>,
    pub prefixes: &'a [String],
    pub min_qv: Option<f32>,
    pub scale: f64,
}

/// Transcripts of one block of rows (a parquet row group or a CSV block), with genes
/// numbered locally.
#[derive(Debug, Default)]
pub(crate) struct Chunk {
    x: Vec<f32>,
    y: Vec<f32>,
    z: Vec<f32>,
    gene: Vec<u32>,
    id: Vec<i64>,
    cell: Vec<u32>,
    nuclear: Vec<bool>,
    genes: Interner,
    rows: u64,
    dropped_prefix: Vec<u64>,
    dropped_qv: u64,
    cell_without_polygon: u64,
    nuclear_without_polygon: u64,
    pub(super) read_s: f64,
    filter_s: f64,
}

const GENE_NULL: u32 = u32::MAX;
const GENE_DROP: u32 = u32::MAX - 1 - 4096; // prefix p is GENE_DROP + p

impl Chunk {
    pub(crate) fn new(prefixes: usize) -> Self {
        Self {
            dropped_prefix: vec![0; prefixes],
            ..Default::default()
        }
    }

    /// Adds the rows of `batch`; `row0` is the file row number of its first row.
    pub(crate) fn push_batch(
        &mut self,
        batch: &RecordBatch,
        ctx: &TxContext<'_>,
        row0: u64,
    ) -> Result<(), DataError> {
        let t0 = Instant::now();
        let c = ctx.cols;
        let f = ctx.file;
        let n = batch.num_rows();
        let get = |name: &str| columns::require(batch, f, name);
        let xs = columns::f64s(get(&c.x)?.as_ref(), f, &c.x, row0)?;
        let ys = columns::f64s(get(&c.y)?.as_ref(), f, &c.y, row0)?;
        let zs = match &c.z {
            Some(z) => Some(columns::f64s(get(z)?.as_ref(), f, z, row0)?),
            None => None,
        };
        for (name, v) in [(&c.x, &xs), (&c.y, &ys)]
            .into_iter()
            .chain(c.z.as_ref().zip(zs.as_ref()))
        {
            if let Some(i) = v.iter().position(|v| !v.is_finite()) {
                return Err(col_err(
                    f,
                    name,
                    format!("non-finite coordinate {} at row {}", v[i], row0 + i as u64),
                ));
            }
        }
        let mut null_gene_row = None;
        let genes = &mut self.genes;
        let gene = {
            let mut cache: HashMap<String, u32> = HashMap::new();
            let arr = get(&c.gene)?;
            columns::map_keys(arr.as_ref(), f, &c.gene, |v| match v {
                None => GENE_NULL,
                Some(s) => {
                    if let Some(&g) = cache.get(s) {
                        return g;
                    }
                    let g = match ctx.prefixes.iter().position(|p| s.starts_with(p.as_str())) {
                        Some(p) => GENE_DROP + p as u32,
                        None => genes.intern(s),
                    };
                    cache.insert(s.to_string(), g);
                    g
                }
            })?
        };
        if let Some(i) = gene.iter().position(|&g| g == GENE_NULL) {
            null_gene_row = Some(i);
        }
        if let Some(i) = null_gene_row {
            return Err(col_err(
                f,
                &c.gene,
                format!("null gene name at row {}", row0 + i as u64),
            ));
        }
        const UNASSIGNED: u32 = NO_CELL - 1;
        let cell = if c.cell.is_empty() {
            Ok(vec![NO_CELL; n])
        } else {
            columns::map_key_columns(batch, f, &c.cell, |v| match v {
                None => NO_CELL,
                Some(s) => match ctx.bd_index.get(s) {
                    Some(&i) => i,
                    None if is_unassigned_marker(s) => NO_CELL,
                    None => UNASSIGNED,
                },
            })
        }?;
        let ids = match &c.id {
            Some(name) => columns::i64s(get(name)?.as_ref(), f, name, row0)?,
            None => (0..n as i64).map(|i| row0 as i64 + i).collect(),
        };
        let nuclear = match &c.nuclear {
            Some(name) => Some(columns::flags(
                get(name)?.as_ref(),
                f,
                name,
                &c.nuclear_value,
            )?),
            None => None,
        };
        let qv = match &c.qv {
            Some(name) if ctx.min_qv.is_some() => {
                Some(columns::f32s(get(name)?.as_ref(), f, name, row0, true)?)
            }
            _ => None,
        };
        let t1 = Instant::now();
        self.read_s += (t1 - t0).as_secs_f64();

        self.rows += n as u64;
        let s = ctx.scale;
        for i in 0..n {
            let g = gene[i];
            if g >= GENE_DROP {
                self.dropped_prefix[(g - GENE_DROP) as usize] += 1;
                continue;
            }
            if let (Some(q), Some(min)) = (&qv, ctx.min_qv) {
                // NaN (or a null) fails the comparison and is dropped.
                if q[i].is_nan() || q[i] < min {
                    self.dropped_qv += 1;
                    continue;
                }
            }
            let nuc = nuclear.as_ref().is_some_and(|v| v[i]);
            let mut cl = cell[i];
            if cl == UNASSIGNED {
                self.cell_without_polygon += 1;
                if nuc {
                    self.nuclear_without_polygon += 1;
                }
                cl = NO_CELL;
            }
            self.x.push((xs[i] * s) as f32);
            self.y.push((ys[i] * s) as f32);
            if let Some(z) = &zs {
                self.z.push(z[i] as f32);
            }
            self.gene.push(g);
            self.id.push(ids[i]);
            self.cell.push(cl);
            if nuclear.is_some() {
                self.nuclear.push(nuc);
            }
        }
        self.filter_s += t1.elapsed().as_secs_f64();
        Ok(())
    }
}

/// Merges chunks (in file order) into the sample's transcripts: builds the sorted
/// vocabulary, applies the gene embedding, checks ids for duplicates.
pub(crate) fn merge_chunks(
    chunks: Vec<Chunk>,
    ctx: &TxContext<'_>,
    embedding: Option<&Path>,
    report: &mut LoadReport,
) -> Result<(Transcripts, Vec<String>, Option<GeneEmbedding>), DataError> {
    let mut all = Interner::default();
    for c in &chunks {
        for g in &c.genes.names {
            all.intern(g);
        }
    }
    let emb_table = match embedding {
        Some(p) => Some(read_embedding(p)?),
        None => None,
    };
    let mut vocab: Vec<String> = all
        .names
        .iter()
        .filter(|g| {
            emb_table
                .as_ref()
                .is_none_or(|(m, _, _)| m.contains_key(*g))
        })
        .cloned()
        .collect();
    vocab.sort_unstable();
    let token: HashMap<&str, u32> = vocab
        .iter()
        .enumerate()
        .map(|(i, g)| (g.as_str(), i as u32))
        .collect();
    let embedding = emb_table.map(|(rows, width, path)| {
        let mut values = Vec::with_capacity(vocab.len() * width);
        for g in &vocab {
            values.extend_from_slice(&rows[g]);
        }
        GeneEmbedding {
            path,
            width,
            values,
        }
    });

    let total: usize = chunks.iter().map(|c| c.x.len()).sum();
    let has_z = ctx.cols.z.is_some();
    let has_nuc = ctx.cols.nuclear.is_some();
    let mut tx = Transcripts {
        x: Vec::with_capacity(total),
        y: Vec::with_capacity(total),
        z: has_z.then(|| Vec::with_capacity(total)),
        gene: Vec::with_capacity(total),
        id: Vec::with_capacity(total),
        cell: Vec::with_capacity(total),
        nuclear: has_nuc.then(|| Vec::with_capacity(total)),
    };
    report.dropped_prefix = ctx.prefixes.iter().map(|p| (p.clone(), 0)).collect();
    for c in chunks {
        report.rows += c.rows;
        report.dropped_qv += c.dropped_qv;
        report.cell_without_polygon += c.cell_without_polygon;
        report.nuclear_without_polygon += c.nuclear_without_polygon;
        report.read_s += c.read_s;
        report.filter_s += c.filter_s;
        for (p, n) in ctx.prefixes.iter().zip(&c.dropped_prefix) {
            *report.dropped_prefix.get_mut(p).expect("inserted above") += n;
        }
        let map: Vec<Option<u32>> = c
            .genes
            .names
            .iter()
            .map(|g| token.get(g.as_str()).copied())
            .collect();
        for i in 0..c.x.len() {
            let Some(t) = map[c.gene[i] as usize] else {
                report.dropped_no_embedding += 1;
                continue;
            };
            tx.x.push(c.x[i]);
            tx.y.push(c.y[i]);
            if let Some(z) = &mut tx.z {
                z.push(c.z[i]);
            }
            tx.gene.push(t);
            tx.id.push(c.id[i]);
            tx.cell.push(c.cell[i]);
            if let Some(nu) = &mut tx.nuclear {
                nu.push(c.nuclear[i]);
            }
        }
    }
    report.kept = tx.len() as u64;
    report.has_z = has_z;
    report.ids_from_rows = ctx.cols.id.is_none();
    report.nuclear_from_polygons = !has_nuc;
    report.min_qv = ctx.min_qv.filter(|_| ctx.cols.qv.is_some());
    if tx.is_empty() {
        return Err(DataError::Column {
            path: ctx.file.to_path_buf(),
            column: ctx.cols.gene.clone(),
            problem: format!(
                "zero transcripts after filtering ({} rows read: {} dropped by control-probe \
                 prefixes (--drop_prefixes), {} by the quality filter (--min_qv{}), {} without \
                 a gene embedding)",
                report.rows,
                report.dropped_prefix.values().sum::<u64>(),
                report.dropped_qv,
                ctx.min_qv.map(|q| format!(" {q}")).unwrap_or_default(),
                report.dropped_no_embedding
            ),
        });
    }
    if let Some(name) = &ctx.cols.id {
        let mut ids = tx.id.clone();
        ids.par_sort_unstable();
        if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
            return Err(col_err(
                ctx.file,
                name,
                format!("duplicate transcript id {}", w[0]),
            ));
        }
    }
    Ok((tx, vocab, embedding))
}

/// Reads a gene embedding: CSV (header row; first column the gene name, the others floats)
/// or parquet (the first string column is the gene name, every numeric column a feature).
/// Gene → feature row, the row width and the file.
type EmbeddingTable = (HashMap<String, Vec<f32>>, usize, PathBuf);

fn read_embedding(path: &Path) -> Result<EmbeddingTable, DataError> {
    let is_parquet = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"));
    let rows: Vec<(String, Vec<f32>)> = if is_parquet {
        parquet_src::read_embedding(path)?
    } else {
        csv_src::read_embedding(path)?
    };
    let width = rows.first().map_or(0, |r| r.1.len());
    if width == 0 {
        return Err(col_err(
            path,
            "*",
            "gene embedding has no rows or no feature columns",
        ));
    }
    let mut map = HashMap::with_capacity(rows.len());
    for (g, v) in rows {
        if let Some(i) = v.iter().position(|v| !v.is_finite()) {
            return Err(col_err(
                path,
                &format!("feature {i}"),
                format!("non-finite value for gene {g}"),
            ));
        }
        if map.insert(g.clone(), v).is_some() {
            return Err(col_err(path, "gene", format!("duplicate gene {g}")));
        }
    }
    Ok((map, width, path.to_path_buf()))
}

/// Reads and filters the transcript file against loaded boundaries.
#[allow(clippy::too_many_arguments)]
pub(crate) fn load_transcripts(
    file: &Path,
    defaults: &Defaults<'_>,
    alt_cell: &[&[&str]],
    opts: &RawOptions,
    bd: &Boundaries,
    default_min_qv: Option<f32>,
    scale: f64,
    report: &mut LoadReport,
) -> Result<(Transcripts, Vec<String>, Option<GeneEmbedding>), DataError> {
    let have = file_columns(file)?;
    let cols = resolve_tx_columns(file, &have, defaults, &opts.columns, alt_cell)?;
    if opts.min_qv.is_some() && cols.qv.is_none() {
        return Err(col_err(
            file,
            opts.columns.qv.as_deref().or(defaults.qv).unwrap_or("qv"),
            "--min_qv was given but the file has no quality column",
        ));
    }
    let mut wanted = vec![cols.x.clone(), cols.y.clone(), cols.gene.clone()];
    wanted.extend(cols.cell.iter().cloned());
    wanted.extend(
        [&cols.z, &cols.id, &cols.nuclear, &cols.qv]
            .into_iter()
            .flatten()
            .cloned(),
    );
    wanted.sort();
    wanted.dedup();
    let index = boundary_index(bd);
    let ctx = TxContext {
        file,
        cols: &cols,
        bd_index: &index,
        prefixes: &opts.drop_prefixes,
        min_qv: opts.min_qv.or(default_min_qv),
        scale,
    };
    let chunks = if is_parquet(file) {
        parquet_src::read_transcripts(file, &wanted, &ctx)?
    } else {
        csv_src::read_transcripts(file, &wanted, &ctx)?
    };
    report.transcripts_file = file.to_path_buf();
    let (mut tx, vocab, embedding) =
        merge_chunks(chunks, &ctx, opts.gene_embedding.as_deref(), report)?;
    report.cell_ids_matched = tx.cell.iter().filter(|&&c| c != NO_CELL).count() as u64;
    let with_id = report.cell_ids_matched + report.cell_without_polygon;
    if cols.cell.is_empty() {
        tx.cell = cells_by_polygon(bd, &tx.x, &tx.y);
        report.cells_from_polygons = true;
    } else if report.cell_ids_matched * 2 < with_id {
        // The ids and the polygons are keyed differently (CosMx masks renumbered by fov):
        // the containing polygon is the better cell.
        tracing::warn!(
            "{}: only {} of {with_id} transcripts with a cell id name a polygon; each \
             transcript's cell is the polygon that contains it instead",
            file.display(),
            report.cell_ids_matched
        );
        tx.cell = cells_by_polygon(bd, &tx.x, &tx.y);
        report.cells_from_polygons = true;
        report.cell_ids_set_aside = with_id;
        report.cell_without_polygon = 0;
        report.nuclear_without_polygon = 0;
    }
    if opts.strict && report.nuclear_without_polygon > 0 {
        return Err(DataError::Column {
            path: file.to_path_buf(),
            column: cols.cell.join(","),
            problem: format!(
                "{} nuclear transcripts have a cell id that names no polygon",
                report.nuclear_without_polygon
            ),
        });
    }
    Ok((tx, vocab, embedding))
}

/// Each transcript's cell when the file names none: the boundary whose polygon contains it
/// (the first, when boundaries overlap), or [`NO_CELL`]. Boundaries are bucketed by their
/// envelopes on a grid of about one boundary per cell, so each point tests only the few whose
/// envelope covers its grid cell.
pub(crate) fn cells_by_polygon(bd: &Boundaries, x: &[f32], y: &[f32]) -> Vec<u32> {
    if bd.is_empty() {
        return vec![NO_CELL; x.len()];
    }
    let mut env = [
        f32::INFINITY,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NEG_INFINITY,
    ];
    for b in &bd.bbox {
        env = [
            env[0].min(b[0]),
            env[1].min(b[1]),
            env[2].max(b[2]),
            env[3].max(b[3]),
        ];
    }
    let (w, h) = ((env[2] - env[0]).max(1e-3), (env[3] - env[1]).max(1e-3));
    let side = ((w * h) / bd.len() as f32).sqrt().max(1e-3);
    let (nx, ny) = (
        ((w / side) as usize + 1).min(4096),
        ((h / side) as usize + 1).min(4096),
    );
    let cell_of = |v: f32, lo: f32, n: usize| (((v - lo) / side).max(0.0) as usize).min(n - 1);
    let mut grid: Vec<Vec<u32>> = vec![Vec::new(); nx * ny];
    for (i, b) in bd.bbox.iter().enumerate() {
        for gy in cell_of(b[1], env[1], ny)..=cell_of(b[3], env[1], ny) {
            for gx in cell_of(b[0], env[0], nx)..=cell_of(b[2], env[0], nx) {
                grid[gy * nx + gx].push(i as u32);
            }
        }
    }
    x.par_iter()
        .zip(y.par_iter())
        .map(|(&px, &py)| {
            if !(px >= env[0] && px <= env[2] && py >= env[1] && py <= env[3]) {
                return NO_CELL;
            }
            let g = cell_of(py, env[1], ny) * nx + cell_of(px, env[0], nx);
            grid[g]
                .iter()
                .copied()
                .find(|&b| bd.contains(b as usize, px, py))
                .unwrap_or(NO_CELL)
        })
        .collect()
}
