//! Transcript column resolution: the platform's default column names ([`Defaults`]), the
//! user's [`ColumnOverrides`], and the resolved set of columns to read ([`TxColumns`]), with
//! errors that name the missing column and list the ones the file has.

use std::path::Path;

use super::columns::col_err;
use super::ColumnOverrides;
use crate::error::DataError;

/// The resolved transcript columns.
#[derive(Debug, Clone)]
pub(crate) struct TxColumns {
    pub x: String,
    pub y: String,
    pub z: Option<String>,
    pub gene: String,
    /// The cell-id column(s); empty when the file has none (cells by point-in-polygon).
    pub cell: Vec<String>,
    pub id: Option<String>,
    pub nuclear: Option<String>,
    pub nuclear_value: String,
    pub qv: Option<String>,
}

/// One role's column: the default name and whether it may be missing.
pub(crate) struct Defaults<'a> {
    pub x: &'a str,
    pub y: &'a str,
    pub z: Option<&'a str>,
    pub gene: &'a str,
    pub cell: &'a [&'a str],
    pub id: Option<&'a str>,
    pub nuclear: Option<&'a str>,
    pub nuclear_value: &'a str,
    pub qv: Option<&'a str>,
}

pub(super) fn split_names(s: &str) -> Vec<String> {
    s.split(',')
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// Resolves transcript columns against the file's column names: explicit overrides must
/// exist; optional defaults that are absent are disabled.
pub(crate) fn resolve_tx_columns(
    file: &Path,
    have: &[String],
    d: &Defaults<'_>,
    o: &ColumnOverrides,
    alt_cell: &[&[&str]],
) -> Result<TxColumns, DataError> {
    let exists = |n: &str| have.iter().any(|h| h == n);
    let missing = |n: &str| {
        col_err(
            file,
            n,
            format!("column is missing (the file has: {})", have.join(", ")),
        )
    };
    let required = |ov: &Option<String>, def: &str| -> Result<String, DataError> {
        let n = ov.clone().unwrap_or_else(|| def.to_string());
        if exists(&n) {
            Ok(n)
        } else {
            Err(missing(&n))
        }
    };
    let optional = |ov: &Option<String>, def: Option<&str>| -> Result<Option<String>, DataError> {
        match ov.as_deref() {
            Some("none") | Some("") => Ok(None),
            Some(n) if exists(n) => Ok(Some(n.to_string())),
            Some(n) => Err(missing(n)),
            None => Ok(def.filter(|n| exists(n)).map(str::to_string)),
        }
    };
    let cell = match o.cell.as_deref() {
        Some(s) => {
            let names = split_names(s);
            if let Some(n) = names.iter().find(|n| !exists(n)) {
                return Err(missing(n));
            }
            names
        }
        None => {
            let mut options: Vec<&[&str]> = vec![d.cell];
            options.extend_from_slice(alt_cell);
            // Without one (older MERSCOPE exports, R-rewritten files), each transcript's cell
            // is the boundary that contains it ([`super::transcripts::cells_by_polygon`]).
            match options.iter().find(|names| names.iter().all(|n| exists(n))) {
                Some(names) => names.iter().map(|s| s.to_string()).collect(),
                None => Vec::new(),
            }
        }
    };
    Ok(TxColumns {
        x: required(&o.x, d.x)?,
        y: required(&o.y, d.y)?,
        z: optional(&o.z, d.z)?,
        gene: required(&o.gene, d.gene)?,
        cell,
        id: optional(&o.id, d.id)?,
        nuclear: optional(&o.nuclear, d.nuclear)?,
        nuclear_value: o
            .nuclear_value
            .clone()
            .unwrap_or_else(|| d.nuclear_value.to_string()),
        qv: optional(&o.qv, d.qv)?,
    })
}
