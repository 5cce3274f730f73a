//! The `segger predict` job.

use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;
use segger_data::{TileBounds, TileDataset};
use segger_graph::knn::{knn_bipartite, KnnParams};
use segger_graph::{Batch, NodeFeatures, NodeIds};
use segger_model::mp::MatmulPrecision;
use segger_model::{GatBackend, GraphInput, SeggerConfig};
use serde::Serialize;
use thiserror::Error;

use crate::input::{resolve_tiles, InputKind};
use crate::model_dir::{ModelDir, VocabSource};
use crate::state::{Collected, TxRecord, NO_CELL, NO_GENE};
use crate::Accelerator;

/// Everything `segger predict` needs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PredictConfig {
    /// A trained run's directory (`model.safetensors`, `config.json`).
    pub model: PathBuf,
    /// A dataset directory, one split of it, or a raw sample directory.
    pub input: PathBuf,
    /// Output directory (must not exist unless `overwrite`).
    pub output: PathBuf,
    /// Candidate boundaries per transcript.
    pub k_bd: usize,
    /// Maximum transcript-to-boundary-centroid distance of a candidate (µm).
    pub dist_bd: f32,
    /// Minimum score `sigmoid(z_tx · z_bd)` of an assignment (of the candidate chosen with the
    /// distance term); also the link threshold of `use_cc`. `None`: the cut the model was
    /// calibrated with at training (`calibration.json`), else [`DEFAULT_SCORE_CUT`].
    pub score_cut: Option<f32>,
    /// Distance term of the choice among a transcript's candidates (µm per logit unit): a
    /// candidate whose centroid lies `d` µm beyond its equivalent radius (√(area/π)) ranks as
    /// if its logit were `d / distance_scale` lower. 0 turns the term off (the reference's
    /// choice: the highest score).
    pub distance_scale: f32,
    /// Reach of a boundary, in equivalent radii: a boundary whose centroid lies farther than
    /// `reach × √(area/π)` from a transcript is not its candidate. 0 turns the limit off (the
    /// reference: every boundary within `dist_bd`).
    pub reach: f32,
    /// Weight of the expression term in the choice among a transcript's candidates and in the
    /// score the cut applies to: `weight · mean ln(p_b(g) / p(g))` over the genes of the
    /// transcript and its nearest neighbours ([`NEIGHBOURHOOD_SIZE`] within
    /// [`NEIGHBOURHOOD_RADIUS`]), the log-ratio under the boundary's expression profile (from a
    /// first assignment within the tile) and under the tile's. 0 turns it off.
    pub expression_weight: f32,
    /// A transcript within `inner_reach` equivalent radii (√(area/π)) of its chosen boundary's
    /// centroid is assigned to it whatever its score (the nucleus and its rim); 0 turns this
    /// off (the reference: the cut decides alone).
    pub inner_reach: f32,
    /// Group unassigned transcripts into new cells by connected components.
    pub use_cc: bool,
    /// Neighbours per transcript considered for links (`use_cc`).
    pub k_tx: usize,
    /// Maximum distance of a link (µm, `use_cc`).
    pub dist_tx: f32,
    /// Smallest component kept as a cell (`use_cc`).
    pub min_transcripts: usize,
    /// Backend.
    pub accelerator: Accelerator,
    /// Tiles per forward pass.
    pub batch_size: usize,
    /// Background threads reading tiles.
    pub num_workers: usize,
    /// Replace an existing output directory.
    pub overwrite: bool,
    /// Raw input only: the platform (`xenium`, `merscope`, `cosmx`).
    pub platform: Option<String>,
    /// Float32 matmuls on the GPU: plain f32 (`Highest`, as trained) or TF32 (`High`).
    pub float32_matmul_precision: MatmulPrecision,
    /// What to do with a transcript id that names different transcripts in different tiles.
    pub duplicate_ids: DuplicateIds,
}

/// What `predict` does with a transcript id shared by different transcripts (another position
/// or gene) across the input tiles. One transcript decided by two tiles (overlapping tiles
/// without core bounds) is always kept once, with its higher score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DuplicateIds {
    /// Refuse the input, naming an example (the default: such tiles come from different samples
    /// or were edited, and their output could not be joined back to the transcripts).
    #[default]
    Error,
    /// Keep one transcript per id, the one with the higher score; the others are counted in
    /// the summary (`ids_merged`) and are not in the output.
    Merge,
}

impl PredictConfig {
    /// The defaults of `segger predict` for the given directories.
    pub fn new(model: PathBuf, input: PathBuf, output: PathBuf) -> Self {
        Self {
            model,
            input,
            output,
            k_bd: segger_data::create::COMPETITORS,
            dist_bd: 12.0,
            score_cut: None,
            distance_scale: 0.5,
            reach: 2.5,
            expression_weight: 4.0,
            inner_reach: 1.5,
            use_cc: true,
            k_tx: 10,
            dist_tx: 1.5,
            min_transcripts: 5,
            accelerator: Accelerator::Auto,
            batch_size: 1,
            num_workers: 2,
            overwrite: false,
            platform: None,
            float32_matmul_precision: MatmulPrecision::Highest,
            duplicate_ids: DuplicateIds::Error,
        }
    }

    /// The score cut in force ([`PredictConfig::score_cut`], resolved when the model was
    /// opened).
    pub fn cut(&self) -> f32 {
        self.score_cut.unwrap_or(DEFAULT_SCORE_CUT)
    }
}

