//! # segger-model
//!
//! The Segger link predictor in Burn, generic over the backend, computing what the reference
//! (PyTorch Geometric, `to_hetero(Segger(...))`) computes:
//!
//! * [`SeggerConfig`]: the architecture (`num_tx_tokens`, `init_emb`, `hidden_channels`,
//!   `out_channels`, `heads`, `num_mid_layers`, `aggr`, relations).
//! * [`Segger`]: input layer per node type, then GATv2 layers with one weight set per relation
//!   (PyG's `to_hetero`), parameters named 1:1 after PyG's `state_dict` ([`pyg`]).
//! * [`GraphInput`]: a collated batch moved to the device, edges sorted by destination.
//! * [`mp`]: message-passing primitives (gather, scatter-add, segment max, segment softmax) and
//!   the GATv2 attention-aggregation op, with a generic reference implementation and fused
//!   kernels behind the same function.
//! * [`decode`] and [`bce_with_logits`]: scoring and loss.
//! * [`checkpoint`]: `segger import_checkpoint`, a Lightning checkpoint of the reference model
//!   (read by `segger_data::torch`) resolved to a [`SeggerConfig`], checked against the
//!   parameter table and written as a weight file by [`pyg`]'s writer.
//! * `kernel_cache` (features `wgpu`, `cuda`): on-disk caches of compiled GPU kernels and
//!   autotune results.
#![warn(missing_docs)]

pub mod backend;
pub mod calibration;
pub mod checkpoint;
mod config;
mod gat;
mod input;
#[cfg(any(feature = "wgpu", feature = "cuda"))]
pub mod kernel_cache;
mod model;
pub mod mp;
pub mod optim;
pub mod pyg;

pub use config::{Aggr, ConfigError, SeggerConfig, BD_TO_TX};
pub use gat::GatConv;
pub use input::{check_layout, GraphInput, RelationGraph};
pub use model::{bce_with_logits, decode, Embeddings, NamedParam, Segger};
pub use mp::{GatBackend, RowIndex};
