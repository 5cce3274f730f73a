//! What `--input` points at: a tile dataset (or one split of it), or a raw sample.

use std::path::{Path, PathBuf};

use segger_data::{DatasetInfo, Split};

use crate::PredictError;

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
        let info = DatasetInfo::read(dir).map_err(|source| PredictError::Data {
            context: "--input: ".into(),
            source: Box::new(source),
        })?;
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

    use super::ResolvedInput;
    use crate::{PredictConfig, PredictError};

    /// Builds tiles from the raw sample at `cfg.input` with the dataset-creation defaults
    /// (`segger create_dataset`'s) into a temporary directory next to `--output`.
    pub(crate) fn build(
        cfg: &PredictConfig,
        training: Option<&serde_json::Value>,
    ) -> Result<(ResolvedInput, segger_fs::TempDir), PredictError> {
        use segger_data::create::{create_dataset, CreateOptions};
        use segger_data::raw::{Platform, RawOptions};
        let platform: Platform = cfg
            .platform
            .as_deref()
            .unwrap_or("xenium")
            .parse()
            .map_err(|e| PredictError::Input(format!("--platform: {e}")))?;
        // `.NAME.dataset-PID` next to `--output`, removed on drop.
        let guard = segger_fs::TempDir::next_to(&cfg.output, "dataset")?;
        let dir = guard.path().to_path_buf();
        let mut opts =
            CreateOptions::new(cfg.input.clone(), dir.clone(), RawOptions::new(platform));
        opts.overwrite = true;
        if let Some(t) = training {
            apply_training_settings(&mut opts, t);
        }
        tracing::info!(
            "{} is a raw {} sample: building tiles with {}",
            cfg.input.display(),
            platform,
            if training.is_some() {
                "the training dataset's graph, tiling and filter settings"
            } else {
                "the dataset-creation defaults"
            }
        );
        let summary = create_dataset(&opts, &|_| {}).map_err(|e| {
            PredictError::Input(format!(
                "--input: {} is neither a dataset (dataset.json), a split directory (processed/), nor a readable raw {platform} sample: {e}",
                cfg.input.display()
            ))
        })?;
        tracing::info!(
            "built {} tiles",
            summary.tiles.train + summary.tiles.val + summary.tiles.test
        );
        let mut resolved = super::resolve_tiles(&dir)?.ok_or_else(|| {
            PredictError::Runtime(format!(
                "{}: dataset creation wrote no dataset",
                dir.display()
            ))
        })?;
        resolved.kind = super::InputKind::Raw;
        Ok((resolved, guard))
    }

    /// Takes the training dataset's graph parameters, tiling, quality threshold and gene
    /// prefixes (from its `dataset.json` settings), so that prediction tiles look like the
    /// training tiles. Missing or malformed entries keep the defaults.
    fn apply_training_settings(
        opts: &mut segger_data::create::CreateOptions,
        s: &serde_json::Value,
    ) {
        use segger_data::tiling::TileMode;
        let f = |p: &str| s.pointer(p).and_then(serde_json::Value::as_f64);
        let u = |p: &str| s.pointer(p).and_then(serde_json::Value::as_u64);
        let g = &mut opts.graph;
        if let Some(v) = u("/graph/k_tx") {
            g.k_tx = v as usize;
        }
        if let Some(v) = f("/graph/dist_tx") {
            g.dist_tx = v as f32;
        }
        if let Some(v) = u("/graph/k_bd") {
            g.k_bd = v as usize;
        }
        if let Some(v) = f("/graph/dist_bd") {
            g.dist_bd = v as f32;
        }
        if let Some(v) = f("/graph/margin") {
            g.margin = v;
        }
        if let (Some(width), Some(height)) = (f("/tiling/grid/width"), f("/tiling/grid/height")) {
            opts.tiling = TileMode::Grid { width, height };
        } else if let Some(m) = u("/tiling/balanced/max_transcripts") {
            opts.tiling = TileMode::Balanced {
                max_transcripts: m as usize,
            };
        }
        if let Some(q) = f("/raw/min_qv") {
            opts.raw.min_qv = Some(q as f32);
        }
        if let Some(p) = s.pointer("/raw/drop_prefixes").and_then(|v| v.as_array()) {
            opts.raw.drop_prefixes = p
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
        }
    }
}
