//! The `segger train` job.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use burn::optim::Optimizer;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{DType, FloatDType};
use burn::train::metric::{FBetaScoreMetric, LossMetric};
use burn::train::{ExecutionStrategy, Learner, MultiDeviceOptim, SupervisedTraining};
use segger_data::TileDataset;
use segger_model::backend::BackendJob;
use segger_model::optim::{clipped_adamw, GradScaler, LossScale};
use segger_model::{GatBackend, Segger, SeggerConfig};
use serde::Serialize;

use crate::csv::{
    checkpoint_complete, checkpoint_file_epoch, read_metrics_csv, CsvMetricLogger, EpochRow,
};
use crate::lit::LitSegger;
use crate::loader::TileBatchLoader;
use crate::recorder::AtomicRecorder;

#[cfg(any(feature = "wgpu", feature = "cuda"))]
pub use segger_model::backend::kernel_cache;
pub use segger_model::backend::{cuda_available, Accelerator};

pub use crate::config::{
    EpochRowSummary, Precision, Strategy, TrainConfig, TrainError, TrainSummary,
    DEFAULT_LEARNING_RATE,
};

/// The validation split to use: `--val_dir`, or, when that is the missing validation split
/// of a dataset that has none (`dataset.json` next to it counts no validation tile), the
/// training tiles, said once in the log.
fn validation_dir(cfg: &TrainConfig) -> PathBuf {
    let val = &cfg.val_dir;
    if val.exists() {
        return val.clone();
    }
    let no_val_split = val
        .parent()
        .and_then(|root| segger_data::DatasetInfo::read(root).ok())
        .is_some_and(|info| info.tiles.val == 0);
    if no_val_split {
        tracing::warn!(
            "--val_dir {}: the dataset has no validation split; validating on the training tiles",
            val.display()
        );
        cfg.train_dir.clone()
    } else {
        val.clone()
    }
}

/// Opens a split and validates every tile (token ids below the vocabulary, labels present).
/// Returns the dataset and its transcript count.
fn open_split(
    dir: &Path,
    what: &'static str,
    cfg: &SeggerConfig,
) -> Result<(TileDataset, usize), TrainError> {
    if !dir.exists() {
        return Err(TrainError::Input(format!(
            "--{what}: {} does not exist",
            dir.display()
        )));
    }
    let vocab = if cfg.tx_features.is_none() {
        Some(cfg.num_tx_tokens)
    } else {
        None
    };
    let ds = TileDataset::open(dir, vocab).map_err(|source| TrainError::Data {
        flag: what,
        source: Box::new(source),
        hint: "",
    })?;
    let mut tx = 0;
    let mut first_layout = None;
    for i in 0..ds.len() {
        let t = ds.get(i).map_err(|source| {
            let out_of_vocab = matches!(
                &source,
                segger_data::DataError::Graph {
                    source: segger_graph::GraphError::TokenOutOfVocab { .. },
                    ..
                }
            );
            TrainError::Data {
                flag: what,
                source: Box::new(source),
                hint: if out_of_vocab {
                    " (raise --num_tx_tokens to the dataset's vocabulary size)"
                } else {
                    ""
                },
            }
        })?;
        if t.graph.labels().is_none_or(|l| l.is_empty()) {
            return Err(TrainError::Input(format!(
                "--{what}: {}: tile has no tx__belongs__bd label pairs; tiles without positives belong to the test split",
                ds.paths()[i].display()
            )));
        }
        segger_model::check_layout(&t.graph, cfg).map_err(|source| TrainError::Model {
            context: format!("--{what}: {}: ", ds.paths()[i].display()),
            source,
        })?;
        // Tiles of one batch are collated: they must share positions' and features' layout.
        let layout = t.graph.layout();
        match first_layout {
            None => first_layout = Some((layout, i)),
            Some((l, j)) if l != layout => {
                return Err(TrainError::Input(format!(
                    "--{what}: {}: tile layout ({layout}) differs from {} ({l}): a dataset's tiles must all be 2-D or all 3-D, with one feature layout",
                    ds.paths()[i].display(),
                    ds.paths()[j].display(),
                )));
            }
            Some(_) => {}
        }
        tx += t.graph.tx.num_nodes();
    }
    Ok((ds, tx))
}

