//! # segger-train
//!
//! Training for Segger on burn-train: the analogue of the reference's `LitSegger`.
//!
//! * [`LitSegger`]: the model wrapped for burn-train's `SupervisedTraining`. Train step:
//!   forward, BCE-with-logits on the `tx-belongs-bd` label pairs, backward; the optimiser
//!   step clips the global gradient norm first (PyTorch's `clip_grad_norm_`). Validation
//!   step: loss, AUROC and F1 at threshold 0.5.
//! * [`TileBatchLoader`]: burn's `DataLoader` over a [`segger_data::TileDataset`], with seeded
//!   per-epoch shuffling and background prefetching; it also measures transcripts/s and the
//!   time the model waited for data.
//! * [`CsvMetricLogger`]: `metrics.csv`, one row per epoch.
//! * [`run::train`]: the whole `segger train` job (validation of inputs, backends, run
//!   directory, checkpoints, resume, final `model.safetensors` + `config.json`, summary).
#![warn(missing_docs)]

pub mod calibrate;
mod config;
mod csv;
mod lit;
mod loader;
pub mod metrics;
mod progress;
mod recorder;
pub mod run;
pub mod schedule;

pub use csv::{CsvMetricLogger, EpochRow};
pub use lit::{LinkOutput, LitSegger};
pub use loader::{LoaderStats, SeggerBatch, TileBatchLoader};
pub use progress::LogRenderer;
pub use recorder::AtomicRecorder;
pub use run::{train, Accelerator, Precision, Strategy, TrainConfig, TrainError, TrainSummary};
pub use schedule::{LrSchedule, LrScheduleKind};
