//! `segger simulate`: a raw Xenium-schema sample of packed cells with a known truth.
//!
//! The tissue: cell seeds on a jittered square lattice; each cell is the Voronoi region of its
//! seed (convex, irregular, packed without gaps); each nucleus is a wobbly ellipse around the
//! seed, kept inside its cell. Cell types form spatial patches (nearest of a few random patch
//! centres, with some mixing). Each type expresses its own marker genes (60 % of its
//! transcripts) and shares housekeeping genes (40 %). On top of the cells' transcripts there is
//! uniform background noise (real genes, no true cell) and control probes with low quality
//! values. Everything is drawn from one ChaCha8 stream, so a seed gives the same files.
//!
//! The `hard` preset ([`SimConfig::hard`], module `hard`) builds the cells from a finer
//! power diagram instead: cells of one to four regions, off-centre nuclei, cells without a
//! nucleus, merged and split nuclei, and transcript diffusion. Its options are off by default,
//! and with them off no extra random number is drawn: the default output does not change.

use std::f64::consts::PI;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::SimError;

mod hard;
mod lattice;
mod write;

use lattice::{lattice_tissue, Lattice};
use write::{write_rings, write_transcripts, write_truth, Fovs};

/// First transcript id (Xenium ids are large 64-bit integers).
pub const FIRST_TRANSCRIPT_ID: u64 = 281_474_976_710_656;
/// Nucleus polygon vertices (the ring is closed, so each nucleus has one more row).
const NUCLEUS_VERTICES: usize = 16;
/// Side of a field of view in µm.
const FOV_SIDE: f64 = 250.0;
/// Lower-left corner of the tissue.
const ORIGIN: f64 = 100.0;
/// Seed jitter as a fraction of the lattice spacing (≤ 0.3 keeps every Voronoi neighbour of a
/// seed inside its 5 × 5 lattice neighbourhood).
const JITTER: f64 = 0.3;

/// Parameters of a simulated sample.
#[derive(Debug, Clone, Serialize)]
pub struct SimConfig {
    /// Number of cells (rounded to a full lattice: the summary gives the exact count).
    pub cells: usize,
    /// Number of genes.
    pub genes: usize,
    /// Number of cell types.
    pub cell_types: usize,
    /// Seed of the random stream.
    pub seed: u64,
    /// Mean transcripts per cell.
    pub transcripts_per_cell: f64,
    /// Transcripts per µm², background and control probes included.
    pub density: f64,
    /// Fraction of a cell's transcripts drawn inside its nucleus.
    pub nuclear_fraction: f64,
    /// Background transcripts (real genes, uniform, no true cell) as a fraction of all.
    pub noise_fraction: f64,
    /// Control probes (low quality values, no true cell) as a fraction of all.
    pub control_fraction: f64,
    /// Fraction of real transcripts with a quality value below 20.
    pub low_qv_fraction: f64,
    /// Probability that a cell takes the type of its tissue patch (else a uniformly random
    /// type): 1 gives large single-type regions, 0 a salt-and-pepper mixture.
    pub patchiness: f64,
    /// Fraction of the cells whose nucleus lies outside the section: no nucleus polygon, and
    /// their transcripts are uniform over the whole cell (`--no_nucleus_fraction`).
    pub no_nucleus_fraction: f64,
    /// Fractions of the cells made of 1, 2, 3 and 4 regions of the region lattice, chained
    /// along a random direction (`--region_chain`); normalised to sum 1.
    pub region_chain: [f64; 4],
    /// Spread of the region sizes: each region's power-diagram weight is uniform in
    /// ± `size_spread` × (region spacing)² (`--size_spread`; 0 gives a Voronoi diagram).
    pub size_spread: f64,
    /// Largest displacement of a nucleus centre from its region's centroid, as a fraction of
    /// the way to the region's edge (`--nucleus_offset`).
    pub nucleus_offset: f64,
    /// Merged nuclei (two neighbours' nuclei written as one polygon, their convex hull) as a
    /// fraction of the cells (`--merged_nuclei`).
    pub merged_nuclei: f64,
    /// Split nuclei (one nucleus written as two halves with two ids) as a fraction of the
    /// cells (`--split_nuclei`).
    pub split_nuclei: f64,
    /// Standard deviation in µm of a Gaussian displacement of every cell transcript in x and
    /// y after placement; the truth is unchanged (`--diffusion`).
    pub diffusion: f64,
}

