//! Nuclei that look like two touching nuclei segmented as one, cut in two.
//!
//! Nucleus segmentation merges touching nuclei: one polygon then covers two cells, and every
//! later step gives the two cells' transcripts to one. A nucleus is taken as merged when it is
//! an outlier of the sample's own size distribution and elongated:
//! - its area is above `median · exp(MERGED_SPREAD · 1.4826 · MAD)` of the log areas (2.5
//!   robust standard deviations) and at least [`MERGED_MIN_RATIO`] times the median area;
//! - the axis ratio of its second moments (√(λ₁/λ₂), 1 for a disc, a/b for an ellipse) is at
//!   least [`MERGED_ELONGATION`].
//!
//! It is cut by the line through its centroid across its long axis. The half on the positive
//! side of the long axis keeps the id; the other half is a new boundary named
//! `<id>`[`SECOND_HALF_SUFFIX`]. The transcripts whose cell id named the nucleus keep no cell,
//! so they give no positive pair in training: which half holds a transcript near the cut is a
//! guess, and a cut nucleus may have been one nucleus after all. (Labelling them by their side
//! of the cut gave the same segmentation and a lower validation AUROC early in training: the
//! two halves, a few µm apart, are the hardest competing pair of the tile.) The threshold
//! follows each sample's spread, so a sample of nuclei of one size flags a merged pair at about
//! twice the area, and a sample of very varied nuclei flags only clear outliers.
//! docs/accuracy.md ("Merged nuclei") gives what it buys on simulated tissue with a known
//! truth and what it does on the Xenium lung preview.

use super::{boundaries, Boundaries, Sample, NO_CELL};
use crate::geometry::{self, Point};

/// Robust standard deviations of log area above the median that make a nucleus a candidate.
pub const MERGED_SPREAD: f64 = 2.5;
/// A candidate is at least this many times the median area.
pub const MERGED_MIN_RATIO: f64 = 1.5;
/// A candidate's least axis ratio (square root of its second-moment eigenvalue ratio).
pub const MERGED_ELONGATION: f64 = 1.5;
/// The fewest nuclei whose distribution can say what an outlier is.
pub const MERGED_MIN_NUCLEI: usize = 20;
/// Suffix of the new half's id.
pub const SECOND_HALF_SUFFIX: &str = "_b";
/// Each half keeps at least this share of the area, or the nucleus is left whole.
const MIN_HALF_SHARE: f64 = 0.2;

/// Area, centroid, axis ratio and long-axis direction of a polygon, from its exact second
/// moments of area. `None` for a ring without area.
fn moments(ring: &[Point]) -> Option<(f64, Point, f64, Point)> {
    let o = ring[0];
    let (mut a, mut cx, mut cy, mut xx, mut yy, mut xy) = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    for k in 0..ring.len() {
        let p = ring[k];
        let q = ring[(k + 1) % ring.len()];
        let (x0, y0, x1, y1) = (p[0] - o[0], p[1] - o[1], q[0] - o[0], q[1] - o[1]);
        let c = x0 * y1 - x1 * y0;
        a += c;
        cx += (x0 + x1) * c;
        cy += (y0 + y1) * c;
        xx += (x0 * x0 + x0 * x1 + x1 * x1) * c;
        yy += (y0 * y0 + y0 * y1 + y1 * y1) * c;
        xy += (x0 * y1 + 2.0 * x0 * y0 + 2.0 * x1 * y1 + x1 * y0) * c;
    }
    a *= 0.5;
    if a.abs() < 1e-12 {
        return None;
    }
    let (mx, my) = (cx / (6.0 * a), cy / (6.0 * a));
    let sxx = xx / (12.0 * a) - mx * mx;
    let syy = yy / (12.0 * a) - my * my;
    let sxy = xy / (24.0 * a) - mx * my;
    let half = 0.5 * (sxx - syy);
    let r = (half * half + sxy * sxy).sqrt();
    let mean = 0.5 * (sxx + syy);
    let (l1, l2) = (mean + r, (mean - r).max(1e-300));
    let th = 0.5 * (2.0 * sxy).atan2(sxx - syy);
    Some((
        a.abs(),
        [mx + o[0], my + o[1]],
        (l1 / l2).sqrt(),
        [th.cos(), th.sin()],
    ))
}

