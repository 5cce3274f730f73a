//! CosMx cell label masks: exports that ship `CellLabels/CellLabels_F<fov>.tif` (one image per
//! field of view, each pixel the cell label of that FOV, 0 = background) instead of a polygons
//! file, with the FOV origins in `fov_positions_file.csv` (or `*_fov_positions_file.csv`).
//!
//! Each label becomes one polygon: the outer boundary of the largest 4-connected component of
//! its pixels, traced along pixel edges (holes ignored, collinear vertices dropped), keyed
//! `<fov>_<label>` as the transcripts' `fov` + `cell_ID` are. Pixel `(column c, row r)` of a
//! mask `H` rows high covers global pixels `x ∈ [x0 + c, x0 + c + 1]`, `y ∈ [y0 + H − r − 1,
//! y0 + H − r]`, `(x0, y0)` being the FOV's `x_global_px`, `y_global_px`: rows run against
//! global y (the MoleculeExperiment NSCLC sample agrees with its transcripts' `cell_ID` for 98%
//! of the transcripts over its first mask with this orientation, 2% without the flip).
//!
//! The file also states the pixel size in newer (AtoMx) exports: `x_global_mm · 1000 /
//! x_global_px` ([`stated_pixel_size`]).
//!
//! The tracing is hand-written: a label's outer ring along pixel edges (a one-pixel label is a
//! unit square) is one short walk, where contour crates trace pixel centres and pull in an image
//! stack.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::boundaries::RingGroups;
use super::columns::{self, col_err};
use super::files::{file_columns, for_each_batch};
use crate::error::DataError;
use crate::geometry::Point;

/// The fov positions file's names in the export folder, tried in this order...
const POSITION_NAMES: [&str; 2] = ["fov_positions_file.csv", "fov_positions_file.csv.gz"];
/// ...then these suffixes (exports whose names carry the sample's name).
const POSITION_SUFFIXES: [&str; 2] = ["_fov_positions_file.csv", "_fov_positions_file.csv.gz"];

/// Pixel sizes of the rows of one file may differ by this fraction (rounding of the stated
/// millimetres).
const PIXEL_SIZE_TOLERANCE: f64 = 0.005;

/// The FOV origins of a fov positions file.
#[derive(Debug, Clone)]
pub(crate) struct FovPositions {
    /// The file.
    pub path: PathBuf,
    /// FOV number → (`x_global_px`, `y_global_px`).
    pub origins: HashMap<i64, [f64; 2]>,
}

/// The fov positions file of an export: `fov_positions_file.csv(.gz)`, else the first
/// `*_fov_positions_file.csv(.gz)`, in the first of `dirs` that has one.
pub(crate) fn find_fov_positions(dirs: &[&Path]) -> Option<PathBuf> {
    for dir in dirs {
        for n in POSITION_NAMES {
            let p = dir.join(n);
            if p.is_file() {
                return Some(p);
            }
        }
        let Ok(rd) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut found: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| POSITION_SUFFIXES.iter().any(|s| n.ends_with(s)))
            })
            .collect();
        found.sort();
        if let Some(p) = found.into_iter().next() {
            return Some(p);
        }
    }
    None
}

/// The FOV column: `fov`, else `FOV`.
fn fov_column(path: &Path, have: &[String]) -> Result<String, DataError> {
    ["fov", "FOV"]
        .into_iter()
        .find(|c| have.iter().any(|h| h == c))
        .map(str::to_string)
        .ok_or_else(|| {
            col_err(
                path,
                "fov",
                format!(
                    "column is missing, and so is FOV (the file has: {})",
                    have.join(", ")
                ),
            )
        })
}

