use std::path::PathBuf;

use segger_graph::GraphError;
use thiserror::Error;

/// Errors of the data layer. Every variant names the file it concerns.
#[derive(Debug, Error)]
pub enum DataError {
    /// The file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A raw input file was not found where the platform keeps it.
    #[error("{dir}: no {what} file (looked for {looked_for}){}", nearest.as_ref().map(|n| format!("; {n}")).unwrap_or_default())]
    NotFound {
        /// The folder searched.
        dir: PathBuf,
        /// What was looked for (`transcripts`, `boundaries`, `polygons`).
        what: String,
        /// The names and patterns tried, comma-separated.
        looked_for: String,
        /// The nearest file that is there and the flag that would use it.
        nearest: Option<String>,
    },
    /// A tensor or metadata field is missing or malformed.
    #[error("{path}: {field}: {problem}")]
    Format {
        /// The file.
        path: PathBuf,
        /// The tensor or metadata key.
        field: String,
        /// What is wrong.
        problem: String,
    },
    /// The file parsed but the graph it holds is inconsistent.
    #[error("{path}: {source}")]
    Graph {
        /// The file.
        path: PathBuf,
        /// The graph problem (names the tensor).
        #[source]
        source: GraphError,
    },
    /// A column of a raw instrument file (transcripts, boundaries, gene embedding) is missing,
    /// has the wrong type or holds an unusable value.
    #[error("{path}: column `{column}`: {problem}")]
    Column {
        /// The file.
        path: PathBuf,
        /// The column (or columns, comma-separated).
        column: String,
        /// What is wrong.
        problem: String,
    },
    /// The output cannot be written where it was asked for (segger-fs's rules).
    #[error(transparent)]
    Output(#[from] segger_fs::OutputError),
    /// A dataset directory is unusable.
    #[error("{path}: {problem}")]
    Dataset {
        /// The directory.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn format(
        path: impl Into<PathBuf>,
        field: impl Into<String>,
        problem: impl Into<String>,
    ) -> Self {
        DataError::Format {
            path: path.into(),
            field: field.into(),
            problem: problem.into(),
        }
    }
}