/// The part of `ring` where `(p − c) · n ≥ 0` (Sutherland–Hodgman against one half-plane).
fn clip_half(ring: &[Point], c: Point, n: Point) -> Vec<Point> {
    let side = |p: Point| (p[0] - c[0]) * n[0] + (p[1] - c[1]) * n[1];
    let mut out = Vec::with_capacity(ring.len() + 2);
    for k in 0..ring.len() {
        let p = ring[k];
        let q = ring[(k + 1) % ring.len()];
        let (sp, sq) = (side(p), side(q));
        if sp >= 0.0 {
            out.push(p);
        }
        if (sp >= 0.0) != (sq >= 0.0) {
            let t = sp / (sp - sq);
            out.push([p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])]);
        }
    }
    out
}

/// A cut nucleus's two halves: the one that keeps the id and the new one.
type Cut = (Vec<Point>, Vec<Point>);

/// Cuts ring `ring` across its long axis when it is elongated enough; `None` otherwise or when
/// a half would be degenerate.
fn cut(ring: &[Point]) -> Option<Cut> {
    let (area, c, ratio, axis) = moments(ring)?;
    if ratio < MERGED_ELONGATION {
        return None;
    }
    let keep = geometry::clean_ring(&clip_half(ring, c, axis)).ok()?.ring;
    let other = geometry::clean_ring(&clip_half(ring, c, [-axis[0], -axis[1]]))
        .ok()?
        .ring;
    let ok = |h: &[Point]| geometry::area(h) >= MIN_HALF_SHARE * area;
    (ok(&keep) && ok(&other)).then_some((keep, other))
}

/// The area above which a nucleus is a candidate, from the areas of all nuclei; `None` when
/// there are too few to tell.
fn area_threshold(areas: &[f64]) -> Option<f64> {
    if areas.len() < MERGED_MIN_NUCLEI {
        return None;
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            0.5 * (v[n / 2 - 1] + v[n / 2])
        }
    };
    let mut logs: Vec<f64> = areas.iter().filter(|a| **a > 0.0).map(|a| a.ln()).collect();
    if logs.len() < MERGED_MIN_NUCLEI {
        return None;
    }
    let m = median(&mut logs);
    let mut dev: Vec<f64> = logs.iter().map(|l| (l - m).abs()).collect();
    let mad = 1.4826 * median(&mut dev);
    Some(
        (m + MERGED_SPREAD * mad)
            .exp()
            .max(MERGED_MIN_RATIO * m.exp()),
    )
}

/// A free id for the new half of `id`.
fn second_half_id(id: &str, taken: &std::collections::HashSet<String>) -> String {
    let mut name = format!("{id}{SECOND_HALF_SUFFIX}");
    let mut k = 2;
    while taken.contains(&name) {
        name = format!("{id}{SECOND_HALF_SUFFIX}{k}");
        k += 1;
    }
    name
}

/// Appends a boundary to `bd`, computing its features, centroid and envelope.
fn push_boundary(bd: &mut Boundaries, id: String, ring: &[Point]) {
    boundaries::push(bd, id, ring, boundaries::ring_props(ring));
}

