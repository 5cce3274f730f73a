//! Dataset creation: raw sample → tiles → `segger-dataset/1` directory.
//!
//! [`create_dataset`] loads the sample ([`crate::raw::load`]), plans the tiles
//! ([`crate::tiling::plan`]), builds every tile's graph in parallel ([`build_tile`]) and
//! writes it straight away, so memory holds the sample plus one tile per worker thread. The
//! output is written into a temporary sibling directory that is renamed into place at the end.

mod graph;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;

use crate::dataset::{DatasetInfo, Split, SplitCounts, DATASET_FORMAT};
use crate::error::DataError;
use crate::raw::{self, RawOptions, Sample};
use crate::tile::{tile_to_bytes, TileBounds};
use crate::tiling::{self, PlannedTile, TileMode};
pub use graph::{build_tile, exact_span, SampleIndex};

/// Graph construction parameters of a tile.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GraphParams {
    /// Neighbours per transcript in `tx__neighbors__tx`.
    pub k_tx: usize,
    /// Radius of `tx__neighbors__tx` (µm).
    pub dist_tx: f32,
    /// Boundaries per transcript in `tx__neighbors__bd`.
    pub k_bd: usize,
    /// Radius of `tx__neighbors__bd` (µm), transcript to boundary centroid.
    pub dist_bd: f32,
    /// Negatives per positive in the labels.
    pub neg_sampling_ratio: f64,
    /// Which pairs are the negatives.
    pub negatives: Negatives,
    /// Context margin around each tile's core (µm).
    pub margin: f64,
}

impl Default for GraphParams {
    fn default() -> Self {
        Self {
            k_tx: 3,
            dist_tx: 5.0,
            k_bd: 1,
            dist_bd: 15.0,
            neg_sampling_ratio: 5.0,
            negatives: Negatives::Competing,
            margin: 10.0,
        }
    }
}

/// Boundaries per transcript among which competing negatives are drawn: the candidates
/// `segger predict` compares by default (`--k_bd 4`).
pub const COMPETITORS: usize = 4;

/// How the negative `tx__belongs__bd` pairs of a tile are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Negatives {
    /// The boundaries a transcript competes between at prediction: the other boundaries among
    /// its [`COMPETITORS`] nearest boundary centroids within `dist_bd`, nearest first, up to
    /// `neg_sampling_ratio` (rounded up) per positive.
    Competing,
    /// The reference's: random non-positive pairs of the tile, `neg_sampling_ratio` per
    /// positive, for transcripts with a positive.
    Random,
}

/// Default tile side (µm) of the grid tiling. Smaller tiles give more training steps per epoch
/// (the reference's 50 µm a quarter of 25 µm's); docs/accuracy.md measures 20 µm against 25 µm.
pub const DEFAULT_TILE_SIZE: f64 = 20.0;

/// Everything `create_dataset` needs.
#[derive(Debug, Clone, Serialize)]
pub struct CreateOptions {
    /// The raw sample directory.
    pub input: PathBuf,
    /// The dataset directory to create.
    pub output: PathBuf,
    /// How to read the sample.
    pub raw: RawOptions,
    /// How to tile it.
    pub tiling: TileMode,
    /// How to build each tile's graph.
    pub graph: GraphParams,
    /// Probability that a tile with positives goes to validation.
    pub val_prob: f64,
    /// Probability that a tile with positives goes to test.
    pub test_prob: f64,
    /// Seed of the split draw and the negative sampling.
    pub seed: u64,
    /// Replace an existing output directory.
    pub overwrite: bool,
}

impl CreateOptions {
    /// Defaults for a platform: [`DEFAULT_TILE_SIZE`] grid tiles with a 10 µm margin, val 0.1,
    /// test 0.2, seed 0.
    pub fn new(input: PathBuf, output: PathBuf, raw: RawOptions) -> Self {
        Self {
            input,
            output,
            raw,
            tiling: TileMode::Grid {
                width: DEFAULT_TILE_SIZE,
                height: DEFAULT_TILE_SIZE,
            },
            graph: GraphParams::default(),
            val_prob: 0.1,
            test_prob: 0.2,
            seed: 0,
            overwrite: false,
        }
    }

