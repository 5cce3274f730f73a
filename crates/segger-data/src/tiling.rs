//! Spatial tiling of a sample: a regular grid or balanced kd-splitting, plus a bucket index
//! that finds the transcripts and boundaries of a tile's context region quickly.
//!
//! Tile cores are half-open rectangles `[x0, x1) × [y0, y1)` that partition the plane region
//! covering all transcripts, so every transcript lies in exactly one core. A tile's graph also
//! holds the transcripts within `margin` of its core (context only).

use rayon::prelude::*;
use serde::Serialize;

/// A tile core: `[x0, x1) × [y0, y1)` in micrometres.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Rect {
    /// Left edge (inclusive).
    pub x0: f64,
    /// Bottom edge (inclusive).
    pub y0: f64,
    /// Right edge (exclusive).
    pub x1: f64,
    /// Top edge (exclusive).
    pub y1: f64,
}

impl Rect {
    /// True when `(x, y)` lies in the half-open rectangle.
    pub fn contains(&self, x: f64, y: f64) -> bool {
        x >= self.x0 && x < self.x1 && y >= self.y0 && y < self.y1
    }

    /// The rectangle grown by `m` on every side.
    pub fn grow(&self, m: f64) -> Rect {
        Rect {
            x0: self.x0 - m,
            y0: self.y0 - m,
            x1: self.x1 + m,
            y1: self.y1 + m,
        }
    }
}

/// How to cut the sample into tiles.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TileMode {
    /// A regular grid of `width × height` µm tiles anchored at the floor of the minimum
    /// coordinates.
    Grid {
        /// Tile width.
        width: f64,
        /// Tile height.
        height: f64,
    },
    /// Balanced kd-splitting: regions are halved at the median of their longer side until
    /// they hold at most `max_transcripts` core transcripts.
    Balanced {
        /// The most core transcripts per tile.
        max_transcripts: usize,
    },
}

/// A planned tile: its core and the number of transcripts in it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlannedTile {
    /// The core rectangle.
    pub rect: Rect,
    /// Transcripts in the core.
    pub core: usize,
}

/// The result of [`plan`]: non-empty tiles in row-major (grid) or kd order, and the number of
/// empty grid cells that were left out.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Tiles with at least one core transcript.
    pub tiles: Vec<PlannedTile>,
    /// Grid cells without core transcripts (no tile is written for them).
    pub empty: usize,
}

/// The most grid cells a plan may have (the grid holds a counter per cell).
pub const MAX_GRID_CELLS: f64 = 64.0 * 1024.0 * 1024.0;

/// Plans the tiles of the points `(xs[i], ys[i])`, which must be finite. Fails when a grid
/// would have more than [`MAX_GRID_CELLS`] cells.
pub fn plan(xs: &[f32], ys: &[f32], mode: TileMode) -> Result<Plan, String> {
    let (mut minx, mut miny, mut maxx, mut maxy) = (
        f64::INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NEG_INFINITY,
    );
    for (&x, &y) in xs.iter().zip(ys) {
        minx = minx.min(x as f64);
        miny = miny.min(y as f64);
        maxx = maxx.max(x as f64);
        maxy = maxy.max(y as f64);
    }
    if xs.is_empty() {
        return Ok(Plan::default());
    }
    match mode {
        TileMode::Grid { width, height } => {
            let (x0, y0) = (minx.floor(), miny.floor());
            let (fx, fy) = (
                ((maxx - x0) / width).floor() + 1.0,
                ((maxy - y0) / height).floor() + 1.0,
            );
            if (fx * fy).is_nan() || fx * fy > MAX_GRID_CELLS {
                return Err(format!(
                    "tiles of {width} × {height} µm over a {:.0} × {:.0} µm sample make {fx:.0} × \
                     {fy:.0} grid cells, more than {MAX_GRID_CELLS}: use larger tiles",
                    maxx - minx,
                    maxy - miny
                ));
            }
            let (nx, ny) = (fx as usize, fy as usize);
            let edge_x: Vec<f64> = (0..=nx).map(|i| x0 + i as f64 * width).collect();
            let edge_y: Vec<f64> = (0..=ny).map(|j| y0 + j as f64 * height).collect();
            let mut counts = vec![0usize; nx * ny];
            for (&x, &y) in xs.iter().zip(ys) {
                let i = cell_of(x as f64, &edge_x);
                let j = cell_of(y as f64, &edge_y);
                counts[j * nx + i] += 1;
            }
            let mut out = Plan::default();
            for j in 0..ny {
                for i in 0..nx {
                    let c = counts[j * nx + i];
                    if c == 0 {
                        out.empty += 1;
                        continue;
                    }
                    out.tiles.push(PlannedTile {
                        rect: Rect {
                            x0: edge_x[i],
                            y0: edge_y[j],
                            x1: edge_x[i + 1],
                            y1: edge_y[j + 1],
                        },
                        core: c,
                    });
                }
            }
            Ok(out)
        }
        TileMode::Balanced { max_transcripts } => {
            let root = Rect {
                x0: minx.floor(),
                y0: miny.floor(),
                x1: maxx.floor() + 1.0,
                y1: maxy.floor() + 1.0,
            };
            let mut idx: Vec<u32> = (0..xs.len() as u32).collect();
            let mut tiles = Vec::new();
            kd_split(xs, ys, &mut idx, root, max_transcripts.max(1), &mut tiles);
            Ok(Plan { tiles, empty: 0 })
        }
    }
}