/// The score cut of a model without a calibration (the reference's).
pub const DEFAULT_SCORE_CUT: f32 = 0.5;

/// Errors of `segger predict`.
#[derive(Debug, Error)]
pub enum PredictError {
    /// Bad input (flags, model, data): nothing was written. Exit code 2.
    #[error("{0}")]
    Input(String),
    /// The requested backend is not available. Exit code 2.
    #[error("{0}")]
    Backend(String),
    /// Failure while running (I/O). Exit code 1.
    #[error("{0}")]
    Runtime(String),
    /// `--output` cannot be written where it was asked for (segger-fs's rules). Exit code 2,
    /// or 1 when the file system failed.
    #[error(transparent)]
    Output(#[from] segger_fs::OutputError),
}

impl PredictError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            PredictError::Input(_) | PredictError::Backend(_) => 2,
            PredictError::Runtime(_) => 1,
            PredictError::Output(e) => e.exit_code(),
        }
    }
}

/// First quartile, median and third quartile (linear interpolation, as numpy's default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Quartiles {
    /// 25th percentile.
    pub q1: f64,
    /// 50th percentile.
    pub median: f64,
    /// 75th percentile.
    pub q3: f64,
}

impl Quartiles {
    /// Quartiles of sorted values (all zero when empty).
    pub fn of_sorted(v: &[u32]) -> Self {
        let q = |p: f64| -> f64 {
            if v.is_empty() {
                return 0.0;
            }
            let pos = p * (v.len() - 1) as f64;
            let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
            let f = pos - lo as f64;
            v[lo] as f64 * (1.0 - f) + v[hi] as f64 * f
        };
        Self {
            q1: q(0.25),
            median: q(0.5),
            q3: q(0.75),
        }
    }
}

/// Wall seconds of the stages.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Timings {
    /// Building tiles from a raw sample (0 for a dataset input).
    pub create_dataset_s: f64,
    /// Reading the tiles, the forward passes and the scoring.
    pub tiles_s: f64,
    /// Of `tiles_s`: waiting for the tile reader.
    pub tiles_wait_s: f64,
    /// Of `tiles_s`: moving batches to the device and the forward passes.
    pub model_s: f64,
    /// Of `tiles_s`: kNN candidates, scores, links.
    pub scoring_s: f64,
    /// De-duplication and connected components.
    pub resolve_s: f64,
    /// Writing every output.
    pub write_s: f64,
    /// The whole run.
    pub total_s: f64,
}

/// What a finished prediction reports (also the counts of `segmentation_log.json`).
#[derive(Debug, Clone, Serialize)]
pub struct PredictSummary {
    /// The output directory.
    pub output: PathBuf,
    /// The backend, in words.
    pub backend: String,
    /// What `--input` was.
    pub input_kind: InputKind,
    /// Tiles predicted.
    pub tiles: usize,
    /// Transcripts in the output (each exactly once).
    pub transcripts: usize,
    /// Transcripts assigned to an input boundary (score ≥ cut).
    pub assigned_to_boundary: usize,
    /// Transcripts in a connected-component cell (`--use_cc`).
    pub assigned_to_component: usize,
    /// Transcripts in no cell.
    pub unassigned: usize,
    /// Percentage of transcripts in a cell (boundary or component).
    pub assigned_percent: f64,
    /// Cells with at least one transcript.
    pub cells: usize,
    /// Of which input boundaries.
    pub boundary_cells: usize,
    /// Of which connected components.
    pub component_cells: usize,
    /// Components dropped for having fewer than `min_transcripts` transcripts.
    pub components_dropped: usize,
    /// Transcripts per cell.
    pub transcripts_per_cell: Quartiles,
    /// Transcripts that more than one tile decided (tiles without core bounds, or overlapping
    /// cores); the higher score was kept.
    pub duplicates_resolved: usize,
    /// Transcripts merged into another transcript with the same id (`--duplicate_ids merge`).
    pub ids_merged: usize,
    /// Transcripts per second over the whole run.
    pub transcripts_per_second: f64,
    /// Stage timings.
    pub timings: Timings,
    /// The score cut used.
    pub score_cut: f32,
    /// Where it came from: `--score_cut`, `calibration.json` or `default`.
    pub score_cut_source: String,
}

/// The checked inputs of a run.
pub(crate) struct Context<'a> {
    pub cfg: &'a PredictConfig,
    pub model: ModelDir,
    pub datasets: Vec<TileDataset>,
    /// Dataset token id → model token id, when they differ.
    pub token_map: Option<Vec<i64>>,
}

/// Output gene names, dataset token → model token map (when not the identity), and the bound
/// on the dataset's token ids.
type VocabPlan = (Vec<String>, Option<Vec<i64>>, Option<usize>);