/// Named settings of `segger simulate --preset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// Convex Voronoi cells of one size, a centred nucleus in every cell ([`SimConfig::new`]).
    #[default]
    Easy,
    /// Geometry like real tissue sections ([`SimConfig::hard`]).
    Hard,
}

impl SimConfig {
    /// Defaults like a Xenium sample: 60 transcripts per cell, 0.4 per µm², 35 % in nuclei,
    /// 5 % background, 2 % control probes, 8 % of real transcripts below qv 20.
    pub fn new(cells: usize, seed: u64) -> Self {
        Self {
            cells,
            genes: 100,
            cell_types: 5,
            seed,
            transcripts_per_cell: 60.0,
            density: 0.4,
            nuclear_fraction: 0.35,
            noise_fraction: 0.05,
            control_fraction: 0.02,
            low_qv_fraction: 0.08,
            patchiness: 0.2,
            no_nucleus_fraction: 0.0,
            region_chain: [1.0, 0.0, 0.0, 0.0],
            size_spread: 0.0,
            nucleus_offset: 0.0,
            merged_nuclei: 0.0,
            split_nuclei: 0.0,
            diffusion: 0.0,
        }
    }

    /// The `hard` preset: the defaults of [`SimConfig::new`] with a geometry like real tissue
    /// sections. 25 % of the cells have no nucleus in the section; cells are chains of 1–4
    /// power-diagram regions (60 / 25 / 10 / 5 %) with weights within ± 0.2 × spacing²;
    /// nuclei sit up to 40 % of the way from their region's centroid to its edge; 3 % of the
    /// cells have a nucleus merged with a neighbour's and 3 % a split nucleus; transcripts
    /// diffuse by σ = 0.8 µm.
    pub fn hard(cells: usize, seed: u64) -> Self {
        Self {
            no_nucleus_fraction: 0.25,
            region_chain: [0.6, 0.25, 0.1, 0.05],
            size_spread: 0.2,
            nucleus_offset: 0.4,
            merged_nuclei: 0.03,
            split_nuclei: 0.03,
            diffusion: 0.8,
            ..Self::new(cells, seed)
        }
    }

    /// The settings of a preset.
    pub fn preset(preset: Preset, cells: usize, seed: u64) -> Self {
        match preset {
            Preset::Easy => Self::new(cells, seed),
            Preset::Hard => Self::hard(cells, seed),
        }
    }

    /// Whether the cells come from the region lattice (module `hard`) rather than one
    /// Voronoi cell per lattice seed: any option on the nuclei or the geometry is set.
    fn uses_regions(&self) -> bool {
        self.no_nucleus_fraction > 0.0
            || self.region_chain[1..].iter().any(|&f| f > 0.0)
            || self.size_spread > 0.0
            || self.nucleus_offset > 0.0
            || self.merged_nuclei > 0.0
            || self.split_nuclei > 0.0
    }

    /// The number of cells that gives about `transcripts` transcripts in all.
    pub fn cells_for_transcripts(&self, transcripts: usize) -> usize {
        let in_cells = 1.0 - self.noise_fraction - self.control_fraction;
        ((transcripts as f64 * in_cells / self.transcripts_per_cell).round() as usize).max(1)
    }

    fn check(&self) -> Result<(), SimError> {
        let bad = |m: &str| Err(SimError::Invalid(m.to_string()));
        if self.cells == 0 {
            return bad("--cells must be at least 1");
        }
        if self.cells > 50_000_000 {
            return bad("--cells must be at most 50,000,000");
        }
        if self.genes < 2 {
            return bad("--genes must be at least 2");
        }
        if self.cell_types == 0 || self.cell_types > self.genes {
            return bad("--cell_types must be between 1 and --genes");
        }
        if !(self.transcripts_per_cell > 0.0 && self.transcripts_per_cell <= 100_000.0) {
            return bad("--transcripts_per_cell must be in (0, 100000]");
        }
        if !(self.density > 0.0 && self.density <= 1000.0) {
            return bad("--density must be in (0, 1000] transcripts per µm²");
        }
        for (flag, f) in [
            ("--nuclear_fraction", self.nuclear_fraction),
            ("--noise_fraction", self.noise_fraction),
            ("--control_fraction", self.control_fraction),
            ("low_qv_fraction", self.low_qv_fraction),
            ("--patchiness", self.patchiness),
        ] {
            if !(0.0..=1.0).contains(&f) {
                return Err(SimError::Invalid(format!(
                    "{flag} must be in [0, 1], got {f}"
                )));
            }
        }
        if self.noise_fraction + self.control_fraction >= 1.0 {
            return bad("--noise_fraction + --control_fraction must be below 1");
        }
        self.check_hard()
    }