/// Reads the FOV origins (`fov` or `FOV`, `x_global_px`, `y_global_px`). A FOV listed twice
/// with different origins is an error.
pub(crate) fn read_fov_positions(path: &Path) -> Result<FovPositions, DataError> {
    let have = file_columns(path)?;
    let fov = fov_column(path, &have)?;
    let wanted = [fov.clone(), "x_global_px".into(), "y_global_px".into()];
    let mut origins: HashMap<i64, [f64; 2]> = HashMap::new();
    for_each_batch(path, &wanted, |b, row0| {
        let f = columns::i64s(columns::require(b, path, &fov)?.as_ref(), path, &fov, row0)?;
        let x = columns::required_f64s(b, path, "x_global_px", row0)?;
        let y = columns::required_f64s(b, path, "y_global_px", row0)?;
        for i in 0..f.len() {
            let o = [x[i], y[i]];
            if !(o[0].is_finite() && o[1].is_finite()) {
                return Err(col_err(
                    path,
                    "x_global_px,y_global_px",
                    format!("non-finite origin at row {}", row0 + i as u64),
                ));
            }
            if let Some(prev) = origins.insert(f[i], o) {
                if prev != o {
                    return Err(col_err(
                        path,
                        &fov,
                        format!(
                            "fov {} is listed twice with different origins (row {})",
                            f[i],
                            row0 + i as u64
                        ),
                    ));
                }
            }
        }
        Ok(())
    })?;
    Ok(FovPositions {
        path: path.to_path_buf(),
        origins,
    })
}

/// The pixel size (µm per pixel) a fov positions file states: `x_global_mm · 1000 /
/// x_global_px` over its rows (those with `|x_global_px| ≥ 1`), when it has both columns
/// (AtoMx exports); `None` when it has not. Rows that disagree by more than 0.5% are an error.
pub(crate) fn stated_pixel_size(path: &Path) -> Result<Option<f64>, DataError> {
    let have = file_columns(path)?;
    let (mm, px) = ("x_global_mm", "x_global_px");
    if !(have.iter().any(|h| h == mm) && have.iter().any(|h| h == px)) {
        return Ok(None);
    }
    let mut sizes: Vec<(f64, u64)> = Vec::new();
    for_each_batch(path, &[mm.to_string(), px.to_string()], |b, row0| {
        let m = columns::required_f64s(b, path, mm, row0)?;
        let p = columns::required_f64s(b, path, px, row0)?;
        for i in 0..m.len() {
            if p[i].abs() >= 1.0 && m[i].is_finite() {
                sizes.push((m[i] * 1000.0 / p[i], row0 + i as u64));
            }
        }
        Ok(())
    })?;
    let Some(&(first, first_row)) = sizes.first() else {
        return Ok(None);
    };
    let cols = format!("{mm},{px}");
    if !(first > 0.0 && first <= 1000.0) {
        return Err(col_err(
            path,
            &cols,
            format!("row {first_row} gives a pixel size of {first} µm; pass --pixel_size"),
        ));
    }
    if let Some(&(s, row)) = sizes
        .iter()
        .find(|(s, _)| ((s - first) / first).abs() > PIXEL_SIZE_TOLERANCE)
    {
        return Err(col_err(
            path,
            &cols,
            format!(
                "the rows state different pixel sizes: row {first_row} gives {first:.6} µm, \
                 row {row} gives {s:.6} µm; pass --pixel_size"
            ),
        ));
    }
    let mean = sizes.iter().map(|(s, _)| s).sum::<f64>() / sizes.len() as f64;
    Ok(Some(mean))
}

/// A decoded label mask, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LabelImage {
    pub width: usize,
    pub height: usize,
    pub labels: Vec<u32>,
}

fn tiff_err(path: &Path, problem: impl Into<String>) -> DataError {
    DataError::format(path, "image", problem)
}