/// Output gene names and the token mapping, from the dataset's and the model's vocabularies.
fn vocab_plan(
    model: &ModelDir,
    data_vocab: Option<&Vec<String>>,
) -> Result<VocabPlan, PredictError> {
    let cfg = &model.config;
    if cfg.tx_features.is_some() {
        // Gene-embedding model: tiles carry features, not tokens.
        return Ok((data_vocab.cloned().unwrap_or_default(), None, None));
    }
    let n = cfg.num_tx_tokens;
    match (data_vocab.filter(|v| !v.is_empty()), &model.vocab) {
        (Some(data), Some(mv)) => {
            if data == mv {
                return Ok((data.clone(), None, Some(data.len())));
            }
            let index: std::collections::HashMap<&str, usize> = mv
                .iter()
                .enumerate()
                .map(|(i, g)| (g.as_str(), i))
                .collect();
            let unknown: Vec<&String> = data
                .iter()
                .filter(|g| !index.contains_key(g.as_str()))
                .collect();
            if !unknown.is_empty() {
                let shown: Vec<&str> = unknown.iter().take(10).map(|s| s.as_str()).collect();
                return Err(PredictError::Input(format!(
                    "vocabulary mismatch: {} of the input's {} genes are unknown to the model ({}{}); predict with a model trained on this gene panel, or filter those genes out when creating the dataset",
                    unknown.len(),
                    data.len(),
                    shown.join(", "),
                    if unknown.len() > shown.len() { ", ..." } else { "" }
                )));
            }
            let map: Vec<i64> = data.iter().map(|g| index[g.as_str()] as i64).collect();
            let identity = map.iter().enumerate().all(|(i, &m)| i as i64 == m);
            Ok((
                data.clone(),
                if identity { None } else { Some(map) },
                Some(data.len()),
            ))
        }
        (Some(data), None) => {
            if data.len() > n {
                return Err(PredictError::Input(format!(
                    "vocabulary mismatch: the input has {} genes but the model has {} token embeddings (num_tx_tokens)",
                    data.len(),
                    n
                )));
            }
            tracing::warn!(
                "the model directory has no vocab.json: the input's token ids are taken to mean the same genes as in training"
            );
            Ok((data.clone(), None, Some(data.len())))
        }
        (None, Some(mv)) => Ok((mv.clone(), None, Some(mv.len().min(n)))),
        (None, None) => Ok((
            (0..n).map(|i| format!("token_{i}")).collect(),
            None,
            Some(n),
        )),
    }
}

fn check_flags(cfg: &PredictConfig) -> Result<(), PredictError> {
    let bad = |m: String| Err(PredictError::Input(m));
    segger_fs::require_utf8(
        &[
            ("--model", &cfg.model),
            ("--input", &cfg.input),
            ("--output", &cfg.output),
        ],
        crate::outputs::LOG_FILE,
    )
    .map_err(PredictError::Input)?;
    let max_k = segger_data::create::MAX_NEIGHBOURS;
    for (flag, v, max) in [
        ("--batch_size", cfg.batch_size, 4096),
        ("--k_bd", cfg.k_bd, max_k),
        ("--k_tx", cfg.k_tx, max_k),
    ] {
        if !(1..=max).contains(&v) {
            return bad(format!("{flag} must be between 1 and {max}, got {v}"));
        }
    }
    if cfg.num_workers > 256 {
        return bad(format!(
            "--num_workers must be at most 256, got {}",
            cfg.num_workers
        ));
    }
    if !(cfg.dist_bd.is_finite() && cfg.dist_bd > 0.0) {
        return bad(format!("--dist_bd must be positive, got {}", cfg.dist_bd));
    }
    if !(cfg.reach.is_finite() && cfg.reach >= 0.0) {
        return bad(format!(
            "--reach must be a finite number ≥ 0, got {}",
            cfg.reach
        ));
    }
    if !(cfg.distance_scale.is_finite() && cfg.distance_scale >= 0.0) {
        return bad(format!(
            "--distance_scale must be a finite number ≥ 0, got {}",
            cfg.distance_scale
        ));
    }
    if !(cfg.inner_reach.is_finite() && (0.0..=100.0).contains(&cfg.inner_reach)) {
        return bad(format!(
            "--inner_reach must lie in [0, 100], got {}",
            cfg.inner_reach
        ));
    }
    if !(cfg.expression_weight.is_finite() && (0.0..=100.0).contains(&cfg.expression_weight)) {
        return bad(format!(
            "--expression_weight must lie in [0, 100], got {}",
            cfg.expression_weight
        ));
    }
    if let Some(c) = cfg.score_cut.filter(|c| !(0.0..=1.0).contains(c)) {
        return bad(format!("--score_cut must lie in [0, 1], got {c}"));
    }
    if cfg.use_cc && !(cfg.dist_tx.is_finite() && cfg.dist_tx > 0.0) {
        return bad(format!("--dist_tx must be positive, got {}", cfg.dist_tx));
    }
    Ok(())
}

/// What `predict` writes into its output folder (segger-fs's rules: an earlier prediction is
/// replaced with `--overwrite`; any other non-empty folder is refused).
pub const PREDICT_OUTPUT: segger_fs::OutputSpec<'static> = segger_fs::OutputSpec {
    command: "predict",
    writes: &[
        crate::outputs::TRANSCRIPTS_FILE,
        crate::outputs::CELLS_FILE,
        crate::outputs::ADATA_FILE,
        crate::outputs::BOUNDARIES_FILE,
        crate::outputs::BAYSOR_CSV_FILE,
        crate::outputs::BAYSOR_POLYGONS_FILE,
        crate::outputs::LOG_FILE,
    ],
    signature: crate::outputs::LOG_FILE,
};

