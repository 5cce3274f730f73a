//! Lightning checkpoints (`.ckpt`) of the reference Segger model, converted to
//! `model.safetensors` + `config.json`.
//!
//! A Lightning checkpoint is a `torch.save`d dict with `state_dict` (the `LitSegger` module's
//! parameters, keys prefixed `model.`, PyG `to_hetero` names such as
//! `model.conv_first.tx__neighbors__tx.lin_l.weight`) and usually `hyper_parameters`. It also
//! pickles optimiser states, callbacks and, for `LitSegger(model)`, the whole model object as a
//! hyper-parameter: such objects are read under [`Policy::Checkpoint`], where globals outside
//! the allow-list stay inert placeholders (never called) and only the weights and plain
//! hyper-parameters are used. A plain `torch.save(model.state_dict())` file is accepted too.
//!
//! The model configuration is taken, per key, from the hyper-parameters where present, else
//! from caller-supplied values (command-line flags), else inferred from the weight shapes; a
//! value that contradicts the weights is an error.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};
use serde::{Deserialize, Serialize};

use super::parse_torch;
use super::pickle::{Obj, Pickle, Policy, Tensor, Value};
use crate::error::DataError;

/// A hyper-parameter value, converted from the pickle (bounded in depth and size).
#[derive(Debug, Clone, PartialEq)]
pub enum HyperValue {
    /// `None`.
    None,
    /// A bool.
    Bool(bool),
    /// An int.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    Str(String),
    /// A list or tuple.
    List(Vec<HyperValue>),
    /// A dict with string keys (other keys are rendered as text).
    Dict(BTreeMap<String, HyperValue>),
    /// Anything else (a tensor, a model object, ...), described.
    Opaque(String),
}

impl HyperValue {
    /// The value as a non-negative integer, if it is one (integral floats included).
    pub fn as_usize(&self) -> Option<usize> {
        match self {
            HyperValue::Int(i) if *i >= 0 => usize::try_from(*i).ok(),
            HyperValue::Float(f) if f.fract() == 0.0 && *f >= 0.0 && *f < 1e15 => Some(*f as usize),
            _ => None,
        }
    }
}

/// Nodes converted per hyper-parameter tree, at most (shared references can make a pickle's
/// tree exponentially larger than the pickle).
const MAX_HYPER_NODES: usize = 10_000;
const MAX_HYPER_DEPTH: usize = 16;

fn hyper(p: &Pickle, v: &Value, depth: usize, budget: &mut usize) -> HyperValue {
    if *budget == 0 || depth > MAX_HYPER_DEPTH {
        return HyperValue::Opaque("(too deep or too large)".into());
    }
    *budget -= 1;
    match v {
        Value::None => HyperValue::None,
        Value::Bool(b) => HyperValue::Bool(*b),
        Value::Int(i) => HyperValue::Int(*i),
        Value::Float(f) => HyperValue::Float(*f),
        Value::Str(s) => HyperValue::Str(s.to_string()),
        _ => match p.obj(v) {
            Some(Obj::Tuple(t)) | Some(Obj::List(t)) => {
                HyperValue::List(t.iter().map(|x| hyper(p, x, depth + 1, budget)).collect())
            }
            // Dicts, and dict subclasses such as Lightning's AttributeDict.
            Some(_) if p.dict(v).is_some() => HyperValue::Dict(
                p.dict(v)
                    .map(|d| d.items.as_slice())
                    .unwrap_or_default()
                    .iter()
                    .map(|(k, x)| {
                        let key = match k {
                            Value::Str(s) => s.to_string(),
                            other => p.describe(other),
                        };
                        (key, hyper(p, x, depth + 1, budget))
                    })
                    .collect(),
            ),
            _ => HyperValue::Opaque(p.describe(v)),
        },
    }
}

/// The parts of a checkpoint that matter for inference.
#[derive(Debug, Clone, PartialEq)]
pub struct LightningCheckpoint {
    /// `state_dict` entries in file order, names as stored (with the `model.` prefix).
    pub state_dict: Vec<(String, Tensor)>,
    /// `hyper_parameters`, empty when absent.
    pub hyper_parameters: BTreeMap<String, HyperValue>,
    /// True when the file is a Lightning checkpoint (a dict with `state_dict`), false for a
    /// bare state dict.
    pub lightning: bool,
    /// The pickle globals the file names (interpreted or kept inert).
    pub globals: BTreeSet<String>,
}