/// The epochs with a complete checkpoint in `root/checkpoint` (model, optimiser and scheduler
/// files all present and not empty), oldest first.
pub fn complete_checkpoints(root: &Path) -> Vec<usize> {
    let dir = root.join("checkpoint");
    let mut epochs: Vec<usize> = std::fs::read_dir(&dir)
        .map(|r| {
            r.filter_map(|e| e.ok())
                .filter_map(|e| checkpoint_file_epoch(&e.file_name().to_string_lossy()))
                .filter(|&ep| checkpoint_complete(&dir, ep))
                .collect()
        })
        .unwrap_or_default();
    epochs.sort_unstable();
    epochs.dedup();
    epochs
}

/// The epoch of the newest complete checkpoint in `root/checkpoint` (model, optimiser and
/// scheduler files all present and not empty: a file cut short by a kill is zero bytes).
pub fn last_checkpoint(root: &Path) -> Option<usize> {
    complete_checkpoints(root).pop()
}

/// The newest committed epoch of the run in `root`: the newest epoch that has both a complete
/// checkpoint and its row in `metrics.csv`. An epoch is committed in two steps (the checkpoint,
/// then the row, which [`CsvMetricLogger`] writes only once the checkpoint is complete), so an
/// epoch with one and not the other was cut short by a kill and is trained again on resume.
pub fn committed_epoch(root: &Path) -> Option<usize> {
    let rows = read_metrics_csv(&root.join("metrics.csv"));
    complete_checkpoints(root)
        .into_iter()
        .rev()
        .find(|e| rows.iter().any(|r| r.epoch == *e))
}

/// Brings a run folder to the state of its committed epoch `keep` (`None`: a fresh start)
/// before training writes to it: removes the temporary files killed runs left (`.NAME.tmp-PID`
/// in the folder, the recorder's hidden part-files in `checkpoint/`) and every checkpoint but
/// `keep`'s. `metrics.csv` is rewritten to the committed rows by [`CsvMetricLogger::new`].
fn tidy_run_dir(root: &Path, keep: Option<usize>) -> Result<(), TrainError> {
    segger_fs::remove_stale_temps_in(root);
    let dir = root.join("checkpoint");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(());
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let epoch = checkpoint_file_epoch(&name);
        let part_file = name.starts_with('.') && name.ends_with(".mpk");
        let stale = part_file || epoch.is_some_and(|ep| Some(ep) != keep);
        if stale && e.path().is_file() {
            tracing::debug!("removing {}", e.path().display());
            std::fs::remove_file(e.path()).map_err(|source| TrainError::Io {
                path: e.path(),
                source,
            })?;
        }
    }
    Ok(())
}

/// The numeric flags outside the model configuration, each against the range that makes
/// sense (stated in `segger train --help`).
fn check_ranges(cfg: &TrainConfig) -> Result<(), TrainError> {
    let bad = |m: String| Err(TrainError::Input(m));
    segger_fs::require_utf8(
        &[
            ("--train_dir", &cfg.train_dir),
            ("--val_dir", &cfg.val_dir),
            ("--default_root_dir", &cfg.default_root_dir),
        ],
        "run_config.json",
    )
    .map_err(TrainError::Input)?;
    if !(cfg.learning_rate > 0.0 && cfg.learning_rate <= 1.0) {
        return bad(format!(
            "--learning_rate must be in (0, 1], got {}",
            cfg.learning_rate
        ));
    }
    if !(0.0..=1.0).contains(&cfg.weight_decay) {
        return bad(format!(
            "--weight_decay must be in [0, 1], got {}",
            cfg.weight_decay
        ));
    }
    if !(cfg.gradient_clip_val.is_finite() && cfg.gradient_clip_val >= 0.0) {
        return bad(format!(
            "--gradient_clip_val must be ≥ 0 (0 disables clipping), got {}",
            cfg.gradient_clip_val
        ));
    }
    let m = &cfg.model;
    for (flag, v, max) in [
        ("--num_tx_tokens", m.num_tx_tokens, 10_000_000),
        ("--init_emb", m.init_emb, MAX_WIDTH),
        ("--hidden_channels", m.hidden_channels, MAX_WIDTH),
        ("--out_channels", m.out_channels, MAX_WIDTH),
        ("--heads", m.heads, 64),
    ] {
        if !(1..=max).contains(&v) {
            return bad(format!("{flag} must be between 1 and {max}, got {v}"));
        }
    }
    if m.num_mid_layers > 64 {
        return bad(format!(
            "--mid_layers must be at most 64, got {}",
            m.num_mid_layers
        ));
    }
    for (flag, v, max) in [
        ("--num_workers", cfg.num_workers, MAX_WORKERS),
        ("--batch_size_train", cfg.batch_size_train, MAX_BATCH),
        ("--batch_size_val", cfg.batch_size_val, MAX_BATCH),
        ("--devices", cfg.devices, MAX_DEVICES),
    ] {
        if v > max {
            return bad(format!("{flag} must be at most {max}, got {v}"));
        }
    }
    Ok(())
}

