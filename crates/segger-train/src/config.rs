//! What `segger train` is asked to do ([`TrainConfig`]), how it fails ([`TrainError`]) and
//! what it reports ([`TrainSummary`]).

use std::path::PathBuf;

use burn::tensor::FloatDType;
use segger_model::mp::MatmulPrecision;
use segger_model::optim::LossScaleState;
use segger_model::SeggerConfig;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::csv::EpochRow;
use crate::run::Accelerator;
use crate::schedule::LrScheduleKind;

/// Numeric precision (`--precision`), spelled as Lightning spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Precision {
    /// `32` / `32-true`: float32 everywhere.
    F32,
    /// `16-mixed`: float16 compute with float32 master weights.
    Mixed16,
    /// `bf16-mixed`: bfloat16 compute with float32 master weights.
    Bf16Mixed,
}

impl Precision {
    /// The encoder's compute type: f16 for `16-mixed`, bf16 for `bf16-mixed`, `None` for f32.
    pub fn compute_dtype(self) -> Option<FloatDType> {
        match self {
            Self::F32 => None,
            Self::Mixed16 => Some(FloatDType::F16),
            Self::Bf16Mixed => Some(FloatDType::BF16),
        }
    }

    /// The flag's spelling for a mixed precision, `None` for f32.
    pub(crate) fn flag_if_mixed(self) -> Option<&'static str> {
        match self {
            Self::F32 => None,
            Self::Mixed16 => Some("16-mixed"),
            Self::Bf16Mixed => Some("bf16-mixed"),
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "32" | "32-true" | "fp32" => Ok(Self::F32),
            "16-mixed" | "16" => Ok(Self::Mixed16),
            "bf16-mixed" | "bf16" => Ok(Self::Bf16Mixed),
            other => Err(format!(
                "unknown precision {other:?}: expected 32, 16-mixed or bf16-mixed"
            )),
        }
    }
}

/// Multi-device strategy (`--strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// One device, or burn-train's multi-device data parallelism when `devices > 1`.
    Auto,
    /// Data parallelism over the devices (burn-train's multi-device strategy).
    Ddp,
}

impl std::str::FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "ddp" | "ddp_spawn" | "ddp_find_unused_parameters_true" => Ok(Self::Ddp),
            other => Err(format!("unknown strategy {other:?}: expected auto or ddp")),
        }
    }
}

/// The default AdamW learning rate of `segger train`, the peak of its cosine schedule (the
/// reference hard-codes a constant 1e-4, which after 20 epochs still sits on the class prior:
/// docs/accuracy.md).
pub const DEFAULT_LEARNING_RATE: f64 = 6e-3;

/// Everything `segger train` needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Split directory with the training tiles (`processed/` inside).
    pub train_dir: PathBuf,
    /// Split directory with the validation tiles.
    pub val_dir: PathBuf,
    /// Tiles per training batch.
    pub batch_size_train: usize,
    /// Tiles per validation batch.
    pub batch_size_val: usize,
    /// The model architecture.
    pub model: SeggerConfig,
    /// Backend.
    pub accelerator: Accelerator,
    /// Multi-device strategy.
    pub strategy: Strategy,
    /// Precision.
    pub precision: Precision,
    /// Float32 matmuls on the GPU: plain f32 (`highest`, the reference's) or TF32 on CUDA's
    /// tensor cores (`high`); see [`segger_model::mp::MatmulPrecision`].
    #[serde(default)]
    pub float32_matmul_precision: MatmulPrecision,
    /// Number of devices.
    pub devices: usize,
    /// Number of epochs.
    pub epochs: usize,
    /// Run directory: logs, checkpoints, metrics.csv, the final model.
    pub default_root_dir: PathBuf,
    /// AdamW learning rate: the peak of the schedule.
    pub learning_rate: f64,
    /// How the learning rate moves over the run (written without the field: constant).
    #[serde(default)]
    pub lr_schedule: LrScheduleKind,
    /// AdamW weight decay.
    pub weight_decay: f32,
    /// Maximum global gradient norm (0 disables clipping).
    pub gradient_clip_val: f32,
    /// Seed of the weights' initialisation and the data order.
    pub seed: u64,
    /// Background threads reading tiles.
    pub num_workers: usize,
    /// Continue from the last committed epoch in `default_root_dir` ([`committed_epoch`]), or
    /// start the run there again when it has none.
    pub resume: bool,
}

impl TrainConfig {
    /// The defaults of `segger train` for the given directories and architecture: batches of
    /// 4 tiles, backend chosen automatically, f32, one device, 100 epochs,
    /// [`DEFAULT_LEARNING_RATE`] on a cosine schedule, weight decay 1e-4, gradients clipped at norm 1, seed 0, 2
    /// tile-reading threads, a fresh run.
    pub fn new(train_dir: PathBuf, val_dir: PathBuf, root: PathBuf, model: SeggerConfig) -> Self {
        Self {
            train_dir,
            val_dir,
            batch_size_train: 4,
            batch_size_val: 4,
            model,
            accelerator: Accelerator::Auto,
            strategy: Strategy::Auto,
            precision: Precision::F32,
            float32_matmul_precision: MatmulPrecision::Highest,
            devices: 1,
            epochs: 100,
            default_root_dir: root,
            learning_rate: DEFAULT_LEARNING_RATE,
            lr_schedule: LrScheduleKind::Cosine,
            weight_decay: 1e-4,
            gradient_clip_val: 1.0,
            seed: 0,
            num_workers: 2,
            resume: false,
        }
    }
}

