//! The loader every platform shares: find the transcript and boundary files, read the boundary
//! rings the platform's way, clean them, then read and filter the transcripts against them.
//! A platform module says only what differs ([`PlatformFiles`] and its ring reader).

use std::path::Path;

use super::boundaries::{build_boundaries, RingGroups};
use super::files::{find_file, FileRule};
use super::transcripts::load_transcripts;
use super::tx_columns::Defaults;
use super::{LoadReport, RawOptions, Sample};
use crate::error::DataError;

/// What a platform's files look like: where [`load_platform`] looks and what it assumes.
pub(crate) struct PlatformFiles<'a> {
    /// Transcript file names, tried in this order...
    pub tx_names: &'a [&'a str],
    /// ...then file-name suffixes (exports whose names carry the sample's name).
    pub tx_suffixes: &'a [&'a str],
    /// Boundary file names, tried in this order...
    pub bd_names: &'a [&'a str],
    /// ...then suffixes.
    pub bd_suffixes: &'a [&'a str],
    /// ...then folders of per-field-of-view files (MERSCOPE's `cell_boundaries/`, CosMx's
    /// `CellLabels/`); the ring reader is then given the folder.
    pub bd_dirs: &'a [&'a str],
    /// What the boundary file is called in messages (`boundaries`, `polygons`).
    pub bd_what: &'a str,
    /// Boundary files another setting reads, with that setting, suggested when none of the
    /// above is found.
    pub bd_other_settings: &'a [(&'a str, &'a str)],
    /// The transcript columns.
    pub defaults: &'a Defaults<'a>,
    /// Column groups that stand in for the cell column when it is absent.
    pub alt_cell: &'a [&'a [&'a str]],
    /// The quality threshold when `--min_qv` is not given (`None`: no filter).
    pub default_min_qv: Option<f32>,
    /// Micrometres per coordinate unit when `--scale` is not given.
    pub default_scale: f64,
}

/// Loads a sample of a platform: `read_rings(boundary_file, scale)` returns the boundary rings
/// grouped by id and the id column(s).
pub(crate) fn load_platform(
    input: &Path,
    opts: &RawOptions,
    files: &PlatformFiles<'_>,
    read_rings: impl FnOnce(&Path, f64) -> Result<(RingGroups, Vec<String>), DataError>,
) -> Result<Sample, DataError> {
    let tx_file = find_file(
        input,
        opts.transcripts_file.as_deref(),
        &FileRule {
            names: files.tx_names,
            suffixes: files.tx_suffixes,
            dirs: &[],
            what: "transcripts",
            flag: "--transcripts_file",
            other_settings: &[],
        },
    )?;
    let bd_file = find_file(
        input,
        opts.boundaries_file.as_deref(),
        &FileRule {
            names: files.bd_names,
            suffixes: files.bd_suffixes,
            dirs: files.bd_dirs,
            what: files.bd_what,
            flag: "--boundaries_file",
            other_settings: files.bd_other_settings,
        },
    )?;
    let scale = opts.scale.unwrap_or(files.default_scale);
    let mut report = LoadReport {
        boundaries_file: bd_file.clone(),
        ..Default::default()
    };
    let (groups, id) = read_rings(&bd_file, scale)?;
    let bd = build_boundaries(groups, &bd_file, &id.join(","), opts.strict, &mut report)?;
    let (tx, vocab, embedding) = load_transcripts(
        &tx_file,
        files.defaults,
        files.alt_cell,
        opts,
        &bd,
        files.default_min_qv,
        scale,
        &mut report,
    )?;
    Ok(Sample {
        tx,
        bd,
        vocab,
        embedding,
        report,
    })
}