    fn check(&self) -> Result<(), String> {
        let g = &self.graph;
        let pos = |v: f64| v.is_finite() && v > 0.0;
        for (flag, v) in [
            ("--dist_tx", g.dist_tx as f64),
            ("--dist_bd", g.dist_bd as f64),
        ] {
            if !pos(v) {
                return Err(format!("{flag} must be a positive distance in µm, got {v}"));
            }
        }
        for (flag, k) in [("--k_tx", g.k_tx), ("--k_bd", g.k_bd)] {
            if !(1..=MAX_NEIGHBOURS).contains(&k) {
                return Err(format!(
                    "{flag} must be between 1 and {MAX_NEIGHBOURS}, got {k}"
                ));
            }
        }
        if let Some(sc) = self.raw.scale {
            if !(sc > 0.0 && sc <= 1000.0) {
                return Err(format!(
                    "--scale (--pixel_size) must be in (0, 1000] µm per input unit, got {sc}"
                ));
            }
        }
        if let Some(q) = self.raw.min_qv {
            if !q.is_finite() {
                return Err(format!("--min_qv must be a finite number, got {q}"));
            }
        }
        if !(g.margin.is_finite() && g.margin >= 0.0) {
            return Err(format!("--margin must be ≥ 0 µm, got {}", g.margin));
        }
        if !(g.neg_sampling_ratio.is_finite() && (0.0..=100.0).contains(&g.neg_sampling_ratio)) {
            return Err(format!(
                "--neg_sampling_ratio must be between 0 and 100, got {}",
                g.neg_sampling_ratio
            ));
        }
        let prob = |p: f64| (0.0..=1.0).contains(&p);
        if !prob(self.val_prob) || !prob(self.test_prob) || self.val_prob + self.test_prob > 1.0 {
            return Err(format!(
                "--val_prob and --test_prob must lie in [0, 1] and add up to at most 1, got {} and {}",
                self.val_prob, self.test_prob
            ));
        }
        match self.tiling {
            TileMode::Grid { width, height } if !pos(width) || !pos(height) => Err(format!(
                "--tile_size (or --tile_width and --tile_height) must be positive µm, got {width} × {height}"
            )),
            TileMode::Balanced { max_transcripts: 0 } => {
                Err("--max_transcripts_per_tile must be positive".into())
            }
            _ => Ok(()),
        }
    }
}

/// The largest `--k_tx` and `--k_bd`: every transcript stores this many edges at most, so the
/// bound keeps a typo from asking for more memory than a machine has.
pub const MAX_NEIGHBOURS: usize = 1024;

/// Progress of the tile phase, for a progress bar.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Tiles written.
    pub tiles_done: usize,
    /// Tiles planned.
    pub tiles_total: usize,
    /// Core transcripts of the written tiles.
    pub transcripts_done: u64,
}

/// Seconds per stage. Per-tile stages are summed over worker threads (CPU seconds); `wall` is
/// the elapsed time of the whole run.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Timings {
    /// Decoding the input files (summed over threads).
    pub read: f64,
    /// Filtering and mapping transcript rows (summed over threads).
    pub filter: f64,
    /// Polygon validation and features (wall).
    pub features: f64,
    /// Loading in all (wall): read + filter + features + vocabulary + duplicate check.
    pub load_wall: f64,
    /// Planning tiles and building the spatial index (wall) plus gathering each tile's nodes
    /// (summed).
    pub tile: f64,
    /// kNN graphs (summed).
    pub knn: f64,
    /// Positives and negative sampling (summed).
    pub labels: f64,
    /// Serialising and writing tile files (summed).
    pub write: f64,
    /// The parallel tile phase (wall).
    pub tiles_wall: f64,
    /// The whole run (wall).
    pub wall: f64,
}

/// What one built tile holds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct TileStats {
    /// Transcripts in the core.
    pub core: usize,
    /// Transcript nodes (core + margin).
    pub tx: usize,
    /// Boundary nodes.
    pub bd: usize,
    /// `tx__neighbors__tx` edges.
    pub tx_tx: usize,
    /// `tx__neighbors__bd` edges.
    pub tx_bd: usize,
    /// Positive `tx__belongs__bd` pairs.
    pub positives: usize,
    /// Sampled negatives.
    pub negatives: usize,
    /// Seconds gathering nodes.
    pub tile_s: f64,
    /// Seconds in kNN.
    pub knn_s: f64,
    /// Seconds in labels.
    pub labels_s: f64,
}

/// The outcome of [`create_dataset`].
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// The dataset directory written.
    pub output: PathBuf,
    /// What loading read and dropped.
    pub load: raw::LoadReport,
    /// Vocabulary size (genes).
    pub genes: usize,
    /// Tiles per split.
    pub tiles: SplitCounts,
    /// Tiles without positives (all in test).
    pub tiles_without_positives: usize,
    /// Grid cells without core transcripts (not written).
    pub empty_cells: usize,
    /// Transcripts in tile cores (equals the kept transcripts).
    pub core_transcripts: u64,
    /// Transcript nodes over all tiles (cores + margins).
    pub tx_nodes: u64,
    /// Boundary nodes over all tiles.
    pub bd_nodes: u64,
    /// `tx__neighbors__tx` edges.
    pub tx_tx_edges: u64,
    /// `tx__neighbors__bd` edges.
    pub tx_bd_edges: u64,
    /// Positive pairs.
    pub positives: u64,
    /// Negative pairs.
    pub negatives: u64,
    /// Bytes of tile files.
    pub bytes: u64,
    /// Stage timings.
    pub timings: Timings,
}

