//! `segger train`: the reference's `train_model.py` flags, spelled as the seed spells them.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use segger_model::{Aggr, SeggerConfig};
use segger_train::{Precision, Strategy, TrainConfig};

use crate::values::{AcceleratorArg, MatmulPrecisionArg};
use crate::CliError;

/// `segger train --architecture`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Architecture {
    /// The reference's relations plus boundary-to-transcript messages, with link logits scaled
    /// by 1/√(embedding width).
    Bidirectional,
    /// The reference Segger's relations (parity-exact with it).
    Reference,
}

/// `segger train --lr_schedule`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LrSchedule {
    /// Warm-up, then a half cosine to 1 % of `--learning_rate`.
    Cosine,
    /// `--learning_rate` throughout (the reference's).
    Constant,
}

impl From<LrSchedule> for segger_train::LrScheduleKind {
    fn from(s: LrSchedule) -> Self {
        match s {
            LrSchedule::Cosine => Self::Cosine,
            LrSchedule::Constant => Self::Constant,
        }
    }
}

/// `segger train --aggr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AggrArg {
    /// Sum of the relation outputs (the reference's default).
    #[value(alias = "add")]
    Sum,
    /// Mean of the relation outputs.
    Mean,
    /// Element-wise maximum of the relation outputs.
    Max,
}

impl From<AggrArg> for Aggr {
    fn from(a: AggrArg) -> Self {
        match a {
            AggrArg::Sum => Aggr::Sum,
            AggrArg::Mean => Aggr::Mean,
            AggrArg::Max => Aggr::Max,
        }
    }
}

/// `segger train --strategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StrategyArg {
    /// One device, or data-parallel over --devices.
    Auto,
    /// Data-parallel over --devices.
    #[value(alias = "ddp_spawn", alias = "ddp_find_unused_parameters_true")]
    Ddp,
}

impl From<StrategyArg> for Strategy {
    fn from(s: StrategyArg) -> Self {
        match s {
            StrategyArg::Auto => Strategy::Auto,
            StrategyArg::Ddp => Strategy::Ddp,
        }
    }
}

/// `segger train --precision`, spelled as Lightning spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PrecisionArg {
    /// float32 everywhere.
    #[value(name = "32", alias = "32-true", alias = "fp32")]
    F32,
    /// f16 encoder, float32 weights, optimiser and loss (GPU backends).
    #[value(name = "16-mixed", alias = "16")]
    Mixed16,
    /// bf16 encoder, float32 weights, optimiser and loss (CUDA).
    #[value(name = "bf16-mixed", alias = "bf16")]
    Bf16Mixed,
}

impl From<PrecisionArg> for Precision {
    fn from(p: PrecisionArg) -> Self {
        match p {
            PrecisionArg::F32 => Precision::F32,
            PrecisionArg::Mixed16 => Precision::Mixed16,
            PrecisionArg::Bf16Mixed => Precision::Bf16Mixed,
        }
    }
}

