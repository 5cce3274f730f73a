//! `segger import_checkpoint`: a Lightning checkpoint (`.ckpt`) of the reference Segger model
//! as segger weights, `model.safetensors` + `config.json`.
//!
//! segger-data reads the file ([`segger_data::torch::checkpoint`]: a restricted zip + pickle
//! reader that keeps the state dict and the plain hyper-parameters); this module puts it in the
//! model's terms: a [`SeggerConfig`], checked with [`SeggerConfig::check`] and against the
//! model's parameter table (the one [`crate::pyg::check_names`] uses), written by the model's
//! weight writer ([`crate::pyg::write_weights`]).
//!
//! # Weights
//!
//! `state_dict` keys that start with `model.` lose the prefix; when no key has it (a bare
//! `torch.save(model.state_dict())`) every key is kept. Other keys and non-float tensors are
//! skipped with a warning; float64, float16 and bfloat16 weights become float32. The model's
//! tensors must be exactly those of the resolved configuration, with its shapes.
//!
//! # Configuration
//!
//! Each [`SeggerConfig`] field comes from the checkpoint's `hyper_parameters` where they have
//! it, else from the caller's value ([`ConfigOverrides`], the command-line flags), else from the
//! weight shapes; a value that contradicts the weights is an error.
//!
//! | field | hyper-parameter | flag | weights |
//! |---|---|---|---|
//! | `num_tx_tokens` | `num_tx_tokens`, else `num_node_features["tx"]` | `--num_tx_tokens` | rows of `tx_embedding.tx.weight` |
//! | `init_emb` | `init_emb` | `--init_emb` | columns of `tx_embedding.tx.weight` |
//! | `hidden_channels` | `hidden_channels` | `--hidden_channels` | `conv_first.tx__neighbors__tx.att` `[1, heads, C]` |
//! | `out_channels` | `out_channels` | `--out_channels` | `conv_last.tx__neighbors__tx.att` |
//! | `heads` | `heads` | `--heads` | `conv_first.tx__neighbors__tx.att` |
//! | `num_mid_layers` | `num_mid_layers` | `--mid_layers` | the `conv_mid_layers.N` names |
//! | `bd_features` | `num_node_features["bd"]` | — | columns of `lin0.bd.weight` |
//! | `tx_features` | — | — | columns of `lin0.tx.weight`: 1 is token ids (`None`), more a dense feature width |
//! | `aggr` | `aggr` (`sum`/`add`, `mean`, `max`) | — | — (else `sum`, `to_hetero`'s default) |
//! | `relations` | — | — | — (always the reference's `tx__neighbors__tx` and `tx__neighbors__bd`) |
//!
//! Every other hyper-parameter is ignored: the training settings (`learning_rate`, ...), the
//! `metadata` of node and edge types (the weight names show which relations there are, and
//! weights of any other relation are refused as extra tensors), and objects such as the
//! pickled model of `LitSegger(model)`. A hyper-parameter of the wrong kind (a string where a
//! number belongs) counts as absent.
//!
//! # Output
//!
//! `config.json` and the `config` metadata of `model.safetensors` hold the reference's six
//! model arguments ([`SeggerConfig::reference_args`], the keys of the parity fixtures' weight
//! files) when those describe the model, as they do for the reference's token-based model;
//! otherwise they hold the whole [`SeggerConfig`]. Either reads back with
//! [`SeggerConfig::from_json`] to the same configuration.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use segger_data::torch::checkpoint::{read_checkpoint, HyperValue, LightningCheckpoint};
use segger_data::DataError;
use serde::Serialize;
use thiserror::Error;

use crate::config::{Aggr, ConfigError, SeggerConfig};
use crate::model::pyg_shapes;
use crate::pyg::{write_weights, HostTensor, WeightsError};

