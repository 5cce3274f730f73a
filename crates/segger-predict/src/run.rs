//! The `segger predict` job.

use std::time::Instant;

use rayon::prelude::*;
use segger_data::TileDataset;
use segger_graph::{NodeFeatures, NodeIds};
use segger_model::backend::BackendJob;
use segger_model::{GatBackend, GraphInput, SeggerConfig};

use crate::input::resolve_tiles;
use crate::model_dir::{ModelDir, VocabSource};
use crate::score::{score_tile, TileResult};
use crate::state::{Collected, NO_CELL};
use crate::{PredictConfig, PredictError, PredictSummary, Timings, DEFAULT_SCORE_CUT};

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
    if let crate::BatchSize::Tiles(n) = cfg.batch_size {
        if !(1..=crate::BatchSize::MAX).contains(&n) {
            return bad(format!(
                "--batch_size must be auto or between 1 and {}, got {n}",
                crate::BatchSize::MAX
            ));
        }
    }
    for (flag, v, max) in [("--k_bd", cfg.k_bd, max_k), ("--k_tx", cfg.k_tx, max_k)] {
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
    if let crate::CellTypes::Fixed(k) = cfg.cell_types {
        if !(2..=crate::CellTypes::MAX).contains(&k) {
            return bad(format!(
                "--cell_types must be auto, 0 (off) or between 2 and {}, got {k}",
                crate::CellTypes::MAX
            ));
        }
    }
    let max_join = crate::cell_types::NEIGHBOURS - 1;
    if cfg.join_neighbours > max_join {
        return bad(format!(
            "--join_neighbours must be between 0 (off) and {max_join}, got {}",
            cfg.join_neighbours
        ));
    }
    if cfg.border_rounds > crate::cell_types::MAX_BORDER_ROUNDS {
        return bad(format!(
            "--border_rounds must be between 0 (off) and {}, got {}",
            crate::cell_types::MAX_BORDER_ROUNDS,
            cfg.border_rounds
        ));
    }
    if !(cfg.distance_scale.is_finite() && cfg.distance_scale >= 0.0) {
        return bad(format!(
            "--distance_scale must be a finite number ≥ 0, got {}",
            cfg.distance_scale
        ));
    }
    for (flag, v) in [
        ("lone_reach", cfg.lone_reach),
        ("return_reach", cfg.return_reach),
        ("inner_reach", cfg.inner_reach),
        ("expression_weight", cfg.expression_weight),
    ] {
        if !(v.is_finite() && (0.0..=100.0).contains(&v)) {
            return bad(format!("--{flag} must lie in [0, 100], got {v}"));
        }
    }
    if let Some(t) = cfg
        .raw_tile_size
        .filter(|t| !(t.is_finite() && *t > 0.0 && *t <= crate::config::MAX_RAW_TILE_SIZE))
    {
        return bad(format!(
            "--tile_size must be positive µm, at most {}, or 0 (the training dataset's tiling), got {t}",
            crate::config::MAX_RAW_TILE_SIZE
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
        crate::outputs::SPATIALDATA_FILE,
        crate::outputs::LOG_FILE,
    ],
    signature: crate::outputs::LOG_FILE,
};

/// Checks the flags, the model and the input, then predicts and writes the outputs. Nothing
/// is written to `--output` before every input check passes, and `--output` appears only
/// complete (written to a temporary directory, then renamed).
pub fn predict(cfg: &PredictConfig) -> Result<PredictSummary, PredictError> {
    let _precision =
        segger_model::mp::scoped_float32_matmul_precision(cfg.float32_matmul_precision);
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
        Some(_) if cfg.raw_options.is_some() => {
            return Err(PredictError::Input(format!(
                "--input: {} is a tile dataset, already read: the reading options (boundaries, \
                 files, columns, filters, scale, gene embedding, merged nuclei) apply only to a \
                 raw sample; leave them out or pass the raw sample's folder",
                cfg.input.display()
            )))
        }
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
    segger_model::backend::dispatch(ctx.cfg.accelerator, 1, CollectJob(ctx))
        .map_err(|e| PredictError::Backend(e.to_string()))?
}

/// Prediction as a [`BackendJob`]: every tile through the model on the backend dispatch picks.
struct CollectJob<'a, 'b>(&'a Context<'b>);

impl BackendJob for CollectJob<'_, '_> {
    type Output = Result<(Collected, String), PredictError>;

    fn run<B: GatBackend>(self, devices: Vec<B::Device>, backend: &'static str) -> Self::Output {
        collect::<B>(self.0, &devices[0]).map(|c| (c, backend.to_string()))
    }
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
        let mut loader = match cfg.batch_size {
            crate::BatchSize::Tiles(n) => ds.loader(n, false, 0, 0, workers, 2 * workers),
            crate::BatchSize::Auto => {
                let batches =
                    ds.batches_by_nodes(crate::BatchSize::AUTO_NODES)
                        .map_err(|source| PredictError::Data {
                            context: "--input: ".into(),
                            source: Box::new(source),
                        })?;
                ds.loader_for(batches, workers, 2 * workers)
            }
        };
        loop {
            let tw = Instant::now();
            let Some(lb) = loader.next() else { break };
            t_wait += tw.elapsed().as_secs_f64();
            let tf = Instant::now();
            let lb = lb.map_err(|source| PredictError::Data {
                context: "--input: ".into(),
                source: Box::new(source),
            })?;
            let mut batch = lb.batch;
            let path0 = lb.paths.first().cloned().unwrap_or_default();
            segger_model::check_layout(&batch.graph, mcfg).map_err(|source| {
                PredictError::Model {
                    context: format!("{}: ", path0.display()),
                    source,
                }
            })?;
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
            let input =
                GraphInput::<B>::from_graph(&batch.graph, mcfg, device).map_err(|source| {
                    PredictError::Model {
                        context: format!("{}: ", path0.display()),
                        source,
                    }
                })?;
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
                col.near.extend(r.near);
                // (id, tile-local boundary) pairs to (id, cell)
                let cells = &mut col.cells;
                let mut interned = |pairs: Vec<(i64, u32)>| -> Vec<(i64, u32)> {
                    pairs
                        .into_iter()
                        .map(|(id, b)| (id, cells.intern(&bd_ids[b0 + b as usize])))
                        .collect()
                };
                let (below, fallback) = (interned(r.below), interned(r.fallback));
                col.below.extend(below);
                col.fallback.extend(fallback);
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