/// Arguments of `segger train`. Flags use the seed's spelling (`--train_dir`); kebab-case
/// aliases (`--train-dir`) are accepted too.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Training split directory (holds processed/ with the tiles).
    #[arg(long = "train_dir", alias = "train-dir", value_name = "DIR")]
    pub train_dir: PathBuf,
    /// Validation split directory (holds processed/ with the tiles).
    #[arg(long = "val_dir", alias = "val-dir", value_name = "DIR")]
    pub val_dir: PathBuf,
    /// Tiles per training batch (1–4096).
    #[arg(
        long = "batch_size_train",
        alias = "batch-size-train",
        default_value_t = 4
    )]
    pub batch_size_train: usize,
    /// Tiles per validation batch (1–4096).
    #[arg(long = "batch_size_val", alias = "batch-size-val", default_value_t = 4)]
    pub batch_size_val: usize,
    /// Number of gene tokens (the dataset's vocabulary size or more; at most 10,000,000).
    /// Default: the reference's 500, or the vocabulary size of the dataset that holds
    /// --train_dir (its dataset.json) when that is larger.
    #[arg(long = "num_tx_tokens", alias = "num-tx-tokens")]
    pub num_tx_tokens: Option<usize>,
    /// Width of the input embeddings (1–4096).
    #[arg(long = "init_emb", alias = "init-emb", default_value_t = 8)]
    pub init_emb: usize,
    /// Per-head width of the hidden GATv2 layers (1–4096).
    #[arg(
        long = "hidden_channels",
        alias = "hidden-channels",
        default_value_t = 64
    )]
    pub hidden_channels: usize,
    /// Per-head width of the last GATv2 layer (1–4096).
    #[arg(long = "out_channels", alias = "out-channels", default_value_t = 16)]
    pub out_channels: usize,
    /// Attention heads (1–64).
    #[arg(long, default_value_t = 4)]
    pub heads: usize,
    /// Middle GATv2 layers (0–64).
    #[arg(
        long = "mid_layers",
        alias = "mid-layers",
        alias = "num_mid_layers",
        default_value_t = 1
    )]
    pub mid_layers: usize,
    /// How outputs of relations reaching the same node type combine: sum, mean or max.
    #[arg(long, value_enum, default_value = "sum")]
    pub aggr: AggrArg,
    /// Message passing: `bidirectional` adds boundary-to-transcript messages (the
    /// `tx__neighbors__bd` edges reversed) so that transcripts see their nearest nuclei;
    /// `reference` is the reference Segger's (transcript-to-boundary only).
    #[arg(long, value_enum, default_value = "bidirectional")]
    pub architecture: Architecture,
    /// Backend: cpu, wgpu, cuda or auto (cuda when built in and present, else cpu).
    #[arg(long, value_enum, ignore_case = true, default_value = "auto")]
    pub accelerator: AcceleratorArg,
    /// auto (one device, or data-parallel over --devices) or ddp (data-parallel over --devices,
    /// through burn-train's multi-device strategy).
    #[arg(long, value_enum, default_value = "auto")]
    pub strategy: StrategyArg,
    /// 32 (float32), or on a GPU backend 16-mixed (f16 encoder with float32 weights, optimiser
    /// and loss, and dynamic loss scaling) or bf16-mixed (bf16 encoder; CUDA only).
    #[arg(long, value_enum, default_value = "32")]
    pub precision: PrecisionArg,
    /// Float32 matmuls on the GPU, as PyTorch's `torch.set_float32_matmul_precision`: highest
    /// (plain f32, what the reference computes) or high (TF32 on CUDA's tensor cores, about 1e-3
    /// relative error per product). The CPU always multiplies in plain f32.
    #[arg(
        long = "float32_matmul_precision",
        alias = "float32-matmul-precision",
        value_enum,
        default_value = "highest"
    )]
    pub float32_matmul_precision: MatmulPrecisionArg,
    /// Number of devices (GPUs, 1–64); the CPU is one device.
    #[arg(long, default_value_t = 1)]
    pub devices: usize,
    /// Number of epochs (at least 1).
    #[arg(long, default_value_t = 100)]
    pub epochs: usize,
    /// Run directory: metrics.csv, run_config.json, checkpoint/, model.safetensors, config.json.
    #[arg(
        long = "default_root_dir",
        alias = "default-root-dir",
        default_value = "./models/segger"
    )]
    pub default_root_dir: PathBuf,
    /// AdamW learning rate, in (0, 1]: the peak of `--lr_schedule` (the reference's LitSegger
    /// hard-codes a constant 1e-4, which after 20 epochs still sits on the class prior:
    /// docs/accuracy.md).
    #[arg(
        long = "learning_rate",
        alias = "learning-rate",
        alias = "lr",
        default_value_t = segger_train::run::DEFAULT_LEARNING_RATE
    )]
    pub learning_rate: f64,
    /// How the learning rate moves over the run: `cosine` (a warm-up over the first 5 % of the
    /// steps from a tenth of `--learning_rate`, then a half cosine down to 1 % of it at the last
    /// step) or `constant` (the reference's).
    #[arg(
        long = "lr_schedule",
        alias = "lr-schedule",
        value_enum,
        default_value = "cosine"
    )]
    pub lr_schedule: LrSchedule,
    /// AdamW weight decay, in [0, 1].
    #[arg(long = "weight_decay", alias = "weight-decay", default_value_t = 1e-4)]
    pub weight_decay: f32,
    /// Maximum global gradient norm before each step (≥ 0; 0 disables clipping).
    #[arg(
        long = "gradient_clip_val",
        alias = "gradient-clip-val",
        default_value_t = 1.0
    )]
    pub gradient_clip_val: f32,
    /// Seed of the initial weights and the data order.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Background threads reading and collating tiles (0–256).
    #[arg(long = "num_workers", alias = "num-workers", default_value_t = 2)]
    pub num_workers: usize,
    /// Continue the run in --default_root_dir from its last committed epoch (checkpoint and
    /// metrics row; weights, optimiser state; the data order is a function of seed and epoch),
    /// or start it again when it has none.
    #[arg(long)]
    pub resume: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The reference's token count (500), raised to the vocabulary of the dataset holding