    fn check_hard(&self) -> Result<(), SimError> {
        let bad = |m: &str| Err(SimError::Invalid(m.to_string()));
        let within = |v: f64, hi: f64| (0.0..=hi).contains(&v);
        if !within(self.no_nucleus_fraction, 1.0) {
            return bad("--no_nucleus_fraction must be in [0, 1]");
        }
        let chain_sum: f64 = self.region_chain.iter().sum();
        if self.region_chain.iter().any(|f| !within(*f, 1.0)) || chain_sum <= 0.0 {
            return bad("--region_chain takes four fractions in [0, 1] (cells of 1, 2, 3 and 4 regions) with a positive sum");
        }
        if !within(self.size_spread, 0.3) {
            return bad("--size_spread must be in [0, 0.3]");
        }
        if !within(self.nucleus_offset, 0.8) {
            return bad("--nucleus_offset must be in [0, 0.8]");
        }
        if !within(self.merged_nuclei, 0.5) || !within(self.split_nuclei, 0.5) {
            return bad("--merged_nuclei and --split_nuclei must be in [0, 0.5]");
        }
        if self.no_nucleus_fraction + 2.0 * self.merged_nuclei + self.split_nuclei > 1.0 {
            return bad(
                "--no_nucleus_fraction + 2 × --merged_nuclei + --split_nuclei must be at most 1",
            );
        }
        if !within(self.diffusion, 10.0) {
            return bad("--diffusion must be in [0, 10] µm");
        }
        Ok(())
    }
}

/// What a simulation wrote.
#[derive(Debug, Clone, Serialize)]
pub struct SimSummary {
    /// The output directory.
    pub out: PathBuf,
    /// Transcripts written.
    pub transcripts: usize,
    /// Cells (true cells, all with a polygon in `cell_boundaries.parquet`).
    pub cells: usize,
    /// Nucleus polygons written (cells − no nucleus − merged + split).
    pub nuclei: usize,
    /// Cells without a nucleus in the section.
    pub no_nucleus: usize,
    /// Merged nuclei: polygons that cover two cells' nuclei.
    pub merged_nuclei: usize,
    /// Split nuclei: cells whose nucleus is written as two polygons.
    pub split_nuclei: usize,
    /// Genes (control probes not counted).
    pub genes: usize,
    /// Cell types.
    pub cell_types: usize,
    /// Tissue width and height in µm.
    pub width_um: f64,
    /// Tissue height in µm.
    pub height_um: f64,
    /// Transcripts drawn in a cell (they have a true cell).
    pub in_cells: usize,
    /// Transcripts with `overlaps_nucleus` = 1.
    pub in_nuclei: usize,
    /// Background transcripts (no true cell).
    pub noise: usize,
    /// Control-probe transcripts.
    pub controls: usize,
    /// Transcripts with qv below 20.
    pub low_qv: usize,
    /// Transcripts per µm².
    pub density: f64,
    /// Wall seconds.
    pub seconds: f64,
    /// The settings.
    pub config: SimConfig,
}

/// A closed-form 2-D point.
type P = (f64, f64);

/// One cell: a point inside it, polygon, true nucleus polygon (empty when the cell has no
/// nucleus in the section), bounding boxes, type.
struct Cell {
    seed: P,
    poly: Vec<P>,
    nucleus: Vec<P>,
    bbox: [f64; 4],
    nbbox: [f64; 4],
    kind: usize,
}

impl Cell {
    fn new(seed: P, poly: Vec<P>, nucleus: Vec<P>, kind: usize) -> Self {
        Self {
            seed,
            bbox: bbox(&poly),
            nbbox: bbox(&nucleus),
            poly,
            nucleus,
            kind,
        }
    }
}

