//! Rewriting a reference Segger dataset (`{train,val,test}_tiles/processed/*.pt`) as a
//! `segger-tile/1` dataset (`.safetensors` tiles named by [`crate::TileBounds::file_name`] plus
//! `dataset.json`).
//!
//! The output appears atomically: everything is written into a temporary sibling directory
//! that is renamed into place at the end (an existing output is replaced only with
//! `overwrite`). The `.pt` files do not carry the gene vocabulary; unless one is supplied, the
//! `dataset.json` vocabulary is left empty and `settings` says so and records the largest token
//! id seen.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use segger_graph::NodeFeatures;
use serde_json::json;

use super::pyg::{is_pt_tile, parse_pt_tile, SEGGER_DEFAULT_MARGIN};
use crate::dataset::{DatasetInfo, Split, SplitCounts, DATASET_FORMAT};
use crate::error::DataError;
use crate::tile::write_tile;

/// What `convert` writes into its output folder: a dataset (segger-fs's rules).
pub const CONVERT_OUTPUT: segger_fs::OutputSpec<'static> = segger_fs::OutputSpec {
    command: "convert",
    writes: &["dataset.json", "train_tiles", "val_tiles", "test_tiles"],
    signature: "dataset.json",
};

/// Options of [`convert_dataset`].
#[derive(Debug, Clone, Default)]
pub struct ConvertOptions {
    /// Replace an existing output directory.
    pub overwrite: bool,
    /// The gene vocabulary (token id `i` is `vocab[i]`), when known; token ids are then checked
    /// against it.
    pub vocab: Option<Vec<String>>,
}

/// What [`convert_dataset`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvertReport {
    /// Tiles written per split.
    pub tiles: SplitCounts,
    /// Tiles whose `bd.x` was unusable and replaced by zeros.
    pub bd_x_replaced: usize,
    /// The largest gene token id seen (token-based tiles).
    pub max_token: Option<i64>,
}

/// Reads a vocabulary file: a JSON array of gene names, a `dataset.json` (its `vocab`), or
/// plain text with one gene name per line (line `i` is token `i`).
pub fn read_vocab_file(path: &Path) -> Result<Vec<String>, DataError> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    let t = text.trim_start();
    if t.starts_with('[') || t.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(t)
            .map_err(|e| DataError::format(path, "vocab", format!("invalid JSON ({e})")))?;
        let arr = if v.is_object() { &v["vocab"] } else { &v };
        return serde_json::from_value(arr.clone()).map_err(|e| {
            DataError::format(
                path,
                "vocab",
                format!("expected a JSON array of gene names or an object with one under \"vocab\" ({e})"),
            )
        });
    }
    let genes: Vec<String> = text
        .lines()
        .map(|l| l.trim_end_matches('\r').to_string())
        .collect();
    if let Some(i) = genes.iter().position(|g| g.trim().is_empty()) {
        return Err(DataError::format(
            path,
            "vocab",
            format!("line {} is empty (one gene name per line expected)", i + 1),
        ));
    }
    Ok(genes)
}

fn pt_files(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let p = e.map_err(|e| DataError::io(dir, e))?.path();
        if p.is_file() && is_pt_tile(&p) {
            v.push(p);
        } else if p.extension().is_some_and(|e| e == "pt") {
            tracing::debug!(
                "{}: not a tile name (tiles_x*_y*_*_*.pt); skipped",
                p.display()
            );
        }
    }
    v.sort();
    Ok(v)
}

/// Converts the Segger dataset at `input` into a `segger-tile/1` dataset at `output`.
pub fn convert_dataset(
    input: &Path,
    output: &Path,
    opts: &ConvertOptions,
) -> Result<ConvertReport, DataError> {
    let dataset_err = |path: &Path, problem: String| DataError::Dataset {
        path: path.to_path_buf(),
        problem,
    };
    if !input.is_dir() {
        return Err(dataset_err(input, "is not a directory".into()));
    }
    let mut splits = Vec::new();
    for s in Split::ALL {
        let dir = input.join(s.dir_name()).join("processed");
        if dir.is_dir() {
            splits.push((s, pt_files(&dir)?));
        }
    }
    let total: usize = splits.iter().map(|(_, f)| f.len()).sum();
    if total == 0 {
        return Err(dataset_err(
            input,
            "has no {train,val,test}_tiles/processed/*.pt files (not a Segger dataset)".into(),
        ));
    }
    segger_fs::prepare_output(
        &CONVERT_OUTPUT,
        "--output",
        output,
        &[("--input", input)],
        opts.overwrite,
    )?;
    segger_fs::remove_stale_siblings(output);
    let tmp = segger_fs::TempDir::next_to(output, "tmp")?;
    let report = write_all(tmp.path(), input, &splits, opts)?;
    // Move into place; an existing output is set aside first and removed afterwards.
    segger_fs::replace_dir(tmp.path(), output)?;
    tmp.keep();
    Ok(report)
}