/// Index of the half-open interval of `edges` holding `v` (clamped to the grid).
fn cell_of(v: f64, edges: &[f64]) -> usize {
    let n = edges.len() - 1;
    let w = edges[1] - edges[0];
    let mut i = (((v - edges[0]) / w).floor().max(0.0) as usize).min(n - 1);
    // Correct rounding so that the comparisons with the stored edges decide.
    while i > 0 && v < edges[i] {
        i -= 1;
    }
    while i + 1 < n && v >= edges[i + 1] {
        i += 1;
    }
    i
}

fn kd_split(
    xs: &[f32],
    ys: &[f32],
    idx: &mut [u32],
    rect: Rect,
    max: usize,
    out: &mut Vec<PlannedTile>,
) {
    if idx.len() <= max {
        if !idx.is_empty() {
            out.push(PlannedTile {
                rect,
                core: idx.len(),
            });
        }
        return;
    }
    let wide = rect.x1 - rect.x0 >= rect.y1 - rect.y0;
    for axis_x in [wide, !wide] {
        let coord = |i: u32| {
            if axis_x {
                xs[i as usize] as f64
            } else {
                ys[i as usize] as f64
            }
        };
        let mid = idx.len() / 2;
        idx.select_nth_unstable_by(mid, |&a, &b| coord(a).total_cmp(&coord(b)));
        let s = coord(idx[mid]);
        // Points equal to s go right; move the left part's maximum group accordingly.
        let left = itertools_partition(idx, |i| coord(i) < s);
        if left == 0 {
            continue; // every point is at the median value on this axis
        }
        let (a, b) = idx.split_at_mut(left);
        let (ra, rb) = if axis_x {
            (Rect { x1: s, ..rect }, Rect { x0: s, ..rect })
        } else {
            (Rect { y1: s, ..rect }, Rect { y0: s, ..rect })
        };
        let (mut la, mut lb) = (Vec::new(), Vec::new());
        if a.len() + b.len() > 200_000 {
            rayon::join(
                || kd_split(xs, ys, a, ra, max, &mut la),
                || kd_split(xs, ys, b, rb, max, &mut lb),
            );
        } else {
            kd_split(xs, ys, a, ra, max, &mut la);
            kd_split(xs, ys, b, rb, max, &mut lb);
        }
        out.extend(la);
        out.extend(lb);
        return;
    }
    // All points coincide: one oversized tile (cannot be split further).
    out.push(PlannedTile {
        rect,
        core: idx.len(),
    });
}

/// In-place partition; returns the number of elements satisfying `pred` (moved to the front).
fn itertools_partition(v: &mut [u32], pred: impl Fn(u32) -> bool) -> usize {
    let mut k = 0;
    for i in 0..v.len() {
        if pred(v[i]) {
            v.swap(i, k);
            k += 1;
        }
    }
    k
}

/// A uniform bucket grid over points, for rectangle queries.
#[derive(Debug, Clone)]
pub struct BucketIndex {
    x0: f64,
    y0: f64,
    cell: f64,
    nx: usize,
    ny: usize,
    start: Vec<u32>,
    items: Vec<u32>,
}

