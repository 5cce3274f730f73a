//! Readers for raw instrument output (Xenium, MERSCOPE, CosMx).
//!
//! Every platform produces the same in-memory [`Sample`]: a compact, filtered transcript
//! table ([`Transcripts`]), validated boundary polygons with their features
//! ([`Boundaries`]), the gene vocabulary and a [`LoadReport`] that counts every row that was
//! dropped and why. Transcript files are streamed (parquet by row group, in parallel; CSV in
//! blocks of rows): only the compact columns are kept.
//!
//! Column names default to each platform's documented names and can be overridden
//! ([`ColumnOverrides`]).

pub(crate) mod columns;
pub mod cosmx;
mod csv_src;
pub mod merscope;
mod parquet_src;
mod wkb;
pub mod xenium;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

use arrow_array::RecordBatch;
use rayon::prelude::*;
use serde::Serialize;

use crate::error::DataError;
use crate::geometry::{self, clean_ring, Point, RingProblem};
use columns::{col_err, Interner};

/// The instrument that produced a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// 10x Genomics Xenium.
    Xenium,
    /// Vizgen MERSCOPE.
    Merscope,
    /// NanoString (Bruker) CosMx.
    Cosmx,
}

impl Platform {
    /// The lowercase name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Platform::Xenium => "xenium",
            Platform::Merscope => "merscope",
            Platform::Cosmx => "cosmx",
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Platform {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "xenium" => Ok(Platform::Xenium),
            "merscope" => Ok(Platform::Merscope),
            "cosmx" => Ok(Platform::Cosmx),
            _ => Err(format!(
                "unknown platform {s:?} (expected xenium, merscope or cosmx)"
            )),
        }
    }
}

/// Which segmentation the boundaries come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BoundaryKind {
    /// Nucleus segmentation (the default; Segger's positives are nuclear transcripts).
    #[default]
    Nucleus,
    /// Cell segmentation.
    Cell,
}

impl FromStr for BoundaryKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "nucleus" | "nuclei" => Ok(BoundaryKind::Nucleus),
            "cell" | "cells" => Ok(BoundaryKind::Cell),
            _ => Err(format!(
                "unknown boundaries {s:?} (expected nucleus or cell)"
            )),
        }
    }
}

/// The control-probe and codeword name prefixes dropped by default.
pub const DEFAULT_DROP_PREFIXES: [&str; 6] = [
    "NegControlProbe_",
    "antisense_",
    "NegControlCodeword",
    "BLANK_",
    "DeprecatedCodeword_",
    "UnassignedCodeword_",
];

/// Column-name overrides for exports that differ from the platform defaults. `Some("none")`
/// disables an optional column (z, transcript id, nuclear flag, quality). Key columns
/// (`cell`, `bd_id`) accept several comma-separated names, joined with `_` per row.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ColumnOverrides {
    /// Transcript x coordinate.
    pub x: Option<String>,
    /// Transcript y coordinate.
    pub y: Option<String>,
    /// Transcript z coordinate (`none` for 2-D).
    pub z: Option<String>,
    /// Gene name.
    pub gene: Option<String>,
    /// The transcript's cell / nucleus id (matches the boundary id).
    pub cell: Option<String>,
    /// Integer transcript id (`none`: the row number).
    pub id: Option<String>,
    /// The in-nucleus flag (`none`: decided by point-in-polygon).
    pub nuclear: Option<String>,
    /// The value of the nuclear column that means "inside the nucleus".
    pub nuclear_value: Option<String>,
    /// Quality value (`none`: no quality filter).
    pub qv: Option<String>,
    /// Boundary id.
    pub bd_id: Option<String>,
    /// Boundary vertex x (vertex-row formats).
    pub bd_x: Option<String>,
    /// Boundary vertex y (vertex-row formats).
    pub bd_y: Option<String>,
    /// Boundary WKB geometry (MERSCOPE).
    pub bd_geometry: Option<String>,
}