/// Parses a checkpoint's bytes; `path` names it in errors.
pub fn parse_checkpoint(path: &Path, bytes: &[u8]) -> Result<LightningCheckpoint, DataError> {
    let a = parse_torch(path, bytes, Policy::Checkpoint)?;
    let p = &a.pickle;
    let err = |field: &str, problem: String| DataError::format(path, field, problem);
    if p.dict(&p.root).is_none() {
        return Err(err(
            "data.pkl",
            format!(
                "the pickled object is a {}, expected a checkpoint dict",
                p.describe(&p.root)
            ),
        ));
    }
    let (sd, lightning) = match p.get(&p.root, "state_dict") {
        Some(sd) => (sd, true),
        None => (&p.root, false),
    };
    let d = p.dict(sd).ok_or_else(|| {
        err(
            "state_dict",
            format!("is a {}, expected a dict of tensors", p.describe(sd)),
        )
    })?;
    let mut state_dict = Vec::with_capacity(d.items.len());
    for (k, v) in &d.items {
        let Value::Str(name) = k else {
            return Err(err(
                "state_dict",
                format!("has a non-string key ({})", p.describe(k)),
            ));
        };
        match p.tensor(v) {
            Some(t) => state_dict.push((name.to_string(), t.clone())),
            None => {
                return Err(err(
                    &format!("state_dict.{name}"),
                    format!("is a {}, expected a tensor", p.describe(v)),
                ))
            }
        }
    }
    let mut hyper_parameters = BTreeMap::new();
    if lightning {
        if let Some(h) = p.get(&p.root, "hyper_parameters") {
            let mut budget = MAX_HYPER_NODES;
            match hyper(p, h, 0, &mut budget) {
                HyperValue::Dict(m) => hyper_parameters = m,
                HyperValue::None => {}
                other => tracing::warn!(
                    "{}: hyper_parameters is {other:?}, not a dict; ignored",
                    path.display()
                ),
            }
        }
    }
    Ok(LightningCheckpoint {
        state_dict,
        hyper_parameters,
        lightning,
        globals: p.globals.clone(),
    })
}

/// Reads a checkpoint file.
pub fn read_checkpoint(path: &Path) -> Result<LightningCheckpoint, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    parse_checkpoint(path, &bytes)
}

/// The Segger model's arguments, as written to `config.json` and to the `config` metadata of
/// `model.safetensors` (the keys of the parity fixture's weight files).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeggerConfig {
    /// Gene vocabulary size (rows of `tx_embedding.tx.weight`).
    pub num_tx_tokens: usize,
    /// Width of the initial embeddings.
    pub init_emb: usize,
    /// Per-head width of the first and middle GATv2 layers.
    pub hidden_channels: usize,
    /// Per-head width of the last GATv2 layer.
    pub out_channels: usize,
    /// Attention heads.
    pub heads: usize,
    /// Number of middle GATv2 layers.
    pub num_mid_layers: usize,
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
    /// `(name, shape, values)` sorted by name.
    pub tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
}

impl ModelWeights {
    /// The shape of tensor `name`.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.tensors
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, s, _)| s.as_slice())
    }
}

/// Extracts the model's float weights from a state dict: keys starting with `model.` lose the
/// prefix; when no key has it (a bare model state dict) all keys are kept. Other keys and
/// non-float tensors are skipped with a warning. Float64/16 weights are converted to float32.
pub fn model_weights(path: &Path, ckpt: &LightningCheckpoint) -> Result<ModelWeights, DataError> {
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
            return Err(DataError::format(
                path,
                format!("state_dict.{name}"),
                "appears twice after removing the model. prefix",
            ));
        }
        tensors.push((stripped.to_string(), t.shape.clone(), t.to_f32()));
    }
    if tensors.is_empty() {
        return Err(DataError::format(
            path,
            "state_dict",
            "holds no float model weights",
        ));
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(ModelWeights { tensors })
}

const TT: &str = "tx__neighbors__tx";
const TB: &str = "tx__neighbors__bd";

/// Infers whatever the weight shapes determine: `num_tx_tokens` and `init_emb` from
/// `tx_embedding.tx.weight`, `heads` and `hidden_channels` from `conv_first.*.att`,
/// `out_channels` from `conv_last.*.att`, `num_mid_layers` from the `conv_mid_layers.N` names.
pub fn infer_config(w: &ModelWeights) -> ConfigOverrides {
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
            .filter_map(|(n, _, _)| {
                n.strip_prefix("conv_mid_layers.")?
                    .split('.')
                    .next()?
                    .parse()
                    .ok()
            })
            .collect();
        c.num_mid_layers = Some(mids.len());
    }
    c
}