/// A nucleus polygon as written to `nucleus_boundaries.parquet`.
struct Nucleus {
    id: String,
    ring: Vec<P>,
    bbox: [f64; 4],
}

/// Written nuclei bucketed on a grid by a point of each (the lattice seed, or the centre of
/// the bounding box), for the `cell_id` / `nucleus_distance` columns.
struct NucleusIndex {
    side: f64,
    nx: usize,
    ny: usize,
    buckets: Vec<Vec<u32>>,
    /// Largest distance from a nucleus's bucketing point to its ring.
    reach: f64,
    /// Search rings of buckets until the nearest nucleus is certain; otherwise the 3 × 3
    /// neighbourhood only (the default preset's lattice, where each bucket holds one).
    exact: bool,
}

impl NucleusIndex {
    fn bucket(&self, p: P) -> (i64, i64) {
        (
            (((p.0 - ORIGIN) / self.side).floor() as i64).clamp(0, self.nx as i64 - 1),
            (((p.1 - ORIGIN) / self.side).floor() as i64).clamp(0, self.ny as i64 - 1),
        )
    }

    /// The nucleus containing `p` (the first found) and the distance to the nearest ring.
    fn lookup(&self, nuclei: &[Nucleus], p: P) -> (Option<usize>, f64) {
        let (gi, gj) = self.bucket(p);
        let mut ndist = f64::INFINITY;
        let mut in_nucleus = None;
        let visit = |di: i64, dj: i64, ndist: &mut f64, found: &mut Option<usize>| {
            let (a, b) = (gi + di, gj + dj);
            if a < 0 || b < 0 || a >= self.nx as i64 || b >= self.ny as i64 {
                return;
            }
            for &k in &self.buckets[b as usize * self.nx + a as usize] {
                let c = &nuclei[k as usize];
                if found.is_none()
                    && p.0 >= c.bbox[0]
                    && p.0 <= c.bbox[2]
                    && p.1 >= c.bbox[1]
                    && p.1 <= c.bbox[3]
                    && inside(&c.ring, p)
                {
                    *found = Some(k as usize);
                }
                *ndist = ndist.min(ring_distance(&c.ring, p));
            }
        };
        for dj in -1..=1i64 {
            for di in -1..=1i64 {
                visit(di, dj, &mut ndist, &mut in_nucleus);
            }
        }
        if !self.exact || in_nucleus.is_some() {
            return (in_nucleus, ndist);
        }
        // Rings r = 2, 3, …: a nucleus bucketed r + 1 away is at least r × side − reach away.
        let max_r = self.nx.max(self.ny) as i64;
        let mut r = 1;
        while r < max_r && ndist > r as f64 * self.side - self.reach {
            r += 1;
            for dj in -r..=r {
                for di in -r..=r {
                    if di.abs() == r || dj.abs() == r {
                        visit(di, dj, &mut ndist, &mut in_nucleus);
                    }
                }
            }
        }
        (in_nucleus, ndist)
    }
}

/// The simulated tissue: cells, written nuclei and their index, size.
struct Tissue {
    cells: Vec<Cell>,
    nuclei: Vec<Nucleus>,
    index: NucleusIndex,
    w: f64,
    h: f64,
    no_nucleus: usize,
    merged: usize,
    split: usize,
}

/// One transcript: position, gene or control index, true cell or `u32::MAX`, qv.
struct Tx {
    x: f64,
    y: f64,
    z: f64,
    feature: u32,
    cell: u32,
    qv: f32,
}

/// Xenium-like cell id: eight letters and "-1".
pub fn cell_name(i: usize) -> String {
    let mut s = [b'a'; 8];
    let mut v = i;
    for k in (0..8).rev() {
        s[k] = b'a' + (v % 26) as u8;
        v /= 26;
    }
    let mut out = String::with_capacity(10);
    for &b in &s {
        out.push(b as char);
    }
    out.push_str("-1");
    out
}

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u: f64 = rng.random::<f64>().max(1e-12);
    let v: f64 = rng.random();
    (-2.0 * u.ln()).sqrt() * (2.0 * PI * v).cos()
}

/// Keeps the part of a convex polygon where `(p - m) · n <= 0`.
fn clip(poly: &[P], m: P, n: P) -> Vec<P> {
    clip_labelled(poly, &vec![0; poly.len()], m, n, 0).0
}