/// How to read a raw sample.
#[derive(Debug, Clone, Serialize)]
pub struct RawOptions {
    /// The instrument.
    pub platform: Platform,
    /// Nucleus or cell boundaries.
    pub boundaries: BoundaryKind,
    /// The transcript file, instead of the platform's default name in the input directory.
    pub transcripts_file: Option<PathBuf>,
    /// The boundary file, instead of the platform's default name in the input directory.
    pub boundaries_file: Option<PathBuf>,
    /// Column-name overrides.
    pub columns: ColumnOverrides,
    /// Minimum quality value; `None` uses the platform default (20 for Xenium, no filter
    /// elsewhere).
    pub min_qv: Option<f32>,
    /// Genes whose name starts with one of these are dropped.
    pub drop_prefixes: Vec<String>,
    /// Multiplier from file coordinates to micrometres; `None` uses the platform default
    /// (CosMx: 0.12028 µm per pixel, others 1).
    pub scale: Option<f64>,
    /// Make problems that are otherwise skipped and counted (bad polygons, nuclear transcripts
    /// whose cell id names no polygon) errors.
    pub strict: bool,
    /// A gene × features table (CSV or parquet) giving float transcript features.
    pub gene_embedding: Option<PathBuf>,
}

impl RawOptions {
    /// Defaults for a platform.
    pub fn new(platform: Platform) -> Self {
        Self {
            platform,
            boundaries: BoundaryKind::Nucleus,
            transcripts_file: None,
            boundaries_file: None,
            columns: ColumnOverrides::default(),
            min_qv: None,
            drop_prefixes: DEFAULT_DROP_PREFIXES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            scale: None,
            strict: false,
            gene_embedding: None,
        }
    }
}

/// Sentinel for "no boundary" in [`Transcripts::cell`].
pub const NO_CELL: u32 = u32::MAX;

/// The filtered transcripts, one entry per kept row, in input order.
#[derive(Debug, Clone, Default)]
pub struct Transcripts {
    /// x in micrometres.
    pub x: Vec<f32>,
    /// y in micrometres.
    pub y: Vec<f32>,
    /// z, when the sample has it.
    pub z: Option<Vec<f32>>,
    /// Gene token id: index into [`Sample::vocab`].
    pub gene: Vec<u32>,
    /// Transcript id (the instrument's, or the row number).
    pub id: Vec<i64>,
    /// Index of the transcript's boundary in [`Boundaries`], or [`NO_CELL`].
    pub cell: Vec<u32>,
    /// The instrument's in-nucleus flag, when the sample has it.
    pub nuclear: Option<Vec<bool>>,
}

impl Transcripts {
    /// Number of transcripts.
    pub fn len(&self) -> usize {
        self.x.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.x.is_empty()
    }
}

/// Validated boundary polygons (exterior rings, without the closing vertex).
#[derive(Debug, Clone, Default)]
pub struct Boundaries {
    /// Boundary ids, as strings.
    pub ids: Vec<String>,
    /// Ring `i` is `vertices[ring_start[i]..ring_start[i + 1]]`.
    pub ring_start: Vec<usize>,
    /// All vertices, in micrometres.
    pub vertices: Vec<[f32; 2]>,
    /// Area-weighted centroid per boundary.
    pub centroid: Vec<[f32; 2]>,
    /// Envelope `[min_x, min_y, max_x, max_y]` per boundary.
    pub bbox: Vec<[f32; 4]>,
    /// `[area, convexity, elongation, circularity]` per boundary.
    pub features: Vec<[f32; 4]>,
}

impl Boundaries {
    /// Number of boundaries.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The ring of boundary `i`.
    pub fn ring(&self, i: usize) -> &[[f32; 2]] {
        &self.vertices[self.ring_start[i]..self.ring_start[i + 1]]
    }

