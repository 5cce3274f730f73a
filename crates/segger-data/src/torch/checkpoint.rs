//! Lightning checkpoints (`.ckpt`) of the reference Segger model, read: the state dict and the
//! plain hyper-parameters. Turning them into segger's weight files (`model.safetensors` +
//! `config.json`, `segger import_checkpoint`) is `segger_model::checkpoint`'s job, next to the
//! model's configuration, parameter table and weight writer.
//!
//! A Lightning checkpoint is a `torch.save`d dict with `state_dict` (the `LitSegger` module's
//! parameters, keys prefixed `model.`, PyG `to_hetero` names such as
//! `model.conv_first.tx__neighbors__tx.lin_l.weight`) and usually `hyper_parameters`. It also
//! pickles optimiser states, callbacks and, for `LitSegger(model)`, the whole model object as a
//! hyper-parameter: such objects are read under [`Policy::Checkpoint`], where globals outside
//! the allow-list stay inert placeholders (never called) and only the tensors and plain
//! hyper-parameters are kept. A plain `torch.save(model.state_dict())` file is accepted too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

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