/// Keeps the part of a convex ring where `(p - m) · n <= 0`, with edge labels: `label[i]`
/// belongs to the edge from vertex i to i + 1, and the new edge along the clip line gets `l`.
fn clip_labelled(ring: &[P], label: &[u32], m: P, n: P, l: u32) -> (Vec<P>, Vec<u32>) {
    let side = |p: P| (p.0 - m.0) * n.0 + (p.1 - m.1) * n.1;
    let mut out = Vec::with_capacity(ring.len() + 1);
    let mut lab = Vec::with_capacity(ring.len() + 1);
    for i in 0..ring.len() {
        let a = ring[i];
        let b = ring[(i + 1) % ring.len()];
        let (sa, sb) = (side(a), side(b));
        if sa <= 0.0 {
            out.push(a);
            lab.push(if sa == 0.0 && sb > 0.0 { l } else { label[i] });
        }
        if (sa < 0.0 && sb > 0.0) || (sa > 0.0 && sb < 0.0) {
            let t = sa / (sa - sb);
            out.push((a.0 + t * (b.0 - a.0), a.1 + t * (b.1 - a.1)));
            lab.push(if sa < 0.0 { l } else { label[i] });
        }
    }
    (out, lab)
}

fn area(poly: &[P]) -> f64 {
    let mut s = 0.0;
    for i in 0..poly.len() {
        let a = poly[i];
        let b = poly[(i + 1) % poly.len()];
        s += a.0 * b.1 - b.0 * a.1;
    }
    0.5 * s.abs()
}

fn bbox(poly: &[P]) -> [f64; 4] {
    let mut b = [
        f64::INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NEG_INFINITY,
    ];
    for p in poly {
        b[0] = b[0].min(p.0);
        b[1] = b[1].min(p.1);
        b[2] = b[2].max(p.0);
        b[3] = b[3].max(p.1);
    }
    b
}

/// Even-odd point-in-polygon test.
pub(crate) fn inside(poly: &[P], p: P) -> bool {
    let mut c = false;
    let n = poly.len();
    let mut j = n - 1;
    for i in 0..n {
        let (a, b) = (poly[i], poly[j]);
        if (a.1 > p.1) != (b.1 > p.1) && p.0 < (b.0 - a.0) * (p.1 - a.1) / (b.1 - a.1) + a.0 {
            c = !c;
        }
        j = i;
    }
    c
}

/// Distance from `p` to the ring of `poly`.
pub(crate) fn ring_distance(poly: &[P], p: P) -> f64 {
    let mut best = f64::INFINITY;
    for i in 0..poly.len() {
        let a = poly[i];
        let b = poly[(i + 1) % poly.len()];
        let (dx, dy) = (b.0 - a.0, b.1 - a.1);
        let l2 = dx * dx + dy * dy;
        let t = if l2 > 0.0 {
            (((p.0 - a.0) * dx + (p.1 - a.1) * dy) / l2).clamp(0.0, 1.0)
        } else {
            0.0
        };
        best = best.min((p.0 - a.0 - t * dx).hypot(p.1 - a.1 - t * dy));
    }
    best
}

/// Distance from `o` along the unit direction `d` to the boundary of the convex polygon
/// containing `o`.
fn ray_to_boundary(poly: &[P], o: P, d: P) -> f64 {
    let mut best = f64::INFINITY;
    for i in 0..poly.len() {
        let a = poly[i];
        let b = poly[(i + 1) % poly.len()];
        let e = (b.0 - a.0, b.1 - a.1);
        let den = d.0 * e.1 - d.1 * e.0;
        if den.abs() < 1e-12 {
            continue;
        }
        let w = (a.0 - o.0, a.1 - o.1);
        let t = (w.0 * e.1 - w.1 * e.0) / den;
        let s = (w.0 * d.1 - w.1 * d.0) / den;
        if t > 0.0 && (-1e-9..=1.0 + 1e-9).contains(&s) {
            best = best.min(t);
        }
    }
    if best.is_finite() {
        best
    } else {
        0.0
    }
}

