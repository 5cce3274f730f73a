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

mod boundaries;
pub(crate) mod columns;
pub mod cosmx;
mod cosmx_masks;
mod csv_src;
mod files;
pub mod merged;
pub mod merscope;
mod merscope_hdf5;
mod parquet_src;
mod platform;
mod transcripts;
mod tx_columns;
mod wkb;
pub mod xenium;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Serialize;

use crate::error::DataError;

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
    /// The gene-name prefixes of the platform's control probes and codewords, dropped by
    /// default: Xenium's negative-control probes and codewords ([`DEFAULT_DROP_PREFIXES`]),
    /// MERSCOPE's blank barcodes (`Blank-`), CosMx's negative probes, system controls and false
    /// codes (`NegPrb`, `Negative`, `SystemControl`, `FalseCode`); each platform's list also
    /// holds the others', which no gene name starts with.
    pub fn control_prefixes(self) -> Vec<&'static str> {
        let mut p: Vec<&'static str> = DEFAULT_DROP_PREFIXES.to_vec();
        p.extend(["Blank-", "NegPrb", "Negative", "SystemControl", "FalseCode"]);
        p
    }

    /// The lowercase name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Platform::Xenium => "xenium",
            Platform::Merscope => "merscope",
            Platform::Cosmx => "cosmx",
        }
    }
}

/// The transcript files that tell each platform apart ([`Platform::detect`]): exact names, then
/// file-name suffixes.
const SIGNATURES: [(Platform, &[&str], &[&str]); 3] = [
    (
        Platform::Xenium,
        &[
            "transcripts.parquet",
            "transcripts.csv.gz",
            "transcripts.csv",
        ],
        &[],
    ),
    (
        Platform::Merscope,
        &[
            "detected_transcripts.parquet",
            "detected_transcripts.csv",
            "detected_transcripts.csv.gz",
        ],
        &[],
    ),
    (
        Platform::Cosmx,
        &["tx_file.csv.gz", "tx_file.csv", "tx_file.parquet"],
        &["_tx_file.csv.gz", "_tx_file.csv", "_tx_file.parquet"],
    ),
];

impl Platform {
    /// The platform whose transcript file the folder `dir` holds: Xenium's
    /// `transcripts.parquet` (or `.csv.gz`, `.csv`), MERSCOPE's `detected_transcripts.*`,
    /// CosMx's `*_tx_file.*`. None or more than one is an error naming the folder and the files
    /// looked for.
    pub fn detect(dir: &Path) -> Result<Platform, DataError> {
        let names: Vec<String> = match std::fs::read_dir(dir) {
            Ok(rd) => rd
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect(),
            Err(source) => {
                return Err(DataError::Io {
                    path: dir.to_path_buf(),
                    source,
                })
            }
        };
        let found: Vec<Platform> = SIGNATURES
            .iter()
            .filter(|(_, exact, suffixes)| {
                names
                    .iter()
                    .any(|n| exact.contains(&n.as_str()) || suffixes.iter().any(|s| n.ends_with(s)))
            })
            .map(|(p, _, _)| *p)
            .collect();
        match found.as_slice() {
            [p] => Ok(*p),
            [] => Err(DataError::Dataset {
                path: dir.to_path_buf(),
                problem: "no transcript file of a known platform: looked for transcripts.parquet \
                          (Xenium), detected_transcripts.parquet or .csv (MERSCOPE), (*_)tx_file.csv \
                          (CosMx); pass --platform and --transcripts_file to name it"
                    .into(),
            }),
            many => Err(DataError::Dataset {
                path: dir.to_path_buf(),
                problem: format!(
                    "transcript files of more than one platform ({}); pass --platform",
                    many.iter().map(|p| p.name()).collect::<Vec<_>>().join(", ")
                ),
            }),
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

/// The control-probe and codeword name prefixes dropped by default from Xenium samples (and
/// from any platform's, as they never name a gene); [`Platform::control_prefixes`] adds each
/// platform's own.
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
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize)]
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
    /// Cut nuclei that look like two touching nuclei segmented as one ([`merged`]); nucleus
    /// boundaries only. On by default.
    pub split_merged: bool,
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
            drop_prefixes: platform
                .control_prefixes()
                .iter()
                .map(|s| s.to_string())
                .collect(),
            scale: None,
            strict: false,
            gene_embedding: None,
            split_merged: true,
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
    /// Whether each transcript's cell is the boundary that contains it (no cell-id column, or
    /// cell ids that name too few polygons: [`LoadReport::cell_ids_set_aside`]).
    pub cells_from_polygons: bool,
    /// Kept transcripts whose cell id names a (kept) polygon, counted before any fallback.
    pub cell_ids_matched: u64,
    /// Kept transcripts with a cell id (not an "unassigned" marker) whose id was set aside
    /// because fewer than half of them name a polygon (e.g. CosMx masks whose fov numbers
    /// differ from the transcripts'): each transcript's cell is then the polygon that contains
    /// it. 0 when the ids were used.
    pub cell_ids_set_aside: u64,
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
    /// Nuclei cut in two as merged ([`merged::split_merged_nuclei`]); the sample then holds
    /// `boundaries_kept + merged_nuclei_split` boundaries.
    pub merged_nuclei_split: u64,
    /// Micrometres per pixel (CosMx, whose coordinates are pixels).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pixel_size: Option<f64>,
    /// Where [`LoadReport::pixel_size`] came from: `--pixel_size`, `from <fov positions
    /// file>` (its `x_global_mm` and `x_global_px`), or the default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pixel_size_source: Option<String>,
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

/// Loads a raw sample directory; with [`RawOptions::split_merged`], nuclei that look like two
/// merged nuclei are cut in two ([`merged`]).
pub fn load(input: &Path, opts: &RawOptions) -> Result<Sample, DataError> {
    if !input.is_dir() {
        return Err(DataError::Dataset {
            path: input.to_path_buf(),
            problem: "input is not a directory".into(),
        });
    }
    let mut sample = match opts.platform {
        Platform::Xenium => xenium::load(input, opts),
        Platform::Merscope => merscope::load(input, opts),
        Platform::Cosmx => cosmx::load(input, opts),
    }?;
    if opts.split_merged && opts.boundaries == BoundaryKind::Nucleus {
        let n = merged::split_merged_nuclei(&mut sample);
        if n > 0 {
            tracing::info!("cut {n} nuclei that look like two merged nuclei in two");
        }
    }
    Ok(sample)
}