    /// Point-in-polygon test against boundary `i`.
    pub fn contains(&self, i: usize, x: f32, y: f32) -> bool {
        let b = self.bbox[i];
        if x < b[0] || x > b[2] || y < b[1] || y > b[3] {
            return false;
        }
        // Even-odd rule, as `geometry::contains`, on the stored f32 ring without copying it.
        let ring = self.ring(i);
        let (px, py) = (x as f64, y as f64);
        let mut inside = false;
        let mut j = ring.len() - 1;
        for k in 0..ring.len() {
            let (a, b) = (ring[k], ring[j]);
            let (ax, ay, bx, by) = (a[0] as f64, a[1] as f64, b[0] as f64, b[1] as f64);
            if (ay > py) != (by > py) && px < ax + (py - ay) * (bx - ax) / (by - ay) {
                inside = !inside;
            }
            j = k;
        }
        inside
    }
}

/// A gene embedding table: one float row per vocabulary gene.
#[derive(Debug, Clone)]
pub struct GeneEmbedding {
    /// The file it came from.
    pub path: PathBuf,
    /// Number of features per gene.
    pub width: usize,
    /// Row-major `[vocab.len(), width]`, in vocabulary order.
    pub values: Vec<f32>,
}

/// Everything counted while loading a sample.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadReport {
    /// The transcript file read.
    pub transcripts_file: PathBuf,
    /// The boundary file read.
    pub boundaries_file: PathBuf,
    /// Transcript rows read.
    pub rows: u64,
    /// Rows dropped per control-probe prefix.
    pub dropped_prefix: BTreeMap<String, u64>,
    /// Rows dropped by the quality filter (including missing quality values).
    pub dropped_qv: u64,
    /// Rows dropped because their gene has no row in the gene embedding.
    pub dropped_no_embedding: u64,
    /// Rows kept.
    pub kept: u64,
    /// The quality threshold applied, if any.
    pub min_qv: Option<f32>,
    /// Whether z coordinates were read.
    pub has_z: bool,
    /// Whether transcript ids are row numbers (no id column).
    pub ids_from_rows: bool,
    /// Whether positives are decided by point-in-polygon (no nuclear column).
    pub nuclear_from_polygons: bool,
    /// Kept transcripts whose cell id (not an "unassigned" marker) names no polygon.
    pub cell_without_polygon: u64,
    /// Of those, transcripts flagged as nuclear (their positive pair is lost).
    pub nuclear_without_polygon: u64,
    /// Boundary polygons read (distinct ids).
    pub boundaries_read: u64,
    /// Boundary polygons kept.
    pub boundaries_kept: u64,
    /// Boundary polygons skipped, per problem.
    pub boundaries_skipped: BTreeMap<String, u64>,
    /// Vertex-row rings whose last vertex did not repeat the first; they were closed.
    pub rings_closed_implicitly: u64,
    /// Extra geometry rows for an id already seen (e.g. MERSCOPE z-planes); the largest
    /// polygon was kept.
    pub boundary_duplicate_rows: u64,
    /// Multi-part geometries reduced to their largest part.
    pub multipart_geometries: u64,
    /// Seconds spent decoding files (summed over threads). Timings are left out of the
    /// serialised report, so `dataset.json` does not depend on the run.
    #[serde(skip)]
    pub read_s: f64,
    /// Seconds spent filtering and mapping rows (summed over threads).
    #[serde(skip)]
    pub filter_s: f64,
    /// Seconds spent validating polygons and computing their features (wall).
    #[serde(skip)]
    pub features_s: f64,
}

/// A loaded raw sample.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The transcripts.
    pub tx: Transcripts,
    /// The boundaries.
    pub bd: Boundaries,
    /// Gene vocabulary, sorted: token id `i` is gene `vocab[i]`.
    pub vocab: Vec<String>,
    /// The gene embedding, when one was given.
    pub embedding: Option<GeneEmbedding>,
    /// Counts of what was read, kept and dropped.
    pub report: LoadReport,
}

/// Loads a raw sample directory.
pub fn load(input: &Path, opts: &RawOptions) -> Result<Sample, DataError> {
    if !input.is_dir() {
        return Err(DataError::Dataset {
            path: input.to_path_buf(),
            problem: "input is not a directory".into(),
        });
    }
    match opts.platform {
        Platform::Xenium => xenium::load(input, opts),
        Platform::Merscope => merscope::load(input, opts),
        Platform::Cosmx => cosmx::load(input, opts),
    }
}

