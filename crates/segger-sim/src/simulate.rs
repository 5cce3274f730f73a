//! `segger simulate`: a raw Xenium-schema sample of packed cells with a known truth.
//!
//! The tissue: cell seeds on a jittered square lattice; each cell is the Voronoi region of its
//! seed (convex, irregular, packed without gaps); each nucleus is a wobbly ellipse around the
//! seed, kept inside its cell. Cell types form spatial patches (nearest of a few random patch
//! centres, with some mixing). Each type expresses its own marker genes (60 % of its
//! transcripts) and shares housekeeping genes (40 %). On top of the cells' transcripts there is
//! uniform background noise (real genes, no true cell) and control probes with low quality
//! values. Everything is drawn from one ChaCha8 stream, so a seed gives the same files.

use std::f64::consts::PI;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow_array::{ArrayRef, Float32Array, StringArray, UInt64Array, UInt8Array};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::io::write_parquet;
use crate::SimError;

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
        }
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
            return bad("transcripts per cell must be in (0, 100000]");
        }
        if !(self.density > 0.0 && self.density.is_finite()) {
            return bad("density must be positive");
        }
        let fracs = [
            self.nuclear_fraction,
            self.noise_fraction,
            self.control_fraction,
            self.low_qv_fraction,
            self.patchiness,
        ];
        if fracs.iter().any(|f| !(0.0..=1.0).contains(f))
            || self.noise_fraction + self.control_fraction >= 1.0
        {
            return bad("fractions must be in [0, 1] and noise + controls below 1");
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
    /// Cells (and nuclei).
    pub cells: usize,
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

/// One cell: seed, Voronoi polygon, nucleus polygon, type.
struct Cell {
    seed: P,
    poly: Vec<P>,
    nucleus: Vec<P>,
    bbox: [f64; 4],
    nbbox: [f64; 4],
    kind: usize,
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
    let side = |p: P| (p.0 - m.0) * n.0 + (p.1 - m.1) * n.1;
    let mut out = Vec::with_capacity(poly.len() + 1);
    for i in 0..poly.len() {
        let a = poly[i];
        let b = poly[(i + 1) % poly.len()];
        let (sa, sb) = (side(a), side(b));
        if sa <= 0.0 {
            out.push(a);
        }
        if (sa < 0.0 && sb > 0.0) || (sa > 0.0 && sb < 0.0) {
            let t = sa / (sa - sb);
            out.push((a.0 + t * (b.0 - a.0), a.1 + t * (b.1 - a.1)));
        }
    }
    out
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
fn ring_distance(poly: &[P], p: P) -> f64 {
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

fn fov_name(col: usize, row: usize) -> String {
    let mut letters = Vec::new();
    let mut r = row;
    loop {
        letters.push(b'A' + (r % 26) as u8);
        if r < 26 {
            break;
        }
        r = r / 26 - 1;
    }
    letters.reverse();
    let mut s: String = letters.into_iter().map(char::from).collect();
    s.push_str(&(col + 1).to_string());
    s
}

/// Writes the simulated sample into `out` (created if needed; existing files are replaced).
pub fn simulate(cfg: &SimConfig, out: &Path) -> Result<SimSummary, SimError> {
    cfg.check()?;
    let t0 = Instant::now();
    std::fs::create_dir_all(out).map_err(|source| SimError::Io {
        path: out.to_path_buf(),
        source,
    })?;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);

    // Lattice.
    let nx = ((cfg.cells as f64).sqrt().round() as usize).max(1);
    let ny = ((cfg.cells as f64 / nx as f64).round() as usize).max(1);
    let in_cells = 1.0 - cfg.noise_fraction - cfg.control_fraction;
    let cell_area = cfg.transcripts_per_cell / (cfg.density * in_cells);
    let s = cell_area.sqrt();
    let (w, h) = (nx as f64 * s, ny as f64 * s);
    let frame = [ORIGIN, ORIGIN, ORIGIN + w, ORIGIN + h];
    let seeds: Vec<P> = (0..nx * ny)
        .map(|k| {
            let (i, j) = (k % nx, k / nx);
            (
                ORIGIN + (i as f64 + 0.5 + JITTER * (2.0 * rng.random::<f64>() - 1.0)) * s,
                ORIGIN + (j as f64 + 0.5 + JITTER * (2.0 * rng.random::<f64>() - 1.0)) * s,
            )
        })
        .collect();

    // Cell types: patches around random centres, mixed with random types.
    let t = cfg.cell_types;
    let n_centres = (2 * t).max(nx * ny / 40).max(1);
    let centres: Vec<(P, usize)> = (0..n_centres)
        .map(|c| {
            (
                (
                    ORIGIN + w * rng.random::<f64>(),
                    ORIGIN + h * rng.random::<f64>(),
                ),
                c % t,
            )
        })
        .collect();

    let mut cells: Vec<Cell> = Vec::with_capacity(seeds.len());
    for (k, &seed) in seeds.iter().enumerate() {
        let (i, j) = ((k % nx) as i64, (k / nx) as i64);
        let r = 2.5 * s;
        let mut poly = vec![
            ((seed.0 - r).max(frame[0]), (seed.1 - r).max(frame[1])),
            ((seed.0 + r).min(frame[2]), (seed.1 - r).max(frame[1])),
            ((seed.0 + r).min(frame[2]), (seed.1 + r).min(frame[3])),
            ((seed.0 - r).max(frame[0]), (seed.1 + r).min(frame[3])),
        ];
        for dj in -2..=2i64 {
            for di in -2..=2i64 {
                let (a, b) = (i + di, j + dj);
                if (di == 0 && dj == 0) || a < 0 || b < 0 || a >= nx as i64 || b >= ny as i64 {
                    continue;
                }
                let o = seeds[b as usize * nx + a as usize];
                let m = (0.5 * (seed.0 + o.0), 0.5 * (seed.1 + o.1));
                poly = clip(&poly, m, (o.0 - seed.0, o.1 - seed.1));
            }
        }
        // Nucleus: an ellipse of about 30 % of the cell's area with a wobble, inside the cell.
        let a_cell = area(&poly);
        let r0 = (0.3 * a_cell / PI).sqrt();
        let ratio = 1.0 + 0.4 * rng.random::<f64>();
        let phi = PI * rng.random::<f64>();
        let (wob_a, wob_p) = (0.06 * rng.random::<f64>(), 2.0 * PI * rng.random::<f64>());
        let nucleus: Vec<P> = (0..NUCLEUS_VERTICES)
            .map(|v| {
                let th = 2.0 * PI * v as f64 / NUCLEUS_VERTICES as f64;
                let (c, sn) = ((th - phi).cos(), (th - phi).sin());
                let ell = r0 / ((c / ratio.sqrt()).powi(2) + (sn * ratio.sqrt()).powi(2)).sqrt();
                let rr = ell * (1.0 + wob_a * (3.0 * th + wob_p).sin());
                let lim = 0.8 * ray_to_boundary(&poly, seed, (th.cos(), th.sin()));
                let rr = rr.min(lim);
                (seed.0 + rr * th.cos(), seed.1 + rr * th.sin())
            })
            .collect();
        let mut best = (f64::INFINITY, 0);
        for (c, &(p, _)) in centres.iter().enumerate() {
            let d = (p.0 - seed.0).hypot(p.1 - seed.1);
            if d < best.0 {
                best = (d, c);
            }
        }
        let kind = if rng.random::<f64>() < cfg.patchiness {
            centres[best.1].1
        } else {
            rng.random_range(0..t)
        };
        cells.push(Cell {
            seed,
            bbox: bbox(&poly),
            nbbox: bbox(&nucleus),
            poly,
            nucleus,
            kind,
        });
    }

    let cdfs = expression(cfg, &mut rng);
    let mean_area = w * h / cells.len() as f64;

    // Transcripts: (x, y, gene or control index, true cell or u32::MAX, qv).
    struct Tx {
        x: f64,
        y: f64,
        z: f64,
        feature: u32,
        cell: u32,
        qv: f32,
    }
    let n_cells_tx_est = (cfg.transcripts_per_cell * cells.len() as f64) as usize;
    let mut txs: Vec<Tx> = Vec::with_capacity(n_cells_tx_est + n_cells_tx_est / 10 + 16);
    let real_qv = |rng: &mut ChaCha8Rng| -> f32 {
        if rng.random::<f64>() < cfg.low_qv_fraction {
            (5.0 + 15.0 * rng.random::<f64>()) as f32
        } else {
            (20.0 + 20.0 * rng.random::<f64>()) as f32
        }
    };
    for (c, cell) in cells.iter().enumerate() {
        let size = (0.25 * normal(&mut rng)).exp();
        let mean = cfg.transcripts_per_cell * area(&cell.poly) / mean_area * size;
        let n = (mean + mean.sqrt() * normal(&mut rng)).round().max(0.0) as usize;
        for _ in 0..n {
            let nuclear = rng.random::<f64>() < cfg.nuclear_fraction;
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
                if inside(poly, q) && (nuclear || !inside(&cell.nucleus, q)) {
                    p = q;
                    break;
                }
            }
            txs.push(Tx {
                x: p.0,
                y: p.1,
                z: 8.0 + 14.0 * rng.random::<f64>(),
                feature: draw(&cdfs[cell.kind], &mut rng) as u32,
                cell: c as u32,
                qv: real_qv(&mut rng),
            });
        }
    }
    let n_in_cells = txs.len();
    let total = n_in_cells as f64 / in_cells;
    let n_noise = (total * cfg.noise_fraction).round() as usize;
    let n_ctrl = (total * cfg.control_fraction).round() as usize;
    let controls: Vec<String> = (0..20)
        .map(|i| match i % 3 {
            0 => format!("NegControlProbe_{:05}", i * 7 + 3),
            1 => format!("NegControlCodeword_{:04}", 500 + i),
            _ => format!("BLANK_{:04}", i),
        })
        .collect();
    for k in 0..n_noise + n_ctrl {
        let ctrl = k >= n_noise;
        let (x, y) = (
            ORIGIN + w * rng.random::<f64>(),
            ORIGIN + h * rng.random::<f64>(),
        );
        txs.push(Tx {
            x,
            y,
            z: 8.0 + 14.0 * rng.random::<f64>(),
            feature: if ctrl {
                (cfg.genes + rng.random_range(0..controls.len())) as u32
            } else {
                rng.random_range(0..cfg.genes) as u32
            },
            cell: u32::MAX,
            qv: if ctrl {
                (2.0 + 16.0 * rng.random::<f64>()) as f32
            } else {
                real_qv(&mut rng)
            },
        });
    }

    // Order the rows by field of view (then by generation), as the instrument does.
    let fov_cols = ((w / FOV_SIDE).ceil() as usize).max(1);
    let fov_of = |t: &Tx| -> usize {
        let c = (((t.x - ORIGIN) / FOV_SIDE).floor().max(0.0) as usize).min(fov_cols - 1);
        let r = ((t.y - ORIGIN) / FOV_SIDE).floor().max(0.0) as usize;
        r * fov_cols + c
    };
    txs.sort_by_key(fov_of);
    let fov_rows = ((h / FOV_SIDE).ceil() as usize).max(1);
    let fov_names: Vec<String> = (0..fov_rows * fov_cols + fov_cols)
        .map(|f| fov_name(f % fov_cols, f / fov_cols))
        .collect();

    let names: Vec<String> = (0..cells.len()).map(cell_name).collect();
    let type_names: Vec<String> = (0..t).map(|k| format!("type_{}", k + 1)).collect();
    let features: Vec<String> = (0..cfg.genes)
        .map(gene_name)
        .chain(controls.iter().cloned())
        .collect();

    let n = txs.len();
    let mut col_cell: Vec<&str> = Vec::with_capacity(n);
    let mut col_nuc: Vec<u8> = Vec::with_capacity(n);
    let mut col_dist: Vec<f32> = Vec::with_capacity(n);
    let mut in_nuclei = 0usize;
    for tx in &txs {
        let p = (tx.x, tx.y);
        let gi = (((p.0 - ORIGIN) / s).floor() as i64).clamp(0, nx as i64 - 1);
        let gj = (((p.1 - ORIGIN) / s).floor() as i64).clamp(0, ny as i64 - 1);
        // Nuclei of the 3 × 3 lattice neighbourhood: containment and distance.
        let mut ndist = f64::INFINITY;
        let mut in_nucleus = None;
        for dj in -1..=1i64 {
            for di in -1..=1i64 {
                let (a, b) = (gi + di, gj + dj);
                if a < 0 || b < 0 || a >= nx as i64 || b >= ny as i64 {
                    continue;
                }
                let k = b as usize * nx + a as usize;
                let c = &cells[k];
                if in_nucleus.is_none()
                    && p.0 >= c.nbbox[0]
                    && p.0 <= c.nbbox[2]
                    && p.1 >= c.nbbox[1]
                    && p.1 <= c.nbbox[3]
                    && inside(&c.nucleus, p)
                {
                    in_nucleus = Some(k);
                }
                ndist = ndist.min(ring_distance(&c.nucleus, p));
            }
        }
        match in_nucleus {
            Some(k) => {
                in_nuclei += 1;
                col_cell.push(&names[k]);
                col_nuc.push(1);
                col_dist.push(0.0);
            }
            None => {
                col_cell.push("UNASSIGNED");
                col_nuc.push(0);
                col_dist.push(ndist as f32);
            }
        }
    }

    let ids: Vec<u64> = (0..n as u64).map(|i| FIRST_TRANSCRIPT_ID + i).collect();
    write_parquet(
        &out.join("transcripts.parquet"),
        vec![
            (
                "transcript_id",
                Arc::new(UInt64Array::from(ids.clone())) as ArrayRef,
            ),
            ("cell_id", Arc::new(StringArray::from(col_cell))),
            ("overlaps_nucleus", Arc::new(UInt8Array::from(col_nuc))),
            (
                "feature_name",
                Arc::new(StringArray::from_iter_values(
                    txs.iter().map(|t| features[t.feature as usize].as_str()),
                )),
            ),
            (
                "x_location",
                Arc::new(Float32Array::from_iter_values(
                    txs.iter().map(|t| t.x as f32),
                )),
            ),
            (
                "y_location",
                Arc::new(Float32Array::from_iter_values(
                    txs.iter().map(|t| t.y as f32),
                )),
            ),
            (
                "z_location",
                Arc::new(Float32Array::from_iter_values(
                    txs.iter().map(|t| t.z as f32),
                )),
            ),
            (
                "qv",
                Arc::new(Float32Array::from_iter_values(txs.iter().map(|t| t.qv))),
            ),
            (
                "fov_name",
                Arc::new(StringArray::from_iter_values(
                    txs.iter().map(|t| fov_names[fov_of(t)].as_str()),
                )),
            ),
            ("nucleus_distance", Arc::new(Float32Array::from(col_dist))),
        ],
    )?;
    write_parquet(
        &out.join("ground_truth.parquet"),
        vec![
            (
                "transcript_id",
                Arc::new(UInt64Array::from(ids)) as ArrayRef,
            ),
            (
                "true_cell_id",
                Arc::new(StringArray::from_iter(txs.iter().map(|t| {
                    (t.cell != u32::MAX).then(|| names[t.cell as usize].as_str())
                }))),
            ),
            (
                "true_cell_type",
                Arc::new(StringArray::from_iter(txs.iter().map(|t| {
                    (t.cell != u32::MAX).then(|| type_names[cells[t.cell as usize].kind].as_str())
                }))),
            ),
        ],
    )?;
    for (file, nuclei) in [
        ("nucleus_boundaries.parquet", true),
        ("cell_boundaries.parquet", false),
    ] {
        let mut id: Vec<&str> = Vec::new();
        let mut vx: Vec<f32> = Vec::new();
        let mut vy: Vec<f32> = Vec::new();
        for (k, c) in cells.iter().enumerate() {
            let ring = if nuclei { &c.nucleus } else { &c.poly };
            for v in 0..=ring.len() {
                let p = ring[v % ring.len()];
                id.push(&names[k]);
                vx.push(p.0 as f32);
                vy.push(p.1 as f32);
            }
        }
        write_parquet(
            &out.join(file),
            vec![
                ("cell_id", Arc::new(StringArray::from(id)) as ArrayRef),
                ("vertex_x", Arc::new(Float32Array::from(vx))),
                ("vertex_y", Arc::new(Float32Array::from(vy))),
            ],
        )?;
    }
    let low_qv = txs.iter().filter(|t| t.qv < 20.0).count();
    Ok(SimSummary {
        out: out.to_path_buf(),
        transcripts: n,
        cells: cells.len(),
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