struct Done {
    name: String,
    source: PathBuf,
    bd_x_replaced: bool,
    max_token: Option<i64>,
}

fn write_all(
    tmp: &Path,
    input: &Path,
    splits: &[(Split, Vec<PathBuf>)],
    opts: &ConvertOptions,
) -> Result<ConvertReport, DataError> {
    let vocab_len = opts.vocab.as_ref().map(Vec::len);
    let mut counts = SplitCounts::default();
    let mut replaced = 0usize;
    let mut max_token: Option<i64> = None;
    for (split, files) in splits {
        let dir = tmp.join(split.dir_name()).join("processed");
        std::fs::create_dir_all(&dir).map_err(|e| DataError::io(&dir, e))?;
        let done: Vec<Done> = files
            .par_iter()
            .map(|src| -> Result<Done, DataError> {
                let bytes = std::fs::read(src).map_err(|e| DataError::io(src, e))?;
                let c = parse_pt_tile(src, &bytes, vocab_len)?;
                let name = match &c.tile.bounds {
                    Some(b) => b.file_name(),
                    None => {
                        let stem = src.file_stem().unwrap_or_default().to_string_lossy();
                        tracing::warn!(
                            "{}: the name does not give the tile bounds \
                             (tiles_x=X_y=Y_w=W_h=H.pt); written without bounds",
                            src.display()
                        );
                        format!("{stem}.safetensors")
                    }
                };
                let max_token = match &c.tile.graph.tx.x {
                    NodeFeatures::Tokens(t) => t.iter().copied().max(),
                    NodeFeatures::Dense { .. } => None,
                };
                // Each tile gets its own temporary name; the final names are checked for
                // collisions below, before anything is renamed.
                write_tile(&dir.join(format!("{name}.part")), &c.tile)?;
                Ok(Done {
                    name,
                    source: src.clone(),
                    bd_x_replaced: c.bd_x_replaced,
                    max_token,
                })
            })
            .collect::<Result<_, _>>()?;
        let mut seen: HashMap<&str, &Path> = HashMap::new();
        for d in &done {
            if let Some(other) = seen.insert(&d.name, &d.source) {
                return Err(DataError::Dataset {
                    path: d.source.clone(),
                    problem: format!(
                        "converts to the same file name {} as {}",
                        d.name,
                        other.display()
                    ),
                });
            }
        }
        for d in &done {
            let part = dir.join(format!("{}.part", d.name));
            let fin = dir.join(&d.name);
            std::fs::rename(&part, &fin).map_err(|e| DataError::io(&fin, e))?;
            replaced += d.bd_x_replaced as usize;
            max_token = max_token.max(d.max_token);
        }
        match split {
            Split::Train => counts.train = done.len(),
            Split::Val => counts.val = done.len(),
            Split::Test => counts.test = done.len(),
        }
    }
    let vocab = opts.vocab.clone().unwrap_or_default();
    let mut notes = vec![format!(
        "tile margins are not recorded in Segger .pt files; the reference default of \
         {SEGGER_DEFAULT_MARGIN} um is assumed"
    )];
    if opts.vocab.is_none() {
        notes.push(
            "Segger .pt files do not carry the gene vocabulary: vocab is empty; token ids are \
             the reference's LabelEncoder order (see max_token_id)"
                .into(),
        );
    }
    if replaced > 0 {
        notes.push(format!(
            "{replaced} tile(s) had unusable bd.x (one NaN row per polygon vertex, a reference \
             bug); their boundary features are zeros, as the reference model effectively sees"
        ));
    }
    let info = DatasetInfo {
        format: DATASET_FORMAT.to_string(),
        vocab,
        settings: json!({
            "converted_from": input.display().to_string(),
            "source_format": "segger .pt (torch.save of PyG HeteroData)",
            "vocab_known": opts.vocab.is_some(),
            "max_token_id": max_token,
            "tile_margin": SEGGER_DEFAULT_MARGIN,
            "bd_x_zeroed_tiles": replaced,
            "notes": notes,
        }),
        tiles: counts,
    };
    info.write(tmp)?;
    Ok(ConvertReport {
        tiles: counts,
        bd_x_replaced: replaced,
        max_token,
    })
}
