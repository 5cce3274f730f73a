//! # segger-graph
//!
//! The heterogeneous graph at the heart of Segger, independent of any tensor library:
//!
//! * [`HeteroGraph`]: node stores for transcripts (`tx`) and boundaries (`bd`) and one
//!   [`EdgeStore`] per relation (`tx__neighbors__tx`, `tx__neighbors__bd`, `tx__belongs__bd`),
//!   with PyTorch Geometric's naming, plus [`HeteroGraph::validate`] which names every problem.
//! * [`Batch`]: N tiles collated into one graph with node offsets, like PyG's `Batch`, keeping
//!   the map from each batched node back to its tile and local index.
//! * [`knn`]: k-nearest-neighbours-within-a-radius graph construction on a kd-tree, same-set or
//!   bipartite, 2-D or 3-D.
//! * [`negative`]: seeded negative sampling for the `tx-belongs-bd` link-prediction labels.
//! * [`csr`]: destination-sorted (CSR) views of an edge list for message passing.
#![warn(missing_docs)]

mod batch;
pub mod csr;
mod error;
mod hetero;
pub mod knn;
pub mod negative;

pub use batch::{Batch, NodeOrigin};
pub use error::GraphError;
pub use hetero::{
    EdgeStore, EdgeType, HeteroGraph, LabelStore, Layout, NodeFeatures, NodeIds, NodeStore,
    NodeType, BELONGS, NEIGHBORS_BD, NEIGHBORS_TX,
};