/// Resolves a file: the explicit one, else the first default name that exists in `dir`, else
/// the first file in `dir` whose name ends with one of `suffixes`.
pub(crate) fn find_file(
    dir: &Path,
    explicit: Option<&Path>,
    names: &[&str],
    suffixes: &[&str],
    what: &str,
) -> Result<PathBuf, DataError> {
    if let Some(p) = explicit {
        let p = if p.is_absolute() || p.exists() {
            p.to_path_buf()
        } else {
            dir.join(p)
        };
        if !p.is_file() {
            return Err(DataError::io(
                &p,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("{what} file not found"),
                ),
            ));
        }
        return Ok(p);
    }
    for n in names {
        let p = dir.join(n);
        if p.is_file() {
            return Ok(p);
        }
    }
    if !suffixes.is_empty() {
        let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| DataError::io(dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| suffixes.iter().any(|s| n.ends_with(s)))
            })
            .collect();
        found.sort();
        if let Some(p) = found.into_iter().next() {
            return Ok(p);
        }
    }
    let mut expected: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    expected.extend(suffixes.iter().map(|s| format!("*{s}")));
    Err(DataError::io(
        dir.join(names.first().copied().unwrap_or("")),
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!(
                "{what} file not found (looked for {} in {})",
                expected.join(", "),
                dir.display()
            ),
        ),
    ))
}

/// The resolved transcript columns.
#[derive(Debug, Clone)]
pub(crate) struct TxColumns {
    pub x: String,
    pub y: String,
    pub z: Option<String>,
    pub gene: String,
    pub cell: Vec<String>,
    pub id: Option<String>,
    pub nuclear: Option<String>,
    pub nuclear_value: String,
    pub qv: Option<String>,
}

/// One role's column: the default name and whether it may be missing.
pub(crate) struct Defaults<'a> {
    pub x: &'a str,
    pub y: &'a str,
    pub z: Option<&'a str>,
    pub gene: &'a str,
    pub cell: &'a [&'a str],
    pub id: Option<&'a str>,
    pub nuclear: Option<&'a str>,
    pub nuclear_value: &'a str,
    pub qv: Option<&'a str>,
}

