//! Locating and streaming the raw input files: resolving a file from an explicit path, the
//! platform's default names or a name suffix, and reading the column names or the wanted
//! columns of a file batch by batch, whether it is parquet or CSV.

use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;

use super::{csv_src, parquet_src};
use crate::error::DataError;

/// Where a platform looks for one of its input files.
pub(crate) struct FileRule<'a> {
    /// File names, tried in this order...
    pub names: &'a [&'a str],
    /// ...then file-name suffixes (exports whose names carry the sample's name)...
    pub suffixes: &'a [&'a str],
    /// ...then folders (boundaries kept one file per field of view).
    pub dirs: &'a [&'a str],
    /// What the file is called in messages (`transcripts`, `boundaries`, `polygons`).
    pub what: &'a str,
    /// The flag that names the file (`--transcripts_file`, `--boundaries_file`).
    pub flag: &'a str,
    /// Files that another setting reads, with that setting (e.g. Xenium's
    /// `cell_boundaries.parquet` with `--boundaries cell`): suggested when nothing is found.
    pub other_settings: &'a [(&'a str, &'a str)],
}

/// Resolves a file: the explicit one (a file, or a folder when the rule has folders), else the
/// first default name that exists in `dir`, else the first file in `dir` whose name ends with
/// one of the suffixes, else the first of the rule's folders that exists. When nothing is
/// found the error names the folder, what was looked for, and the nearest file that is there
/// with the flag that would read it.
pub(crate) fn find_file(
    dir: &Path,
    explicit: Option<&Path>,
    rule: &FileRule<'_>,
) -> Result<PathBuf, DataError> {
    if let Some(p) = explicit {
        let p = if p.is_absolute() || p.exists() {
            p.to_path_buf()
        } else {
            dir.join(p)
        };
        if !(p.is_file() || (!rule.dirs.is_empty() && p.is_dir())) {
            return Err(DataError::io(
                &p,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("{} file given by {} does not exist", rule.what, rule.flag),
                ),
            ));
        }
        return Ok(p);
    }
    for n in rule.names {
        let p = dir.join(n);
        if p.is_file() {
            return Ok(p);
        }
    }
    let entries = list_dir(dir)?;
    let mut found: Vec<&PathBuf> = entries
        .iter()
        .filter(|p| {
            p.is_file()
                && file_name(p).is_some_and(|n| rule.suffixes.iter().any(|s| n.ends_with(s)))
        })
        .collect();
    found.sort();
    if let Some(p) = found.into_iter().next() {
        return Ok(p.clone());
    }
    for d in rule.dirs {
        let p = dir.join(d);
        if p.is_dir() {
            return Ok(p);
        }
    }
    let mut expected: Vec<String> = rule.names.iter().map(|s| s.to_string()).collect();
    expected.extend(rule.suffixes.iter().map(|s| format!("*{s}")));
    expected.extend(rule.dirs.iter().map(|s| format!("{s}/")));
    Err(DataError::NotFound {
        dir: dir.to_path_buf(),
        what: rule.what.to_string(),
        looked_for: expected.join(", "),
        nearest: nearest_file(&entries, rule),
    })
}

/// The files of a folder (unreadable entries skipped).
fn list_dir(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    Ok(std::fs::read_dir(dir)
        .map_err(|e| DataError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect())
}

fn file_name(p: &Path) -> Option<&str> {
    p.file_name().and_then(|n| n.to_str())
}

/// The suggestion for a file that was not found: a file another setting reads, else the file
/// whose name is closest (edit distance) to one the rule looks for, with its flag.
fn nearest_file(entries: &[PathBuf], rule: &FileRule<'_>) -> Option<String> {
    let names: Vec<&str> = entries
        .iter()
        .filter(|p| p.is_file())
        .filter_map(|p| file_name(p))
        .filter(|n| !n.starts_with('.'))
        .collect();
    for (file, setting) in rule.other_settings {
        if names.contains(file) {
            return Some(format!("{file} is there: pass {setting} to read it"));
        }
    }
    let targets: Vec<&str> = rule
        .names
        .iter()
        .copied()
        .chain(
            rule.suffixes
                .iter()
                .map(|s| s.trim_start_matches(['_', '-'])),
        )
        .collect();
    let (best, d) = names
        .iter()
        .map(|n| {
            let d = targets
                .iter()
                .map(|t| edit_distance(&n.to_ascii_lowercase(), &t.to_ascii_lowercase()))
                .min()
                .unwrap_or(usize::MAX);
            (*n, d)
        })
        .min_by_key(|(n, d)| (*d, n.len()))?;
    // A name sharing less than half of its characters with every expected one is no hint.
    (d * 2 <= best.len()).then(|| format!("nearest file: {best} (pass {} {best})", rule.flag))
}

/// Levenshtein distance, over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rule<'a>(names: &'a [&'a str], other: &'a [(&'a str, &'a str)]) -> FileRule<'a> {
        FileRule {
            names,
            suffixes: &[],
            dirs: &[],
            what: "boundaries",
            flag: "--boundaries_file",
            other_settings: other,
        }
    }

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }

    #[test]
    fn not_found_names_the_folder_and_the_file_another_setting_reads() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cell_boundaries.parquet"), b"x").unwrap();
        let e = find_file(
            dir.path(),
            None,
            &rule(
                &["nucleus_boundaries.parquet"],
                &[("cell_boundaries.parquet", "--boundaries cell")],
            ),
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!("{}: no boundaries file", dir.path().display())),
            "{msg}"
        );
        assert!(
            msg.contains("looked for nucleus_boundaries.parquet"),
            "{msg}"
        );
        assert!(
            msg.ends_with("cell_boundaries.parquet is there: pass --boundaries cell to read it"),
            "{msg}"
        );
        assert_eq!(msg.matches("not found").count(), 0, "{msg}");
    }

    #[test]
    fn not_found_suggests_the_nearest_name_with_its_flag() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("nucleus_boundary.parquet"), b"x").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"x").unwrap();
        let msg = find_file(
            dir.path(),
            None,
            &rule(&["nucleus_boundaries.parquet"], &[]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            msg.ends_with("nearest file: nucleus_boundary.parquet (pass --boundaries_file nucleus_boundary.parquet)"),
            "{msg}"
        );
        // Nothing near: no suggestion.
        std::fs::remove_file(dir.path().join("nucleus_boundary.parquet")).unwrap();
        let msg = find_file(
            dir.path(),
            None,
            &rule(&["nucleus_boundaries.parquet"], &[]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            msg.ends_with("(looked for nucleus_boundaries.parquet)"),
            "{msg}"
        );
    }

    #[test]
    fn folders_are_found_after_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("cell_boundaries")).unwrap();
        let mut r = rule(&["cell_boundaries.parquet"], &[]);
        r.dirs = &["cell_boundaries"];
        assert_eq!(
            find_file(dir.path(), None, &r).unwrap(),
            dir.path().join("cell_boundaries")
        );
        std::fs::write(dir.path().join("cell_boundaries.parquet"), b"x").unwrap();
        assert_eq!(
            find_file(dir.path(), None, &r).unwrap(),
            dir.path().join("cell_boundaries.parquet")
        );
    }
}