/// Checks the flags, the model and the input, then predicts and writes the outputs. Nothing
/// is written to `--output` before every input check passes, and `--output` appears only
/// complete (written to a temporary directory, then renamed).
pub fn predict(cfg: &PredictConfig) -> Result<PredictSummary, PredictError> {
    segger_model::mp::set_float32_matmul_precision(cfg.float32_matmul_precision);
    let t0 = Instant::now();
    check_flags(cfg)?;
    segger_fs::prepare_output(
        &PREDICT_OUTPUT,
        "--output",
        &cfg.output,
        &[("--model", &cfg.model), ("--input", &cfg.input)],
        cfg.overwrite,
    )?;
    segger_fs::remove_stale_siblings(&cfg.output);
    let model = ModelDir::open(&cfg.model)?;
    // The cut in force: the flag, else the model's calibration, else the default.
    let (cut, cut_source) = match (cfg.score_cut, &model.calibration) {
        (Some(c), _) => (c, "--score_cut"),
        (None, Some(c)) => (c.score_cut, "calibration.json"),
        (None, None) => (DEFAULT_SCORE_CUT, "default"),
    };
    let resolved_cfg = PredictConfig {
        score_cut: Some(cut),
        ..cfg.clone()
    };
    let cfg = &resolved_cfg;
    tracing::info!("score cut {cut:.4} ({cut_source})");
    let mut timings = Timings::default();
    let (resolved, _raw_tmp) = match resolve_tiles(&cfg.input)? {
        Some(r) => (r, None),
        None => {
            let t = Instant::now();
            let (r, tmp) = crate::input::raw::build(cfg, model.training_settings.as_ref())?;
            timings.create_dataset_s = t.elapsed().as_secs_f64();
            (r, Some(tmp))
        }
    };
    let (genes, token_map, bound) = vocab_plan(&model, resolved.vocab.as_ref())?;
    let mut datasets = Vec::new();
    for s in &resolved.splits {
        let ds = TileDataset::open(s, bound).map_err(|e| {
            PredictError::Input(format!("--input: empty input or unreadable tiles: {e}"))
        })?;
        datasets.push(ds);
    }
    let ctx = Context {
        cfg,
        model,
        datasets,
        token_map,
    };
    let tile_count: usize = ctx.datasets.iter().map(TileDataset::len).sum();
    tracing::info!(
        "predicting {} tiles from {} with {} (vocabulary: {})",
        tile_count,
        cfg.input.display(),
        cfg.model.display(),
        match &ctx.model.vocab_source {
            VocabSource::VocabJson => "vocab.json".to_string(),
            VocabSource::TrainingDataset(p) => p.display().to_string(),
            VocabSource::Unknown => "unknown, token ids trusted".to_string(),
        }
    );
    let t = Instant::now();
    let (collected, backend) = dispatch(&ctx)?;
    timings.tiles_s = t.elapsed().as_secs_f64();
    [timings.tiles_wait_s, timings.model_s, timings.scoring_s] = collected.stage_seconds;
    if collected.records.is_empty() {
        return Err(PredictError::Input(format!(
            "--input: empty input: the {} tiles hold no transcripts",
            collected.tiles
        )));
    }
    let tmp = segger_fs::TempDir::next_to(&cfg.output, "tmp")?;
    let t = Instant::now();
    let resolved_out = crate::outputs::resolve(collected, cfg)?;
    timings.resolve_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut summary =
        crate::outputs::write_all(tmp.path(), &resolved_out, &genes, cfg, &resolved, &backend)?;
    timings.write_s = t.elapsed().as_secs_f64();
    timings.total_s = t0.elapsed().as_secs_f64();
    summary.transcripts_per_second = summary.transcripts as f64 / timings.total_s.max(1e-9);
    summary.timings = timings;
    summary.output = cfg.output.clone();
    summary.score_cut_source = cut_source.to_string();
    crate::outputs::write_log(tmp.path(), cfg, &ctx.model, &resolved, &summary)?;
    segger_fs::replace_dir(tmp.path(), &cfg.output)?;
    tmp.keep();
    tracing::info!(
        "predicted {} transcripts: {:.1}% in {} cells ({} from boundaries, {} components), median {} transcripts per cell, {:.0} transcripts/s",
        summary.transcripts,
        summary.assigned_percent,
        summary.cells,
        summary.boundary_cells,
        summary.component_cells,
        summary.transcripts_per_cell.median,
        summary.transcripts_per_second
    );
    Ok(summary)
}