/// Per-type cumulative gene distributions.
fn expression(cfg: &SimConfig, rng: &mut ChaCha8Rng) -> Vec<Vec<f64>> {
    let (g, t) = (cfg.genes, cfg.cell_types);
    let markers = (g / (2 * t)).max(1).min(g / t);
    let housekeeping: Vec<usize> = (t * markers..g).collect();
    let base: Vec<f64> = (0..g).map(|_| normal(rng).exp()).collect();
    (0..t)
        .map(|k| {
            let mut w = vec![0.0; g];
            let own = k * markers..(k + 1) * markers;
            let msum: f64 = own.clone().map(|i| base[i]).sum();
            let marker_share = if housekeeping.is_empty() { 1.0 } else { 0.6 };
            for i in own {
                w[i] = marker_share * base[i] / msum;
            }
            if !housekeeping.is_empty() {
                let hw: Vec<f64> = housekeeping
                    .iter()
                    .map(|&i| base[i] * (0.3 * normal(rng)).exp())
                    .collect();
                let hsum: f64 = hw.iter().sum();
                for (&i, v) in housekeeping.iter().zip(hw) {
                    w[i] = (1.0 - marker_share) * v / hsum;
                }
            }
            let mut acc = 0.0;
            w.iter()
                .map(|v| {
                    acc += v;
                    acc
                })
                .collect()
        })
        .collect()
}

fn draw(cdf: &[f64], rng: &mut ChaCha8Rng) -> usize {
    let u = rng.random::<f64>() * cdf[cdf.len() - 1];
    cdf.partition_point(|&c| c <= u).min(cdf.len() - 1)
}

/// Gene names: `Gene001`…, markers and housekeeping genes alike.
pub fn gene_name(g: usize) -> String {
    format!("Gene{:03}", g + 1)
}

/// Area of a mean cell in µm²: the lattice spacing that gives the requested density.
fn mean_cell_area(cfg: &SimConfig) -> f64 {
    let in_cells = 1.0 - cfg.noise_fraction - cfg.control_fraction;
    cfg.transcripts_per_cell / (cfg.density * in_cells)
}

/// Centres of the cell-type patches, each with its type.
fn patch_centres(
    cfg: &SimConfig,
    w: f64,
    h: f64,
    cells: usize,
    rng: &mut ChaCha8Rng,
) -> Vec<(P, usize)> {
    let t = cfg.cell_types;
    let n_centres = (2 * t).max(cells / 40).max(1);
    (0..n_centres)
        .map(|c| {
            (
                (
                    ORIGIN + w * rng.random::<f64>(),
                    ORIGIN + h * rng.random::<f64>(),
                ),
                c % t,
            )
        })
        .collect()
}

/// The type of a cell at `p`: its patch's type with probability `patchiness`, else random.
fn cell_type(cfg: &SimConfig, centres: &[(P, usize)], p: P, rng: &mut ChaCha8Rng) -> usize {
    let mut best = (f64::INFINITY, 0);
    for (c, &(q, _)) in centres.iter().enumerate() {
        let d = (q.0 - p.0).hypot(q.1 - p.1);
        if d < best.0 {
            best = (d, c);
        }
    }
    if rng.random::<f64>() < cfg.patchiness {
        centres[best.1].1
    } else {
        rng.random_range(0..cfg.cell_types)
    }
}

/// A nucleus around `c` in the convex polygon `poly`: an ellipse of mean radius `r0`, axis
/// ratio 1–1.4 and a small wobble, at most 80 % of the way from `c` to the polygon's edge.
fn wobbly_nucleus(poly: &[P], c: P, r0: f64, rng: &mut ChaCha8Rng) -> Vec<P> {
    let ratio = 1.0 + 0.4 * rng.random::<f64>();
    let phi = PI * rng.random::<f64>();
    let (wob_a, wob_p) = (0.06 * rng.random::<f64>(), 2.0 * PI * rng.random::<f64>());
    (0..NUCLEUS_VERTICES)
        .map(|v| {
            let th = 2.0 * PI * v as f64 / NUCLEUS_VERTICES as f64;
            let (co, sn) = ((th - phi).cos(), (th - phi).sin());
            let ell = r0 / ((co / ratio.sqrt()).powi(2) + (sn * ratio.sqrt()).powi(2)).sqrt();
            let rr = ell * (1.0 + wob_a * (3.0 * th + wob_p).sin());
            let lim = 0.8 * ray_to_boundary(poly, c, (th.cos(), th.sin()));
            let rr = rr.min(lim);
            (c.0 + rr * th.cos(), c.1 + rr * th.sin())
        })
        .collect()
}

