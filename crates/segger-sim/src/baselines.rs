//! Geometric segmentations of a raw Xenium-schema sample, to put beside a learned one.
//!
//! Every rule uses the nucleus polygons (`nucleus_boundaries.parquet`) and the transcript
//! positions alone, no expression:
//!
//! | rule | a transcript goes to |
//! |---|---|
//! | nucleus only | the nucleus in its raw `cell_id` when `overlaps_nucleus` is 1 (Xenium's own flag) |
//! | expanded by *r* µm | the nucleus whose polygon is nearest, when it lies within *r* µm of it (0 inside) |
//! | nearest centroid | the nucleus whose polygon centroid is nearest, at any distance |
//! | expanded + components | as "expanded by *e* µm"; the remaining transcripts are linked to every other remaining transcript within *l* µm, and each connected group of at least *m* becomes a new cell |
//!
//! Ties go to the lower nucleus row. The last rule is a distance-only stand-in for the cells
//! whose nucleus is not in the section.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use segger_graph::knn::{knn_bipartite, knn_same, KnnParams};

use crate::evaluate::{col_ids, col_strings, Assignments, Interner};
use crate::io::{floats_of, ints_of, read_columns, wrong_type};
use crate::SimError;

/// A 2-D point.
type P = (f64, f64);

/// Transcripts of a raw sample: id, position, quality and the instrument's nuclear cell id.
#[derive(Debug, Clone)]
pub struct RawTranscripts {
    /// The file read.
    pub path: PathBuf,
    /// `transcript_id`.
    pub ids: Vec<i64>,
    /// `(x_location, y_location)` in µm.
    pub xy: Vec<P>,
    /// `qv` (`+∞` when the file has no `qv` column).
    pub qv: Vec<f64>,
    /// `cell_id` where `overlaps_nucleus` is 1 (and the id is not `UNASSIGNED` or empty).
    pub nuclear_cell: Vec<Option<String>>,
}

/// Nucleus polygons: one closed ring per id.
#[derive(Debug, Clone)]
pub struct Nuclei {
    /// Boundary ids, in first-appearance order.
    pub ids: Vec<String>,
    /// Rings (the closing vertex removed).
    pub rings: Vec<Vec<P>>,
    /// Vertex means of the rings.
    pub centroids: Vec<P>,
    /// Largest centroid-to-vertex distance of each ring.
    pub radius: Vec<f64>,
}

/// A geometric rule (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rule {
    /// Xenium's nuclear `cell_id`.
    NucleusOnly,
    /// Nearest nucleus polygon within this many µm.
    Expanded(f64),
    /// Nearest nucleus centroid.
    NearestCentroid,
    /// Expansion by `expand` µm, then components of the rest linked within `link` µm, of at
    /// least `min_size` transcripts.
    ExpandedComponents {
        /// Expansion in µm.
        expand: f64,
        /// Link distance in µm.
        link: f64,
        /// Smallest component that becomes a cell.
        min_size: usize,
    },
}

impl Rule {
    /// The rules `segger evaluate --baseline` reports, in table order.
    pub const STANDARD: [Rule; 5] = [
        Rule::NucleusOnly,
        Rule::Expanded(5.0),
        Rule::Expanded(15.0),
        Rule::NearestCentroid,
        Rule::ExpandedComponents {
            expand: 3.0,
            link: 1.5,
            min_size: 10,
        },
    ];

    /// A short name for tables and JSON keys.
    pub fn name(&self) -> String {
        match self {
            Rule::NucleusOnly => "nucleus only".into(),
            Rule::Expanded(r) => format!("expanded {r} µm"),
            Rule::NearestCentroid => "nearest centroid".into(),
            Rule::ExpandedComponents { expand, link, .. } => {
                format!("exp {expand} + cc {link}")
            }
        }
    }
}

fn first_some(
    cols: &[Option<arrow_array::ArrayRef>],
    k: usize,
    path: &Path,
) -> Result<arrow_array::ArrayRef, SimError> {
    cols[k]
        .clone()
        .ok_or_else(|| SimError::Invalid(format!("{}: columns were not read", path.display())))
}