fn split_names(s: &str) -> Vec<String> {
    s.split(',')
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// Resolves transcript columns against the file's column names: explicit overrides must
/// exist; optional defaults that are absent are disabled.
pub(crate) fn resolve_tx_columns(
    file: &Path,
    have: &[String],
    d: &Defaults<'_>,
    o: &ColumnOverrides,
    alt_cell: &[&[&str]],
) -> Result<TxColumns, DataError> {
    let exists = |n: &str| have.iter().any(|h| h == n);
    let missing = |n: &str| {
        col_err(
            file,
            n,
            format!("column is missing (the file has: {})", have.join(", ")),
        )
    };
    let required = |ov: &Option<String>, def: &str| -> Result<String, DataError> {
        let n = ov.clone().unwrap_or_else(|| def.to_string());
        if exists(&n) {
            Ok(n)
        } else {
            Err(missing(&n))
        }
    };
    let optional = |ov: &Option<String>, def: Option<&str>| -> Result<Option<String>, DataError> {
        match ov.as_deref() {
            Some("none") | Some("") => Ok(None),
            Some(n) if exists(n) => Ok(Some(n.to_string())),
            Some(n) => Err(missing(n)),
            None => Ok(def.filter(|n| exists(n)).map(str::to_string)),
        }
    };
    let cell = match o.cell.as_deref() {
        Some(s) => {
            let names = split_names(s);
            if let Some(n) = names.iter().find(|n| !exists(n)) {
                return Err(missing(n));
            }
            names
        }
        None => {
            let mut options: Vec<&[&str]> = vec![d.cell];
            options.extend_from_slice(alt_cell);
            match options.iter().find(|names| names.iter().all(|n| exists(n))) {
                Some(names) => names.iter().map(|s| s.to_string()).collect(),
                None => return Err(missing(&d.cell.join(","))),
            }
        }
    };
    Ok(TxColumns {
        x: required(&o.x, d.x)?,
        y: required(&o.y, d.y)?,
        z: optional(&o.z, d.z)?,
        gene: required(&o.gene, d.gene)?,
        cell,
        id: optional(&o.id, d.id)?,
        nuclear: optional(&o.nuclear, d.nuclear)?,
        nuclear_value: o
            .nuclear_value
            .clone()
            .unwrap_or_else(|| d.nuclear_value.to_string()),
        qv: optional(&o.qv, d.qv)?,
    })
}

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
    pub strict: bool,
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
    read_s: f64,
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
        let cell = columns::map_key_columns(batch, f, &c.cell, |v| match v {
            None => NO_CELL,
            Some(s) => match ctx.bd_index.get(s) {
                Some(&i) => i,
                None if is_unassigned_marker(s) => NO_CELL,
                None => UNASSIGNED,
            },
        })?;
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
    if ctx.strict && report.nuclear_without_polygon > 0 {
        return Err(DataError::Column {
            path: ctx.file.to_path_buf(),
            column: ctx.cols.cell.join(","),
            problem: format!(
                "{} nuclear transcripts have a cell id that names no polygon",
                report.nuclear_without_polygon
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

/// Vertex rows grouped by boundary id, in first-appearance order.
#[derive(Debug, Default)]
pub(crate) struct RingGroups {
    pub ids: Interner,
    pub rings: Vec<Vec<Point>>,
    /// Whether the rings came from vertex rows (closing is optional there).
    pub vertex_rows: bool,
    pub duplicate_rows: u64,
    pub multipart: u64,
}

impl RingGroups {
    /// Adds one vertex of boundary `id`.
    pub fn push_vertex(&mut self, id: &str, p: Point) {
        let i = self.ids.intern(id) as usize;
        if i == self.rings.len() {
            self.rings.push(Vec::new());
        }
        self.rings[i].push(p);
    }

    /// Adds a whole ring for `id`; a second ring for the same id replaces the first when its
    /// area is larger.
    pub fn push_ring(&mut self, id: &str, ring: Vec<Point>) {
        let i = self.ids.intern(id) as usize;
        if i == self.rings.len() {
            self.rings.push(ring);
        } else {
            self.duplicate_rows += 1;
            if geometry::area(&ring) > geometry::area(&self.rings[i]) {
                self.rings[i] = ring;
            }
        }
    }
}

/// Validates rings and computes their features, in parallel. Bad rings are skipped and
/// counted, or are errors when `strict`.
pub(crate) fn build_boundaries(
    groups: RingGroups,
    file: &Path,
    id_column: &str,
    strict: bool,
    report: &mut LoadReport,
) -> Result<Boundaries, DataError> {
    let t0 = Instant::now();
    let cleaned: Vec<Result<geometry::CleanRing, RingProblem>> =
        groups.rings.par_iter().map(|r| clean_ring(r)).collect();
    report.boundaries_read = cleaned.len() as u64;
    report.boundary_duplicate_rows = groups.duplicate_rows;
    report.multipart_geometries = groups.multipart;
    let mut kept: Vec<(usize, Vec<Point>)> = Vec::with_capacity(cleaned.len());
    let mut first_bad: BTreeMap<RingProblem, String> = BTreeMap::new();
    for (i, c) in cleaned.into_iter().enumerate() {
        match c {
            Ok(c) => {
                if groups.vertex_rows && !c.was_closed {
                    report.rings_closed_implicitly += 1;
                }
                kept.push((i, c.ring));
            }
            Err(p) => {
                *report
                    .boundaries_skipped
                    .entry(p.describe().to_string())
                    .or_default() += 1;
                first_bad
                    .entry(p)
                    .or_insert_with(|| groups.ids.names[i].clone());
            }
        }
    }
    if let Some((p, id)) = first_bad.iter().next() {
        let n: u64 = report.boundaries_skipped.values().sum();
        if strict {
            return Err(col_err(
                file,
                id_column,
                format!("polygon {id}: {} ({n} bad polygons in all)", p.describe()),
            ));
        }
        tracing::warn!(
            "{}: skipped {n} bad polygons (first: {id}, {})",
            file.display(),
            p.describe()
        );
    }
    let props: Vec<([f32; 4], [f32; 2], [f32; 4])> = kept
        .par_iter()
        .map(|(_, r)| {
            let f = geometry::polygon_features(r).to_row();
            let c = geometry::centroid(r);
            let e = geometry::envelope(r);
            (
                f,
                [c[0] as f32, c[1] as f32],
                [e[0] as f32, e[1] as f32, e[2] as f32, e[3] as f32],
            )
        })
        .collect();
    let mut bd = Boundaries {
        ids: Vec::with_capacity(kept.len()),
        ring_start: Vec::with_capacity(kept.len() + 1),
        vertices: Vec::new(),
        centroid: Vec::with_capacity(kept.len()),
        bbox: Vec::with_capacity(kept.len()),
        features: Vec::with_capacity(kept.len()),
    };
    bd.ring_start.push(0);
    for ((i, ring), (f, c, e)) in kept.into_iter().zip(props) {
        bd.ids.push(groups.ids.names[i].clone());
        bd.vertices
            .extend(ring.iter().map(|p| [p[0] as f32, p[1] as f32]));
        bd.ring_start.push(bd.vertices.len());
        bd.features.push(f);
        bd.centroid.push(c);
        bd.bbox.push(e);
    }
    report.boundaries_kept = bd.len() as u64;
    report.features_s = t0.elapsed().as_secs_f64();
    Ok(bd)
}

/// The id → index map of the boundaries.
pub(crate) fn boundary_index(bd: &Boundaries) -> HashMap<String, u32> {
    bd.ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.clone(), i as u32))
        .collect()
}

fn is_parquet(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"))
}

/// Column names of a parquet or CSV file.
pub(crate) fn file_columns(path: &Path) -> Result<Vec<String>, DataError> {
    if is_parquet(path) {
        parquet_src::column_names(path)
    } else {
        csv_src::column_names(path)
    }
}

/// Streams the `wanted` columns of a parquet or CSV file batch by batch.
pub(crate) fn for_each_batch(
    path: &Path,
    wanted: &[String],
    f: impl FnMut(&RecordBatch, u64) -> Result<(), DataError>,
) -> Result<(), DataError> {
    if is_parquet(path) {
        parquet_src::for_each_batch(path, wanted, f)
    } else {
        csv_src::for_each_batch(path, wanted, f)
    }
}

/// Reads vertex-row boundaries (one row per vertex: id, x, y), scaled to micrometres.
pub(crate) fn read_vertex_rings(
    file: &Path,
    id: &[String],
    x: &str,
    y: &str,
    scale: f64,
) -> Result<RingGroups, DataError> {
    let mut wanted: Vec<String> = id.to_vec();
    wanted.push(x.to_string());
    wanted.push(y.to_string());
    let mut groups = RingGroups {
        vertex_rows: true,
        ..Default::default()
    };
    for_each_batch(file, &wanted, |b, row0| {
        let xs = columns::f64s(columns::require(b, file, x)?.as_ref(), file, x, row0)?;
        let ys = columns::f64s(columns::require(b, file, y)?.as_ref(), file, y, row0)?;
        let keys = columns::joined_keys(b, file, id)?;
        for (i, k) in keys.iter().enumerate() {
            let Some(k) = k else {
                return Err(col_err(
                    file,
                    &id.join(","),
                    format!("null boundary id at row {}", row0 + i as u64),
                ));
            };
            groups.push_vertex(k, [xs[i] * scale, ys[i] * scale]);
        }
        Ok(())
    })?;
    Ok(groups)
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
        strict: opts.strict,
    };
    let chunks = if is_parquet(file) {
        parquet_src::read_transcripts(file, &wanted, &ctx)?
    } else {
        csv_src::read_transcripts(file, &wanted, &ctx)?
    };
    report.transcripts_file = file.to_path_buf();
    merge_chunks(chunks, &ctx, opts.gene_embedding.as_deref(), report)
}