fn hparam(h: &BTreeMap<String, HyperValue>, key: &str) -> Option<usize> {
    if let Some(v) = h.get(key).and_then(HyperValue::as_usize) {
        return Some(v);
    }
    // The CLI flavour of LitSegger stores num_node_features = {"tx": N, "bd": 4}.
    if key == "num_tx_tokens" {
        if let Some(HyperValue::Dict(d)) = h.get("num_node_features") {
            return d.get("tx").and_then(HyperValue::as_usize);
        }
    }
    None
}

/// Where each configuration value came from: `hyper_parameters`, `flag` or `weights`.
pub type ConfigSources = BTreeMap<&'static str, &'static str>;

/// Resolves the model configuration (see the module docs) and checks it against the weights:
/// every expected tensor must be present with the shape the configuration implies.
pub fn resolve_config(
    path: &Path,
    ckpt: &LightningCheckpoint,
    w: &ModelWeights,
    flags: &ConfigOverrides,
) -> Result<(SeggerConfig, ConfigSources), DataError> {
    let inferred = infer_config(w);
    let mut sources = ConfigSources::new();
    let mut pick =
        |key: &'static str, flag: Option<usize>, inf: Option<usize>| -> Result<usize, DataError> {
            let (v, src) = match (hparam(&ckpt.hyper_parameters, key), flag, inf) {
                (Some(v), _, _) => (v, "hyper_parameters"),
                (None, Some(v), _) => (v, "flag"),
                (None, None, Some(v)) => (v, "weights"),
                (None, None, None) => {
                    return Err(DataError::format(
                        path,
                        key,
                        "not in the checkpoint's hyper-parameters and not inferable from the \
                     weights: pass it as a flag",
                    ))
                }
            };
            if let Some(i) = inf.filter(|&i| i != v) {
                return Err(DataError::format(
                    path,
                    key,
                    format!("{src} says {v} but the weights imply {i}"),
                ));
            }
            sources.insert(key, src);
            Ok(v)
        };
    let cfg = SeggerConfig {
        num_tx_tokens: pick("num_tx_tokens", flags.num_tx_tokens, inferred.num_tx_tokens)?,
        init_emb: pick("init_emb", flags.init_emb, inferred.init_emb)?,
        hidden_channels: pick(
            "hidden_channels",
            flags.hidden_channels,
            inferred.hidden_channels,
        )?,
        out_channels: pick("out_channels", flags.out_channels, inferred.out_channels)?,
        heads: pick("heads", flags.heads, inferred.heads)?,
        num_mid_layers: pick(
            "num_mid_layers",
            flags.num_mid_layers,
            inferred.num_mid_layers,
        )?,
    };
    // Each middle layer has 12 tensors: more layers than tensors cannot match the weights (and
    // would make the expected-name list absurdly long).
    if cfg.num_mid_layers > w.tensors.len() {
        return Err(DataError::format(
            path,
            "num_mid_layers",
            format!(
                "{} middle layers, but the checkpoint holds only {} tensors",
                cfg.num_mid_layers,
                w.tensors.len()
            ),
        ));
    }
    check_shapes(path, &cfg, w)?;
    Ok((cfg, sources))
}

/// The tensors a Segger model with `cfg` has, with their shapes; `None` marks a dimension
/// that depends on the data (the lazily sized input width of `lin0`).
pub fn expected_shapes(cfg: &SeggerConfig) -> Vec<(String, Vec<Option<usize>>)> {
    let (v, e, h) = (cfg.num_tx_tokens, cfg.init_emb, cfg.heads);
    let hid = h.saturating_mul(cfg.hidden_channels);
    let out = h.saturating_mul(cfg.out_channels);
    let mut s: Vec<(String, Vec<Option<usize>>)> = vec![
        ("tx_embedding.tx.weight".into(), vec![Some(v), Some(e)]),
        ("tx_embedding.bd.weight".into(), vec![Some(v), Some(e)]),
        ("lin0.tx.weight".into(), vec![Some(e), None]),
        ("lin0.bd.weight".into(), vec![Some(e), None]),
    ];
    let mut layers = vec![("conv_first".to_string(), e, hid, cfg.hidden_channels)];
    for i in 0..cfg.num_mid_layers {
        layers.push((
            format!("conv_mid_layers.{i}"),
            hid,
            hid,
            cfg.hidden_channels,
        ));
    }
    layers.push(("conv_last".to_string(), hid, out, cfg.out_channels));
    for (layer, fan_in, fan_out, per_head) in layers {
        for rel in [TT, TB] {
            let p = format!("{layer}.{rel}");
            s.push((format!("{p}.att"), vec![Some(1), Some(h), Some(per_head)]));
            s.push((format!("{p}.bias"), vec![Some(fan_out)]));
            for lin in ["lin_l", "lin_r"] {
                s.push((
                    format!("{p}.{lin}.weight"),
                    vec![Some(fan_out), Some(fan_in)],
                ));
                s.push((format!("{p}.{lin}.bias"), vec![Some(fan_out)]));
            }
        }
    }
    s
}

