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

/// The platform a raw `cfg.input` is read as when [`PredictConfig::raw_options`] is not given:
/// [`PredictConfig::platform`], else the one the folder's files show, else the platform of
/// the model's training dataset. For callers that build reading options for the sample.
pub fn raw_platform(
    cfg: &crate::PredictConfig,
) -> Result<segger_data::raw::Platform, PredictError> {
    let training = crate::ModelDir::open(&cfg.model)
        .ok()
        .and_then(|m| m.training_settings);
    raw::choose_platform(cfg, training.as_ref())
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
        use segger_data::raw::RawOptions;
        let platform = match &cfg.raw_options {
            Some(r) => r.platform,
            None => choose_platform(cfg, training)?,
        };
        // `.NAME.dataset-PID` next to `--output`, removed on drop.
        let guard = segger_fs::TempDir::next_to(&cfg.output, "dataset")?;
        let dir = guard.path().to_path_buf();
        let mut opts =
            CreateOptions::new(cfg.input.clone(), dir.clone(), RawOptions::new(platform));
        opts.overwrite = true;
        if let Some(t) = training {
            apply_training_settings(&mut opts, t);
        }
        match (&cfg.raw_options, training) {
            (Some(r), _) => opts.raw = r.clone(),
            (None, Some(t))
                if t.get("platform").and_then(|v| v.as_str()) == Some(platform.name()) =>
            {
                apply_raw_settings(&mut opts.raw, &cfg.input, t)
            }
            _ => {}
        }
        if let Some(side) = cfg.raw_tile_size {
            opts.tiling = segger_data::tiling::TileMode::Grid {
                width: side,
                height: side,
            };
        }
        tracing::info!(
            "{} is a raw {} sample: building {} tiles with {}",
            cfg.input.display(),
            platform,
            cfg.raw_tile_size.map_or_else(
                || "the training dataset's".to_string(),
                |s| format!("{s} µm")
            ),
            match (training.is_some(), cfg.raw_options.is_some()) {
                (true, false) => "the training dataset's graph and filter settings",
                (true, true) =>
                    "the training dataset's graph settings and the given reading options",
                (false, true) => "the dataset-creation defaults and the given reading options",
                (false, false) => "the dataset-creation defaults",
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

    /// The platform of the raw sample: `--platform` when given, else the one its files show
    /// ([`Platform::detect`]), else the training dataset's.
    pub(crate) fn choose_platform(
        cfg: &PredictConfig,
        training: Option<&serde_json::Value>,
    ) -> Result<segger_data::raw::Platform, PredictError> {
        use segger_data::raw::Platform;
        if let Some(p) = cfg.platform.as_deref() {
            return p
                .parse()
                .map_err(|e| PredictError::Input(format!("--platform: {e}")));
        }
        let trained = training
            .and_then(|t| t.get("platform"))
            .and_then(|v| v.as_str())
            .and_then(|s| s.parse::<Platform>().ok());
        match (Platform::detect(&cfg.input), trained) {
            (Ok(p), _) => {
                tracing::info!("platform: {p} (detected from the files in --input)");
                Ok(p)
            }
            (Err(_), Some(p)) => {
                tracing::info!("platform: {p} (the training dataset's)");
                Ok(p)
            }
            (Err(e), None) => Err(PredictError::Input(format!(
                "--input: {e} (or pass --platform)"
            ))),
        }
    }

    /// Takes how the training dataset read its raw sample (from `dataset.json`'s `raw`
    /// settings): boundary kind, column names, scale, strictness, the gene embedding, whether
    /// merged-looking nuclei are cut, and the transcript and boundary file names when a file
    /// of that name is in the new sample's folder. Used only when the new sample is of the
    /// training dataset's platform.
    pub(crate) fn apply_raw_settings(
        raw: &mut segger_data::raw::RawOptions,
        input: &std::path::Path,
        s: &serde_json::Value,
    ) {
        let text = |p: &str| s.pointer(p).and_then(serde_json::Value::as_str);
        if let Some(b) = text("/raw/boundaries").and_then(|b| b.parse().ok()) {
            raw.boundaries = b;
        }
        if let Some(v) = s.pointer("/raw/scale").and_then(serde_json::Value::as_f64) {
            raw.scale = Some(v);
        }
        if let Some(v) = s
            .pointer("/raw/strict")
            .and_then(serde_json::Value::as_bool)
        {
            raw.strict = v;
        }
        if let Some(v) = s
            .pointer("/raw/split_merged")
            .and_then(serde_json::Value::as_bool)
        {
            raw.split_merged = v;
        }
        let c = &mut raw.columns;
        for (key, slot) in [
            ("x", &mut c.x),
            ("y", &mut c.y),
            ("z", &mut c.z),
            ("gene", &mut c.gene),
            ("cell", &mut c.cell),
            ("id", &mut c.id),
            ("nuclear", &mut c.nuclear),
            ("nuclear_value", &mut c.nuclear_value),
            ("qv", &mut c.qv),
            ("bd_id", &mut c.bd_id),
            ("bd_x", &mut c.bd_x),
            ("bd_y", &mut c.bd_y),
            ("bd_geometry", &mut c.bd_geometry),
        ] {
            if let Some(v) = text(&format!("/raw/columns/{key}")) {
                *slot = Some(v.to_string());
            }
        }
        // A file named when the dataset was built is looked for by name in the new folder.
        let same_name = |key: &str| {
            let name = std::path::Path::new(text(key)?).file_name()?.to_owned();
            let p = input.join(name);
            p.exists().then_some(p)
        };
        raw.transcripts_file = same_name("/raw/transcripts_file");
        raw.boundaries_file = same_name("/raw/boundaries_file");
        if let Some(e) = text("/raw/gene_embedding").map(std::path::PathBuf::from) {
            raw.gene_embedding = Some(e);
        }
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

#[cfg(test)]
mod tests {
    use segger_data::raw::{Platform, RawOptions};

    /// The training dataset's raw settings reach the options of a raw prediction; absent ones
    /// keep the defaults.
    #[test]
    fn raw_settings_of_the_training_dataset_are_taken() {
        let dir = std::path::Path::new("/nonexistent");
        let mut raw = RawOptions::new(Platform::Xenium);
        assert!(raw.split_merged && !raw.strict);
        let s = serde_json::json!({"raw": {"split_merged": false, "strict": true, "scale": 2.5}});
        super::raw::apply_raw_settings(&mut raw, dir, &s);
        assert!(!raw.split_merged && raw.strict);
        assert_eq!(raw.scale, Some(2.5));
        let mut raw = RawOptions::new(Platform::Xenium);
        super::raw::apply_raw_settings(&mut raw, dir, &serde_json::json!({"raw": {}}));
        assert!(raw.split_merged && !raw.strict && raw.scale.is_none());
    }
}