/// The widest embedding a flag may ask for (`--init_emb`, `--hidden_channels`,
/// `--out_channels`).
pub const MAX_WIDTH: usize = 4096;
/// The most background threads `--num_workers` may ask for.
pub const MAX_WORKERS: usize = 256;
/// The most tiles per batch.
pub const MAX_BATCH: usize = 4096;
/// The most devices.
pub const MAX_DEVICES: usize = 64;

/// Checks the flags and data, then trains. Nothing is written before every input check passes.
pub fn train(cfg: &TrainConfig) -> Result<TrainSummary, TrainError> {
    let _precision =
        segger_model::mp::scoped_float32_matmul_precision(cfg.float32_matmul_precision);
    if cfg.devices == 0 {
        return Err(TrainError::Input("--devices must be at least 1".into()));
    }
    if cfg.epochs == 0 {
        return Err(TrainError::Input("--epochs must be at least 1".into()));
    }
    if cfg.batch_size_train == 0 || cfg.batch_size_val == 0 {
        return Err(TrainError::Input(
            "--batch_size_train and --batch_size_val must be at least 1".into(),
        ));
    }
    check_ranges(cfg)?;
    cfg.model.check().map_err(|source| TrainError::Model {
        context: String::new(),
        source,
    })?;
    segger_fs::check_overlap(
        "--default_root_dir",
        &cfg.default_root_dir,
        &[("--train_dir", &cfg.train_dir), ("--val_dir", &cfg.val_dir)],
    )?;
    let (train_ds, train_tx) = open_split(&cfg.train_dir, "train_dir", &cfg.model)?;
    let (val_ds, _) = open_split(&validation_dir(cfg), "val_dir", &cfg.model)?;
    let resume_epoch = if cfg.resume {
        check_same_model(cfg)?;
        let committed = committed_epoch(&cfg.default_root_dir);
        if committed.is_none() {
            tracing::info!(
                "--resume: {} holds no completed epoch; starting the run from epoch 1",
                cfg.default_root_dir.display()
            );
        }
        committed
    } else {
        // What a run killed while writing its first file left is not the user's.
        segger_fs::remove_stale_temps_in(&cfg.default_root_dir);
        if cfg.default_root_dir.join("metrics.csv").exists()
            || cfg.default_root_dir.join("checkpoint").exists()
            || cfg.default_root_dir.join("run_config.json").exists()
        {
            return Err(TrainError::Input(format!(
                "--default_root_dir: {} already holds a run; pass --resume to continue it (a run stopped before its first epoch ended starts again) or choose another directory",
                cfg.default_root_dir.display()
            )));
        }
        let non_empty = std::fs::read_dir(&cfg.default_root_dir)
            .map(|mut r| r.next().is_some())
            .unwrap_or(false);
        if non_empty {
            return Err(TrainError::Input(format!(
                "--default_root_dir: {} is not empty and holds no run; choose a new or empty directory (a run writes config.json, model.safetensors and more there)",
                cfg.default_root_dir.display()
            )));
        }
        None
    };
    if let Some(e) = resume_epoch {
        // A run killed after its last epoch but before its model was written finishes now.
        let finished = cfg.default_root_dir.join("model.safetensors").exists();
        if e > cfg.epochs || (e == cfg.epochs && finished) {
            return Err(TrainError::Input(format!("--resume: the checkpoint is at epoch {e}, and --epochs is {}: nothing left to train", cfg.epochs)));
        }
    }
    if cfg.resume {
        tidy_run_dir(&cfg.default_root_dir, resume_epoch)?;
    }
    let ctx = RunContext {
        cfg,
        train_ds,
        val_ds,
        train_tx,
        resume_epoch,
    };
    dispatch(ctx)
}