fn float_col(path: &Path, name: &str, a: &dyn arrow_array::Array) -> Result<Vec<f64>, SimError> {
    let v = floats_of(a).map_err(|_| wrong_type(path, name, a, "float"))?;
    v.into_iter()
        .enumerate()
        .map(|(row, v)| {
            v.filter(|v| v.is_finite())
                .ok_or_else(|| SimError::BadValue {
                    path: path.to_path_buf(),
                    column: name.to_string(),
                    message: format!("null or non-finite value in row {row}"),
                })
        })
        .collect()
}

/// Reads `transcripts.parquet` of a raw Xenium-schema sample.
pub fn read_raw_transcripts(path: &Path) -> Result<RawTranscripts, SimError> {
    let cols = read_columns(
        path,
        &[
            "transcript_id",
            "x_location",
            "y_location",
            "cell_id",
            "overlaps_nucleus",
        ],
        &["qv"],
    )?;
    let ids = col_ids(path, "transcript_id", first_some(&cols, 0, path)?.as_ref())?;
    let x = float_col(path, "x_location", first_some(&cols, 1, path)?.as_ref())?;
    let y = float_col(path, "y_location", first_some(&cols, 2, path)?.as_ref())?;
    let cell = col_strings(path, "cell_id", first_some(&cols, 3, path)?.as_ref())?;
    let nuc_a = first_some(&cols, 4, path)?;
    let nuc = ints_of(nuc_a.as_ref())
        .map_err(|_| wrong_type(path, "overlaps_nucleus", nuc_a.as_ref(), "integer"))?;
    let qv = match &cols[5] {
        Some(a) => float_col(path, "qv", a.as_ref())?,
        None => vec![f64::INFINITY; ids.len()],
    };
    let nuclear_cell = cell
        .into_iter()
        .zip(nuc)
        .map(|(c, n)| c.filter(|c| n == Some(1) && c != "UNASSIGNED" && !c.is_empty()))
        .collect();
    Ok(RawTranscripts {
        path: path.to_path_buf(),
        ids,
        xy: x.into_iter().zip(y).collect(),
        qv,
        nuclear_cell,
    })
}

/// Reads `nucleus_boundaries.parquet` (`cell_id`, `vertex_x`, `vertex_y`; the rows of one id
/// are consecutive vertices of its ring).
pub fn read_nuclei(path: &Path) -> Result<Nuclei, SimError> {
    let cols = read_columns(path, &["cell_id", "vertex_x", "vertex_y"], &[])?;
    let id = col_strings(path, "cell_id", first_some(&cols, 0, path)?.as_ref())?;
    let x = float_col(path, "vertex_x", first_some(&cols, 1, path)?.as_ref())?;
    let y = float_col(path, "vertex_y", first_some(&cols, 2, path)?.as_ref())?;
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut ids: Vec<String> = Vec::new();
    let mut rings: Vec<Vec<P>> = Vec::new();
    for (row, ((c, x), y)) in id.into_iter().zip(x).zip(y).enumerate() {
        let c = c.ok_or_else(|| SimError::BadValue {
            path: path.to_path_buf(),
            column: "cell_id".into(),
            message: format!("null boundary id in row {row}"),
        })?;
        let k = *index.entry(c.clone()).or_insert_with(|| {
            ids.push(c);
            rings.push(Vec::new());
            rings.len() - 1
        });
        rings[k].push((x, y));
    }
    for (k, ring) in rings.iter_mut().enumerate() {
        if ring.len() > 1 && ring.first() == ring.last() {
            ring.pop();
        }
        if ring.len() < 3 {
            return Err(SimError::BadValue {
                path: path.to_path_buf(),
                column: "vertex_x".into(),
                message: format!("boundary {} has fewer than 3 vertices", ids[k]),
            });
        }
    }
    let centroids: Vec<P> = rings
        .iter()
        .map(|r| {
            let n = r.len() as f64;
            (
                r.iter().map(|p| p.0).sum::<f64>() / n,
                r.iter().map(|p| p.1).sum::<f64>() / n,
            )
        })
        .collect();
    let radius = rings
        .iter()
        .zip(&centroids)
        .map(|(r, c)| {
            r.iter()
                .map(|p| (p.0 - c.0).hypot(p.1 - c.1))
                .fold(0.0, f64::max)
        })
        .collect();
    Ok(Nuclei {
        ids,
        rings,
        centroids,
        radius,
    })
}