/// The split of a tile: test without positives, otherwise a seeded draw.
pub fn draw_split(
    seed: u64,
    tile: usize,
    has_positives: bool,
    val_prob: f64,
    test_prob: f64,
) -> Split {
    if !has_positives {
        return Split::Test;
    }
    let mut rng =
        ChaCha8Rng::seed_from_u64(seed ^ (tile as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let u: f64 = rng.random();
    if u < val_prob {
        Split::Val
    } else if u < val_prob + test_prob {
        Split::Test
    } else {
        Split::Train
    }
}

fn tile_seed(seed: u64, tile: usize) -> u64 {
    seed.wrapping_add(0xD1B5_4A32_D192_ED03u64.wrapping_mul(tile as u64 + 1))
}

/// Unique file names for the planned tiles (`TileBounds::file_name`, with `_k` appended on
/// the rare collisions of tiles whose rounded bounds coincide).
fn file_names(tiles: &[PlannedTile], margin: f64) -> Vec<String> {
    let mut seen = HashSet::new();
    tiles
        .iter()
        .map(|t| {
            let b = TileBounds {
                x: t.rect.x0,
                y: t.rect.y0,
                width: exact_span(t.rect.x0, t.rect.x1),
                height: exact_span(t.rect.y0, t.rect.y1),
                margin,
            };
            let base = b.file_name();
            let mut name = base.clone();
            let mut k = 1;
            while !seen.insert(name.clone()) {
                name = base.replace(".safetensors", &format!("_{k}.safetensors"));
                k += 1;
            }
            name
        })
        .collect()
}

/// What `create_dataset` writes into its output folder (segger-fs's rules: an earlier
/// dataset is replaced with `--overwrite`; any other non-empty folder is refused).
pub const DATASET_OUTPUT: segger_fs::OutputSpec<'static> = segger_fs::OutputSpec {
    command: "create_dataset",
    writes: &["dataset.json", "train_tiles", "val_tiles", "test_tiles"],
    signature: "dataset.json",
};

/// Builds a dataset from a raw sample. `progress` is called after every tile.
pub fn create_dataset(
    opts: &CreateOptions,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<Summary, DataError> {
    let t_start = Instant::now();
    check_and_prepare(opts)?;

    let sample = raw::load(&opts.input, &opts.raw)?;
    let load_wall = t_start.elapsed().as_secs_f64();
    tracing::debug!(
        "loaded {} transcripts ({} genes) and {} boundaries in {:.2} s",
        sample.tx.len(),
        sample.vocab.len(),
        sample.bd.len(),
        load_wall
    );

    let t_tile = Instant::now();
    let plan = tiling::plan(&sample.tx.x, &sample.tx.y, opts.tiling).map_err(|problem| {
        DataError::Dataset {
            path: opts.input.clone(),
            problem,
        }
    })?;
    if sample.bd.is_empty() {
        tracing::warn!("no boundaries: every tile goes to test (no positives)");
    }
    let index = SampleIndex::new(&sample);
    let names = file_names(&plan.tiles, opts.graph.margin);
    let tile_plan_s = t_tile.elapsed().as_secs_f64();
    let planned_core: u64 = plan.tiles.iter().map(|t| t.core as u64).sum();
    if planned_core != sample.tx.len() as u64 {
        return Err(DataError::Dataset {
            path: opts.output.clone(),
            problem: format!(
                "internal error: tiles cover {planned_core} of {} transcripts",
                sample.tx.len()
            ),
        });
    }

    segger_fs::remove_stale_siblings(&opts.output);
    let guard = segger_fs::TempDir::next_to(&opts.output, "tmp")?;
    let tmp = guard.path().to_path_buf();
    for s in Split::ALL {
        let d = tmp.join(s.dir_name()).join("processed");
        std::fs::create_dir_all(&d).map_err(|e| DataError::io(&d, e))?;
    }

    let job = TileJob {
        opts,
        sample: &sample,
        index: &index,
        names: &names,
        tmp: &tmp,
    };
    let (results, tiles_wall) = write_tiles(&job, &plan.tiles, progress)?;

    let mut summary = Summary {
        output: opts.output.clone(),
        load: sample.report.clone(),
        genes: sample.vocab.len(),
        tiles: SplitCounts::default(),
        tiles_without_positives: 0,
        empty_cells: plan.empty,
        core_transcripts: 0,
        tx_nodes: 0,
        bd_nodes: 0,
        tx_tx_edges: 0,
        tx_bd_edges: 0,
        positives: 0,
        negatives: 0,
        bytes: 0,
        timings: Timings {
            read: sample.report.read_s,
            filter: sample.report.filter_s,
            features: sample.report.features_s,
            load_wall,
            tile: tile_plan_s,
            tiles_wall,
            ..Default::default()
        },
    };
    let mut results = results;
    ensure_validation_tile(opts, &mut results, job.names, &tmp)?;
    for w in results.into_iter().flatten() {
        summary.add_tile(&w);
    }
    if summary.core_transcripts != sample.tx.len() as u64 {
        return Err(DataError::Dataset {
            path: opts.output.clone(),
            problem: format!(
                "internal error: tile cores hold {} of {} transcripts",
                summary.core_transcripts,
                sample.tx.len()
            ),
        });
    }

    write_dataset_info(opts, &sample, summary.tiles, &tmp)?;
    // Move into place: the old dataset (with --overwrite) is moved aside first, then removed.
    segger_fs::replace_dir(&tmp, &opts.output)?;
    guard.keep();
    summary.timings.wall = t_start.elapsed().as_secs_f64();
    Ok(summary)
}

/// A sample with at least two training tiles and no validation tile drawn (small samples):
/// the last training tile, in tile order, moves to the validation split, so that training has
/// held-out tiles to validate and calibrate on. Nothing moves when `--val_prob` is 0.
fn ensure_validation_tile(
    opts: &CreateOptions,
    results: &mut [Option<Written>],
    names: &[String],
    tmp: &Path,
) -> Result<(), DataError> {
    let split_of = |w: &Option<Written>| w.as_ref().map(|w| w.split);
    if opts.val_prob <= 0.0 || results.iter().any(|w| split_of(w) == Some(Split::Val)) {
        return Ok(());
    }
    let train: Vec<usize> = (0..results.len())
        .filter(|&i| split_of(&results[i]) == Some(Split::Train))
        .collect();
    let [.., _, last] = train.as_slice() else {
        return Ok(());
    };
    let from = tmp
        .join(Split::Train.dir_name())
        .join("processed")
        .join(&names[*last]);
    let to = tmp
        .join(Split::Val.dir_name())
        .join("processed")
        .join(&names[*last]);
    std::fs::rename(&from, &to).map_err(|e| DataError::io(&to, e))?;
    if let Some(w) = results[*last].as_mut() {
        w.split = Split::Val;
    }
    tracing::info!(
        "no tile was drawn for validation: {} moved there from the training split",
        names[*last]
    );
    Ok(())
}

/// Checks the options and prepares the output folder (segger-fs's rules) and its parent.
fn check_and_prepare(opts: &CreateOptions) -> Result<(), DataError> {
    opts.check().map_err(|problem| DataError::Dataset {
        path: opts.output.clone(),
        problem,
    })?;
    segger_fs::prepare_output(
        &DATASET_OUTPUT,
        "--output",
        &opts.output,
        &[("--input", &opts.input)],
        opts.overwrite,
    )?;
    if let Some(parent) = opts.output.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| DataError::io(parent, e))?;
    }
    Ok(())
}

