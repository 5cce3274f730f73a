//! Locating and streaming the raw input files: resolving a file from an explicit path, the
//! platform's default names or a name suffix, and reading the column names or the wanted
//! columns of a file batch by batch, whether it is parquet or CSV.

use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;

use super::{csv_src, parquet_src};
use crate::error::DataError;

/// Resolves a file: the explicit one, else the first default name that exists in `dir`, else
/// the first file in `dir` whose name ends with one of `suffixes`.
pub(crate) fn find_file(
    dir: &Path,
    explicit: Option<&Path>,
    names: &[&str],
    suffixes: &[&str],
    what: &str,
) -> Result<PathBuf, DataError> {
    if let Some(p) = explicit {
        let p = if p.is_absolute() || p.exists() {
            p.to_path_buf()
        } else {
            dir.join(p)
        };
        if !p.is_file() {
            return Err(DataError::io(
                &p,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("{what} file not found"),
                ),
            ));
        }
        return Ok(p);
    }
    for n in names {
        let p = dir.join(n);
        if p.is_file() {
            return Ok(p);
        }
    }
    if !suffixes.is_empty() {
        let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| DataError::io(dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| suffixes.iter().any(|s| n.ends_with(s)))
            })
            .collect();
        found.sort();
        if let Some(p) = found.into_iter().next() {
            return Ok(p);
        }
    }
    let mut expected: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    expected.extend(suffixes.iter().map(|s| format!("*{s}")));
    Err(DataError::io(
        dir.join(names.first().copied().unwrap_or("")),
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!(
                "{what} file not found (looked for {} in {})",
                expected.join(", "),
                dir.display()
            ),
        ),
    ))
}

pub(super) fn is_parquet(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"))
}

/// Column names of a parquet or CSV file.
pub(crate) fn file_columns(path: &Path) -> Result<Vec<String>, DataError> {
    if is_parquet(path) {
        parquet_src::column_names(path)
    } else {
        csv_src::column_names(path)
    }
}

/// Streams the `wanted` columns of a parquet or CSV file batch by batch.
pub(crate) fn for_each_batch(
    path: &Path,
    wanted: &[String],
    f: impl FnMut(&RecordBatch, u64) -> Result<(), DataError>,
) -> Result<(), DataError> {
    if is_parquet(path) {
        parquet_src::for_each_batch(path, wanted, f)
    } else {
        csv_src::for_each_batch(path, wanted, f)
    }
}