struct RunContext<'a> {
    cfg: &'a TrainConfig,
    train_ds: TileDataset,
    val_ds: TileDataset,
    train_tx: usize,
    resume_epoch: Option<usize>,
}

fn dispatch(ctx: RunContext<'_>) -> Result<TrainSummary, TrainError> {
    let accelerator = ctx.cfg.accelerator.resolve();
    if accelerator == Accelerator::Cpu {
        if let Some(flag) = ctx.cfg.precision.flag_if_mixed() {
            return Err(TrainError::Input(format!(
                "--precision {flag} runs on the GPU backends only (--accelerator cuda or wgpu): the CPU kernels compute in float32; use --precision 32 on the CPU"
            )));
        }
        if ctx.cfg.devices > 1 {
            return Err(TrainError::Input(format!(
                "--devices {}: the CPU backend is one device; use --devices 1",
                ctx.cfg.devices
            )));
        }
    }
    segger_model::backend::dispatch(accelerator, ctx.cfg.devices, TrainJob(&ctx))
        .map_err(|e| TrainError::Backend(e.to_string()))?
}

/// Training as a [`BackendJob`]: on the autodiff backend over the one dispatch picks.
struct TrainJob<'a, 'b>(&'a RunContext<'b>);

impl BackendJob for TrainJob<'_, '_> {
    type Output = Result<TrainSummary, TrainError>;

    fn run<B: GatBackend>(self, devices: Vec<B::Device>, backend: &'static str) -> Self::Output {
        run_backend::<burn::backend::Autodiff<B>>(self.0, devices, backend)
    }
}

/// The gene vocabulary of the dataset a split directory belongs to (`dataset.json` next to
/// the split, or in it), when it has one. Saved as `vocab.json` next to the model so that
/// prediction can map other samples' genes onto the model's tokens.
pub fn training_vocab(train_dir: &Path) -> Option<Vec<String>> {
    let dir = if train_dir.file_name().is_some_and(|n| n == "processed") {
        train_dir.parent()?
    } else {
        train_dir
    };
    [dir.parent(), Some(dir)]
        .into_iter()
        .flatten()
        .filter_map(|r| segger_data::DatasetInfo::read(r).ok())
        .map(|i| i.vocab)
        .find(|v| !v.is_empty())
}