/// Errors of importing a checkpoint. Each names the file, and the field when one is at fault.
#[derive(Debug, Error)]
pub enum CheckpointError {
    /// The checkpoint could not be read, or is not a checkpoint (segger-data's reader: I/O, zip,
    /// pickle, a `state_dict` that is not a dict of tensors).
    #[error(transparent)]
    Read(#[from] DataError),
    /// A `state_dict` entry or a configuration value is missing, malformed, or contradicts the
    /// weights.
    #[error("{path}: {field}: {problem}")]
    Field {
        /// The checkpoint.
        path: PathBuf,
        /// The `state_dict` entry (`state_dict.model.lin0.bd.weight`) or configuration field
        /// (`heads`).
        field: String,
        /// What is wrong.
        problem: String,
    },
    /// The configuration the checkpoint resolves to is not one the model builds.
    #[error("{path}: {source}")]
    Config {
        /// The checkpoint.
        path: PathBuf,
        /// The problem (names the field).
        #[source]
        source: ConfigError,
    },
    /// `--output` is not a folder this command may write (segger-fs's rules), or could not be
    /// put in place.
    #[error(transparent)]
    Output(#[from] segger_fs::OutputError),
    /// `model.safetensors` could not be written.
    #[error(transparent)]
    Weights(#[from] WeightsError),
    /// `config.json` could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl CheckpointError {
    /// The process exit code for this error: 2 for bad input (the checkpoint, the values given,
    /// an `--output` that may not be written), 1 for a failure to write.
    pub fn exit_code(&self) -> u8 {
        match self {
            CheckpointError::Read(_)
            | CheckpointError::Field { .. }
            | CheckpointError::Config { .. } => 2,
            CheckpointError::Output(e) => e.exit_code(),
            CheckpointError::Weights(_) | CheckpointError::Io { .. } => 1,
        }
    }

    fn field(path: &Path, field: impl Into<String>, problem: impl Into<String>) -> Self {
        CheckpointError::Field {
            path: path.to_path_buf(),
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// Values given by the caller (command-line flags), used where the checkpoint's
/// hyper-parameters have none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConfigOverrides {
    /// `--num_tx_tokens`.
    pub num_tx_tokens: Option<usize>,
    /// `--init_emb`.
    pub init_emb: Option<usize>,
    /// `--hidden_channels`.
    pub hidden_channels: Option<usize>,
    /// `--out_channels`.
    pub out_channels: Option<usize>,
    /// `--heads`.
    pub heads: Option<usize>,
    /// `--mid_layers`.
    pub num_mid_layers: Option<usize>,
}

/// The model's weights: names without the `model.` prefix, float32, in name order.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelWeights {
    /// `(name, tensor)` sorted by name.
    pub tensors: Vec<(String, HostTensor)>,
}

impl ModelWeights {
    /// The shape of tensor `name`.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.tensors
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.shape.as_slice())
    }
}

/// Extracts the model's float weights from a checkpoint's state dict (see the module docs);
/// `path` names the checkpoint in errors and warnings.
pub fn model_weights(
    path: &Path,
    ckpt: &LightningCheckpoint,
) -> Result<ModelWeights, CheckpointError> {
    let prefixed = ckpt.state_dict.iter().any(|(n, _)| n.starts_with("model."));
    let mut tensors = Vec::new();
    let mut seen = HashMap::new();
    for (name, t) in &ckpt.state_dict {
        let stripped = match name.strip_prefix("model.") {
            Some(s) => s,
            None if !prefixed => name.as_str(),
            None => {
                tracing::warn!(
                    "{}: state_dict entry {name} is not part of the model; skipped",
                    path.display()
                );
                continue;
            }
        };
        if !t.dtype.is_float() {
            tracing::warn!(
                "{}: state_dict entry {name} is {} (not a float weight); skipped",
                path.display(),
                t.dtype.name()
            );
            continue;
        }
        if seen.insert(stripped.to_string(), ()).is_some() {
            return Err(CheckpointError::field(
                path,
                format!("state_dict.{name}"),
                "appears twice after removing the model. prefix",
            ));
        }
        let tensor = HostTensor {
            shape: t.shape.clone(),
            values: t.to_f32(),
        };
        tensors.push((stripped.to_string(), tensor));
    }
    if tensors.is_empty() {
        return Err(CheckpointError::field(
            path,
            "state_dict",
            "holds no float model weights",
        ));
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(ModelWeights { tensors })
}

/// The relation whose attention tensors give `heads`, `hidden_channels` and `out_channels`.
const TT: &str = "tx__neighbors__tx";

/// What the weight shapes determine.
struct Inferred {
    /// The values the flags can give too.
    sizes: ConfigOverrides,
    /// Columns of `lin0.tx.weight`.
    tx_width: Option<usize>,
    /// Columns of `lin0.bd.weight`.
    bd_features: Option<usize>,
}

/// Infers whatever the weight shapes determine (the "weights" column of the module docs).
fn infer(w: &ModelWeights) -> Inferred {
    let mut c = ConfigOverrides::default();
    if let Some([v, e]) = w.shape("tx_embedding.tx.weight") {
        c.num_tx_tokens = Some(*v);
        c.init_emb = Some(*e);
    }
    if let Some([1, h, ch]) = w.shape(&format!("conv_first.{TT}.att")) {
        c.heads = Some(*h);
        c.hidden_channels = Some(*ch);
    }
    if let Some([1, _, o]) = w.shape(&format!("conv_last.{TT}.att")) {
        c.out_channels = Some(*o);
    }
    if c.heads.is_some() {
        let mids: BTreeSet<usize> = w
            .tensors
            .iter()
            .filter_map(|(n, _)| {
                n.strip_prefix("conv_mid_layers.")?
                    .split('.')
                    .next()?
                    .parse()
                    .ok()
            })
            .collect();
        c.num_mid_layers = Some(mids.len());
    }
    let columns = |name: &str| match w.shape(name) {
        Some([_, f]) => Some(*f),
        _ => None,
    };
    Inferred {
        sizes: c,
        tx_width: columns("lin0.tx.weight"),
        bd_features: columns("lin0.bd.weight"),
    }
}

/// A size from the hyper-parameters (the "hyper-parameter" column of the module docs).
fn hparam(h: &BTreeMap<String, HyperValue>, key: &str) -> Option<usize> {
    // The CLI flavour of LitSegger stores num_node_features = {"tx": N, "bd": 4}.
    let node_features = |t: &str| match h.get("num_node_features") {
        Some(HyperValue::Dict(d)) => d.get(t).and_then(HyperValue::as_usize),
        _ => None,
    };
    match key {
        "bd_features" => node_features("bd"),
        "num_tx_tokens" => h
            .get(key)
            .and_then(HyperValue::as_usize)
            .or_else(|| node_features("tx")),
        _ => h.get(key).and_then(HyperValue::as_usize),
    }
}

/// Where each configuration value came from: `hyper_parameters`, `flag`, `weights` or `default`.
pub type ConfigSources = BTreeMap<&'static str, &'static str>;

/// Resolves the model configuration (see the module docs) and checks it against the weights:
/// every tensor of the configuration must be present with its shape, and no other.
pub fn resolve_config(
    path: &Path,
    ckpt: &LightningCheckpoint,
    w: &ModelWeights,
    flags: &ConfigOverrides,
) -> Result<(SeggerConfig, ConfigSources), CheckpointError> {
    let inferred = infer(w);
    let inf = &inferred.sizes;
    let mut sources = ConfigSources::new();
    let mut pick = |key: &'static str,
                    flag: Option<usize>,
                    inf: Option<usize>|
     -> Result<Option<usize>, CheckpointError> {
        let (v, src) = match (hparam(&ckpt.hyper_parameters, key), flag, inf) {
            (Some(v), _, _) => (v, "hyper_parameters"),
            (None, Some(v), _) => (v, "flag"),
            (None, None, Some(v)) => (v, "weights"),
            (None, None, None) => return Ok(None),
        };
        if let Some(i) = inf.filter(|&i| i != v) {
            return Err(CheckpointError::field(
                path,
                key,
                format!("{src} says {v} but the weights imply {i}"),
            ));
        }
        sources.insert(key, src);
        Ok(Some(v))
    };
    let mut required = |key: &'static str, flag: Option<usize>, inf: Option<usize>| {
        pick(key, flag, inf)?.ok_or_else(|| {
            CheckpointError::field(
                path,
                key,
                "not in the checkpoint's hyper-parameters and not inferable from the weights: \
                 pass it as a flag",
            )
        })
    };
    let mut cfg = SeggerConfig::new(required(
        "num_tx_tokens",
        flags.num_tx_tokens,
        inf.num_tx_tokens,
    )?);
    cfg.init_emb = required("init_emb", flags.init_emb, inf.init_emb)?;
    cfg.hidden_channels = required(
        "hidden_channels",
        flags.hidden_channels,
        inf.hidden_channels,
    )?;
    cfg.out_channels = required("out_channels", flags.out_channels, inf.out_channels)?;
    cfg.heads = required("heads", flags.heads, inf.heads)?;
    cfg.num_mid_layers = required("num_mid_layers", flags.num_mid_layers, inf.num_mid_layers)?;
    // Without lin0.bd.weight the default stays, and the shape check names the missing tensor.
    if let Some(b) = pick("bd_features", None, inferred.bd_features)? {
        cfg.bd_features = b;
    }
    if let Some(f) = inferred.tx_width {
        cfg.tx_features = (f != 1).then_some(f);
        sources.insert("tx_features", "weights");
    }
    cfg.aggr = match ckpt.hyper_parameters.get("aggr") {
        Some(HyperValue::Str(s)) => {
            sources.insert("aggr", "hyper_parameters");
            s.parse::<Aggr>().map_err(|e| {
                CheckpointError::field(
                    path,
                    "aggr",
                    format!("hyper_parameters says {s:?}: {}", e.problem),
                )
            })?
        }
        _ => Aggr::default(),
    };
    for key in ["bd_features", "tx_features", "aggr", "relations"] {
        sources.entry(key).or_insert("default");
    }
    cfg.check().map_err(|source| CheckpointError::Config {
        path: path.to_path_buf(),
        source,
    })?;
    // Each middle layer has 12 tensors: more layers than tensors cannot match the weights (and
    // would make the expected-name list absurdly long).
    if cfg.num_mid_layers > w.tensors.len() {
        return Err(CheckpointError::field(
            path,
            "num_mid_layers",
            format!(
                "{} middle layers, but the checkpoint holds only {} tensors",
                cfg.num_mid_layers,
                w.tensors.len()
            ),
        ));
    }
    // Layer widths are heads × channels: sizes from hyper-parameters or flags that overflow
    // cannot match any weights.
    if cfg
        .heads
        .checked_mul(cfg.hidden_channels.max(cfg.out_channels))
        .is_none()
    {
        return Err(CheckpointError::field(
            path,
            "heads",
            format!(
                "{} heads of {} and {} channels is too many",
                cfg.heads, cfg.hidden_channels, cfg.out_channels
            ),
        ));
    }
    check_shapes(path, &cfg, w)?;
    Ok((cfg, sources))
}

/// The configuration as `config.json` (`pretty`) and the weights' `config` metadata hold it
/// (see the module docs).
fn config_json(cfg: &SeggerConfig, pretty: bool) -> String {
    fn json(v: &impl Serialize, pretty: bool) -> String {
        if pretty {
            serde_json::to_string_pretty(v)
        } else {
            serde_json::to_string(v)
        }
        .expect("config serialises")
    }
    match cfg.reference_args() {
        Some(args) => json(&args, pretty),
        None => json(cfg, pretty),
    }
}

/// Checks the weights against the model's parameter table for `cfg`: the first missing or
/// mis-shaped tensor, else every extra one, is an error.
fn check_shapes(path: &Path, cfg: &SeggerConfig, w: &ModelWeights) -> Result<(), CheckpointError> {
    let expected = pyg_shapes(cfg);
    let model = || config_json(cfg, false);
    for (name, shape) in &expected {
        let field = format!("state_dict.model.{name}");
        let Some(got) = w.shape(name) else {
            return Err(CheckpointError::field(
                path,
                field,
                format!("missing; a Segger model with {} has it", model()),
            ));
        };
        if got != shape.as_slice() {
            return Err(CheckpointError::field(
                path,
                field,
                format!(
                    "shape is {got:?}, the configuration {} implies {shape:?}",
                    model()
                ),
            ));
        }
    }
    // Extra model tensors mean another architecture: the weights could not be loaded.
    let known: BTreeSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
    let extra: Vec<&str> = w
        .tensors
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| !known.contains(n))
        .collect();
    if !extra.is_empty() {
        return Err(CheckpointError::field(
            path,
            "state_dict",
            format!(
                "model tensors that a Segger model with {} does not have: {}",
                model(),
                extra.join(", ")
            ),
        ));
    }
    Ok(())
}

/// What [`import_checkpoint`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportReport {
    /// The resolved configuration.
    pub config: SeggerConfig,
    /// Where each configuration value came from.
    pub sources: ConfigSources,
    /// Number of tensors written.
    pub tensors: usize,
    /// Number of parameters written.
    pub parameters: usize,
}

