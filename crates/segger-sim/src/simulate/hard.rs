//! The region geometry of `segger simulate` (the `hard` preset and its options).
//!
//! - Regions: the power diagram of a jittered square lattice of seeds, each with a random
//!   weight (`size_spread`), so region areas vary. The bisector of seeds i and j is the line
//!   |x − sᵢ|² − wᵢ = |x − sⱼ|² − wⱼ; each region is a box clipped by these half-planes, and
//!   every edge keeps the index of the region on its other side.
//! - Cells: chains of 1–4 regions that share an edge, grown from a random start along a random
//!   direction (`region_chain`). A cell's polygon is the union of its regions, by edge
//!   cancellation: the edges between two regions of the cell are dropped and the other edges
//!   are stitched into one ring. A chain whose union is not one simple ring of the right
//!   area (never seen) falls back to cells of one region each.
//! - Nuclei: none for `no_nucleus_fraction` of the cells; otherwise in one random region of
//!   the cell, about 30 % of that region's area, its centre up to `nucleus_offset` of the way
//!   from the region's centroid to its edge, and inside the region.
//! - Written nuclei: `merged_nuclei` × cells pairs of neighbouring nuclei are written as one
//!   polygon (their convex hull) under the first cell's id; `split_nuclei` × cells nuclei are
//!   written as two halves, the second under the cell's letters with the suffix `-2`.

use std::f64::consts::PI;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::{
    area, bbox, cell_name, cell_type, clip, clip_labelled, mean_cell_area, patch_centres,
    ray_to_boundary, wobbly_nucleus, Cell, Lattice, Nucleus, NucleusIndex, SimConfig, Tissue, P,
};

/// Label of an edge on the tissue's frame.
const FRAME: u32 = u32::MAX;
/// Realised over drawn extra regions per cell (mean chain length − 1): chains stop early
/// where blocked. Measured on the hard preset: 1.41–1.43 regions per cell against 1.6 drawn,
/// at 700 and 10,000 cells. It only sizes the lattice so that `--cells N` gives about N
/// cells; longer chains are blocked more often (all chains of 4: about 0.56).
const CHAIN_YIELD: f64 = 0.7;
/// Shortest shared edge, in region spacings, that lets a chain grow across it.
const CHAIN_EDGE: f64 = 0.25;
/// Shortest shared edge, in region spacings, that makes two cells neighbours (merged nuclei).
const NEIGHBOUR_EDGE: f64 = 0.1;
/// Largest distance, in region spacings, between two nucleus centres that may merge.
const MERGE_DISTANCE: f64 = 1.5;

/// A convex region: edge i (vertex i to i + 1) lies on the bisector with region `label[i]`,
/// or on the tissue's edge ([`FRAME`]).
struct Region {
    ring: Vec<P>,
    label: Vec<u32>,
    area: f64,
    centroid: P,
}

impl Region {
    fn edge_length(&self, i: usize) -> f64 {
        let (a, b) = (self.ring[i], self.ring[(i + 1) % self.ring.len()]);
        (b.0 - a.0).hypot(b.1 - a.1)
    }

    /// The regions across an edge at least `min_len` long.
    fn neighbours(&self, min_len: f64) -> impl Iterator<Item = usize> + '_ {
        (0..self.ring.len())
            .filter(move |&i| self.label[i] != FRAME && self.edge_length(i) >= min_len)
            .map(|i| self.label[i] as usize)
    }
}

/// The region lattice.
struct Regions {
    list: Vec<Region>,
    spacing: f64,
    w: f64,
    h: f64,
}

fn centroid(poly: &[P]) -> P {
    let (mut cx, mut cy, mut a2) = (0.0, 0.0, 0.0);
    for i in 0..poly.len() {
        let (a, b) = (poly[i], poly[(i + 1) % poly.len()]);
        let cr = a.0 * b.1 - b.0 * a.1;
        a2 += cr;
        cx += (a.0 + b.0) * cr;
        cy += (a.1 + b.1) * cr;
    }
    if a2.abs() > 1e-12 {
        (cx / (3.0 * a2), cy / (3.0 * a2))
    } else {
        let n = poly.len().max(1) as f64;
        (
            poly.iter().map(|p| p.0).sum::<f64>() / n,
            poly.iter().map(|p| p.1).sum::<f64>() / n,
        )
    }
}

