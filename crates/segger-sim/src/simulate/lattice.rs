//! The jittered square lattice of seeds, and the default (easy) geometry built on it.

use std::f64::consts::PI;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::{
    area, cell_name, cell_type, clip, mean_cell_area, patch_centres, wobbly_nucleus, Cell, Nucleus,
    NucleusIndex, SimConfig, Tissue, JITTER, ORIGIN, P,
};

/// Seeds on a square lattice of spacing `s`, jittered by ± [`JITTER`] spacings.
pub(super) struct Lattice {
    pub(super) nx: usize,
    pub(super) ny: usize,
    pub(super) s: f64,
    pub(super) seeds: Vec<P>,
}

impl Lattice {
    /// About `count` seeds, on a lattice as square as possible.
    pub(super) fn new(count: f64, s: f64, rng: &mut ChaCha8Rng) -> Self {
        let nx = (count.sqrt().round() as usize).max(1);
        let ny = ((count / nx as f64).round() as usize).max(1);
        let seeds: Vec<P> = (0..nx * ny)
            .map(|k| {
                let (i, j) = (k % nx, k / nx);
                (
                    ORIGIN + (i as f64 + 0.5 + JITTER * (2.0 * rng.random::<f64>() - 1.0)) * s,
                    ORIGIN + (j as f64 + 0.5 + JITTER * (2.0 * rng.random::<f64>() - 1.0)) * s,
                )
            })
            .collect();
        Self { nx, ny, s, seeds }
    }

    pub(super) fn width(&self) -> f64 {
        self.nx as f64 * self.s
    }

    pub(super) fn height(&self) -> f64 {
        self.ny as f64 * self.s
    }

    /// The square of half-side 2.5 spacings around seed `k`, cut to the tissue.
    pub(super) fn start_box(&self, k: usize) -> Vec<P> {
        let seed = self.seeds[k];
        let r = 2.5 * self.s;
        let frame = [
            ORIGIN,
            ORIGIN,
            ORIGIN + self.width(),
            ORIGIN + self.height(),
        ];
        vec![
            ((seed.0 - r).max(frame[0]), (seed.1 - r).max(frame[1])),
            ((seed.0 + r).min(frame[2]), (seed.1 - r).max(frame[1])),
            ((seed.0 + r).min(frame[2]), (seed.1 + r).min(frame[3])),
            ((seed.0 - r).max(frame[0]), (seed.1 + r).min(frame[3])),
        ]
    }

    /// The other seeds of the 5 × 5 lattice neighbourhood of seed `k`, row by row.
    pub(super) fn neighbours(&self, k: usize) -> impl Iterator<Item = usize> + '_ {
        let (i, j) = ((k % self.nx) as i64, (k / self.nx) as i64);
        (-2..=2i64).flat_map(move |dj| {
            (-2..=2i64).filter_map(move |di| {
                let (a, b) = (i + di, j + dj);
                let outside = a < 0 || b < 0 || a >= self.nx as i64 || b >= self.ny as i64;
                (!(outside || (di == 0 && dj == 0))).then(|| b as usize * self.nx + a as usize)
            })
        })
    }
}

/// The default geometry: one Voronoi cell per seed of a jittered square lattice, a nucleus
/// centred on each seed.
pub(super) fn lattice_tissue(cfg: &SimConfig, rng: &mut ChaCha8Rng) -> Tissue {
    let lattice = Lattice::new(cfg.cells as f64, mean_cell_area(cfg).sqrt(), rng);
    let (nx, ny, s) = (lattice.nx, lattice.ny, lattice.s);
    let (w, h) = (lattice.width(), lattice.height());
    let centres = patch_centres(cfg, w, h, nx * ny, rng);
    let mut cells: Vec<Cell> = Vec::with_capacity(nx * ny);
    for (k, &seed) in lattice.seeds.iter().enumerate() {
        let mut poly = lattice.start_box(k);
        for o in lattice.neighbours(k) {
            let o = lattice.seeds[o];
            let m = (0.5 * (seed.0 + o.0), 0.5 * (seed.1 + o.1));
            poly = clip(&poly, m, (o.0 - seed.0, o.1 - seed.1));
        }
        // Nucleus: an ellipse of about 30 % of the cell's area with a wobble, inside the cell.
        let r0 = (0.3 * area(&poly) / PI).sqrt();
        let nucleus = wobbly_nucleus(&poly, seed, r0, rng);
        let kind = cell_type(cfg, &centres, seed, rng);
        cells.push(Cell::new(seed, poly, nucleus, kind));
    }
    let nuclei = cells
        .iter()
        .enumerate()
        .map(|(k, c)| Nucleus {
            id: cell_name(k),
            ring: c.nucleus.clone(),
            bbox: c.nbbox,
        })
        .collect();
    let index = NucleusIndex {
        side: s,
        nx,
        ny,
        buckets: (0..nx * ny).map(|k| vec![k as u32]).collect(),
        reach: s,
        exact: false,
    };
    Tissue {
        cells,
        nuclei,
        index,
        w,
        h,
        no_nucleus: 0,
        merged: 0,
        split: 0,
    }
}