/// Errors of `segger train`.
#[derive(Debug, Error)]
pub enum TrainError {
    /// Bad input (flags, data): nothing was written. Exit code 2.
    #[error("{0}")]
    Input(String),
    /// The requested backend is not available. Exit code 2.
    #[error("{0}")]
    Backend(String),
    /// A split's tiles cannot be read, or hold token ids beyond the model's vocabulary
    /// (`hint` then says which flag to raise). Exit code 2.
    #[error("--{flag}: {source}{hint}")]
    Data {
        /// The split's flag (`train_dir`, `val_dir`).
        flag: &'static str,
        /// The data layer's error (names the file).
        #[source]
        source: Box<segger_data::DataError>,
        /// What to do about it, when known (empty otherwise).
        hint: &'static str,
    },
    /// The model configuration is invalid, or a tile does not fit it. Exit code 2.
    #[error("{context}{source}")]
    Model {
        /// Where (flag and file), ending in `": "`, or empty.
        context: String,
        /// The configuration problem (names the field).
        #[source]
        source: segger_model::ConfigError,
    },
    /// The output folder is refused, or overlaps an input (segger-fs's rules). Exit code 2,
    /// or 1 when the file system failed.
    #[error(transparent)]
    Output(#[from] segger_fs::OutputError),
    /// A file of the run cannot be written or removed. Exit code 1.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The file system's error.
        #[source]
        source: std::io::Error,
    },
    /// Writing a run file failed. Exit code 1.
    #[error(transparent)]
    Write(Box<segger_data::DataError>),
    /// Writing the model's weights failed. Exit code 1.
    #[error(transparent)]
    Weights(#[from] segger_model::pyg::WeightsError),
    /// An epoch's loss left the finite numbers: training stopped there and no model was
    /// written. Exit code 1.
    #[error("training diverged: the loss of epoch {epoch} (step {step}) is not finite (train {train_loss}, validation {validation_loss}); training stopped there and no model was written (lower --learning_rate, or set --gradient_clip_val)")]
    Diverged {
        /// The first epoch with a non-finite loss.
        epoch: usize,
        /// The training step at its end.
        step: u64,
        /// Its mean training loss.
        train_loss: f64,
        /// Its validation loss.
        validation_loss: f64,
    },
    /// Another failure while running. Exit code 1.
    #[error("{0}")]
    Runtime(String),
}

impl From<segger_data::DataError> for TrainError {
    fn from(e: segger_data::DataError) -> Self {
        TrainError::Write(Box::new(e))
    }
}

impl TrainError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            TrainError::Input(_)
            | TrainError::Backend(_)
            | TrainError::Data { .. }
            | TrainError::Model { .. } => 2,
            TrainError::Output(e) => e.exit_code(),
            TrainError::Io { .. }
            | TrainError::Write(_)
            | TrainError::Weights(_)
            | TrainError::Diverged { .. }
            | TrainError::Runtime(_) => 1,
        }
    }
}

/// What a finished run reports.
#[derive(Debug, Clone, Serialize)]
pub struct TrainSummary {
    /// The run directory.
    pub root: PathBuf,
    /// Backend used, in words.
    pub backend: String,
    /// Epoch the run started at (0 for a fresh run).
    pub started_at_epoch: usize,
    /// All rows of `metrics.csv`.
    pub rows: Vec<EpochRowSummary>,
    /// Training and validation tiles and transcripts.
    pub train_tiles: usize,
    /// Validation tiles.
    pub val_tiles: usize,
    /// Transcripts per training epoch.
    pub train_transcripts: usize,
    /// Final weights.
    pub model_path: PathBuf,
    /// Wall seconds of the whole run.
    pub wall_seconds: f64,
    /// With `--precision 16-mixed`, where the loss scale ended (`None` otherwise).
    pub loss_scale: Option<LossScaleState>,
    /// The assignment threshold picked on the validation pairs (`calibration.json`), when they
    /// have both classes.
    pub calibration: Option<segger_model::calibration::Calibration>,
}

/// A `metrics.csv` row in the summary.
#[derive(Debug, Clone, Serialize)]
pub struct EpochRowSummary {
    /// Epoch.
    pub epoch: usize,
    /// Training loss.
    pub train_loss: f64,
    /// Validation loss.
    pub validation_loss: f64,
    /// Validation AUROC.
    pub validation_auroc: f64,
    /// Validation F1.
    pub validation_f1: f64,
    /// Transcripts per second.
    pub transcripts_per_second: f64,
    /// Seconds waiting for data.
    pub loader_wait_seconds: f64,
    /// Wall seconds.
    pub wall_seconds: f64,
}

impl From<&EpochRow> for EpochRowSummary {
    fn from(r: &EpochRow) -> Self {
        Self {
            epoch: r.epoch,
            train_loss: r.train_loss,
            validation_loss: r.validation_loss,
            validation_auroc: r.validation_auroc,
            validation_f1: r.validation_f1,
            transcripts_per_second: r.transcripts_per_second,
            loader_wait_seconds: r.loader_wait_seconds,
            wall_seconds: r.wall_seconds,
        }
    }
}