/// Mean drawn chain length.
fn mean_chain(cfg: &SimConfig) -> f64 {
    let sum: f64 = cfg.region_chain.iter().sum();
    (0..4)
        .map(|k| (k + 1) as f64 * cfg.region_chain[k])
        .sum::<f64>()
        / sum
}

/// The power diagram of a jittered lattice sized for about `cfg.cells` cells.
fn build_regions(cfg: &SimConfig, rng: &mut ChaCha8Rng) -> Regions {
    let per_cell = 1.0 + (mean_chain(cfg) - 1.0) * CHAIN_YIELD;
    let n_regions = (cfg.cells as f64 * per_cell).round().max(1.0);
    let lattice = Lattice::new(n_regions, (mean_cell_area(cfg) / per_cell).sqrt(), rng);
    let s = lattice.s;
    let weights: Vec<f64> = (0..lattice.seeds.len())
        .map(|_| cfg.size_spread * s * s * (2.0 * rng.random::<f64>() - 1.0))
        .collect();
    let list = (0..lattice.seeds.len())
        .map(|k| {
            let seed = lattice.seeds[k];
            let mut ring = lattice.start_box(k);
            let mut label = vec![FRAME; 4];
            for o in lattice.neighbours(k) {
                let so = lattice.seeds[o];
                let n = (so.0 - seed.0, so.1 - seed.1);
                let shift = (weights[k] - weights[o]) / (2.0 * (n.0 * n.0 + n.1 * n.1));
                let m = (
                    0.5 * (seed.0 + so.0) + shift * n.0,
                    0.5 * (seed.1 + so.1) + shift * n.1,
                );
                (ring, label) = clip_labelled(&ring, &label, m, n, o as u32);
            }
            Region {
                area: area(&ring),
                centroid: centroid(&ring),
                ring,
                label,
            }
        })
        .collect();
    Regions {
        list,
        spacing: s,
        w: lattice.width(),
        h: lattice.height(),
    }
}

/// A random permutation of `0..n` (Fisher–Yates).
fn permutation(n: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        v.swap(i, rng.random_range(0..=i));
    }
    v
}

/// The free neighbour of `from` best aligned with `dir` (within 60°), across a long edge.
fn chain_step(reg: &Regions, from: usize, dir: P, owner: &[usize]) -> Option<usize> {
    let r = &reg.list[from];
    let mut best: Option<(f64, usize)> = None;
    for q in r.neighbours(CHAIN_EDGE * reg.spacing) {
        if owner[q] != usize::MAX {
            continue;
        }
        let c = reg.list[q].centroid;
        let (dx, dy) = (c.0 - r.centroid.0, c.1 - r.centroid.1);
        let cos = (dx * dir.0 + dy * dir.1) / dx.hypot(dy).max(1e-12);
        if cos >= 0.5 && best.is_none_or(|b| cos > b.0) {
            best = Some((cos, q));
        }
    }
    best.map(|b| b.1)
}

/// Groups the regions into cells: from each free region (in random order) a chain of the
/// drawn length, grown alternately at both ends along a random direction while not blocked.
/// Empty regions join no cell. Cells are ordered by their first region.
fn group_regions(cfg: &SimConfig, reg: &Regions, rng: &mut ChaCha8Rng) -> Vec<Vec<usize>> {
    let n = reg.list.len();
    let min_area = 1e-6 * reg.spacing * reg.spacing;
    let mut owner = vec![usize::MAX; n];
    let mut cum = [0.0; 4];
    let mut acc = 0.0;
    for (c, f) in cum.iter_mut().zip(cfg.region_chain) {
        acc += f;
        *c = acc;
    }
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for r in permutation(n, rng) {
        if owner[r] != usize::MAX || reg.list[r].area < min_area {
            continue;
        }
        let u = rng.random::<f64>() * acc;
        let len = 1 + cum.partition_point(|&c| c <= u).min(3);
        let id = groups.len();
        owner[r] = id;
        let mut members = vec![r];
        if len > 1 {
            let th = PI * rng.random::<f64>();
            let dirs = [(th.cos(), th.sin()), (-th.cos(), -th.sin())];
            let (mut ends, mut blocked, mut side) = ([r, r], [false, false], 0);
            while members.len() < len && !(blocked[0] && blocked[1]) {
                if !blocked[side] {
                    match chain_step(reg, ends[side], dirs[side], &owner) {
                        Some(q) if reg.list[q].area >= min_area => {
                            owner[q] = id;
                            members.push(q);
                            ends[side] = q;
                        }
                        _ => blocked[side] = true,
                    }
                }
                side ^= 1;
            }
        }
        groups.push(members);
    }
    for g in &mut groups {
        g.sort_unstable();
    }
    groups.sort_unstable_by_key(|g| g[0]);
    groups
}

