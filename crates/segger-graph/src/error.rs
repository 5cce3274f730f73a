use thiserror::Error;

/// Everything that can be wrong with a [`crate::HeteroGraph`]. Each variant names the
/// offending field with PyG-style keys (`tx.x`, `tx__neighbors__tx.edge_index`, ...).
#[derive(Debug, Error, Clone, PartialEq)]
pub enum GraphError {
    /// An edge index points outside the node store it refers to.
    #[error("{field}: index {index} at position {position} is out of range for {node_type} with {count} nodes")]
    IndexOutOfRange {
        /// PyG-style field name.
        field: String,
        /// The offending value.
        index: i64,
        /// Position of the value in the flattened row.
        position: usize,
        /// Node type the index refers to.
        node_type: String,
        /// Number of nodes of that type.
        count: usize,
    },
    /// Two arrays that must have the same length do not.
    #[error("{field}: length {actual} does not match {expected} ({reason})")]
    LengthMismatch {
        /// PyG-style field name.
        field: String,
        /// Expected length.
        expected: usize,
        /// Actual length.
        actual: usize,
        /// What the expected length comes from.
        reason: String,
    },
    /// A supervision label is neither 0 nor 1.
    #[error("{field}: label {value} at position {position} is neither 0 nor 1")]
    BadLabel {
        /// PyG-style field name.
        field: String,
        /// The offending value.
        value: f32,
        /// Its position.
        position: usize,
    },
    /// A gene token id is negative or not below the vocabulary size.
    #[error("{field}: token id {token} at position {position} is outside the vocabulary of {vocab} tokens")]
    TokenOutOfVocab {
        /// PyG-style field name.
        field: String,
        /// The offending token.
        token: i64,
        /// Its position.
        position: usize,
        /// Vocabulary size.
        vocab: usize,
    },
    /// A coordinate is NaN or infinite.
    #[error("{field}: non-finite value {value} at row {row}, column {column}")]
    NonFinite {
        /// PyG-style field name.
        field: String,
        /// The offending value.
        value: f32,
        /// Row of the value.
        row: usize,
        /// Column of the value.
        column: usize,
    },
    /// A relation refers to a node type that the graph does not have.
    #[error("relation {relation}: unknown node type {node_type}")]
    UnknownNodeType {
        /// Relation name.
        relation: String,
        /// The node type.
        node_type: String,
    },
    /// Anything else that makes the graph unusable.
    #[error("{field}: {message}")]
    Invalid {
        /// PyG-style field name.
        field: String,
        /// What is wrong.
        message: String,
    },
}
