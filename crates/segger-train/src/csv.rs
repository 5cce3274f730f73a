use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::train::logger::MetricLogger;
use burn::train::metric::store::{EpochSummary, MetricsUpdate, NumericMetricUpdate, Split};
use burn::train::metric::{MetricDefinition, MetricId, NumericEntry};

use crate::loader::LoaderStats;

/// One row of `metrics.csv`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EpochRow {
    /// Epoch number (1-based).
    pub epoch: usize,
    /// Optimiser steps taken since the start of the run.
    pub step: u64,
    /// Mean training loss of the epoch.
    pub train_loss: f64,
    /// Mean validation loss.
    pub validation_loss: f64,
    /// Validation AUROC (0..1), mean over validation batches.
    pub validation_auroc: f64,
    /// Validation F1 at threshold 0.5 (0..1), mean over validation batches.
    pub validation_f1: f64,
    /// Wall seconds of the epoch (training and validation).
    pub wall_seconds: f64,
    /// Training transcripts per second.
    pub transcripts_per_second: f64,
    /// Seconds the training loop waited for the data loader.
    pub loader_wait_seconds: f64,
}

/// Header of `metrics.csv`.
pub const CSV_HEADER: &str =
    "epoch,step,train_loss,validation_loss,validation_auroc,validation_f1,wall_seconds,transcripts_per_second,loader_wait_seconds";

impl EpochRow {
    fn to_csv(&self) -> String {
        format!(
            "{},{},{:.6},{:.6},{:.6},{:.6},{:.3},{:.1},{:.3}",
            self.epoch,
            self.step,
            self.train_loss,
            self.validation_loss,
            self.validation_auroc,
            self.validation_f1,
            self.wall_seconds,
            self.transcripts_per_second,
            self.loader_wait_seconds
        )
    }

    fn parse(line: &str) -> Option<Self> {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != 9 {
            return None;
        }
        Some(Self {
            epoch: f[0].parse().ok()?,
            step: f[1].parse().ok()?,
            train_loss: f[2].parse().ok()?,
            validation_loss: f[3].parse().ok()?,
            validation_auroc: f[4].parse().ok()?,
            validation_f1: f[5].parse().ok()?,
            wall_seconds: f[6].parse().ok()?,
            transcripts_per_second: f[7].parse().ok()?,
            loader_wait_seconds: f[8].parse().ok()?,
        })
    }
}

/// The files of one epoch's checkpoint in a run's `checkpoint/` folder, as burn-train names
/// them: `{model,optim,scheduler}-EPOCH.mpk`.
pub const CHECKPOINT_PARTS: [&str; 3] = ["model", "optim", "scheduler"];

/// The epoch of a checkpoint file named `PART-EPOCH.mpk` ([`CHECKPOINT_PARTS`]).
pub fn checkpoint_file_epoch(name: &str) -> Option<usize> {
    CHECKPOINT_PARTS.iter().find_map(|p| {
        name.strip_prefix(p)?
            .strip_prefix('-')?
            .strip_suffix(".mpk")?
            .parse()
            .ok()
    })
}

/// Whether the checkpoint of `epoch` in `dir` is complete: its three files present and not
/// empty (they are renamed into place whole; an empty one was cut short by a kill).
pub fn checkpoint_complete(dir: &Path, epoch: usize) -> bool {
    CHECKPOINT_PARTS.iter().all(|p| {
        std::fs::metadata(dir.join(format!("{p}-{epoch}.mpk")))
            .is_ok_and(|m| m.is_file() && m.len() > 0)
    })
}

/// How long a row waits for its epoch's checkpoint (see [`CsvMetricLogger::after_checkpoints`]).
pub const CHECKPOINT_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

/// Reads the rows of a `metrics.csv`.
pub fn read_metrics_csv(path: &Path) -> Vec<EpochRow> {
    std::fs::read_to_string(path)
        .map(|s| s.lines().skip(1).filter_map(EpochRow::parse).collect())
        .unwrap_or_default()
}

/// A burn-train metric logger that writes `metrics.csv` (one row per epoch, rewritten
/// atomically after each epoch) and logs each epoch through `tracing`. It keeps no per-batch
/// history, so it cannot serve burn-train's metric-based checkpointing or early stopping.
pub struct CsvMetricLogger {
    path: PathBuf,
    rows: Vec<EpochRow>,
    names: HashMap<MetricId, String>,
    running: HashMap<(String, bool), f64>,
    train_stats: Arc<LoaderStats>,
    valid_stats: Arc<LoaderStats>,
    step_offset: u64,
    epochs: usize,
    checkpoints: Option<PathBuf>,
    interrupter: Option<burn::train::Interrupter>,
}

impl CsvMetricLogger {
    /// A logger writing `dir/metrics.csv`. Rows of epochs after `resume_epoch` found in an
    /// existing file are dropped (they belong to an interrupted run); `None` starts afresh.
    /// `train_stats` and `valid_stats` are the loaders' bookkeeping, read for wall time,
    /// transcripts/s, loader waits and the step count.
    pub fn new(
        dir: &Path,
        train_stats: Arc<LoaderStats>,
        valid_stats: Arc<LoaderStats>,
        resume_epoch: Option<usize>,
        epochs: usize,
    ) -> Self {
        let path = dir.join("metrics.csv");
        let rows: Vec<EpochRow> = match resume_epoch {
            Some(e) => read_metrics_csv(&path)
                .into_iter()
                .filter(|r| r.epoch <= e)
                .collect(),
            None => Vec::new(),
        };
        let step_offset = rows.last().map_or(0, |r| r.step);
        let me = Self {
            path,
            rows,
            names: HashMap::new(),
            running: HashMap::new(),
            train_stats,
            valid_stats,
            step_offset,
            epochs,
            checkpoints: None,
            interrupter: None,
        };
        me.write();
        me
    }