/// The union of adjacent convex regions as one ring, by edge cancellation; `None` when the
/// kept edges do not close into one ring with the regions' total area.
fn union(reg: &Regions, members: &[usize]) -> Option<Vec<P>> {
    if members.len() == 1 {
        return Some(reg.list[members[0]].ring.clone());
    }
    let tol = 1e-6 * reg.spacing;
    let near = |a: P, b: P| (a.0 - b.0).hypot(a.1 - b.1) <= tol;
    // Runs of consecutive kept edges, each as its vertex sequence.
    let mut runs: Vec<Vec<P>> = Vec::new();
    for &m in members {
        let r = &reg.list[m];
        let n = r.ring.len();
        let kept = |i: usize| !members.contains(&(r.label[i] as usize));
        let first_cut = (0..n).find(|&i| !kept(i))?;
        let mut run: Vec<P> = Vec::new();
        for step in 1..=n {
            let i = (first_cut + step) % n;
            if kept(i) {
                if run.is_empty() {
                    run.push(r.ring[i]);
                }
                run.push(r.ring[(i + 1) % n]);
            } else if !run.is_empty() {
                runs.push(std::mem::take(&mut run));
            }
        }
    }
    runs.retain(|run| run.iter().any(|&p| !near(p, run[0])));
    if runs.is_empty() {
        return None;
    }
    let mut out = runs.swap_remove(0);
    let start = out[0];
    while !runs.is_empty() {
        let end = out[out.len() - 1];
        let (k, d) = runs
            .iter()
            .enumerate()
            .map(|(k, run)| (k, (run[0].0 - end.0).hypot(run[0].1 - end.1)))
            .min_by(|a, b| a.1.total_cmp(&b.1))?;
        if d > tol {
            return None;
        }
        out.extend_from_slice(&runs.swap_remove(k)[1..]);
    }
    if !near(out[out.len() - 1], start) {
        return None;
    }
    out.pop();
    out.dedup_by(|a, b| near(*a, *b));
    let total: f64 = members.iter().map(|&m| reg.list[m].area).sum();
    ((area(&out) - total).abs() <= 1e-6 * total).then_some(out)
}

/// A nucleus in `region`: about 30 % of its area, the centre displaced from the centroid by
/// up to `nucleus_offset` of the way to the edge. Returns the centre and the ring.
fn offset_nucleus(cfg: &SimConfig, region: &Region, rng: &mut ChaCha8Rng) -> (P, Vec<P>) {
    let c0 = region.centroid;
    let c = if cfg.nucleus_offset > 0.0 {
        let th = 2.0 * PI * rng.random::<f64>();
        let d = (th.cos(), th.sin());
        let f = cfg.nucleus_offset * rng.random::<f64>() * ray_to_boundary(&region.ring, c0, d);
        (c0.0 + f * d.0, c0.1 + f * d.1)
    } else {
        c0
    };
    let r0 = (0.3 * region.area / PI).sqrt();
    (c, wobbly_nucleus(&region.ring, c, r0, rng))
}