impl BucketIndex {
    /// Builds the index with about `per_bucket` points per occupied bucket.
    pub fn new(xs: &[f32], ys: &[f32], per_bucket: usize) -> Self {
        let n = xs.len();
        let (mut minx, mut miny, mut maxx, mut maxy) = (
            f64::INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NEG_INFINITY,
        );
        for (&x, &y) in xs.iter().zip(ys) {
            minx = minx.min(x as f64);
            miny = miny.min(y as f64);
            maxx = maxx.max(x as f64);
            maxy = maxy.max(y as f64);
        }
        if n == 0 {
            return Self {
                x0: 0.0,
                y0: 0.0,
                cell: 1.0,
                nx: 1,
                ny: 1,
                start: vec![0, 0],
                items: Vec::new(),
            };
        }
        let area = ((maxx - minx) * (maxy - miny)).max(1e-6);
        let mut cell = (area * per_bucket.max(1) as f64 / n as f64).sqrt().max(0.5);
        let (mut nx, mut ny);
        loop {
            nx = ((maxx - minx) / cell).floor() as usize + 1;
            ny = ((maxy - miny) / cell).floor() as usize + 1;
            if nx.saturating_mul(ny) <= 4 * n + 16 {
                break;
            }
            cell *= 2.0;
        }
        let bucket = |x: f32, y: f32| {
            let i = (((x as f64 - minx) / cell) as usize).min(nx - 1);
            let j = (((y as f64 - miny) / cell) as usize).min(ny - 1);
            j * nx + i
        };
        let mut start = vec![0u32; nx * ny + 1];
        for (&x, &y) in xs.iter().zip(ys) {
            start[bucket(x, y) + 1] += 1;
        }
        for k in 1..start.len() {
            start[k] += start[k - 1];
        }
        let mut fill = start.clone();
        let mut items = vec![0u32; n];
        for (i, (&x, &y)) in xs.iter().zip(ys).enumerate() {
            let b = bucket(x, y);
            items[fill[b] as usize] = i as u32;
            fill[b] += 1;
        }
        Self {
            x0: minx,
            y0: miny,
            cell,
            nx,
            ny,
            start,
            items,
        }
    }

    /// Calls `f` with every point index whose bucket intersects `r` (a superset of the points
    /// in `r`; callers filter by coordinates).
    pub fn candidates(&self, r: &Rect, mut f: impl FnMut(u32)) {
        if self.items.is_empty() {
            return;
        }
        let lo =
            |v: f64, o: f64, n: usize| (((v - o) / self.cell).floor().max(0.0) as usize).min(n - 1);
        if r.x1 < self.x0 || r.y1 < self.y0 {
            return;
        }
        let (i0, i1) = (lo(r.x0, self.x0, self.nx), lo(r.x1, self.x0, self.nx));
        let (j0, j1) = (lo(r.y0, self.y0, self.ny), lo(r.y1, self.y0, self.ny));
        for j in j0..=j1 {
            let a = self.start[j * self.nx + i0] as usize;
            let b = self.start[j * self.nx + i1 + 1] as usize;
            for &it in &self.items[a..b] {
                f(it);
            }
        }
    }
}

/// Indices of the points inside `r` (half-open), sorted ascending.
pub fn points_in(index: &BucketIndex, xs: &[f32], ys: &[f32], r: &Rect) -> Vec<u32> {
    let mut out = Vec::new();
    index.candidates(r, |i| {
        let (x, y) = (xs[i as usize] as f64, ys[i as usize] as f64);
        if r.contains(x, y) {
            out.push(i);
        }
    });
    out.sort_unstable();
    out
}

/// Counts core transcripts per planned tile in parallel (a consistency check: the counts must
/// add up to the number of transcripts).
pub fn core_counts(
    index: &BucketIndex,
    xs: &[f32],
    ys: &[f32],
    tiles: &[PlannedTile],
) -> Vec<usize> {
    tiles
        .par_iter()
        .map(|t| {
            let mut n = 0;
            index.candidates(&t.rect, |i| {
                if t.rect
                    .contains(xs[i as usize] as f64, ys[i as usize] as f64)
                {
                    n += 1;
                }
            });
            n
        })
        .collect()
}