/// `train_dir` when its panel is larger (say so once).
fn default_num_tx_tokens(train_dir: &std::path::Path) -> usize {
    const REFERENCE: usize = 500;
    let vocab = train_dir
        .parent()
        .and_then(|root| segger_data::DatasetInfo::read(root).ok())
        .map_or(0, |info| info.vocab.len());
    if vocab > REFERENCE {
        tracing::info!(
            "--num_tx_tokens {vocab}: the dataset's vocabulary has {vocab} genes (more than the \
             reference's default of {REFERENCE})"
        );
    }
    vocab.max(REFERENCE)
}

/// Runs `segger train`.
pub fn run(a: TrainArgs) -> Result<(), CliError> {
    let num_tx_tokens = a
        .num_tx_tokens
        .unwrap_or_else(|| default_num_tx_tokens(&a.train_dir));
    let mut model = SeggerConfig::new(num_tx_tokens);
    model.init_emb = a.init_emb;
    model.hidden_channels = a.hidden_channels;
    model.out_channels = a.out_channels;
    model.heads = a.heads;
    model.num_mid_layers = a.mid_layers;
    model.aggr = a.aggr.into();
    if a.architecture == Architecture::Bidirectional {
        model = model.bidirectional();
    }
    let cfg = TrainConfig {
        train_dir: a.train_dir,
        val_dir: a.val_dir,
        batch_size_train: a.batch_size_train,
        batch_size_val: a.batch_size_val,
        model,
        accelerator: a.accelerator.into(),
        strategy: a.strategy.into(),
        precision: a.precision.into(),
        float32_matmul_precision: a.float32_matmul_precision.into(),
        devices: a.devices,
        epochs: a.epochs,
        default_root_dir: a.default_root_dir,
        learning_rate: a.learning_rate,
        lr_schedule: a.lr_schedule.into(),
        weight_decay: a.weight_decay,
        gradient_clip_val: a.gradient_clip_val,
        seed: a.seed,
        num_workers: a.num_workers,
        resume: a.resume,
    };
    let summary = segger_train::run::train(&cfg).map_err(|e| CliError {
        code: e.exit_code(),
        error: anyhow::anyhow!(e),
    })?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).expect("summary serialises")
        );
        return Ok(());
    }
    println!();
    println!(
        "segger train: {} epochs on {} in {:.1} s",
        summary.rows.len(),
        summary.backend,
        summary.wall_seconds
    );
    println!(
        "  data     {} train tiles ({} transcripts/epoch), {} validation tiles",
        summary.train_tiles, summary.train_transcripts, summary.val_tiles
    );
    println!(
        "  {:>5} {:>11} {:>9} {:>9} {:>7} {:>9} {:>10}",
        "epoch", "train_loss", "val_loss", "val_auroc", "val_f1", "tx/s", "wait (s)"
    );
    let rows = &summary.rows;
    let show: Vec<usize> = if rows.len() <= 12 {
        (0..rows.len()).collect()
    } else {
        (0..5).chain(rows.len() - 5..rows.len()).collect()
    };
    for (k, &i) in show.iter().enumerate() {
        if k > 0 && i != show[k - 1] + 1 {
            println!("  {:>5}", "...");
        }
        let r = &rows[i];
        println!(
            "  {:>5} {:>11.4} {:>9.4} {:>9.4} {:>7.4} {:>9.0} {:>10.2}",
            r.epoch,
            r.train_loss,
            r.validation_loss,
            r.validation_auroc,
            r.validation_f1,
            r.transcripts_per_second,
            r.loader_wait_seconds
        );
    }
    if let Some(best) = rows
        .iter()
        .filter(|r| r.validation_loss.is_finite())
        .min_by(|a, b| a.validation_loss.total_cmp(&b.validation_loss))
    {
        println!(
            "  best validation loss {:.4} at epoch {}",
            best.validation_loss, best.epoch
        );
    }
    if let Some(ls) = &summary.loss_scale {
        println!(
            "  16-mixed loss scale {} at the end, {} optimiser steps skipped for non-finite gradients",
            ls.scale, ls.skipped
        );
    }
    if let Some(c) = &summary.calibration {
        println!(
            "  cut      {:.4} (validation: true-positive rate {:.3}, false-positive rate {:.3}; calibration.json)",
            c.score_cut, c.tpr, c.fpr
        );
    }
    println!("  model    {}", summary.model_path.display());
    println!("  metrics  {}", summary.root.join("metrics.csv").display());
    Ok(())
}
