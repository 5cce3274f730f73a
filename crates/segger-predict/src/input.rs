//! What `--input` points at: a tile dataset (or one split of it), or a raw sample.

use std::path::{Path, PathBuf};

use segger_data::{DatasetInfo, Split};

use crate::run::PredictError;

/// The kind of `--input`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InputKind {
    /// A `segger-dataset/1` directory (`dataset.json` + split directories).
    Dataset,
    /// One split directory (`processed/` inside) or a `processed/` directory.
    Split,
    /// A raw sample directory: tiles are built with the dataset-creation code first.
    Raw,
}

/// `--input`, resolved to tile directories.
#[derive(Debug, Clone)]
pub struct ResolvedInput {
    /// What `--input` was.
    pub kind: InputKind,
    /// Split directories to predict on, in order.
    pub splits: Vec<PathBuf>,
    /// The dataset's vocabulary (token id → gene), when known; empty for gene-embedding
    /// datasets.
    pub vocab: Option<Vec<String>>,
    /// `dataset.json`'s settings, when known.
    pub settings: serde_json::Value,
}

fn has_processed(dir: &Path) -> bool {
    dir.join("processed").is_dir() || dir.file_name().is_some_and(|n| n == "processed")
}

/// Resolves a tile dataset directory. `Ok(None)` when `dir` is neither a dataset nor a split
/// (then it may be a raw sample).
pub fn resolve_tiles(dir: &Path) -> Result<Option<ResolvedInput>, PredictError> {
    let bad = |m: String| PredictError::Input(format!("--input: {m}"));
    if !dir.exists() {
        return Err(bad(format!("{} does not exist", dir.display())));
    }
    if !dir.is_dir() {
        return Err(bad(format!(
            "{} is not a directory (expected a dataset directory or a raw sample directory)",
            dir.display()
        )));
    }
    if dir.join("dataset.json").is_file() {
        let info = DatasetInfo::read(dir).map_err(|e| bad(e.to_string()))?;
        let splits: Vec<PathBuf> = Split::ALL
            .iter()
            .map(|s| dir.join(s.dir_name()))
            .filter(|p| p.join("processed").is_dir())
            .collect();
        if splits.is_empty() {
            return Err(bad(format!(
                "{} is an empty dataset: no {{train,val,test}}_tiles/processed directory",
                dir.display()
            )));
        }
        return Ok(Some(ResolvedInput {
            kind: InputKind::Dataset,
            splits,
            vocab: Some(info.vocab),
            settings: info.settings,
        }));
    }
    if has_processed(dir) {
        let root = if dir.file_name().is_some_and(|n| n == "processed") {
            dir.parent().and_then(Path::parent)
        } else {
            dir.parent()
        };
        let info = root.and_then(|r| DatasetInfo::read(r).ok());
        return Ok(Some(ResolvedInput {
            kind: InputKind::Split,
            splits: vec![dir.to_path_buf()],
            vocab: info.as_ref().map(|i| i.vocab.clone()),
            settings: info.map(|i| i.settings).unwrap_or_default(),
        }));
    }
    Ok(None)
}

/// Raw sample directories: tiles are built with the dataset-creation code into a temporary
/// directory that lives as long as the returned guard.
pub(crate) mod raw {
    use std::path::PathBuf;

    use super::ResolvedInput;
    use crate::run::{PredictConfig, PredictError};

    /// Removes the temporary dataset on drop.
    pub(crate) struct RawTemp(pub PathBuf);

    impl Drop for RawTemp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Builds tiles from the raw sample at `cfg.input`.
    pub(crate) fn build(cfg: &PredictConfig) -> Result<(ResolvedInput, RawTemp), PredictError> {
        Err(PredictError::Input(format!(
            "--input: {} is neither a dataset directory (dataset.json) nor a split directory (processed/)",
            cfg.input.display()
        )))
    }
}