/// With `--resume`: the model configuration of this call must be the one the run was started
/// with (its `run_config.json`), or the checkpoint's weights would not fit; refused before
/// anything is written, naming the settings that differ.
fn check_same_model(cfg: &TrainConfig) -> Result<(), TrainError> {
    let path = cfg.default_root_dir.join("run_config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        TrainError::Input(format!(
            "--resume: {}: {e} (a run folder has it from its first epoch)",
            path.display()
        ))
    })?;
    let stored: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| TrainError::Input(format!("--resume: {}: {e}", path.display())))?;
    let now = serde_json::to_value(&cfg.model).map_err(|e| TrainError::Runtime(e.to_string()))?;
    let Some(model) = stored.get("model") else {
        return Err(TrainError::Input(format!(
            "--resume: {}: field `model`: missing",
            path.display()
        )));
    };
    // Through the config type, so that a field the run's version did not write takes its
    // default (the value that version used).
    let model: SeggerConfig = serde_json::from_value(model.clone()).map_err(|e| {
        TrainError::Input(format!("--resume: {}: field `model`: {e}", path.display()))
    })?;
    let stored_model =
        serde_json::to_value(&model).map_err(|e| TrainError::Runtime(e.to_string()))?;
    let (Some(old), Some(new)) = (stored_model.as_object(), now.as_object()) else {
        return Err(TrainError::Runtime(
            "a model config is a JSON object".into(),
        ));
    };
    let mut changed: Vec<String> = new
        .iter()
        .filter(|(k, v)| old.get(*k) != Some(*v))
        .map(|(k, v)| {
            let was = old.get(k).map_or("nothing".to_string(), |o| o.to_string());
            format!("{k} {v} (the run has {was})")
        })
        .collect();
    changed.sort();
    // The schedule: a run written without one had a constant learning rate.
    let schedule: crate::schedule::LrScheduleKind = match stored.get("lr_schedule") {
        Some(v) => serde_json::from_value(v.clone()).map_err(|e| {
            TrainError::Input(format!(
                "--resume: {}: field `lr_schedule`: {e}",
                path.display()
            ))
        })?,
        None => Default::default(),
    };
    if schedule != cfg.lr_schedule {
        changed.push(format!(
            "--lr_schedule {} (the run has {})",
            cfg.lr_schedule.as_str(),
            schedule.as_str()
        ));
    }
    if changed.is_empty() {
        return Ok(());
    }
    let hint = if changed.iter().any(|c| c.starts_with("scaled_logits ")) {
        " (the run was started by a version of segger whose bidirectional architecture did not scale its logits: finish it with that version, or start a new run)"
    } else {
        ""
    };
    Err(TrainError::Input(format!(
        "--resume: this call's settings differ from the run's in {}: pass the run's settings{hint}",
        changed.join(", ")
    )))
}

/// The first epoch whose training or validation loss is not a finite number.
fn first_non_finite(rows: &[EpochRow]) -> Option<&EpochRow> {
    rows.iter()
        .find(|r| !(r.train_loss.is_finite() && r.validation_loss.is_finite()))
}

fn write_json_atomic(path: &Path, value: &impl Serialize) -> Result<(), TrainError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| TrainError::Runtime(format!("{}: {e}", path.display())))?;
    Ok(segger_data::tile::write_atomic(path, text.as_bytes())?)
}

/// Refuses a mixed precision that one of `devices` cannot compute in.
fn check_precision<B: AutodiffBackend>(
    precision: Precision,
    devices: &[B::Device],
    backend: &str,
) -> Result<(), TrainError> {
    if let (Some(dtype), Some(flag)) = (precision.compute_dtype(), precision.flag_if_mixed()) {
        if let Some(d) = devices
            .iter()
            .find(|d| !B::supports_dtype(d, DType::from(dtype)))
        {
            return Err(TrainError::Backend(format!(
                "--precision {flag}: {backend} device {d:?} has no {dtype:?} arithmetic; use --precision 32{}",
                if dtype == FloatDType::BF16 { " (or 16-mixed)" } else { "" }
            )));
        }
    }
    Ok(())
}

/// Writes the trained model (`model.safetensors`), its configuration and the training
/// vocabulary into the run directory; returns the model's path.
fn save_trained<B: GatBackend>(
    cfg: &TrainConfig,
    trained: &Segger<B>,
) -> Result<PathBuf, TrainError> {
    let root = &cfg.default_root_dir;
    let model_path = root.join("model.safetensors");
    segger_model::pyg::save_pyg_state_dict(trained, &model_path)?;
    write_json_atomic(&root.join("config.json"), &cfg.model)?;
    if let Some(vocab) = training_vocab(&cfg.train_dir) {
        write_json_atomic(&root.join("vocab.json"), &vocab)?;
    }
    Ok(model_path)
}