fn dispatch(ctx: &Context<'_>) -> Result<(Collected, String), PredictError> {
    match ctx.cfg.accelerator.resolve() {
        Accelerator::Cpu => {
            #[cfg(feature = "flex")]
            {
                collect::<burn::backend::Flex>(ctx, &Default::default())
                    .map(|c| (c, "cpu (flex)".to_string()))
            }
            #[cfg(all(not(feature = "flex"), feature = "ndarray"))]
            {
                collect::<burn::backend::NdArray>(ctx, &Default::default())
                    .map(|c| (c, "cpu (ndarray)".to_string()))
            }
            #[cfg(not(any(feature = "flex", feature = "ndarray")))]
            {
                Err(PredictError::Backend("--accelerator cpu: this binary was built without a CPU backend; rebuild with the cargo feature `flex`".into()))
            }
        }
        Accelerator::Wgpu => {
            #[cfg(feature = "wgpu")]
            {
                segger_model::backend::kernel_cache();
                collect::<burn::backend::Wgpu>(ctx, &burn::backend::wgpu::WgpuDevice::DefaultDevice)
                    .map(|c| (c, "wgpu".to_string()))
            }
            #[cfg(not(feature = "wgpu"))]
            {
                Err(PredictError::Backend("--accelerator wgpu: this binary was built without the cargo feature `wgpu`; rebuild with `--features wgpu`".into()))
            }
        }
        Accelerator::Cuda => {
            #[cfg(feature = "cuda")]
            {
                if !segger_model::backend::cuda_available() {
                    return Err(PredictError::Backend("--accelerator cuda: no CUDA driver or device found (libcuda could not be loaded or reports no device)".into()));
                }
                segger_model::backend::kernel_cache();
                collect::<burn::backend::Cuda>(ctx, &burn::backend::cuda::CudaDevice::new(0))
                    .map(|c| (c, "cuda".to_string()))
            }
            #[cfg(not(feature = "cuda"))]
            {
                Err(PredictError::Backend("--accelerator cuda: this binary was built without the cargo feature `cuda`; rebuild with `--features cuda`".into()))
            }
        }
        Accelerator::Auto => unreachable!("resolved above"),
    }
}

/// The result of one tile: records with the tile-local boundary index in `cell`.
struct TileResult {
    records: Vec<TxRecord>,
    links: Vec<(i64, i64)>,
}