fn flat(points: impl Iterator<Item = P>) -> Vec<f32> {
    points.flat_map(|p| [p.0 as f32, p.1 as f32]).collect()
}

/// For each point, the nearest nucleus by polygon distance (0 inside) among those whose
/// centroid lies within `reach` + the largest nucleus radius, with that distance.
fn nearest_polygon(
    points: &[P],
    nuclei: &Nuclei,
    reach: f64,
) -> Result<Vec<Option<(usize, f64)>>, SimError> {
    let rmax = nuclei.radius.iter().copied().fold(0.0, f64::max);
    let params = KnnParams::new(64, (reach + rmax + 1e-3) as f32);
    let e = knn_bipartite(
        &flat(points.iter().copied()),
        &flat(nuclei.centroids.iter().copied()),
        2,
        params,
    )
    .map_err(|e| SimError::Invalid(e.to_string()))?;
    let mut best: Vec<Option<(usize, f64)>> = vec![None; points.len()];
    for (q, b) in e.src.iter().zip(&e.dst) {
        let (q, b) = (*q as usize, *b as usize);
        let p = points[q];
        let ring = &nuclei.rings[b];
        let d = if crate::simulate::inside(ring, p) {
            0.0
        } else {
            crate::simulate::ring_distance(ring, p)
        };
        if d <= reach && best[q].is_none_or(|(_, bd)| d < bd) {
            best[q] = Some((b, d));
        }
    }
    Ok(best)
}

/// The segmentation that `rule` gives the transcripts of `like` (matched by id; those missing
/// from `raw` are unassigned). The genes of `like` are kept, for MECR.
pub fn baseline(
    rule: Rule,
    raw: &RawTranscripts,
    nuclei: &Nuclei,
    like: &Assignments,
) -> Result<Assignments, SimError> {
    let ids = &like.ids;
    let row: HashMap<i64, usize> = raw.ids.iter().enumerate().map(|(i, &id)| (id, i)).collect();
    let rows: Vec<Option<usize>> = ids.iter().map(|id| row.get(id).copied()).collect();
    let pts: Vec<P> = rows
        .iter()
        .map(|r| r.map_or((f64::NAN, f64::NAN), |r| raw.xy[r]))
        .collect();
    let present: Vec<usize> = (0..ids.len()).filter(|&i| rows[i].is_some()).collect();
    let present_pts: Vec<P> = present.iter().map(|&i| pts[i]).collect();
    let mut names = Interner::new();
    let mut cell: Vec<Option<u32>> = vec![None; ids.len()];
    let mut assign_nearest = |reach: f64, cell: &mut Vec<Option<u32>>| -> Result<(), SimError> {
        let best = nearest_polygon(&present_pts, nuclei, reach)?;
        for (k, b) in best.into_iter().enumerate() {
            if let Some((b, _)) = b {
                cell[present[k]] = Some(names.get(nuclei.ids[b].clone()));
            }
        }
        Ok(())
    };
    match rule {
        Rule::NucleusOnly => {
            for (k, r) in rows.iter().enumerate() {
                if let Some(c) = r.and_then(|r| raw.nuclear_cell[r].clone()) {
                    cell[k] = Some(names.get(c));
                }
            }
        }
        Rule::Expanded(r) => assign_nearest(r, &mut cell)?,
        Rule::NearestCentroid => {
            let e = knn_bipartite(
                &flat(present_pts.iter().copied()),
                &flat(nuclei.centroids.iter().copied()),
                2,
                KnnParams::new(1, f32::MAX),
            )
            .map_err(|e| SimError::Invalid(e.to_string()))?;
            for (q, b) in e.src.iter().zip(&e.dst) {
                cell[present[*q as usize]] = Some(names.get(nuclei.ids[*b as usize].clone()));
            }
        }
        Rule::ExpandedComponents {
            expand,
            link,
            min_size,
        } => {
            assign_nearest(expand, &mut cell)?;
            let rest: Vec<usize> = present
                .iter()
                .copied()
                .filter(|&i| cell[i].is_none())
                .collect();
            let comps = components(&rest.iter().map(|&i| pts[i]).collect::<Vec<_>>(), link)?;
            let mut sizes: HashMap<usize, usize> = HashMap::new();
            for &c in &comps {
                *sizes.entry(c).or_default() += 1;
            }
            let mut named: HashMap<usize, u32> = HashMap::new();
            for (k, &c) in comps.iter().enumerate() {
                if sizes[&c] >= min_size {
                    let next = named.len() + 1;
                    let id = *named
                        .entry(c)
                        .or_insert_with(|| names.get(format!("component-{next}")));
                    cell[rest[k]] = Some(id);
                }
            }
        }
    }
    Ok(Assignments {
        path: raw.path.clone(),
        ids: ids.to_vec(),
        cell,
        cell_names: names.names,
        gene: like.gene.clone(),
        gene_names: like.gene_names.clone(),
    })
}

