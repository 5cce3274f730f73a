//! Weights in PyG `state_dict` naming, stored as safetensors.
//!
//! A weight file holds one F32 (or F64) tensor per parameter, named and shaped exactly as the
//! reference's `to_hetero(Segger(...)).state_dict()` (e.g. `conv_first.tx__neighbors__tx.lin_l.weight`
//! `[H*C, in]`, `conv_last.tx__neighbors__bd.att` `[1, H, C]`), and the model configuration
//! as JSON in the `config` metadata entry.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use thiserror::Error;

use crate::config::{ConfigError, SeggerConfig};
use crate::model::{pyg_shapes, NamedParam, Segger};
use crate::mp::GatBackend;

/// Errors of loading or saving weights.
#[derive(Debug, Error)]
pub enum WeightsError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a readable safetensors file, or a tensor has an unsupported dtype.
    #[error("{path}: {problem}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The tensors do not match the configuration: every offending name is listed.
    #[error("{path}: weights do not match the model config:{}", problems.iter().map(|p| format!("\n  - {p}")).collect::<String>())]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// One line per missing, unexpected or mis-shaped tensor.
        problems: Vec<String>,
    },
    /// The configuration is invalid.
    #[error("{path}: {source}")]
    Config {
        /// The file the config came from.
        path: PathBuf,
        /// The problem.
        #[source]
        source: ConfigError,
    },
}

/// A tensor read from a weight file: shape and f32 values.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    /// Shape.
    pub shape: Vec<usize>,
    /// Row-major values.
    pub values: Vec<f32>,
}

/// The tensors of a safetensors file by name, and its metadata.
pub type SafetensorsContents = (HashMap<String, HostTensor>, HashMap<String, String>);

/// Reads every tensor (F32, F64, F16 or BF16, converted to f32) and the metadata of a
/// safetensors file.
pub fn read_safetensors(path: &Path) -> Result<SafetensorsContents, WeightsError> {
    let bytes = std::fs::read(path).map_err(|source| WeightsError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let fmt = |problem: String| WeightsError::Format {
        path: path.to_path_buf(),
        problem,
    };
    let (_, meta) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| fmt(format!("not a valid safetensors file ({e})")))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| fmt(format!("not a valid safetensors file ({e})")))?;
    let mut out = HashMap::new();
    for (name, v) in st.tensors() {
        let d = v.data();
        let values: Vec<f32> = match v.dtype() {
            Dtype::F32 => d
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            Dtype::F64 => d
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32)
                .collect(),
            Dtype::F16 => d
                .chunks_exact(2)
                .map(|c| half_to_f32(u16::from_le_bytes([c[0], c[1]])))
                .collect(),
            Dtype::BF16 => d
                .chunks_exact(2)
                .map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16))
                .collect(),
            other => return Err(fmt(format!("{name}: dtype {other:?} is not a float type"))),
        };
        out.insert(
            name,
            HostTensor {
                shape: v.shape().to_vec(),
                values,
            },
        );
    }
    Ok((out, meta.metadata().clone().unwrap_or_default()))
}

fn half_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as i32;
    let man = (h & 0x3ff) as u32;
    let bits = match exp {
        0 if man == 0 => sign,
        0 => {
            // Subnormal: normalise.
            let mut e = -1i32;
            let mut m = man;
            while m & 0x400 == 0 {
                m <<= 1;
                e -= 1;
            }
            sign | (((127 - 15 + 1 + e) as u32) << 23) | ((m & 0x3ff) << 13)
        }
        31 => sign | 0x7f80_0000 | (man << 13),
        _ => sign | (((exp - 15 + 127) as u32) << 23) | (man << 13),
    };
    f32::from_bits(bits)
}

/// Checks `tensors` against the parameters of `config` and lists every problem.
pub fn check_names(config: &SeggerConfig, tensors: &HashMap<String, HostTensor>) -> Vec<String> {
    let expected = pyg_shapes(config);
    let mut problems = Vec::new();
    let names: BTreeSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
    for (name, shape) in &expected {
        match tensors.get(name) {
            None => problems.push(format!("missing tensor {name} (expected shape {shape:?})")),
            Some(t) if &t.shape != shape => {
                problems.push(format!("{name}: shape {:?}, expected {shape:?}", t.shape))
            }
            Some(_) => {}
        }
    }
    let mut extra: Vec<&String> = tensors
        .keys()
        .filter(|k| !names.contains(k.as_str()))
        .collect();
    extra.sort();
    for k in extra {
        problems.push(format!("unexpected tensor {k}"));
    }
    problems
}