fn real_qv(cfg: &SimConfig, rng: &mut ChaCha8Rng) -> f32 {
    if rng.random::<f64>() < cfg.low_qv_fraction {
        (5.0 + 15.0 * rng.random::<f64>()) as f32
    } else {
        (20.0 + 20.0 * rng.random::<f64>()) as f32
    }
}

/// The cells' transcripts: a count proportional to the cell's area, uniform in the nucleus
/// (`nuclear_fraction`) or the rest of the cell, then diffused.
fn cell_transcripts(
    cfg: &SimConfig,
    tissue: &Tissue,
    cdfs: &[Vec<f64>],
    rng: &mut ChaCha8Rng,
) -> Vec<Tx> {
    let cells = &tissue.cells;
    let mean_area = tissue.w * tissue.h / cells.len() as f64;
    let n_cells_tx_est = (cfg.transcripts_per_cell * cells.len() as f64) as usize;
    let mut txs: Vec<Tx> = Vec::with_capacity(n_cells_tx_est + n_cells_tx_est / 10 + 16);
    for (c, cell) in cells.iter().enumerate() {
        let size = (0.25 * normal(rng)).exp();
        let mean = cfg.transcripts_per_cell * area(&cell.poly) / mean_area * size;
        let n = (mean + mean.sqrt() * normal(rng)).round().max(0.0) as usize;
        let has_nucleus = !cell.nucleus.is_empty();
        for _ in 0..n {
            let nuclear = has_nucleus && rng.random::<f64>() < cfg.nuclear_fraction;
            let (b, poly) = if nuclear {
                (cell.nbbox, &cell.nucleus)
            } else {
                (cell.bbox, &cell.poly)
            };
            let mut p = cell.seed;
            for _ in 0..200 {
                let q = (
                    b[0] + (b[2] - b[0]) * rng.random::<f64>(),
                    b[1] + (b[3] - b[1]) * rng.random::<f64>(),
                );
                if inside(poly, q) && (nuclear || !has_nucleus || !inside(&cell.nucleus, q)) {
                    p = q;
                    break;
                }
            }
            if cfg.diffusion > 0.0 {
                let (dx, dy) = (normal(rng), normal(rng));
                p = (
                    (p.0 + cfg.diffusion * dx).clamp(ORIGIN, ORIGIN + tissue.w),
                    (p.1 + cfg.diffusion * dy).clamp(ORIGIN, ORIGIN + tissue.h),
                );
            }
            txs.push(Tx {
                x: p.0,
                y: p.1,
                z: 8.0 + 14.0 * rng.random::<f64>(),
                feature: draw(&cdfs[cell.kind], rng) as u32,
                cell: c as u32,
                qv: real_qv(cfg, rng),
            });
        }
    }
    txs
}

/// Control probe names.
fn control_names() -> Vec<String> {
    (0..20)
        .map(|i| match i % 3 {
            0 => format!("NegControlProbe_{:05}", i * 7 + 3),
            1 => format!("NegControlCodeword_{:04}", 500 + i),
            _ => format!("BLANK_{:04}", i),
        })
        .collect()
}

/// Appends uniform background noise and control probes; returns their counts.
fn add_background(
    cfg: &SimConfig,
    tissue: &Tissue,
    n_controls: usize,
    txs: &mut Vec<Tx>,
    rng: &mut ChaCha8Rng,
) -> (usize, usize) {
    let in_cells = 1.0 - cfg.noise_fraction - cfg.control_fraction;
    let total = txs.len() as f64 / in_cells;
    let n_noise = (total * cfg.noise_fraction).round() as usize;
    let n_ctrl = (total * cfg.control_fraction).round() as usize;
    for k in 0..n_noise + n_ctrl {
        let ctrl = k >= n_noise;
        let (x, y) = (
            ORIGIN + tissue.w * rng.random::<f64>(),
            ORIGIN + tissue.h * rng.random::<f64>(),
        );
        txs.push(Tx {
            x,
            y,
            z: 8.0 + 14.0 * rng.random::<f64>(),
            feature: if ctrl {
                (cfg.genes + rng.random_range(0..n_controls)) as u32
            } else {
                rng.random_range(0..cfg.genes) as u32
            },
            cell: u32::MAX,
            qv: if ctrl {
                (2.0 + 16.0 * rng.random::<f64>()) as f32
            } else {
                real_qv(cfg, rng)
            },
        });
    }
    (n_noise, n_ctrl)
}