/// Every rule of [`Rule::STANDARD`] on the raw sample in `raw_dir` (`transcripts.parquet`,
/// `nucleus_boundaries.parquet`), for the transcripts of `like`, with its name.
pub fn standard_baselines(
    raw_dir: &Path,
    like: &Assignments,
) -> Result<Vec<(String, Assignments)>, SimError> {
    let raw = read_raw_transcripts(&raw_dir.join("transcripts.parquet"))?;
    let nuclei = read_nuclei(&raw_dir.join("nucleus_boundaries.parquet"))?;
    Rule::STANDARD
        .iter()
        .map(|r| Ok((r.name(), baseline(*r, &raw, &nuclei, like)?)))
        .collect()
}

/// The column name of [`cell_outlines`].
pub const CELL_OUTLINES: &str = "cell outlines";

/// The segmentation the sample's own cell outlines give (`cell_boundaries.parquet` in
/// `raw_dir`, Xenium's schema): each transcript of `like` in the cell whose polygon holds it
/// (the nearest polygon within 0 µm), named [`CELL_OUTLINES`]. On a `segger simulate` sample
/// these are the true cells, so it scores what the truth's geometry allows (transcript
/// diffusion is all it gets wrong); on an instrument export, the instrument's own
/// segmentation. `None` when the sample has no such file.
pub fn cell_outlines(
    raw_dir: &Path,
    like: &Assignments,
) -> Result<Option<(String, Assignments)>, SimError> {
    let path = raw_dir.join("cell_boundaries.parquet");
    if !path.is_file() {
        return Ok(None);
    }
    let raw = read_raw_transcripts(&raw_dir.join("transcripts.parquet"))?;
    let cells = read_nuclei(&path)?;
    let a = baseline(Rule::Expanded(0.0), &raw, &cells, like)?;
    Ok(Some((CELL_OUTLINES.to_string(), a)))
}

/// Connected components of the points linked within `link` µm: a component label per point
/// (the smallest point index of its component).
fn components(points: &[P], link: f64) -> Result<Vec<usize>, SimError> {
    let mut parent: Vec<usize> = (0..points.len()).collect();
    fn find(p: &mut [usize], mut a: usize) -> usize {
        while p[a] != a {
            p[a] = p[p[a]];
            a = p[a];
        }
        a
    }
    let e = knn_same(
        &flat(points.iter().copied()),
        2,
        KnnParams::new(64, link as f32),
    )
    .map_err(|e| SimError::Invalid(e.to_string()))?;
    for (a, b) in e.src.iter().zip(&e.dst) {
        let (ra, rb) = (
            find(&mut parent, *a as usize),
            find(&mut parent, *b as usize),
        );
        if ra != rb {
            let (lo, hi) = (ra.min(rb), ra.max(rb));
            parent[hi] = lo;
        }
    }
    Ok((0..points.len()).map(|i| find(&mut parent, i)).collect())
}