/// Trains on backend `B` (autodiff over a [`GatBackend`]) on `devices`: the whole run of
/// [`train`] once its inputs are checked.
fn run_backend<B>(
    ctx: &RunContext<'_>,
    devices: Vec<B::Device>,
    backend: &str,
) -> Result<TrainSummary, TrainError>
where
    B: AutodiffBackend + GatBackend,
    B::InnerBackend: GatBackend,
{
    let cfg = ctx.cfg;
    let t0 = Instant::now();
    let compute = cfg.precision.compute_dtype();
    check_precision::<B>(cfg.precision, &devices, backend)?;
    let root = &cfg.default_root_dir;
    std::fs::create_dir_all(root).map_err(|source| TrainError::Io {
        path: root.clone(),
        source,
    })?;
    write_json_atomic(&root.join("run_config.json"), cfg)?;
    let device = devices[0].clone();
    let loss_scale = (cfg.precision == Precision::Mixed16).then(LossScale::default);
    let model = LitSegger {
        model: Segger::<B>::init(&cfg.model, &device, cfg.seed).map_err(|source| {
            TrainError::Model {
                context: String::new(),
                source,
            }
        })?,
        compute,
        loss_scale: loss_scale.clone(),
    };
    let optim = GradScaler::new(
        clipped_adamw::<B, LitSegger<B>>(cfg.weight_decay as f64, cfg.gradient_clip_val),
        loss_scale.clone(),
    );
    let start_epoch = ctx.resume_epoch.unwrap_or(0) as u64;
    let train_loader = Arc::new(TileBatchLoader::<B>::new(
        ctx.train_ds.clone(),
        cfg.model.clone(),
        cfg.batch_size_train,
        true,
        cfg.seed,
        cfg.num_workers,
        start_epoch,
        device.clone(),
    ));
    // The validation tiles, from epoch `first`: for burn-train's validation passes and for the
    // calibration after training.
    let val_loader = |first: u64| {
        TileBatchLoader::<B::InnerBackend>::new(
            ctx.val_ds.clone(),
            cfg.model.clone(),
            cfg.batch_size_val,
            false,
            cfg.seed,
            cfg.num_workers,
            first,
            device.clone(),
        )
    };
    let valid_loader = Arc::new(val_loader(start_epoch));
    let stats = Arc::clone(&train_loader.stats);
    let interrupter = burn::train::Interrupter::new();
    let csv = CsvMetricLogger::new(
        root,
        Arc::clone(&stats),
        Arc::clone(&valid_loader.stats),
        ctx.resume_epoch,
        cfg.epochs,
    )
    .after_checkpoints(&root.join("checkpoint"))
    .stop_on_divergence(interrupter.clone());
    let recorder = AtomicRecorder::new(NamedMpkFileRecorder::<FullPrecisionSettings>::new());
    let strategy = if devices.len() == 1 {
        ExecutionStrategy::SingleDevice(device.clone())
    } else {
        ExecutionStrategy::MultiDevice(devices.clone(), MultiDeviceOptim::OptimMainDevice)
    };
    tracing::info!(
        "training on {backend}: {} train tiles ({} transcripts), {} validation tiles, {} epochs{}",
        ctx.train_ds.len(),
        ctx.train_tx,
        ctx.val_ds.len(),
        cfg.epochs,
        ctx.resume_epoch
            .map(|e| format!(", resuming after epoch {e}"))
            .unwrap_or_default()
    );
    let mut training = SupervisedTraining::new(root, train_loader, valid_loader)
        .metric_train_numeric(LossMetric::new())
        .metric_valid_numeric(LossMetric::new())
        .metric_valid_numeric(crate::metrics::LinkAurocMetric::default())
        .metric_valid_numeric(FBetaScoreMetric::binary(1.0, 0.5))
        .with_file_checkpointer(recorder)
        // The last three epochs (the default also keeps the lowest validation loss, a choice
        // whose bookkeeping a resumed run loses, so that those checkpoints were never removed).
        // Resume needs only the newest committed one; the older two cover a row still on its
        // way when the next checkpoint is written.
        .with_checkpointing_strategy(burn::train::checkpoint::KeepLastNCheckpoints::new(3))
        .with_metric_logger(csv)
        .with_application_logger(None)
        .with_interrupter(interrupter)
        .with_training_strategy(strategy.into())
        .num_epochs(cfg.epochs);
    if !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        training = training.renderer(crate::progress::LogRenderer::new(
            Arc::clone(&stats),
            std::time::Duration::from_secs(10),
        ));
    }
    if let Some(e) = ctx.resume_epoch {
        training = training.checkpoint(e);
    }
    // One optimiser step per batch (per batch on each device with several).
    let steps_per_epoch = ctx
        .train_ds
        .len()
        .div_ceil(cfg.batch_size_train)
        .div_ceil(devices.len());
    let schedule = crate::schedule::LrSchedule::new(
        cfg.lr_schedule,
        cfg.learning_rate,
        steps_per_epoch * cfg.epochs,
    );
    let learner = Learner::new(model, optim, schedule);
    let result = training.launch(learner);
    // A run whose loss left the finite numbers has nothing worth keeping: no model, no
    // calibration, an error naming the first such epoch.
    let rows = read_metrics_csv(&root.join("metrics.csv"));
    if let Some(r) = first_non_finite(&rows) {
        return Err(TrainError::Diverged {
            epoch: r.epoch,
            step: r.step,
            train_loss: r.train_loss,
            validation_loss: r.validation_loss,
        });
    }
    // The assignment threshold, picked on the validation tiles with the final weights.
    let calibration = crate::calibrate::calibrate(&result.model, &val_loader(0));
    if let Some(c) = &calibration {
        write_json_atomic(&root.join(segger_model::calibration::CALIBRATION_FILE), c)?;
    }
    let model_path = save_trained(cfg, &result.model.model)?;
    Ok(TrainSummary {
        root: root.clone(),
        backend: backend.to_string(),
        started_at_epoch: ctx.resume_epoch.unwrap_or(0),
        rows: rows.iter().map(EpochRowSummary::from).collect(),
        train_tiles: ctx.train_ds.len(),
        val_tiles: ctx.val_ds.len(),
        train_transcripts: ctx.train_tx,
        model_path,
        wall_seconds: t0.elapsed().as_secs_f64(),
        loss_scale: loss_scale.map(|s| s.state()),
        calibration,
    })
}