/// Converts decoded samples to labels: whole, non-negative numbers up to `u32::MAX`.
fn to_labels<T: Copy + Into<f64>>(
    path: &Path,
    v: &[T],
    width: usize,
) -> Result<Vec<u32>, DataError> {
    let mut out = Vec::with_capacity(v.len());
    for (i, &s) in v.iter().enumerate() {
        let f: f64 = s.into();
        if !(f >= 0.0 && f <= u32::MAX as f64 && f.fract() == 0.0) {
            return Err(tiff_err(
                path,
                format!(
                    "pixel (column {}, row {}) holds {f}, not a cell label (a whole number ≥ 0)",
                    i % width.max(1),
                    i / width.max(1)
                ),
            ));
        }
        out.push(f as u32);
    }
    Ok(out)
}

/// Reads a one-channel TIFF label mask (8/16/32/64-bit integers, or floats holding whole
/// numbers). Anything else is an error naming the file.
pub(crate) fn read_label_tiff(path: &Path) -> Result<LabelImage, DataError> {
    use tiff::decoder::{Decoder, DecodingResult as D, Limits};
    let f = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut limits = Limits::default();
    limits.decoding_buffer_size = 1 << 31;
    let unreadable = |e: tiff::TiffError| tiff_err(path, format!("not a readable TIFF ({e})"));
    let mut dec = Decoder::new(std::io::BufReader::new(f))
        .map_err(unreadable)?
        .with_limits(limits);
    let (w, h) = dec.dimensions().map_err(unreadable)?;
    match dec.colortype().map_err(unreadable)? {
        tiff::ColorType::Gray(_) => {}
        other => {
            return Err(tiff_err(
                path,
                format!("{other:?} pixels; a cell label mask has one channel"),
            ))
        }
    }
    let (w, h) = (w as usize, h as usize);
    let labels = match dec.read_image().map_err(unreadable)? {
        D::U8(v) => v.into_iter().map(u32::from).collect(),
        D::U16(v) => v.into_iter().map(u32::from).collect(),
        D::U32(v) => v,
        D::U64(v) => to_labels(path, &v.iter().map(|&x| x as f64).collect::<Vec<_>>(), w)?,
        D::I8(v) => to_labels(path, &v, w)?,
        D::I16(v) => to_labels(path, &v, w)?,
        D::I32(v) => to_labels(path, &v, w)?,
        D::I64(v) => to_labels(path, &v.iter().map(|&x| x as f64).collect::<Vec<_>>(), w)?,
        D::F16(v) => to_labels(path, &v.iter().map(|x| x.to_f32()).collect::<Vec<_>>(), w)?,
        D::F32(v) => to_labels(path, &v, w)?,
        D::F64(v) => to_labels(path, &v, w)?,
    };
    if labels.len() != w * h {
        return Err(tiff_err(
            path,
            format!("{} samples for a {w} × {h} image", labels.len()),
        ));
    }
    Ok(LabelImage {
        width: w,
        height: h,
        labels,
    })
}

/// The FOV number of a mask file name: `<anything>_F<digits>.tif` / `.tiff` (any case).
fn mask_fov(name: &str) -> Option<i64> {
    let lower = name.to_ascii_lowercase();
    let stem = lower
        .strip_suffix(".tif")
        .or_else(|| lower.strip_suffix(".tiff"))?;
    let (_, digits) = stem.rsplit_once("_f")?;
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// The mask files of a `CellLabels` folder with their FOV numbers, by FOV.
pub(crate) fn mask_files(dir: &Path) -> Result<Vec<(i64, PathBuf)>, DataError> {
    let mut found: BTreeMap<i64, PathBuf> = BTreeMap::new();
    for e in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let p = e.map_err(|e| DataError::io(dir, e))?.path();
        let Some(fov) = p.file_name().and_then(|n| n.to_str()).and_then(mask_fov) else {
            continue;
        };
        if !p.is_file() {
            continue;
        }
        if let Some(other) = found.insert(fov, p.clone()) {
            return Err(DataError::Dataset {
                path: dir.to_path_buf(),
                problem: format!(
                    "two masks for fov {fov}: {} and {}",
                    other.display(),
                    p.display()
                ),
            });
        }
    }
    if found.is_empty() {
        return Err(DataError::Dataset {
            path: dir.to_path_buf(),
            problem: "no cell label masks (CellLabels_F<fov>.tif) in the folder".into(),
        });
    }
    Ok(found.into_iter().collect())
}