/// The transcripts a segmentation of the raw sample in `raw_dir` is judged on when there is no
/// prediction: those with `qv` ≥ `min_qv` (dataset creation's filter), all unassigned.
pub fn judged_transcripts(raw_dir: &Path, min_qv: f64) -> Result<Assignments, SimError> {
    let raw = read_raw_transcripts(&raw_dir.join("transcripts.parquet"))?;
    let ids: Vec<i64> = raw
        .ids
        .iter()
        .zip(&raw.qv)
        .filter(|(_, &q)| q >= min_qv)
        .map(|(&id, _)| id)
        .collect();
    Ok(Assignments {
        path: raw.path,
        cell: vec![None; ids.len()],
        ids,
        cell_names: Vec::new(),
        gene: None,
        gene_names: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square(c: P, h: f64) -> Vec<P> {
        vec![
            (c.0 - h, c.1 - h),
            (c.0 + h, c.1 - h),
            (c.0 + h, c.1 + h),
            (c.0 - h, c.1 + h),
        ]
    }

    fn sample() -> (RawTranscripts, Nuclei) {
        let rings = vec![square((0.0, 0.0), 2.0), square((20.0, 0.0), 2.0)];
        let nuclei = Nuclei {
            ids: vec!["a".into(), "b".into()],
            centroids: vec![(0.0, 0.0), (20.0, 0.0)],
            radius: vec![8f64.sqrt(); 2],
            rings,
        };
        // Inside a, 4 µm right of a, 9 µm left of b (nearer b's centroid than a's? no: 11 vs 9),
        // far away above, and a chain of 12 points 1 µm apart far from both.
        let mut xy = vec![(1.0, 0.0), (6.0, 0.0), (11.0, 0.0), (10.0, 40.0)];
        xy.extend((0..12).map(|i| (50.0 + i as f64, 50.0)));
        let n = xy.len();
        let raw = RawTranscripts {
            path: PathBuf::from("t.parquet"),
            ids: (0..n as i64).collect(),
            xy,
            qv: vec![30.0; n],
            nuclear_cell: (0..n).map(|i| (i == 0).then(|| "a".to_string())).collect(),
        };
        (raw, nuclei)
    }

    fn like(ids: &[i64]) -> Assignments {
        Assignments {
            path: PathBuf::new(),
            ids: ids.to_vec(),
            cell: vec![None; ids.len()],
            cell_names: Vec::new(),
            gene: None,
            gene_names: Vec::new(),
        }
    }

    fn names(a: &Assignments) -> Vec<Option<&str>> {
        a.cell
            .iter()
            .map(|c| c.map(|c| a.cell_names[c as usize].as_str()))
            .collect()
    }

    #[test]
    fn each_rule_assigns_by_its_definition() {
        let (raw, nuc) = sample();
        let ids = like(&raw.ids);
        let only = baseline(Rule::NucleusOnly, &raw, &nuc, &ids).unwrap();
        assert_eq!(&names(&only)[..4], &[Some("a"), None, None, None]);
        let e5 = baseline(Rule::Expanded(5.0), &raw, &nuc, &ids).unwrap();
        // (6,0) is 4 µm from a's edge; (11,0) is 7 µm from b's edge.
        assert_eq!(&names(&e5)[..4], &[Some("a"), Some("a"), None, None]);
        let e15 = baseline(Rule::Expanded(15.0), &raw, &nuc, &ids).unwrap();
        assert_eq!(&names(&e15)[..3], &[Some("a"), Some("a"), Some("b")]);
        let nc = baseline(Rule::NearestCentroid, &raw, &nuc, &ids).unwrap();
        assert_eq!(
            &names(&nc)[..4],
            &[Some("a"), Some("a"), Some("b"), Some("a")]
        );
        let cc = Rule::ExpandedComponents {
            expand: 3.0,
            link: 1.5,
            min_size: 10,
        };
        let c = baseline(cc, &raw, &nuc, &ids).unwrap();
        let n = names(&c);
        assert_eq!(&n[..4], &[Some("a"), None, None, None]);
        assert!(n[4..].iter().all(|v| *v == Some("component-1")));
        let c13 = Rule::ExpandedComponents {
            expand: 3.0,
            link: 1.5,
            min_size: 13,
        };
        assert!(baseline(c13, &raw, &nuc, &ids).unwrap().cell[4..]
            .iter()
            .all(Option::is_none));
    }

    #[test]
    fn transcripts_missing_from_the_raw_file_stay_unassigned() {
        let (raw, nuc) = sample();
        let a = baseline(Rule::NearestCentroid, &raw, &nuc, &like(&[0, 999])).unwrap();
        assert_eq!(names(&a), vec![Some("a"), None]);
    }
}