// Keeps the `Optimizer` trait in scope for `init`'s return type.
#[allow(dead_code)]
fn _assert_optimizer<B: AutodiffBackend + GatBackend, O: Optimizer<LitSegger<B>, B>>(_o: &O)
where
    B::InnerBackend: GatBackend,
{
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(epoch: usize, train_loss: f64, validation_loss: f64) -> EpochRow {
        EpochRow {
            epoch,
            train_loss,
            validation_loss,
            ..Default::default()
        }
    }

    /// A run folder written before `lr_schedule` and `scaled_logits` existed: those take the
    /// values that version used (constant, false), so only a call that asks for others is
    /// refused, naming them.
    #[test]
    fn resume_reads_fields_an_earlier_version_did_not_write() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let reference = SeggerConfig::new(20);
        let mut run = serde_json::to_value(TrainConfig::new(
            root.join("t"),
            root.join("v"),
            root.clone(),
            reference.clone(),
        ))
        .unwrap();
        let o = run.as_object_mut().unwrap();
        o.remove("lr_schedule");
        o["model"].as_object_mut().unwrap().remove("scaled_logits");
        std::fs::write(root.join("run_config.json"), run.to_string()).unwrap();
        let call = |model: SeggerConfig, kind| TrainConfig {
            lr_schedule: kind,
            ..TrainConfig::new(root.join("t"), root.join("v"), root.clone(), model)
        };
        use crate::schedule::LrScheduleKind::{Constant, Cosine};
        assert!(check_same_model(&call(reference.clone(), Constant)).is_ok());
        let e = check_same_model(&call(reference.clone(), Cosine))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--lr_schedule cosine (the run has constant)"),
            "{e}"
        );
        let e = check_same_model(&call(reference.bidirectional(), Constant))
            .unwrap_err()
            .to_string();
        assert!(e.contains("scaled_logits true (the run has false)"), "{e}");
        assert!(e.contains("finish it with that version"), "{e}");
    }

    #[test]
    fn a_diverged_epoch_is_found() {
        let ok = [row(1, 0.7, 0.6), row(2, 0.5, 0.5)];
        assert!(first_non_finite(&ok).is_none());
        let bad = [
            row(1, 0.7, 0.6),
            row(2, f64::NAN, 0.5),
            row(3, 0.5, f64::INFINITY),
        ];
        assert_eq!(first_non_finite(&bad).map(|r| r.epoch), Some(2));
        let late = [row(1, 0.7, 0.6), row(2, 0.5, f64::INFINITY)];
        assert_eq!(first_non_finite(&late).map(|r| r.epoch), Some(2));
    }
}