/// What `import_checkpoint` writes into its output folder (segger-fs's rules).
pub const IMPORT_OUTPUT: segger_fs::OutputSpec<'static> = segger_fs::OutputSpec {
    command: "import_checkpoint",
    writes: &["model.safetensors", "config.json"],
    signature: "model.safetensors",
};

/// Reads a checkpoint and writes `model.safetensors` and `config.json` into `out_dir`. The
/// folder must be missing or empty, or, with `overwrite`, an earlier import holding nothing
/// else (a training run is never overwritten); both files appear together (written into a
/// temporary sibling folder renamed into place).
pub fn import_checkpoint(
    ckpt_path: &Path,
    out_dir: &Path,
    flags: &ConfigOverrides,
    overwrite: bool,
) -> Result<ImportReport, CheckpointError> {
    segger_fs::prepare_output(
        &IMPORT_OUTPUT,
        "--output",
        out_dir,
        &[("--ckpt", ckpt_path)],
        overwrite,
    )?;
    let ckpt = read_checkpoint(ckpt_path)?;
    let w = model_weights(ckpt_path, &ckpt)?;
    let (config, sources) = resolve_config(ckpt_path, &ckpt, &w, flags)?;
    segger_fs::remove_stale_siblings(out_dir);
    let tmp = segger_fs::TempDir::next_to(out_dir, "tmp")?;
    write_weights(
        &tmp.path().join("model.safetensors"),
        &w.tensors,
        &config_json(&config, false),
    )?;
    let cfg_file = tmp.path().join("config.json");
    std::fs::write(&cfg_file, config_json(&config, true) + "\n").map_err(|source| {
        CheckpointError::Io {
            path: cfg_file.clone(),
            source,
        }
    })?;
    segger_fs::replace_dir(tmp.path(), out_dir)?;
    tmp.keep();
    Ok(ImportReport {
        config,
        sources,
        tensors: w.tensors.len(),
        parameters: w.tensors.iter().map(|(_, t)| t.values.len()).sum(),
    })
}