/// Each label's envelope `[x0, y0, x1, y1]` (inclusive pixel indices), by label; 0 is
/// background. One pass over the pixels, one lookup per run of equal labels in a row.
fn label_boxes(img: &LabelImage) -> BTreeMap<u32, [usize; 4]> {
    let mut boxes: HashMap<u32, [usize; 4]> = HashMap::new();
    for (y, row) in img.labels.chunks_exact(img.width.max(1)).enumerate() {
        let mut x = 0;
        while x < row.len() {
            let l = row[x];
            let start = x;
            while x < row.len() && row[x] == l {
                x += 1;
            }
            if l == 0 {
                continue;
            }
            let b = boxes.entry(l).or_insert([start, y, x - 1, y]);
            b[0] = b[0].min(start);
            b[2] = b[2].max(x - 1);
            b[3] = y;
        }
    }
    boxes.into_iter().collect()
}

/// The outer ring of one label in pixel-corner coordinates (x = column, y = row, rows down),
/// and the number of 4-connected components the label has. The ring is that of the largest
/// component (the first in raster order on a tie), holes ignored, one vertex per turn.
pub(crate) fn label_ring(img: &LabelImage, label: u32, bbox: [usize; 4]) -> (Vec<[i64; 2]>, usize) {
    let [x0, y0, x1, y1] = bbox;
    let (bw, bh) = (x1 - x0 + 1, y1 - y0 + 1);
    let at = |x: usize, y: usize| img.labels[(y0 + y) * img.width + x0 + x] == label;
    // Components by flood fill, numbered from 1 in raster order of their first pixel.
    let mut comp = vec![0u32; bw * bh];
    let mut sizes: Vec<(usize, usize)> = Vec::new(); // (pixels, first pixel index)
    let mut stack: Vec<usize> = Vec::new();
    for start in 0..bw * bh {
        if comp[start] != 0 || !at(start % bw, start / bw) {
            continue;
        }
        let id = sizes.len() as u32 + 1;
        comp[start] = id;
        stack.push(start);
        let mut n = 0;
        while let Some(i) = stack.pop() {
            n += 1;
            let (x, y) = (i % bw, i / bw);
            let mut visit = |j: usize, jx: usize, jy: usize| {
                if comp[j] == 0 && at(jx, jy) {
                    comp[j] = id;
                    stack.push(j);
                }
            };
            if x > 0 {
                visit(i - 1, x - 1, y);
            }
            if x + 1 < bw {
                visit(i + 1, x + 1, y);
            }
            if y > 0 {
                visit(i - bw, x, y - 1);
            }
            if y + 1 < bh {
                visit(i + bw, x, y + 1);
            }
        }
        sizes.push((n, start));
    }
    let (best, &(_, first)) = sizes
        .iter()
        .enumerate()
        .max_by(|a, b| a.1 .0.cmp(&b.1 .0).then(b.0.cmp(&a.0)))
        .expect("the envelope holds the label");
    let id = best as u32 + 1;
    let inside = |x: i64, y: i64| {
        x >= 0
            && y >= 0
            && (x as usize) < bw
            && (y as usize) < bh
            && comp[y as usize * bw + x as usize] == id
    };
    let ring = trace_outer(inside, ((first % bw) as i64, (first / bw) as i64))
        .into_iter()
        .map(|[x, y]| [x + x0 as i64, y + y0 as i64])
        .collect();
    (ring, sizes.len())
}