/// Neighbouring cells (sharing an edge of at least [`NEIGHBOUR_EDGE`] spacings).
fn cell_neighbours(reg: &Regions, groups: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let mut owner = vec![usize::MAX; reg.list.len()];
    for (c, g) in groups.iter().enumerate() {
        for &r in g {
            owner[r] = c;
        }
    }
    groups
        .iter()
        .enumerate()
        .map(|(c, g)| {
            let mut adj: Vec<usize> = g
                .iter()
                .flat_map(|&r| reg.list[r].neighbours(NEIGHBOUR_EDGE * reg.spacing))
                .map(|q| owner[q])
                .filter(|&d| d != c && d != usize::MAX)
                .collect();
            adj.sort_unstable();
            adj.dedup();
            adj
        })
        .collect()
}

/// Convex hull, counter-clockwise ([`segger_data::geometry::convex_hull`]).
fn convex_hull(pts: Vec<P>) -> Vec<P> {
    let pts: Vec<[f64; 2]> = pts.into_iter().map(|p| [p.0, p.1]).collect();
    segger_data::geometry::convex_hull(&pts)
        .into_iter()
        .map(|p| (p[0], p[1]))
        .collect()
}

/// What is written for a cell's nucleus.
#[derive(Clone, Copy, PartialEq)]
enum Fate {
    /// Its own polygon (or none, for a cell without a nucleus).
    Own,
    /// One polygon with the nucleus of this cell, under this cell's id.
    Absorbs(usize),
    /// Part of another cell's merged polygon.
    Absorbed,
    /// Two halves.
    Split,
}

/// Chooses merged pairs (neighbours whose nuclei are close) and split nuclei.
fn nucleus_fates(
    cfg: &SimConfig,
    centres: &[Option<P>],
    neighbours: &[Vec<usize>],
    spacing: f64,
    rng: &mut ChaCha8Rng,
) -> Vec<Fate> {
    let n = centres.len();
    let mut fate = vec![Fate::Own; n];
    let target = (cfg.merged_nuclei * n as f64).round() as usize;
    let mut merged = 0;
    if target > 0 {
        for c in permutation(n, rng) {
            let (Some(pc), Fate::Own) = (centres[c], fate[c]) else {
                continue;
            };
            let partner = neighbours[c]
                .iter()
                .filter(|&&d| fate[d] == Fate::Own)
                .filter_map(|&d| centres[d].map(|p| (d, (p.0 - pc.0).hypot(p.1 - pc.1))))
                .filter(|&(_, dist)| dist <= MERGE_DISTANCE * spacing)
                .min_by(|a, b| a.1.total_cmp(&b.1));
            if let Some((d, _)) = partner {
                fate[c] = Fate::Absorbs(d);
                fate[d] = Fate::Absorbed;
                merged += 1;
                if merged == target {
                    break;
                }
            }
        }
    }
    let target = (cfg.split_nuclei * n as f64).round() as usize;
    let mut split = 0;
    if target > 0 {
        for c in permutation(n, rng) {
            if centres[c].is_some() && fate[c] == Fate::Own {
                fate[c] = Fate::Split;
                split += 1;
                if split == target {
                    break;
                }
            }
        }
    }
    fate
}

/// The id of a split nucleus's second half: the cell's letters with the suffix `-2`.
fn second_half_name(c: usize) -> String {
    let mut s = cell_name(c);
    s.truncate(s.len() - 1);
    s.push('2');
    s
}

/// The written nuclei.
fn written_nuclei(
    cells: &[Cell],
    centres: &[Option<P>],
    fate: &[Fate],
    rng: &mut ChaCha8Rng,
) -> Vec<Nucleus> {
    let mut out = Vec::new();
    let mut push = |id: String, ring: Vec<P>| {
        out.push(Nucleus {
            id,
            bbox: bbox(&ring),
            ring,
        })
    };
    for (c, cell) in cells.iter().enumerate() {
        let Some(centre) = centres[c] else {
            continue;
        };
        match fate[c] {
            Fate::Own => push(cell_name(c), cell.nucleus.clone()),
            Fate::Absorbed => {}
            Fate::Absorbs(d) => {
                let pts = cell.nucleus.iter().chain(&cells[d].nucleus).copied();
                push(cell_name(c), convex_hull(pts.collect()));
            }
            Fate::Split => {
                let psi = PI * rng.random::<f64>();
                let n = (psi.cos(), psi.sin());
                push(cell_name(c), clip(&cell.nucleus, centre, n));
                push(
                    second_half_name(c),
                    clip(&cell.nucleus, centre, (-n.0, -n.1)),
                );
            }
        }
    }
    out
}