/// Builds a model of `config` from PyG-named tensors. A missing name, an extra name or a shape
/// mismatch is an error listing every offending name.
pub fn from_tensors<B: GatBackend>(
    config: &SeggerConfig,
    tensors: &HashMap<String, HostTensor>,
    device: &B::Device,
    path: &Path,
) -> Result<Segger<B>, WeightsError> {
    let problems = check_names(config, tensors);
    if !problems.is_empty() {
        return Err(WeightsError::Mismatch {
            path: path.to_path_buf(),
            problems,
        });
    }
    Segger::build(config, device, |name, _| tensors[name].values.clone()).map_err(|source| {
        WeightsError::Config {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// Reads a weight file written in PyG naming into a model. The configuration comes from the
/// file's `config` metadata unless `config` is given.
pub fn load_pyg_state_dict<B: GatBackend>(
    path: &Path,
    config: Option<&SeggerConfig>,
    device: &B::Device,
) -> Result<Segger<B>, WeightsError> {
    let (tensors, meta) = read_safetensors(path)?;
    let cfg = match config {
        Some(c) => c.clone(),
        None => {
            let json = meta.get("config").ok_or_else(|| WeightsError::Format {
                path: path.to_path_buf(),
                problem: "no `config` metadata entry; pass the model config explicitly".into(),
            })?;
            SeggerConfig::from_json(json).map_err(|source| WeightsError::Config {
                path: path.to_path_buf(),
                source,
            })?
        }
    };
    from_tensors(&cfg, &tensors, device, path)
}

/// A parameter's values in PyG layout (`att` becomes `[1, H, C]`).
pub fn param_values<B: GatBackend>(name: &str, p: &NamedParam<B>) -> HostTensor {
    let (mut shape, data) = match p {
        NamedParam::D1(t) => (t.val().dims().to_vec(), t.val().into_data()),
        NamedParam::D2(t) => (t.val().dims().to_vec(), t.val().into_data()),
    };
    if name.ends_with(".att") {
        shape.insert(0, 1);
    }
    HostTensor {
        shape,
        values: data.convert::<f32>().to_vec().expect("float data"),
    }
}

/// The `format` metadata entry of weight files.
pub const WEIGHTS_FORMAT: &str = "segger-weights/1";

/// Serialises float32 tensors in PyG naming as a weight file: `config_json` under the `config`
/// metadata key, [`WEIGHTS_FORMAT`] under `format`, the header sorted (the same tensors give the
/// same bytes). Fails when a tensor's values do not fill its shape.
fn weights_bytes(tensors: &[(String, HostTensor)], config_json: &str) -> Result<Vec<u8>, String> {
    let bytes: Vec<(&str, &[usize], Vec<u8>)> = tensors
        .iter()
        .map(|(n, t)| {
            (
                n.as_str(),
                t.shape.as_slice(),
                t.values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            )
        })
        .collect();
    let mut views = Vec::with_capacity(bytes.len());
    for (n, s, b) in &bytes {
        let view = TensorView::new(Dtype::F32, s.to_vec(), b).map_err(|e| format!("{n}: {e}"))?;
        views.push((n.to_string(), view));
    }
    let mut md = HashMap::new();
    md.insert("config".to_string(), config_json.to_string());
    md.insert("format".to_string(), WEIGHTS_FORMAT.to_string());
    let bytes = safetensors::serialize(views, Some(md)).map_err(|e| e.to_string())?;
    segger_fs::sorted_safetensors_header(&bytes)
}

/// The model's parameters in PyG naming and layout, in the order of
/// [`Segger::named_params`].
pub fn model_tensors<B: GatBackend>(model: &Segger<B>) -> Vec<(String, HostTensor)> {
    model
        .named_params()
        .iter()
        .map(|(n, p)| (n.clone(), param_values(n, p)))
        .collect()
}

/// Serialises the model's parameters in PyG naming, with the config in the metadata.
pub fn to_safetensors_bytes<B: GatBackend>(model: &Segger<B>) -> Vec<u8> {
    let config = serde_json::to_string(&model.config).expect("config serialises");
    weights_bytes(&model_tensors(model), &config).expect("parameters fill their shapes")
}

/// Writes a weight file: `tensors` (PyG names and layout, float32) with `config_json` as its
/// `config` metadata (the JSON [`SeggerConfig::from_json`] reads) and [`WEIGHTS_FORMAT`] as its
/// `format`, atomically (temporary file, then rename). The one writer of weight files:
/// [`save_pyg_state_dict`] for a model, `segger_model::checkpoint` for imported weights.
pub fn write_weights(
    path: &Path,
    tensors: &[(String, HostTensor)],
    config_json: &str,
) -> Result<(), WeightsError> {
    let bytes = weights_bytes(tensors, config_json).map_err(|problem| WeightsError::Format {
        path: path.to_path_buf(),
        problem,
    })?;
    segger_fs::write_atomic(path, &bytes).map_err(|source| WeightsError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes the model to `path` in PyG naming, with its config as metadata, atomically
/// (temporary file, then rename).
pub fn save_pyg_state_dict<B: GatBackend>(
    model: &Segger<B>,
    path: &Path,
) -> Result<(), WeightsError> {
    let config = serde_json::to_string(&model.config).expect("config serialises");
    write_weights(path, &model_tensors(model), &config)
}

/// Flattened values of a tensor, as f32.
pub fn tensor_values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().expect("float data")
}