/// What the tile phase shares between worker threads.
struct TileJob<'a> {
    opts: &'a CreateOptions,
    sample: &'a Sample,
    index: &'a SampleIndex,
    /// The file name of each planned tile.
    names: &'a [String],
    /// The temporary dataset directory the tiles are written into.
    tmp: &'a Path,
}

/// One tile written by the tile phase.
struct Written {
    split: Split,
    stats: TileStats,
    bytes: u64,
    write_s: f64,
}

/// The tile phase: builds and writes every planned tile in parallel, reporting progress, and
/// returns what was written (`None` for tiles with an empty core) and the phase's wall time.
fn write_tiles(
    job: &TileJob<'_>,
    tiles: &[PlannedTile],
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<(Vec<Option<Written>>, f64), DataError> {
    let total = tiles.len();
    let done = AtomicUsize::new(0);
    let done_tx = AtomicU64::new(0);
    let progress_lock = Mutex::new(());
    let t_tiles = Instant::now();
    let results: Vec<Option<Written>> = tiles
        .par_iter()
        .enumerate()
        .map(|(ti, t)| {
            let Some(w) = write_tile(job, ti, t)? else {
                return Ok(None);
            };
            let d = done.fetch_add(1, Ordering::Relaxed) + 1;
            let core = w.stats.core as u64;
            let dt = done_tx.fetch_add(core, Ordering::Relaxed) + core;
            if let Ok(_g) = progress_lock.try_lock() {
                progress(Progress {
                    tiles_done: d,
                    tiles_total: total,
                    transcripts_done: dt,
                });
            }
            Ok(Some(w))
        })
        .collect::<Result<_, DataError>>()?;
    let tiles_wall = t_tiles.elapsed().as_secs_f64();
    progress(Progress {
        tiles_done: done.load(Ordering::Relaxed),
        tiles_total: total,
        transcripts_done: done_tx.load(Ordering::Relaxed),
    });
    Ok((results, tiles_wall))
}

/// Builds planned tile `ti`, draws its split and writes it; `None` when its core is empty.
fn write_tile(job: &TileJob<'_>, ti: usize, t: &PlannedTile) -> Result<Option<Written>, DataError> {
    let opts = job.opts;
    let Some((tile, stats)) = build_tile(
        job.sample,
        job.index,
        &t.rect,
        &opts.graph,
        tile_seed(opts.seed, ti),
    )?
    else {
        return Ok(None);
    };
    let split = draw_split(
        opts.seed,
        ti,
        stats.positives > 0,
        opts.val_prob,
        opts.test_prob,
    );
    let tw = Instant::now();
    let path = job
        .tmp
        .join(split.dir_name())
        .join("processed")
        .join(&job.names[ti]);
    let bytes = tile_to_bytes(&tile).map_err(|problem| DataError::Format {
        path: path.clone(),
        field: "graph".into(),
        problem,
    })?;
    std::fs::write(&path, &bytes).map_err(|e| DataError::io(&path, e))?;
    let write_s = tw.elapsed().as_secs_f64();
    Ok(Some(Written {
        split,
        stats,
        bytes: bytes.len() as u64,
        write_s,
    }))
}

impl Summary {
    /// Counts one written tile.
    fn add_tile(&mut self, w: &Written) {
        match w.split {
            Split::Train => self.tiles.train += 1,
            Split::Val => self.tiles.val += 1,
            Split::Test => self.tiles.test += 1,
        }
        let s = &w.stats;
        if s.positives == 0 {
            self.tiles_without_positives += 1;
        }
        self.core_transcripts += s.core as u64;
        self.tx_nodes += s.tx as u64;
        self.bd_nodes += s.bd as u64;
        self.tx_tx_edges += s.tx_tx as u64;
        self.tx_bd_edges += s.tx_bd as u64;
        self.positives += s.positives as u64;
        self.negatives += s.negatives as u64;
        self.bytes += w.bytes;
        self.timings.tile += s.tile_s;
        self.timings.knn += s.knn_s;
        self.timings.labels += s.labels_s;
        self.timings.write += w.write_s;
    }
}

/// Writes `dataset.json` (the settings, the vocabulary and the tile counts) into the
/// temporary dataset directory `tmp` and removes the directories of splits without tiles.
fn write_dataset_info(
    opts: &CreateOptions,
    sample: &Sample,
    tiles: SplitCounts,
    tmp: &Path,
) -> Result<(), DataError> {
    let settings = serde_json::json!({
        "platform": opts.raw.platform,
        "input": opts.input,
        "raw": opts.raw,
        "tiling": opts.tiling,
        "graph": opts.graph,
        "val_prob": opts.val_prob,
        "test_prob": opts.test_prob,
        "seed": opts.seed,
        "tx_features": match &sample.embedding {
            None => serde_json::json!("tokens"),
            Some(e) => serde_json::json!({"embedding": e.path, "width": e.width, "genes": sample.vocab}),
        },
        "pos_dim": if sample.tx.z.is_some() { 3 } else { 2 },
        "load": sample.report,
    });
    let info = DatasetInfo {
        format: DATASET_FORMAT.to_string(),
        vocab: if sample.embedding.is_some() {
            Vec::new()
        } else {
            sample.vocab.clone()
        },
        settings,
        tiles,
    };
    info.write(tmp)?;
    // Splits without tiles get no directory (readers treat a split directory as non-empty).
    for s in Split::ALL {
        let d = tmp.join(s.dir_name());
        let empty = std::fs::read_dir(d.join("processed"))
            .map(|mut r| r.next().is_none())
            .unwrap_or(false);
        if empty {
            std::fs::remove_dir_all(&d).map_err(|e| DataError::io(&d, e))?;
        }
    }
    Ok(())
}
