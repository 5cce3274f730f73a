//! Reading the reference implementation's own files without Python: PyTorch `torch.save`
//! archives (zip + pickle), PyG `HeteroData` tiles (`processed/*.pt`) and Lightning
//! checkpoints (`.ckpt`).
//!
//! * [`zip`]: the stored-only zip container `torch.save` writes.
//! * [`pickle`]: a restricted pickle interpreter: a fixed set of opcodes, a fixed allow-list of
//!   globals ([`pickle::TILE_GLOBALS`], [`pickle::CHECKPOINT_GLOBALS`]), nothing executed.
//! * [`pyg`]: `HeteroData` tiles to [`crate::Tile`], with the quirks of real Segger tiles.
//! * [`checkpoint`]: Lightning checkpoints (`.ckpt`), read: the state dict and the plain
//!   hyper-parameters. Their import as `model.safetensors` + `config.json` lives beside the
//!   model, in `segger_model::checkpoint`.
//! * [`convert`]: a whole Segger dataset directory to `segger-tile/1`.
//! * [`save`]: the way back: float32 state dicts written in the `torch.save` format.
//!
//! Only the zip-based format (torch >= 1.6) is read; the legacy tar/pickle format is refused.
//! Big-endian archives are refused.

pub mod checkpoint;
pub mod convert;
pub mod pickle;
pub mod pyg;
pub mod save;
pub mod zip;

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;

use crate::error::DataError;
pub use pickle::{DType, Pickle, Policy, Tensor, Value};
pub use pyg::{parse_pyg, pyg_to_tile, read_pt_tile, read_pyg, PygHeteroData, PygValue};

/// A `torch.save` archive, unpickled.
#[derive(Debug, Clone)]
pub struct TorchArchive {
    /// The archive's record prefix (`tiles_x=..._h=35/` for a tile, `archive/` usually).
    pub prefix: String,
    /// Every zip member name, in directory order.
    pub members: Vec<String>,
    /// The unpickled `data.pkl`, with its tensors rebuilt.
    pub pickle: Pickle,
}

struct ZipStorages<'a> {
    zip: &'a zip::ZipArchive<'a>,
    prefix: &'a str,
    checked: RefCell<HashMap<String, &'a [u8]>>,
}

impl pickle::StorageSource for ZipStorages<'_> {
    fn storage(&self, key: &str) -> Result<&[u8], String> {
        if let Some(b) = self.checked.borrow().get(key) {
            return Ok(b);
        }
        let name = format!("{}data/{key}", self.prefix);
        match self.zip.read(&name) {
            Ok(Some(b)) => {
                self.checked.borrow_mut().insert(key.to_string(), b);
                Ok(b)
            }
            Ok(None) => Err(format!("zip member {name:?} is missing")),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Tensor bytes materialised per archive byte, at most (plus a fixed allowance): generous for
/// real files, where each storage is read about once, and a bound on hostile ones.
const BUDGET_PER_BYTE: usize = 8;
const BUDGET_BASE: usize = 64 << 20;

/// Parses the bytes of a `torch.save` archive; `path` names the file in errors.
pub fn parse_torch(path: &Path, bytes: &[u8], policy: Policy) -> Result<TorchArchive, DataError> {
    let zip = zip::ZipArchive::new(bytes).map_err(|e| {
        DataError::format(
            path,
            "zip",
            format!("{e} (only the zip-based torch.save format of torch >= 1.6 is supported)"),
        )
    })?;
    // The pickle is `PREFIX/data.pkl` where PREFIX is a single directory name.
    let mut pkl: Option<&str> = None;
    for e in zip.entries() {
        if let Some(prefix) = e.name.strip_suffix("data.pkl") {
            let top_level = prefix.is_empty()
                || (prefix.ends_with('/') && !prefix[..prefix.len() - 1].contains('/'));
            if top_level {
                if pkl.is_some() {
                    return Err(DataError::format(
                        path,
                        "data.pkl",
                        "the archive has more than one data.pkl",
                    ));
                }
                pkl = Some(&e.name);
            }
        }
    }
    let Some(pkl) = pkl else {
        return Err(DataError::format(
            path,
            "data.pkl",
            "zip member */data.pkl is missing: not a torch.save archive",
        ));
    };
    let prefix = pkl.strip_suffix("data.pkl").unwrap_or_default().to_string();
    let zerr = |field: &str, e: zip::ZipError| DataError::format(path, field, e.to_string());
    if let Some(order) = zip
        .read(&format!("{prefix}byteorder"))
        .map_err(|e| zerr("byteorder", e))?
    {
        if order != b"little" {
            return Err(DataError::format(
                path,
                "byteorder",
                format!(
                    "is {:?}; only little-endian archives are supported",
                    String::from_utf8_lossy(order)
                ),
            ));
        }
    }
    let data = zip
        .read(pkl)
        .map_err(|e| zerr("data.pkl", e))?
        .unwrap_or_default();
    let storages = ZipStorages {
        zip: &zip,
        prefix: &prefix,
        checked: RefCell::new(HashMap::new()),
    };
    let budget = bytes
        .len()
        .saturating_mul(BUDGET_PER_BYTE)
        .saturating_add(BUDGET_BASE);
    let pickle = pickle::Vm::new(data, policy, &storages, budget)
        .run()
        .map_err(|e| DataError::format(path, "data.pkl", e.to_string()))?;
    Ok(TorchArchive {
        prefix,
        members: zip.entries().iter().map(|e| e.name.clone()).collect(),
        pickle,
    })
}

/// Reads and parses a `torch.save` archive from disk.
pub fn read_torch(path: &Path, policy: Policy) -> Result<TorchArchive, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    parse_torch(path, &bytes, policy)
}
