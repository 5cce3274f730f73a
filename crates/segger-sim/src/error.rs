//! Errors of simulation, evaluation and drawing.

use std::path::PathBuf;

use thiserror::Error;

/// Everything that can go wrong in this crate. Every variant names the file involved.
#[derive(Debug, Error)]
pub enum SimError {
    /// A required input file does not exist.
    #[error("{path}: file not found")]
    MissingFile {
        /// The file.
        path: PathBuf,
    },
    /// A required column is absent.
    #[error("{path}: column `{column}` is missing")]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// The column.
        column: String,
    },
    /// A column has a type this reader does not accept.
    #[error("{path}: column `{column}` has type {found}, expected {expected}")]
    WrongType {
        /// The file.
        path: PathBuf,
        /// The column.
        column: String,
        /// The type found.
        found: String,
        /// What was expected.
        expected: &'static str,
    },
    /// A value is invalid (null where none is allowed, duplicate id, ...).
    #[error("{path}: column `{column}`: {message}")]
    BadValue {
        /// The file.
        path: PathBuf,
        /// The column.
        column: String,
        /// What is wrong.
        message: String,
    },
    /// A file that is not readable as parquet (corrupt, truncated, another format).
    #[error("{path}: not a readable parquet file: {message}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        message: String,
    },
    /// A parquet or arrow failure while writing a file.
    #[error("{path}: {message}")]
    Parquet {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        message: String,
    },
    /// An I/O failure.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Invalid parameters.
    #[error("{0}")]
    Invalid(String),
    /// The output folder cannot be written (segger-fs's rules).
    #[error(transparent)]
    Output(#[from] segger_fs::OutputError),
}

impl SimError {
    /// The process exit code for this error: 2 for bad parameters or input (the files that were
    /// read), 1 for a failure of the machine (I/O, writing).
    pub fn exit_code(&self) -> u8 {
        match self {
            SimError::Io { .. } | SimError::Parquet { .. } => 1,
            SimError::Output(o) => o.exit_code(),
            _ => 2,
        }
    }
}