/// Walks the outer boundary of a 4-connected pixel set along pixel edges, from the top-left
/// corner of its first pixel in raster order `start`, keeping the set on the right (rows
/// down). Where two pixels of the set meet only at a corner it turns to keep them together,
/// so the ring never passes a vertex twice. Returns one vertex per turn, starting at `start`.
fn trace_outer(inside: impl Fn(i64, i64) -> bool, start: (i64, i64)) -> Vec<[i64; 2]> {
    // East, south, west, north (rows down: turning right is +1).
    const STEP: [(i64, i64); 4] = [(1, 0), (0, 1), (-1, 0), (0, -1)];
    // The pixels ahead-left and ahead-right of a vertex (x, y), per heading, as offsets of
    // the pixel's top-left corner from the vertex.
    const AHEAD: [[(i64, i64); 2]; 4] = [
        [(0, -1), (0, 0)],
        [(0, 0), (-1, 0)],
        [(-1, 0), (-1, -1)],
        [(-1, -1), (0, -1)],
    ];
    let (mut x, mut y) = start;
    let mut d = 0;
    let mut ring = vec![[x, y]];
    loop {
        x += STEP[d].0;
        y += STEP[d].1;
        if (x, y) == start {
            return ring;
        }
        let [l, r] = AHEAD[d];
        let nd = if inside(x + l.0, y + l.1) {
            (d + 3) % 4
        } else if inside(x + r.0, y + r.1) {
            d
        } else {
            (d + 1) % 4
        };
        if nd != d {
            ring.push([x, y]);
            d = nd;
        }
    }
}

/// One label's polygon in global micrometres: pixel corners offset by the FOV origin (rows
/// counted up from the bottom of the mask, see the module notes), times `scale`,
/// counter-clockwise.
fn to_global(ring: &[[i64; 2]], origin: [f64; 2], height: usize, scale: f64) -> Vec<Point> {
    ring.iter()
        .rev()
        .map(|&[x, y]| {
            [
                (origin[0] + x as f64) * scale,
                (origin[1] + (height as i64 - y) as f64) * scale,
            ]
        })
        .collect()
}

/// The polygons of one mask, by label, in global micrometres; the count of labels in more
/// than one piece.
fn mask_polygons(img: &LabelImage, origin: [f64; 2], scale: f64) -> (Vec<(u32, Vec<Point>)>, u64) {
    let boxes: Vec<(u32, [usize; 4])> = label_boxes(img).into_iter().collect();
    let rings: Vec<(u32, Vec<Point>, usize)> = boxes
        .par_iter()
        .map(|&(l, b)| {
            let (ring, parts) = label_ring(img, l, b);
            (l, to_global(&ring, origin, img.height, scale), parts)
        })
        .collect();
    let multipart = rings.iter().filter(|r| r.2 > 1).count() as u64;
    (
        rings.into_iter().map(|(l, r, _)| (l, r)).collect(),
        multipart,
    )
}

/// Reads every mask of a `CellLabels` folder into rings keyed `<fov>_<label>`, in global
/// micrometres. A mask whose FOV has no row in the positions file is an error naming both.
pub(crate) fn read_mask_rings(
    dir: &Path,
    positions: &FovPositions,
    scale: f64,
) -> Result<RingGroups, DataError> {
    let mut groups = RingGroups::default();
    for (fov, file) in mask_files(dir)? {
        let Some(&origin) = positions.origins.get(&fov) else {
            let mut listed: Vec<i64> = positions.origins.keys().copied().collect();
            listed.sort_unstable();
            return Err(col_err(
                &positions.path,
                "fov",
                format!(
                    "no row for fov {fov}, the fov of mask {} (the file lists fovs {})",
                    file.display(),
                    listed
                        .iter()
                        .map(|f| f.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        };
        let img = read_label_tiff(&file)?;
        let (polygons, multipart) = mask_polygons(&img, origin, scale);
        groups.multipart += multipart;
        for (label, ring) in polygons {
            groups.push_ring(&format!("{fov}_{label}"), ring);
        }
    }
    Ok(groups)
}

#[cfg(test)]
#[path = "cosmx_masks_tests.rs"]
mod tests;
