//! Boundary polygons: grouping vertex rows or whole rings by boundary id ([`RingGroups`]),
//! reading vertex-row boundary files, and validating the rings and computing their features
//! (in parallel) into the sample's [`Boundaries`], counting or refusing bad polygons.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Instant;

use rayon::prelude::*;

use super::columns::{self, col_err, Interner};
use super::files::for_each_batch;
use super::{Boundaries, LoadReport};
use crate::error::DataError;
use crate::geometry::{self, clean_ring, Point, RingProblem};

/// Vertex rows grouped by boundary id, in first-appearance order.
#[derive(Debug, Default)]
pub(crate) struct RingGroups {
    pub ids: Interner,
    pub rings: Vec<Vec<Point>>,
    /// Whether the rings came from vertex rows (closing is optional there).
    pub vertex_rows: bool,
    pub duplicate_rows: u64,
    pub multipart: u64,
}

impl RingGroups {
    /// Adds one vertex of boundary `id`.
    pub fn push_vertex(&mut self, id: &str, p: Point) {
        let i = self.ids.intern(id) as usize;
        if i == self.rings.len() {
            self.rings.push(Vec::new());
        }
        self.rings[i].push(p);
    }

    /// Adds a whole ring for `id`; a second ring for the same id replaces the first when its
    /// area is larger.
    pub fn push_ring(&mut self, id: &str, ring: Vec<Point>) {
        let i = self.ids.intern(id) as usize;
        if i == self.rings.len() {
            self.rings.push(ring);
        } else {
            self.duplicate_rows += 1;
            if geometry::area(&ring) > geometry::area(&self.rings[i]) {
                self.rings[i] = ring;
            }
        }
    }
}

/// A ring's `bd.x` features, area-weighted centroid and envelope, as [`Boundaries`] stores
/// them.
pub(crate) type RingProps = ([f32; 4], [f32; 2], [f32; 4]);

/// The [`RingProps`] of a ring with non-zero area.
pub(crate) fn ring_props(ring: &[Point]) -> RingProps {
    let f = geometry::polygon_features(ring).to_row();
    let c = geometry::centroid(ring);
    let e = geometry::envelope(ring);
    (
        f,
        [c[0] as f32, c[1] as f32],
        [e[0] as f32, e[1] as f32, e[2] as f32, e[3] as f32],
    )
}

/// Appends boundary `id` with its ring and [`RingProps`] to `bd`.
pub(crate) fn push(bd: &mut Boundaries, id: String, ring: &[Point], (f, c, e): RingProps) {
    bd.ids.push(id);
    bd.vertices
        .extend(ring.iter().map(|p| [p[0] as f32, p[1] as f32]));
    bd.ring_start.push(bd.vertices.len());
    bd.features.push(f);
    bd.centroid.push(c);
    bd.bbox.push(e);
}

/// Validates rings and computes their features, in parallel. Bad rings are skipped and
/// counted, or are errors when `strict`.
pub(crate) fn build_boundaries(
    groups: RingGroups,
    file: &Path,
    id_column: &str,
    strict: bool,
    report: &mut LoadReport,
) -> Result<Boundaries, DataError> {
    let t0 = Instant::now();
    let cleaned: Vec<Result<geometry::CleanRing, RingProblem>> =
        groups.rings.par_iter().map(|r| clean_ring(r)).collect();
    report.boundaries_read = cleaned.len() as u64;
    report.boundary_duplicate_rows = groups.duplicate_rows;
    report.multipart_geometries = groups.multipart;
    let mut kept: Vec<(usize, Vec<Point>)> = Vec::with_capacity(cleaned.len());
    let mut first_bad: BTreeMap<RingProblem, String> = BTreeMap::new();
    for (i, c) in cleaned.into_iter().enumerate() {
        match c {
            Ok(c) => {
                if groups.vertex_rows && !c.was_closed {
                    report.rings_closed_implicitly += 1;
                }
                kept.push((i, c.ring));
            }
            Err(p) => {
                *report
                    .boundaries_skipped
                    .entry(p.describe().to_string())
                    .or_default() += 1;
                first_bad
                    .entry(p)
                    .or_insert_with(|| groups.ids.names[i].clone());
            }
        }
    }
    if let Some((p, id)) = first_bad.iter().next() {
        let n: u64 = report.boundaries_skipped.values().sum();
        if strict {
            return Err(col_err(
                file,
                id_column,
                format!("polygon {id}: {} ({n} bad polygons in all)", p.describe()),
            ));
        }
        tracing::warn!(
            "{}: skipped {n} bad polygons (first: {id}, {})",
            file.display(),
            p.describe()
        );
    }
    let props: Vec<RingProps> = kept.par_iter().map(|(_, r)| ring_props(r)).collect();
    let mut bd = Boundaries {
        ids: Vec::with_capacity(kept.len()),
        ring_start: Vec::with_capacity(kept.len() + 1),
        vertices: Vec::new(),
        centroid: Vec::with_capacity(kept.len()),
        bbox: Vec::with_capacity(kept.len()),
        features: Vec::with_capacity(kept.len()),
    };
    bd.ring_start.push(0);
    for ((i, ring), p) in kept.into_iter().zip(props) {
        push(&mut bd, groups.ids.names[i].clone(), &ring, p);
    }
    report.boundaries_kept = bd.len() as u64;
    report.features_s = t0.elapsed().as_secs_f64();
    Ok(bd)
}

/// The id → index map of the boundaries.
pub(crate) fn boundary_index(bd: &Boundaries) -> HashMap<String, u32> {
    bd.ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.clone(), i as u32))
        .collect()
}

/// Reads vertex-row boundaries (one row per vertex: id, x, y), scaled to micrometres.
pub(crate) fn read_vertex_rings(
    file: &Path,
    id: &[String],
    x: &str,
    y: &str,
    scale: f64,
) -> Result<RingGroups, DataError> {
    let mut wanted: Vec<String> = id.to_vec();
    wanted.push(x.to_string());
    wanted.push(y.to_string());
    let mut groups = RingGroups {
        vertex_rows: true,
        ..Default::default()
    };
    for_each_batch(file, &wanted, |b, row0| {
        let xs = columns::required_f64s(b, file, x, row0)?;
        let ys = columns::required_f64s(b, file, y, row0)?;
        let keys = columns::joined_keys(b, file, id)?;
        for (i, k) in keys.iter().enumerate() {
            let Some(k) = k else {
                return Err(col_err(
                    file,
                    &id.join(","),
                    format!("null boundary id at row {}", row0 + i as u64),
                ));
            };
            groups.push_vertex(k, [xs[i] * scale, ys[i] * scale]);
        }
        Ok(())
    })?;
    Ok(groups)
}