    /// Writes each epoch's row only once that epoch's checkpoint (`model-E.mpk`, `optim-E.mpk`
    /// and `scheduler-E.mpk` in `dir`, written by burn-train's checkpointer on its own thread)
    /// is complete, so that a row in `metrics.csv` always has its checkpoint: the row commits
    /// the epoch. A checkpoint that has not appeared after [`CHECKPOINT_WAIT`] is reported and
    /// the row written anyway.
    pub fn after_checkpoints(mut self, dir: &Path) -> Self {
        self.checkpoints = Some(dir.to_path_buf());
        self
    }

    /// Stops the training through `interrupter` (the one given to burn-train) at the first epoch
    /// whose training or validation loss is not a finite number: the next epoch does not run.
    pub fn stop_on_divergence(mut self, interrupter: burn::train::Interrupter) -> Self {
        self.interrupter = Some(interrupter);
        self
    }

    /// Waits until the checkpoint of `epoch` is complete (see [`Self::after_checkpoints`]).
    fn wait_for_checkpoint(&self, epoch: usize) {
        let Some(dir) = &self.checkpoints else {
            return;
        };
        let t0 = std::time::Instant::now();
        while !checkpoint_complete(dir, epoch) {
            if t0.elapsed() > CHECKPOINT_WAIT {
                tracing::warn!(
                    "the checkpoint of epoch {epoch} is not in {} after {} s; writing its metrics row without it",
                    dir.display(),
                    CHECKPOINT_WAIT.as_secs()
                );
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// The rows written so far.
    pub fn rows(&self) -> &[EpochRow] {
        &self.rows
    }

    fn write(&self) {
        let mut text = String::from(CSV_HEADER);
        text.push('\n');
        for r in &self.rows {
            text.push_str(&r.to_csv());
            text.push('\n');
        }
        if let Err(e) = segger_data::tile::write_atomic(&self.path, text.as_bytes()) {
            tracing::error!("{e}");
        }
    }

    fn value(&self, key: &str, valid: bool) -> f64 {
        self.running
            .iter()
            .find(|((n, v), _)| *v == valid && n.to_lowercase().contains(key))
            .map_or(f64::NAN, |(_, v)| *v)
    }
}

fn entry_value(e: &NumericEntry) -> f64 {
    match e {
        NumericEntry::Value(v) => *v,
        NumericEntry::Aggregated {
            aggregated_value, ..
        } => *aggregated_value,
    }
}

impl MetricLogger for CsvMetricLogger {
    fn log(&mut self, update: MetricsUpdate, _epoch: usize, split: &Split) {
        let valid = matches!(split, Split::Valid);
        for NumericMetricUpdate {
            entry,
            running_entry,
            ..
        } in update.entries_numeric
        {
            if let Some(name) = self.names.get(&entry.metric_id) {
                self.running
                    .insert((name.clone(), valid), entry_value(&running_entry));
            }
        }
    }

    fn read_numeric(
        &mut self,
        _name: &str,
        _epoch: usize,
        _split: &Split,
    ) -> Result<Vec<NumericEntry>, String> {
        Err("metrics.csv logger keeps no per-batch history".to_string())
    }

    fn log_metric_definition(&mut self, definition: MetricDefinition) {
        self.names
            .insert(definition.metric_id.clone(), definition.name.clone());
    }

    fn log_epoch_summary(&mut self, summary: EpochSummary) {
        match summary.split {
            Split::Train => {}
            Split::Valid => {
                // burn-train numbers epochs from 1; the loaders count passes from 0. The loader
                // figures are looked up by epoch because burn-train processes these events
                // asynchronously, possibly after the next epoch has started.
                let idx = summary.epoch_number.saturating_sub(1) as u64;
                let train = self
                    .train_stats
                    .completed
                    .lock()
                    .unwrap()
                    .get(&idx)
                    .copied()
                    .unwrap_or_default();
                let valid = self
                    .valid_stats
                    .completed
                    .lock()
                    .unwrap()
                    .get(&idx)
                    .copied()
                    .unwrap_or_default();
                let row = EpochRow {
                    epoch: summary.epoch_number,
                    step: self.step_offset + train.total_batches,
                    train_loss: self.value("loss", false),
                    validation_loss: self.value("loss", true),
                    validation_auroc: self.value("auroc", true) / 100.0,
                    validation_f1: self.value("fbeta", true) / 100.0,
                    wall_seconds: train.wall + valid.wall,
                    transcripts_per_second: if train.wall > 0.0 {
                        train.transcripts as f64 / train.wall
                    } else {
                        0.0
                    },
                    loader_wait_seconds: train.wait,
                };
                tracing::info!(
                    "epoch {}/{}: train_loss {:.4}  val_loss {:.4}  val_auroc {:.4}  val_f1 {:.4}  {:.0} tx/s  ({:.1} s, loader wait {:.2} s)",
                    row.epoch,
                    self.epochs,
                    row.train_loss,
                    row.validation_loss,
                    row.validation_auroc,
                    row.validation_f1,
                    row.transcripts_per_second,
                    row.wall_seconds,
                    row.loader_wait_seconds
                );
                self.running.clear();
                if !(row.train_loss.is_finite() && row.validation_loss.is_finite()) {
                    if let Some(i) = &self.interrupter {
                        tracing::error!(
                            "epoch {} (step {}): the loss is not finite; stopping",
                            row.epoch,
                            row.step
                        );
                        i.stop(Some("the loss is not finite"));
                    }
                }
                self.wait_for_checkpoint(row.epoch);
                self.rows.retain(|r| r.epoch != row.epoch);
                self.rows.push(row);
                self.write();
            }
            Split::Test(_) => {}
        }
    }
}