/// Cuts the merged-looking nuclei of `sample` in two (module docs); the transcripts whose cell
/// id named a cut nucleus lose it (no positive). Returns the number of nuclei cut.
pub fn split_merged_nuclei(sample: &mut Sample) -> u64 {
    let bd = &sample.bd;
    // The area is column 0 of the boundary features.
    let areas: Vec<f64> = bd.features.iter().map(|f| f[0] as f64).collect();
    let Some(threshold) = area_threshold(&areas) else {
        return 0;
    };
    let cuts: Vec<Option<Cut>> = (0..bd.len())
        .map(|i| {
            if areas[i] <= threshold {
                return None;
            }
            let ring: Vec<Point> = bd
                .ring(i)
                .iter()
                .map(|p| [p[0] as f64, p[1] as f64])
                .collect();
            cut(&ring)
        })
        .collect();
    let n_cut = cuts.iter().filter(|c| c.is_some()).count();
    if n_cut == 0 {
        return 0;
    }
    let mut taken: std::collections::HashSet<String> = bd.ids.iter().cloned().collect();
    let mut out = Boundaries {
        ids: Vec::with_capacity(bd.len() + n_cut),
        ring_start: vec![0],
        vertices: Vec::with_capacity(bd.vertices.len() + 4 * n_cut),
        centroid: Vec::with_capacity(bd.len() + n_cut),
        bbox: Vec::with_capacity(bd.len() + n_cut),
        features: Vec::with_capacity(bd.len() + n_cut),
    };
    for (i, c) in cuts.iter().enumerate() {
        match c {
            Some((keep, _)) => push_boundary(&mut out, bd.ids[i].clone(), keep),
            None => {
                out.ids.push(bd.ids[i].clone());
                out.vertices.extend_from_slice(bd.ring(i));
                out.ring_start.push(out.vertices.len());
                out.features.push(bd.features[i]);
                out.centroid.push(bd.centroid[i]);
                out.bbox.push(bd.bbox[i]);
            }
        }
    }
    // The new halves follow the original boundaries, so existing indexes keep their meaning.
    for (i, c) in cuts.iter().enumerate() {
        if let Some((_, other)) = c {
            let id = second_half_id(&bd.ids[i], &taken);
            taken.insert(id.clone());
            push_boundary(&mut out, id, other);
        }
    }
    // Which half holds a transcript is a guess near the cut, and the cut itself may be wrong:
    // the transcripts whose cell id named a cut nucleus give no positive.
    for c in sample.tx.cell.iter_mut() {
        if matches!(cuts.get(*c as usize), Some(Some(_))) {
            *c = NO_CELL;
        }
    }
    sample.bd = out;
    sample.report.merged_nuclei_split = n_cut as u64;
    n_cut as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raw::{LoadReport, Transcripts};

    /// An ellipse of semi-axes `a`, `b` around `c`, rotated by `phi`, with `n` vertices.
    fn ellipse(c: Point, a: f64, b: f64, phi: f64, n: usize) -> Vec<Point> {
        (0..n)
            .map(|k| {
                let t = std::f64::consts::TAU * k as f64 / n as f64;
                let (x, y) = (a * t.cos(), b * t.sin());
                [
                    c[0] + x * phi.cos() - y * phi.sin(),
                    c[1] + x * phi.sin() + y * phi.cos(),
                ]
            })
            .collect()
    }

    fn sample(rings: &[Vec<Point>], tx: &[(f32, f32, u32)]) -> Sample {
        let mut bd = Boundaries {
            ring_start: vec![0],
            ..Default::default()
        };
        for (i, r) in rings.iter().enumerate() {
            push_boundary(&mut bd, format!("n{i}"), r);
        }
        let t = Transcripts {
            x: tx.iter().map(|t| t.0).collect(),
            y: tx.iter().map(|t| t.1).collect(),
            z: None,
            gene: vec![0; tx.len()],
            id: (0..tx.len() as i64).collect(),
            cell: tx.iter().map(|t| t.2).collect(),
            nuclear: Some(vec![true; tx.len()]),
        };
        Sample {
            tx: t,
            bd,
            vocab: vec!["g".into()],
            embedding: None,
            report: LoadReport::default(),
        }
    }

    /// 30 round nuclei of radius 3 (areas varying by a few %) on a 20 µm grid.
    fn round_nuclei() -> Vec<Vec<Point>> {
        (0..30)
            .map(|i| {
                let r = 3.0 * (1.0 + 0.01 * (i % 7) as f64);
                ellipse(
                    [20.0 * (i % 6) as f64, 20.0 * (i / 6) as f64],
                    r,
                    r,
                    0.0,
                    24,
                )
            })
            .collect()
    }

    #[test]
    fn moments_give_the_axis_ratio_and_direction_of_an_ellipse() {
        let (area, c, ratio, axis) = moments(&ellipse([5.0, -2.0], 4.0, 2.0, 0.5, 400)).unwrap();
        assert!((area - std::f64::consts::PI * 8.0).abs() < 0.01, "{area}");
        assert!(
            (c[0] - 5.0).abs() < 1e-9 && (c[1] + 2.0).abs() < 1e-9,
            "{c:?}"
        );
        assert!((ratio - 2.0).abs() < 1e-3, "{ratio}");
        // The long axis points along 0.5 rad (either way round).
        assert!((axis[0] * 0.5f64.cos() + axis[1] * 0.5f64.sin()).abs() > 0.9999);
        let (_, _, r, _) = moments(&ellipse([0.0, 0.0], 3.0, 3.0, 0.0, 64)).unwrap();
        assert!((r - 1.0).abs() < 1e-9, "{r}");
    }

    #[test]
    fn a_large_elongated_nucleus_is_cut_and_its_transcripts_lose_their_label() {
        let mut rings = round_nuclei();
        // Two touching nuclei of radius 3 as one hull-like ellipse 6 × 3 along x at (200, 0).
        rings.push(ellipse([200.0, 0.0], 6.0, 3.0, 0.0, 32));
        let merged = (rings.len() - 1) as u32;
        let tx = [
            (197.0, 0.0, merged),
            (203.0, 0.5, merged),
            (204.0, -1.0, merged),
            (0.0, 0.0, 0),
            (150.0, 0.0, NO_CELL),
        ];
        let mut s = sample(&rings, &tx);
        assert_eq!(split_merged_nuclei(&mut s), 1);
        assert_eq!(s.report.merged_nuclei_split, 1);
        assert_eq!(s.bd.len(), 32);
        assert_eq!(s.bd.ids[31], "n30_b");
        assert_eq!(s.bd.ids[30], "n30");
        // Each half holds about half the area, on its own side of x = 200.
        for i in [30, 31] {
            let a = s.bd.features[i][0] as f64;
            assert!((a - 0.5 * std::f64::consts::PI * 18.0).abs() < 0.5, "{a}");
        }
        let (c30, c31) = (s.bd.centroid[30][0], s.bd.centroid[31][0]);
        assert!((c30 - 200.0).abs() > 2.0 && (c31 - 200.0).abs() > 2.0);
        assert!((c30 - 200.0).signum() != (c31 - 200.0).signum());
        // The cut nucleus's transcripts keep no cell; the others keep theirs.
        assert_eq!(&s.tx.cell[..3], &[NO_CELL; 3]);
        assert_eq!(s.tx.cell[3], 0);
        assert_eq!(s.tx.cell[4], NO_CELL);
        // Each of them lies in the half on its side.
        assert!(s.bd.contains(31, 197.0, 0.0) && !s.bd.contains(30, 197.0, 0.0));
        assert!(s.bd.contains(30, 203.0, 0.5) && !s.bd.contains(31, 203.0, 0.5));
    }

    #[test]
    fn round_or_ordinary_nuclei_stay_whole() {
        // A large round nucleus (not elongated) and an elongated one of ordinary size.
        let mut rings = round_nuclei();
        rings.push(ellipse([200.0, 0.0], 6.0, 6.0, 0.0, 32));
        rings.push(ellipse([300.0, 0.0], 4.5, 2.0, 1.0, 32));
        let mut s = sample(&rings, &[(200.0, 0.0, 30), (304.0, 0.0, 31)]);
        let before = (s.bd.ids.clone(), s.bd.vertices.clone(), s.tx.cell.clone());
        assert_eq!(split_merged_nuclei(&mut s), 0);
        assert_eq!(
            (s.bd.ids.clone(), s.bd.vertices.clone(), s.tx.cell.clone()),
            before
        );
        // Too few nuclei to know what is large: nothing is cut.
        let mut few = sample(
            &[
                ellipse([0.0, 0.0], 3.0, 3.0, 0.0, 24),
                ellipse([50.0, 0.0], 9.0, 3.0, 0.0, 24),
            ],
            &[],
        );
        assert_eq!(split_merged_nuclei(&mut few), 0);
        assert_eq!(few.bd.len(), 2);
    }

    #[test]
    fn the_new_id_is_free() {
        let mut rings = round_nuclei();
        rings.push(ellipse([200.0, 0.0], 6.0, 3.0, 0.0, 32));
        let mut s = sample(&rings, &[]);
        // Name an existing nucleus like the new half would be.
        s.bd.ids[0] = "n30_b".into();
        assert_eq!(split_merged_nuclei(&mut s), 1);
        assert_eq!(s.bd.ids[31], "n30_b2");
    }
}