/// What `simulate` writes into its output folder (segger-fs's rules).
pub const SIMULATE_OUTPUT: segger_fs::OutputSpec<'static> = segger_fs::OutputSpec {
    command: "simulate",
    writes: &[
        "transcripts.parquet",
        "ground_truth.parquet",
        "nucleus_boundaries.parquet",
        "cell_boundaries.parquet",
    ],
    signature: "ground_truth.parquet",
};

/// Writes the simulated sample into `out`. `out` must be missing or empty, or, with
/// `overwrite`, an earlier simulated sample (it has `ground_truth.parquet` and nothing else
/// than what a simulation writes): a real sample is never replaced. The files are written
/// into a temporary sibling folder renamed into place at the end.
pub fn simulate(cfg: &SimConfig, out: &Path, overwrite: bool) -> Result<SimSummary, SimError> {
    cfg.check()?;
    let t0 = Instant::now();
    segger_fs::prepare_output(&SIMULATE_OUTPUT, "--out", out, &[], overwrite)?;
    segger_fs::remove_stale_siblings(out);
    let tmp = segger_fs::TempDir::next_to(out, "tmp")?;
    let summary = simulate_into(cfg, tmp.path(), t0)?;
    segger_fs::replace_dir(tmp.path(), out)?;
    tmp.keep();
    Ok(SimSummary {
        out: out.to_path_buf(),
        seconds: t0.elapsed().as_secs_f64(),
        ..summary
    })
}

fn simulate_into(cfg: &SimConfig, out: &Path, t0: Instant) -> Result<SimSummary, SimError> {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let tissue = if cfg.uses_regions() {
        hard::region_tissue(cfg, &mut rng)
    } else {
        lattice_tissue(cfg, &mut rng)
    };
    let (w, h) = (tissue.w, tissue.h);
    let cdfs = expression(cfg, &mut rng);
    let mut txs = cell_transcripts(cfg, &tissue, &cdfs, &mut rng);
    let n_in_cells = txs.len();
    let controls = control_names();
    let (n_noise, n_ctrl) = add_background(cfg, &tissue, controls.len(), &mut txs, &mut rng);

    // Order the rows by field of view (then by generation), as the instrument does.
    let fovs = Fovs::new(w, h);
    txs.sort_by_key(|t| fovs.of(t));

    let names: Vec<String> = (0..tissue.cells.len()).map(cell_name).collect();
    let t = cfg.cell_types;
    let type_names: Vec<String> = (0..t).map(|k| format!("type_{}", k + 1)).collect();
    let features: Vec<String> = (0..cfg.genes)
        .map(gene_name)
        .chain(controls.iter().cloned())
        .collect();
    let in_nuclei = write_transcripts(out, &txs, &tissue, &features, &fovs)?;
    write_truth(out, &txs, &tissue.cells, &names, &type_names)?;
    write_rings(
        &out.join("nucleus_boundaries.parquet"),
        tissue.nuclei.iter().map(|n| (n.id.as_str(), &n.ring[..])),
    )?;
    write_rings(
        &out.join("cell_boundaries.parquet"),
        names
            .iter()
            .zip(&tissue.cells)
            .map(|(name, c)| (name.as_str(), &c.poly[..])),
    )?;
    let n = txs.len();
    let low_qv = txs.iter().filter(|t| t.qv < 20.0).count();
    Ok(SimSummary {
        out: out.to_path_buf(),
        transcripts: n,
        cells: tissue.cells.len(),
        nuclei: tissue.nuclei.len(),
        no_nucleus: tissue.no_nucleus,
        merged_nuclei: tissue.merged,
        split_nuclei: tissue.split,
        genes: cfg.genes,
        cell_types: t,
        width_um: w,
        height_um: h,
        in_cells: n_in_cells,
        in_nuclei,
        noise: n_noise,
        controls: n_ctrl,
        low_qv,
        density: n as f64 / (w * h),
        seconds: t0.elapsed().as_secs_f64(),
        config: cfg.clone(),
    })
}