/// Buckets the written nuclei by the centres of their bounding boxes, on a grid no finer
/// than the largest nucleus (so a containing nucleus is always in the 3 × 3 neighbourhood).
fn nucleus_index(nuclei: &[Nucleus], spacing: f64, w: f64, h: f64) -> NucleusIndex {
    let mid = |b: &[f64; 4]| (0.5 * (b[0] + b[2]), 0.5 * (b[1] + b[3]));
    let reach = nuclei
        .iter()
        .flat_map(|n| {
            let m = mid(&n.bbox);
            n.ring.iter().map(move |p| (p.0 - m.0).hypot(p.1 - m.1))
        })
        .fold(0.0, f64::max);
    let side = reach.max(spacing);
    let (nx, ny) = (
        ((w / side).ceil() as usize).max(1),
        ((h / side).ceil() as usize).max(1),
    );
    let mut index = NucleusIndex {
        side,
        nx,
        ny,
        buckets: vec![Vec::new(); nx * ny],
        reach,
        exact: true,
    };
    for (k, n) in nuclei.iter().enumerate() {
        let (i, j) = index.bucket(mid(&n.bbox));
        index.buckets[j as usize * nx + i as usize].push(k as u32);
    }
    index
}

/// The region geometry: see the module's documentation.
pub(super) fn region_tissue(cfg: &SimConfig, rng: &mut ChaCha8Rng) -> Tissue {
    let reg = build_regions(cfg, rng);
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut polys: Vec<Vec<P>> = Vec::new();
    for g in group_regions(cfg, &reg, rng) {
        match union(&reg, &g) {
            Some(poly) => {
                groups.push(g);
                polys.push(poly);
            }
            None => {
                for r in g {
                    groups.push(vec![r]);
                    polys.push(reg.list[r].ring.clone());
                }
            }
        }
    }
    let n = groups.len();
    let centres = patch_centres(cfg, reg.w, reg.h, n, rng);
    let kinds: Vec<usize> = polys
        .iter()
        .map(|p| cell_type(cfg, &centres, centroid(p), rng))
        .collect();
    let mut has_nucleus = vec![true; n];
    let k0 = (cfg.no_nucleus_fraction * n as f64).round() as usize;
    if k0 > 0 {
        for c in permutation(n, rng).into_iter().take(k0) {
            has_nucleus[c] = false;
        }
    }
    let mut cells = Vec::with_capacity(n);
    let mut nucleus_centres = Vec::with_capacity(n);
    for ((g, poly), kind) in groups.iter().zip(polys).zip(kinds) {
        let (seed, nucleus) = if has_nucleus[cells.len()] {
            let r = g[rng.random_range(0..g.len())];
            let (c, ring) = offset_nucleus(cfg, &reg.list[r], rng);
            nucleus_centres.push(Some(c));
            (c, ring)
        } else {
            nucleus_centres.push(None);
            (reg.list[g[0]].centroid, Vec::new())
        };
        cells.push(Cell::new(seed, poly, nucleus, kind));
    }
    let neighbours = cell_neighbours(&reg, &groups);
    let fate = nucleus_fates(cfg, &nucleus_centres, &neighbours, reg.spacing, rng);
    let nuclei = written_nuclei(&cells, &nucleus_centres, &fate, rng);
    let index = nucleus_index(&nuclei, reg.spacing, reg.w, reg.h);
    let count = |f: &dyn Fn(Fate) -> bool| fate.iter().filter(|&&x| f(x)).count();
    Tissue {
        cells,
        nuclei,
        index,
        w: reg.w,
        h: reg.h,
        no_nucleus: has_nucleus.iter().filter(|&&h| !h).count(),
        merged: count(&|x| matches!(x, Fate::Absorbs(_))),
        split: count(&|x| x == Fate::Split),
    }
}