fn sigmoid(s: f32) -> f32 {
    1.0 / (1.0 + (-s).exp())
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Whether `(x, y)` lies in the core `[x, x + w) × [y, y + h)` of a tile (f32 compared in f64,
/// as dataset creation does).
fn in_core(b: &TileBounds, x: f32, y: f32) -> bool {
    let (x, y) = (x as f64, y as f64);
    x >= b.x && x < b.x + b.width && y >= b.y && y < b.y + b.height
}

/// Pseudo-transcripts of the tile's gene distribution added to each boundary's expression
/// profile (`--expression_weight`).
pub const PROFILE_PRIOR: f32 = 30.0;
/// A transcript first assigned to a boundary counts towards the boundary's profile when it lies
/// within this many equivalent radii of the boundary's centroid (the nucleus and its rim: the
/// transcripts least likely to belong to another cell).
pub const PROFILE_REACH: f32 = 1.5;
/// The neighbourhood whose genes weigh a transcript's candidates: the transcript and its
/// nearest neighbours, at most this many in all...
pub const NEIGHBOURHOOD_SIZE: usize = 10;
/// ...within this distance (µm, in the x-y plane).
pub const NEIGHBOURHOOD_RADIUS: f32 = 3.0;

/// The boundaries' expression profiles within one tile, from a first assignment, and the term
/// they add to a candidate: `weight × mean over the transcript's neighbourhood of
/// ln(p_b(g) / p(g))`, where `p_b` is the gene distribution of the profile's transcripts
/// ([`PROFILE_REACH`]; smoothed towards `p` by [`PROFILE_PRIOR`] pseudo-transcripts, the
/// transcript itself left out of the profile it belongs to) and `p` that of the whole tile.
struct ExpressionProfiles<'a> {
    genes: &'a [i64],
    n_genes: usize,
    counts: Vec<f32>,
    totals: Vec<f32>,
    background: Vec<f32>,
    /// `ln(p_b(g) / p(g))` by boundary and gene, nobody left out.
    log_ratio: Vec<f32>,
    /// The boundary each transcript's count went to, or [`NO_CELL`].
    member: Vec<u32>,
}

impl<'a> ExpressionProfiles<'a> {
    /// Profiles of `boundaries` boundaries from `member` (per transcript of the tile: the
    /// boundary whose profile it counts towards, or [`NO_CELL`]).
    fn new(genes: &'a [i64], member: Vec<u32>, boundaries: usize) -> Self {
        let gene = |g: i64| g.max(0) as usize;
        let n_genes = genes.iter().map(|&g| gene(g) + 1).max().unwrap_or(1);
        let mut background = vec![1.0f32; n_genes];
        for &g in genes {
            background[gene(g)] += 1.0;
        }
        let total: f32 = background.iter().sum();
        background.iter_mut().for_each(|p| *p /= total);
        let mut counts = vec![0.0f32; boundaries * n_genes];
        let mut totals = vec![0.0f32; boundaries];
        for (i, &b) in member.iter().enumerate() {
            if b != NO_CELL {
                counts[b as usize * n_genes + gene(genes[i])] += 1.0;
                totals[b as usize] += 1.0;
            }
        }
        let mut me = Self {
            genes,
            n_genes,
            counts,
            totals,
            background,
            log_ratio: Vec::new(),
            member,
        };
        me.log_ratio = (0..boundaries * n_genes)
            .map(|k| me.ratio(k / n_genes, k % n_genes, 0.0))
            .collect();
        me
    }

    /// `ln(p_b(g) / p(g))` with `out` transcripts of gene `g` left out of `b`'s profile.
    fn ratio(&self, b: usize, g: usize, out: f32) -> f32 {
        let count = (self.counts[b * self.n_genes + g] - out).max(0.0);
        let total = (self.totals[b] - out).max(0.0);
        let p0 = self.background[g];
        ((count + PROFILE_PRIOR * p0) / (total + PROFILE_PRIOR) / p0).ln()
    }

    /// The mean log-ratio of the genes of `hood` (tile-local transcripts, `me` among them)
    /// under boundary `b`; `me` is left out of `b`'s profile when it is `b`'s member.
    fn mean_log_ratio(&self, hood: &[u32], me: usize, b: usize) -> f32 {
        let sum: f32 = hood
            .iter()
            .map(|&j| {
                let g = self.genes[j as usize].max(0) as usize;
                if j as usize == me && self.member[me] as usize == b {
                    self.ratio(b, g, 1.0)
                } else {
                    self.log_ratio[b * self.n_genes + g]
                }
            })
            .sum();
        sum / hood.len().max(1) as f32
    }
}

/// Scores tile `t` of a batch: each transcript of its core against its `k_bd` nearest
/// boundaries within `dist_bd`, and (with `use_cc`) links from unassigned transcripts to
/// similar neighbours.
#[allow(clippy::too_many_arguments)]
fn score_tile(
    cfg: &PredictConfig,
    batch: &Batch,
    tokens: Option<&[i64]>,
    t: usize,
    bounds: Option<&TileBounds>,
    ztx: &[f32],
    zbd: &[f32],
    d: usize,
    path: &Path,
) -> Result<TileResult, PredictError> {
    let g = &batch.graph;
    let (t0, t1) = (batch.tx_ptr[t], batch.tx_ptr[t + 1]);
    let (b0, b1) = (batch.bd_ptr[t], batch.bd_ptr[t + 1]);
    let pd = g.tx.pos_dim;
    let bpd = g.bd.pos_dim;
    let ids = match &g.tx.ids {
        NodeIds::Int(v) => &v[t0..t1],
        _ => {
            return Err(PredictError::Input(format!(
                "{}: tx.id: the tile has no transcript ids, so its transcripts cannot be reported",
                path.display()
            )))
        }
    };
    let n = t1 - t0;
    let pos = &g.tx.pos[t0 * pd..t1 * pd];
    let core: Vec<usize> = (0..n)
        .filter(|&i| bounds.is_none_or(|b| in_core(b, pos[i * pd], pos[i * pd + 1])))
        .collect();
    // With the expression term, every transcript of the tile (its margin too) is scored, so
    // that the boundaries' expression profiles can be estimated; otherwise the core only.
    let genes = tokens.map(|tk| &tk[t0..t1]);
    let expression = cfg.expression_weight > 0.0 && genes.is_some();
    let scored: Vec<usize> = if expression {
        (0..n).collect()
    } else {
        core.clone()
    };
    let queries: Vec<f32> = scored
        .iter()
        .flat_map(|&i| [pos[i * pd], pos[i * pd + 1]])
        .collect();
    let bd_xy: Vec<f32> = (b0..b1)
        .flat_map(|j| [g.bd.pos[j * bpd], g.bd.pos[j * bpd + 1]])
        .collect();
    let cand = knn_bipartite(&queries, &bd_xy, 2, KnnParams::new(cfg.k_bd, cfg.dist_bd))
        .map_err(|e| PredictError::Input(format!("{}: {e}", path.display())))?;
    // Equivalent radius of each boundary, from its area feature (column 0 of bd.x).
    let radius: Vec<f32> = match &g.bd.x {
        NodeFeatures::Dense { values, width } if *width > 0 => (b0..b1)
            .map(|j| (values[j * width].max(0.0) / std::f32::consts::PI).sqrt())
            .collect(),
        _ => vec![0.0; b1 - b0],
    };
    // The candidates within reach: (scored index, boundary, ranking logit, model logit). The
    // distance term only ranks the candidates; the cut applies to the model's score.
    let mut pairs: Vec<(usize, usize, f32, f32)> = Vec::with_capacity(cand.src.len());
    // (scored index, boundary) pairs close enough for the transcript to count towards the
    // boundary's expression profile.
    let mut inner: Vec<(usize, u32)> = Vec::new();
    // (scored index, boundary) pairs within `inner_reach` radii: assigned whatever the score.
    let mut inside: Vec<(usize, u32)> = Vec::new();
    for (q, b) in cand.src.iter().zip(&cand.dst) {
        let (q, b) = (*q as usize, *b as usize);
        let i = scored[q] + t0;
        let j = b + b0;
        let raw = dot(&ztx[i * d..(i + 1) * d], &zbd[j * d..(j + 1) * d]);
        let mut logit = raw;
        let dist = (queries[2 * q] - bd_xy[2 * b]).hypot(queries[2 * q + 1] - bd_xy[2 * b + 1]);
        if cfg.reach > 0.0 && radius[b] > 0.0 && dist > cfg.reach * radius[b] {
            continue;
        }
        if cfg.distance_scale > 0.0 {
            logit -= (dist - radius[b]).max(0.0) / cfg.distance_scale;
        }
        if expression && dist <= PROFILE_REACH * radius[b] {
            inner.push((q, b as u32));
        }
        if dist <= cfg.inner_reach * radius[b] {
            inside.push((q, b as u32));
        }
        pairs.push((q, b, logit, raw));
    }
    // Per scored transcript: (choice key, model score, boundary).
    let choose = |bonus: &dyn Fn(usize, usize) -> f32| {
        let mut best: Vec<(f32, f32, u32)> = vec![(f32::NAN, f32::NAN, NO_CELL); scored.len()];
        for &(q, b, logit, raw) in &pairs {
            let e = bonus(q, b);
            let key = logit + e;
            let cur = &mut best[q];
            if cur.0.is_nan() || key > cur.0 {
                *cur = (key, sigmoid(raw + e), b as u32);
            }
        }
        best
    };
    let mut best = choose(&|_, _| 0.0);
    if let (true, Some(genes)) = (expression, genes) {
        // Every transcript of the tile is scored here (`scored[q] == q`, `queries` holds the
        // x-y of all of them). A transcript counts towards its first choice's profile when it
        // passed the cut and lies within PROFILE_REACH radii of it.
        let mut member = vec![NO_CELL; n];
        for &(q, b) in &inner {
            if best[q].2 == b && best[q].1 >= cfg.cut() {
                member[q] = b;
            }
        }
        let profiles = ExpressionProfiles::new(genes, member, b1 - b0);
        let params = KnnParams {
            k: NEIGHBOURHOOD_SIZE,
            radius: NEIGHBOURHOOD_RADIUS,
            keep_self: true,
        };
        let nb = knn_bipartite(&queries, &queries, 2, params)
            .map_err(|e| PredictError::Input(format!("{}: {e}", path.display())))?;
        let mut hood: Vec<Vec<u32>> = vec![Vec::new(); n];
        for (q, j) in nb.src.iter().zip(&nb.dst) {
            hood[*q as usize].push(*j as u32);
        }
        let w = cfg.expression_weight;
        best = choose(&|q, b| w * profiles.mean_log_ratio(&hood[q], q, b));
    }
    // Whether each scored transcript lies within `inner_reach` radii of its chosen boundary.
    let mut near_chosen = vec![false; scored.len()];
    for &(q, b) in &inside {
        if best[q].2 == b {
            near_chosen[q] = true;
        }
    }
    let inside_core: Vec<bool> = if expression {
        core.iter().map(|&i| near_chosen[i]).collect()
    } else {
        near_chosen
    };
    // Back to the core's transcripts.
    let best: Vec<(f32, f32, u32)> = if expression {
        core.iter().map(|&i| best[i]).collect()
    } else {
        best
    };
    let mut records = Vec::with_capacity(core.len());
    let mut assigned_local = vec![false; n];
    let mut unassigned = Vec::new();
    for (q, &i) in core.iter().enumerate() {
        let (_, score, b) = best[q];
        let cell = if score >= cfg.cut() || (b != NO_CELL && inside_core[q]) {
            b
        } else {
            NO_CELL
        };
        if cell == NO_CELL {
            unassigned.push(i);
        } else {
            assigned_local[i] = true;
        }
        records.push(TxRecord {
            id: ids[i],
            x: pos[i * pd],
            y: pos[i * pd + 1],
            z: if pd == 3 { pos[i * pd + 2] } else { f32::NAN },
            gene: tokens.map_or(NO_GENE, |tk| tk[t0 + i] as u32),
            cell,
            score,
        });
    }
    let mut links = Vec::new();
    if cfg.use_cc && !unassigned.is_empty() {
        // Links are found in the section's plane (x, y): z spans the section's thickness,
        // which is of the order of a cell, and would keep most pairs beyond `dist_tx`.
        let xy: Vec<f32> = (0..n)
            .flat_map(|i| [pos[i * pd], pos[i * pd + 1]])
            .collect();
        let q: Vec<f32> = unassigned
            .iter()
            .flat_map(|&i| [pos[i * pd], pos[i * pd + 1]])
            .collect();
        let params = KnnParams {
            k: cfg.k_tx + 1,
            radius: cfg.dist_tx,
            keep_self: true,
        };
        let nb = knn_bipartite(&q, &xy, 2, params)
            .map_err(|e| PredictError::Input(format!("{}: {e}", path.display())))?;
        let mut taken = vec![0usize; unassigned.len()];
        for (qi, j) in nb.src.iter().zip(&nb.dst) {
            let (qi, j) = (*qi as usize, *j as usize);
            let i = unassigned[qi];
            if j == i || taken[qi] >= cfg.k_tx {
                continue;
            }
            taken[qi] += 1;
            if assigned_local[j] {
                continue;
            }
            let s = sigmoid(dot(
                &ztx[(t0 + i) * d..(t0 + i + 1) * d],
                &ztx[(t0 + j) * d..(t0 + j + 1) * d],
            ));
            if s >= cfg.cut() {
                links.push((ids[i], ids[j]));
            }
        }
    }
    Ok(TileResult { records, links })
}

/// Streams every tile through the model on backend `B` and collects the per-transcript
/// results.
fn collect<B: GatBackend>(
    ctx: &Context<'_>,
    device: &B::Device,
) -> Result<Collected, PredictError> {
    let cfg = ctx.cfg;
    let model = ctx.model.load::<B>(device)?;
    let mcfg: &SeggerConfig = &ctx.model.config;
    let d = mcfg.embedding_width();
    let total_tiles: usize = ctx.datasets.iter().map(TileDataset::len).sum();
    let mut col = Collected::default();
    let started = Instant::now();
    let mut last_log = Instant::now();
    let (mut t_wait, mut t_fwd, mut t_score) = (0.0f64, 0.0f64, 0.0f64);
    for ds in &ctx.datasets {
        let workers = cfg.num_workers.max(1);
        let loader = ds.loader(cfg.batch_size, false, 0, 0, workers, 2 * workers);
        let mut loader = loader;
        loop {
            let tw = Instant::now();
            let Some(lb) = loader.next() else { break };
            t_wait += tw.elapsed().as_secs_f64();
            let tf = Instant::now();
            let lb = lb.map_err(|e| PredictError::Input(format!("--input: {e}")))?;
            let mut batch = lb.batch;
            let path0 = lb.paths.first().cloned().unwrap_or_default();
            segger_model::check_layout(&batch.graph, mcfg)
                .map_err(|e| PredictError::Input(format!("{}: {e}", path0.display())))?;
            let original_tokens: Option<Vec<i64>> = match &mut batch.graph.tx.x {
                NodeFeatures::Tokens(t) => {
                    let orig = t.clone();
                    if let Some(map) = &ctx.token_map {
                        for v in t.iter_mut() {
                            *v = map[*v as usize];
                        }
                    }
                    Some(orig)
                }
                NodeFeatures::Dense { .. } => None,
            };
            let input = GraphInput::<B>::from_graph(&batch.graph, mcfg, device)
                .map_err(|e| PredictError::Input(format!("{}: {e}", path0.display())))?;
            let z = model.forward(&input);
            drop(input);
            let ztx: Vec<f32> = segger_model::pyg::tensor_values(z.tx);
            let zbd: Vec<f32> = segger_model::pyg::tensor_values(z.bd);
            let n_tiles = batch.tx_ptr.len() - 1;
            t_fwd += tf.elapsed().as_secs_f64();
            let ts = Instant::now();
            let results: Vec<TileResult> = (0..n_tiles)
                .into_par_iter()
                .map(|t| {
                    score_tile(
                        cfg,
                        &batch,
                        original_tokens.as_deref(),
                        t,
                        lb.bounds[t].as_ref(),
                        &ztx,
                        &zbd,
                        d,
                        &lb.paths[t],
                    )
                })
                .collect::<Result<_, _>>()?;
            let bd_ids: &[String] = match &batch.graph.bd.ids {
                NodeIds::Str(v) => v,
                _ if batch.graph.bd.num_nodes() == 0 => &[],
                _ => {
                    return Err(PredictError::Input(format!(
                        "{}: bd.id: the tile has no boundary ids metadata",
                        path0.display()
                    )))
                }
            };
            for (t, r) in results.into_iter().enumerate() {
                let b0 = batch.bd_ptr[t];
                for id in &bd_ids[b0..batch.bd_ptr[t + 1]] {
                    if !col.boundary_ids.contains(id) {
                        col.boundary_ids.insert(id.clone());
                    }
                }
                col.records.extend(r.records.into_iter().map(|mut rec| {
                    if rec.cell != NO_CELL {
                        rec.cell = col.cells.intern(&bd_ids[b0 + rec.cell as usize]);
                    }
                    rec
                }));
                col.links.extend(r.links);
                col.tiles += 1;
                col.nodes_seen += batch.tx_ptr[t + 1] - batch.tx_ptr[t];
            }
            t_score += ts.elapsed().as_secs_f64();
            if last_log.elapsed().as_secs_f64() >= 5.0 {
                last_log = Instant::now();
                tracing::info!(
                    "tiles {}/{}: {} transcripts, {:.0} transcripts/s",
                    col.tiles,
                    total_tiles,
                    col.records.len(),
                    col.records.len() as f64 / started.elapsed().as_secs_f64().max(1e-9)
                );
            }
        }
    }
    col.stage_seconds = [t_wait, t_fwd, t_score];
    Ok(col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quartiles_interpolate_like_numpy() {
        let q = Quartiles::of_sorted(&[1, 2, 3, 4]);
        assert_eq!(q.q1, 1.75);
        assert_eq!(q.median, 2.5);
        assert_eq!(q.q3, 3.25);
        assert_eq!(Quartiles::of_sorted(&[]).median, 0.0);
    }

    #[test]
    fn expression_profiles_favour_the_boundary_whose_genes_a_neighbourhood_shares() {
        // Boundary 0 holds five transcripts of gene 0, boundary 1 five of gene 1; transcript 10
        // (gene 0) belongs to neither.
        let genes: Vec<i64> = [0; 5].into_iter().chain([1; 5]).chain([0]).collect();
        let member: Vec<u32> = [0; 5].into_iter().chain([1; 5]).chain([NO_CELL]).collect();
        let p = ExpressionProfiles::new(&genes, member, 2);
        // Tile: gene 0 six of 11 (+1 pseudo-count each): p(0) = 7/13.
        let p0 = 7.0f32 / 13.0;
        let expect = |count: f32, total: f32| {
            ((count + PROFILE_PRIOR * p0) / (total + PROFILE_PRIOR) / p0).ln()
        };
        let hood = [10u32, 0, 1];
        let to0 = p.mean_log_ratio(&hood, 10, 0);
        let to1 = p.mean_log_ratio(&hood, 10, 1);
        assert!((to0 - expect(5.0, 5.0)).abs() < 1e-5, "{to0}");
        assert!((to1 - expect(0.0, 5.0)).abs() < 1e-5, "{to1}");
        assert!(to0 > 0.0 && to1 < 0.0);
        // A member is left out of its own boundary's profile: weaker evidence.
        let own = p.mean_log_ratio(&[0], 0, 0);
        assert!((own - expect(4.0, 4.0)).abs() < 1e-5, "{own}");
        assert!(own < to0);
    }
}