fn check_shapes(path: &Path, cfg: &SeggerConfig, w: &ModelWeights) -> Result<(), DataError> {
    let expected = expected_shapes(cfg);
    for (name, shape) in &expected {
        let Some(got) = w.shape(name) else {
            return Err(DataError::format(
                path,
                format!("state_dict.model.{name}"),
                format!("missing; a Segger model with {cfg:?} has it"),
            ));
        };
        let fits = got.len() == shape.len()
            && got
                .iter()
                .zip(shape)
                .all(|(g, s)| s.is_none_or(|s| s == *g));
        if !fits {
            return Err(DataError::format(
                path,
                format!("state_dict.model.{name}"),
                format!("shape is {got:?}, the configuration {cfg:?} implies {shape:?}"),
            ));
        }
    }
    // Extra model tensors mean another architecture: the weights could not be loaded.
    let known: BTreeSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
    let extra: Vec<&str> = w
        .tensors
        .iter()
        .map(|(n, _, _)| n.as_str())
        .filter(|n| !known.contains(n))
        .collect();
    if !extra.is_empty() {
        return Err(DataError::format(
            path,
            "state_dict",
            format!(
                "model tensors that a Segger model with {cfg:?} does not have: {}",
                extra.join(", ")
            ),
        ));
    }
    Ok(())
}

/// The `format` metadata of weight files (as `segger train` writes them).
pub const WEIGHTS_FORMAT: &str = "segger-weights/1";

/// Serialises weights to safetensors bytes (float32, little-endian) with the configuration as
/// JSON under the `config` metadata key and [`WEIGHTS_FORMAT`] under `format`.
pub fn weights_to_safetensors(w: &ModelWeights, cfg: &SeggerConfig) -> Result<Vec<u8>, String> {
    let owned: Vec<(String, Vec<usize>, Vec<u8>)> = w
        .tensors
        .iter()
        .map(|(n, s, v)| {
            (
                n.clone(),
                s.clone(),
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            )
        })
        .collect();
    let mut views = Vec::with_capacity(owned.len());
    for (n, s, b) in &owned {
        let view = TensorView::new(Dtype::F32, s.clone(), b).map_err(|e| format!("{n}: {e}"))?;
        views.push((n.clone(), view));
    }
    let mut md = HashMap::new();
    md.insert(
        "config".to_string(),
        serde_json::to_string(cfg).map_err(|e| e.to_string())?,
    );
    md.insert("format".to_string(), WEIGHTS_FORMAT.to_string());
    crate::tile::serialize_safetensors(views, md)
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
) -> Result<ImportReport, DataError> {
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
    let bytes = weights_to_safetensors(&w, &config)
        .map_err(|e| DataError::format(out_dir.join("model.safetensors"), "tensors", e))?;
    segger_fs::remove_stale_siblings(out_dir);
    let tmp = segger_fs::TempDir::next_to(out_dir, "tmp")?;
    let model_file = tmp.path().join("model.safetensors");
    std::fs::write(&model_file, &bytes).map_err(|e| DataError::io(&model_file, e))?;
    let cfg_json = serde_json::to_string_pretty(&config).expect("config serialises") + "\n";
    let cfg_file = tmp.path().join("config.json");
    std::fs::write(&cfg_file, cfg_json).map_err(|e| DataError::io(&cfg_file, e))?;
    segger_fs::replace_dir(tmp.path(), out_dir)?;
    tmp.keep();
    Ok(ImportReport {
        config,
        sources,
        tensors: w.tensors.len(),
        parameters: w.tensors.iter().map(|(_, _, v)| v.len()).sum(),
    })
}
