//! A trained run's directory: weights, architecture and gene vocabulary.

use std::path::{Path, PathBuf};

use segger_model::SeggerConfig;

use crate::PredictError;

/// Where the model's gene vocabulary came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VocabSource {
    /// `vocab.json` in the model directory (written by `segger train`).
    VocabJson,
    /// `dataset.json` of the training dataset named by `run_config.json`'s `train_dir`.
    TrainingDataset(PathBuf),
    /// Not known (e.g. an imported checkpoint): token ids are trusted as they are.
    Unknown,
}

/// A checked model directory.
#[derive(Debug, Clone)]
pub struct ModelDir {
    /// The directory.
    pub dir: PathBuf,
    /// `model.safetensors`.
    pub weights: PathBuf,
    /// The architecture (from `config.json`, else the weights' metadata).
    pub config: SeggerConfig,
    /// Token id → gene name, when known.
    pub vocab: Option<Vec<String>>,
    /// Where [`ModelDir::vocab`] came from.
    pub vocab_source: VocabSource,
    /// The `settings` of the training dataset's `dataset.json`, when `run_config.json` leads
    /// to it: a raw `--input` is tiled with the same graph and filter settings.
    pub training_settings: Option<serde_json::Value>,
    /// The assignment threshold picked on validation data at training (`calibration.json`).
    pub calibration: Option<segger_model::calibration::Calibration>,
}

fn input(m: String) -> PredictError {
    PredictError::Input(m)
}

/// The `--model` weights could not be read.
fn weights_error(source: segger_model::pyg::WeightsError) -> PredictError {
    PredictError::Weights {
        context: "--model: ".into(),
        source,
    }
}

fn read_vocab_file(path: &Path) -> Result<Vec<String>, PredictError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| input(format!("--model: {}: {e}", path.display())))?;
    serde_json::from_str::<Vec<String>>(&text).map_err(|e| {
        input(format!(
            "--model: {}: not a JSON array of gene names ({e})",
            path.display()
        ))
    })
}

/// The `dataset.json` of the dataset a run was trained on, through `run_config.json`.
fn training_dataset(dir: &Path) -> Option<(segger_data::DatasetInfo, PathBuf)> {
    let text = std::fs::read_to_string(dir.join("run_config.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let train_dir = PathBuf::from(v.get("train_dir")?.as_str()?);
    for root in [train_dir.parent()?.to_path_buf(), train_dir.clone()] {
        if let Ok(info) = segger_data::DatasetInfo::read(&root) {
            return Some((info, root.join("dataset.json")));
        }
    }
    None
}

impl ModelDir {
    /// Checks a model directory: it must exist and hold `model.safetensors`; the config comes
    /// from `config.json` (or, without one, from the weights' `config` metadata). Nothing is
    /// loaded onto a device yet; the weights are checked against the config by
    /// [`ModelDir::load`].
    pub fn open(dir: &Path) -> Result<Self, PredictError> {
        if !dir.is_dir() {
            return Err(input(format!(
                "--model: {} is not a directory (expected a trained run's directory with model.safetensors and config.json)",
                dir.display()
            )));
        }
        let weights = dir.join("model.safetensors");
        if !weights.is_file() {
            return Err(input(format!(
                "--model: {} has no model.safetensors (train a model with `segger train` or import one with `segger import_checkpoint`)",
                dir.display()
            )));
        }
        let cfg_path = dir.join("config.json");
        let config = if cfg_path.is_file() {
            let text = std::fs::read_to_string(&cfg_path)
                .map_err(|e| input(format!("--model: {}: {e}", cfg_path.display())))?;
            SeggerConfig::from_json(&text).map_err(|source| PredictError::Model {
                context: format!("--model: {}: ", cfg_path.display()),
                source,
            })?
        } else {
            let (_, meta) = segger_model::pyg::read_safetensors(&weights).map_err(weights_error)?;
            let json = meta.get("config").ok_or_else(|| {
                input(format!(
                    "--model: {} has no config.json and {} carries no config metadata",
                    dir.display(),
                    weights.display()
                ))
            })?;
            SeggerConfig::from_json(json).map_err(|source| PredictError::Model {
                context: format!("--model: {}: ", weights.display()),
                source,
            })?
        };
        let (tensors, _) = segger_model::pyg::read_safetensors(&weights).map_err(weights_error)?;
        let problems = segger_model::pyg::check_names(&config, &tensors);
        if !problems.is_empty() {
            return Err(input(format!(
                "--model: the config ({}) does not match the weights ({}):{}",
                cfg_path.display(),
                weights.display(),
                problems
                    .iter()
                    .take(20)
                    .map(|p| format!("\n  - {p}"))
                    .collect::<String>()
            )));
        }
        let training = training_dataset(dir);
        let (vocab, vocab_source) = if dir.join("vocab.json").is_file() {
            (
                Some(read_vocab_file(&dir.join("vocab.json"))?),
                VocabSource::VocabJson,
            )
        } else if let Some((info, p)) = training.as_ref().filter(|(i, _)| !i.vocab.is_empty()) {
            (
                Some(info.vocab.clone()),
                VocabSource::TrainingDataset(p.clone()),
            )
        } else {
            (None, VocabSource::Unknown)
        };
        if let Some(v) = &vocab {
            if config.tx_features.is_none() && v.len() > config.num_tx_tokens {
                return Err(input(format!(
                    "--model: the vocabulary has {} genes but the model has only {} token embeddings (num_tx_tokens)",
                    v.len(),
                    config.num_tx_tokens
                )));
            }
        }
        let calibration = segger_model::calibration::read_calibration(dir)
            .map_err(|e| input(format!("--model: {e}")))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            weights,
            config,
            vocab,
            vocab_source,
            training_settings: training.map(|(i, _)| i.settings),
            calibration,
        })
    }

    /// Loads the weights onto `device`, checking every tensor name and shape against the
    /// config.
    pub fn load<B: segger_model::GatBackend>(
        &self,
        device: &B::Device,
    ) -> Result<segger_model::Segger<B>, PredictError> {
        segger_model::pyg::load_pyg_state_dict::<B>(&self.weights, Some(&self.config), device)
            .map_err(|e| {
                input(format!(
                    "--model: the config does not match the weights: {e}"
                ))
            })
    }
}
