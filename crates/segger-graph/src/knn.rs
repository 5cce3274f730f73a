//! k-nearest-neighbours-within-a-radius graphs: on a uniform grid with cells of the radius's
//! size when the points are dense enough for it, otherwise on a kd-tree (`kiddo`).
//!
//! Every query point is linked to up to `k` of its nearest data points whose Euclidean
//! distance is at most `radius` (inclusive). Edges come out grouped by query, nearest first:
//! row 0 (`src`) is the query index and row 1 (`dst`) the neighbour index, as in the
//! reference's `get_kdtree_edge_index`.

use std::num::NonZeroUsize;
use std::ops::Range;

use kiddo::immutable::float::kdtree::ImmutableKdTree;
use kiddo::SquaredEuclidean;
use rayon::prelude::*;

use crate::error::GraphError;

/// Parameters of a kNN-within-radius query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KnnParams {
    /// Maximum number of neighbours per query point.
    pub k: usize,
    /// Maximum Euclidean distance (inclusive), in the points' unit.
    pub radius: f32,
    /// Same-set queries only: keep the edge from a point to itself. The reference Segger keeps
    /// it (each transcript is among its own k nearest); the default here drops it and returns
    /// up to `k` other points instead.
    pub keep_self: bool,
}

impl KnnParams {
    /// `k` neighbours within `radius`, self-edges excluded.
    pub fn new(k: usize, radius: f32) -> Self {
        Self {
            k,
            radius,
            keep_self: false,
        }
    }
}

/// An edge list: `src[i] -> dst[i]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EdgeList {
    /// Query indices (row 0).
    pub src: Vec<i64>,
    /// Neighbour indices (row 1).
    pub dst: Vec<i64>,
}

fn check(points: &[f32], dim: usize, what: &str) -> Result<(), GraphError> {
    if !(2..=3).contains(&dim) {
        return Err(GraphError::Invalid {
            field: what.into(),
            message: format!("kNN supports 2 or 3 dimensions, got {dim}"),
        });
    }
    if !points.len().is_multiple_of(dim) {
        return Err(GraphError::Invalid {
            field: what.into(),
            message: format!("{} values do not fill rows of {dim}", points.len()),
        });
    }
    if let Some(i) = points.iter().position(|v| !v.is_finite()) {
        return Err(GraphError::NonFinite {
            field: what.into(),
            value: points[i],
            row: i / dim,
            column: i % dim,
        });
    }
    Ok(())
}

fn as_rows<const D: usize>(points: &[f32]) -> Vec<[f32; D]> {
    points
        .chunks_exact(D)
        .map(|c| c.try_into().unwrap())
        .collect()
}

fn query_all<const D: usize>(
    queries: &[f32],
    data: &[f32],
    params: KnnParams,
    same_set: bool,
) -> EdgeList {
    let data_rows = as_rows::<D>(data);
    let query_rows = as_rows::<D>(queries);
    if data_rows.is_empty() || params.k == 0 {
        return EdgeList::default();
    }
    let tree: ImmutableKdTree<f32, u64, D, 32> = ImmutableKdTree::new_from_slice(&data_rows);
    let drop_self = same_set && !params.keep_self;
    let want = params.k + usize::from(drop_self);
    let r2 = params.radius * params.radius;
    let per_query: Vec<Vec<i64>> = query_rows
        .par_iter()
        .enumerate()
        .with_min_len(1024)
        .map(|(qi, q)| {
            let found = tree.nearest_n_within::<SquaredEuclidean>(
                q,
                r2,
                NonZeroUsize::new(want).unwrap(),
                true,
            );
            let mut out: Vec<i64> = Vec::with_capacity(params.k);
            for nn in found {
                if drop_self && nn.item as usize == qi {
                    continue;
                }
                if out.len() == params.k {
                    break;
                }
                out.push(nn.item as i64);
            }
            out
        })
        .collect();
    let total = per_query.iter().map(Vec::len).sum();
    let mut edges = EdgeList {
        src: Vec::with_capacity(total),
        dst: Vec::with_capacity(total),
    };
    for (qi, nbrs) in per_query.into_iter().enumerate() {
        for n in nbrs {
            edges.src.push(qi as i64);
            edges.dst.push(n);
        }
    }
    edges
}

/// `v.floor()` without a libm call (the baseline x86-64 target has no rounding instruction);
/// exact for |v| < 2⁶³.
#[inline]
fn floor(v: f64) -> f64 {
    let t = v as i64 as f64;
    if t > v {
        t - 1.0
    } else {
        t
    }
}

/// Query sets larger than this are processed in grid-cell order (better cache use).
const LARGE_QUERY_SET: usize = 32 * 1024;

/// Queries per parallel task of the grid engine.
const GRID_CHUNK: usize = 2048;

/// Average number of data points per grid cell above which the grid engine gives way to the
/// kd-tree (the radius is then large compared with the point spacing).
const GRID_MAX_PER_CELL: f64 = 48.0;

/// The data points of [`grid_query`], counting-sorted by the cell of a uniform grid over their
/// first two coordinates (cells of half the radius) that holds them.
struct Grid<const D: usize> {
    /// Lower x bound of the data (the left edge of column 0).
    x0: f32,
    /// Lower y bound of the data (the bottom edge of row 0).
    y0: f32,
    /// Columns of cells.
    nx: usize,
    /// Rows of cells.
    ny: usize,
    /// Side of a cell.
    cell: f64,
    /// `1 / cell`: data cells and query ranges use the same monotone expression (a
    /// multiplication).
    inv: f64,
    /// Cell `c`'s points are `start[c]..start[c + 1]` of `order` and `sorted`.
    start: Vec<u32>,
    /// Data indices in cell order.
    order: Vec<u32>,
    /// Data coordinates in cell order.
    sorted: Vec<[f32; D]>,
}

impl<const D: usize> Grid<D> {
    /// The grid over `data` (at least one point) for radius `r` (positive), or `None` when it
    /// would have far more cells than points, or too many points per cell.
    fn new(data: &[f32], r: f32) -> Option<Self> {
        let nd = data.len() / D;
        let (mut x0, mut y0, mut x1, mut y1) = (
            f32::INFINITY,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NEG_INFINITY,
        );
        for p in data.chunks_exact(D) {
            x0 = x0.min(p[0]);
            y0 = y0.min(p[1]);
            x1 = x1.max(p[0]);
            y1 = y1.max(p[1]);
        }
        // Cells of half the radius; each query scans only the cells that meet its disc.
        let cell = r as f64 / 2.0;
        let nx = ((x1 - x0) as f64 / cell).floor() + 1.0;
        let ny = ((y1 - y0) as f64 / cell).floor() + 1.0;
        if nx * ny > 4.0 * nd as f64 + 256.0 || (nd as f64) / (nx * ny) > GRID_MAX_PER_CELL {
            return None;
        }
        let mut grid = Self {
            x0,
            y0,
            nx: nx as usize,
            ny: ny as usize,
            cell,
            inv: 1.0 / cell,
            start: Vec::new(),
            order: Vec::new(),
            sorted: Vec::new(),
        };
        grid.sort_points(data);
        Some(grid)
    }

    /// Counting sort of the data points by cell: fills `start`, `order` and `sorted` (the
    /// coordinates copied in cell order).
    fn sort_points(&mut self, data: &[f32]) {
        let nd = data.len() / D;
        let mut start = vec![0u32; self.nx * self.ny + 1];
        let cells: Vec<usize> = data.chunks_exact(D).map(|p| self.cell_index(p)).collect();
        for &c in &cells {
            start[c + 1] += 1;
        }
        for i in 1..start.len() {
            start[i] += start[i - 1];
        }
        let mut fill = start.clone();
        let mut order = vec![0u32; nd];
        let mut sorted = vec![[0f32; D]; nd];
        for (i, &c) in cells.iter().enumerate() {
            let at = fill[c] as usize;
            order[at] = i as u32;
            sorted[at].copy_from_slice(&data[i * D..(i + 1) * D]);
            fill[c] += 1;
        }
        self.start = start;
        self.order = order;
        self.sorted = sorted;
    }

    /// The row (`o = y0`, `n = ny`) or column (`o = x0`, `n = nx`) of coordinate `v`, clamped to
    /// the grid. Data points lie inside the grid; the same f64 expression places queries' disc
    /// bounds, so a point within reach is never in a cell outside the scanned range.
    fn cell_of(&self, v: f32, o: f32, n: usize) -> usize {
        (floor((v as f64 - o as f64) * self.inv).max(0.0) as usize).min(n - 1)
    }

    /// The index (`row · nx + column`) of the cell of point `p`.
    fn cell_index(&self, p: &[f32]) -> usize {
        self.cell_of(p[1], self.y0, self.ny) * self.nx + self.cell_of(p[0], self.x0, self.nx)
    }
}

/// One grid-engine query: the grid, the query points and what a neighbour must satisfy.
struct GridSearch<'a, const D: usize> {
    grid: Grid<D>,
    /// Query points, row-major with `D` columns.
    queries: &'a [f32],
    /// Search radius (inclusive).
    r: f32,
    /// Most neighbours per query.
    k: usize,
    /// Skip the data point with the query's own index (same-set queries).
    drop_self: bool,
}

impl<const D: usize> GridSearch<'_, D> {
    /// The neighbours of query `qi` into `out` (cleared first), at most `k`, ordered by
    /// (squared distance, index): the rows of cells that meet its disc, each over the columns
    /// that meet the disc in that row.
    fn neighbours(&self, qi: usize, out: &mut Vec<(f32, u32)>) {
        out.clear();
        let g = &self.grid;
        let q = &self.queries[qi * D..(qi + 1) * D];
        // The disc, slightly enlarged so that float rounding can only add candidates.
        let (qx, qy) = (q[0] as f64, q[1] as f64);
        let reach = self.r as f64 * (1.0 + 1e-5) + 1e-6;
        let row_of = |v: f64| floor((v - g.y0 as f64) * g.inv);
        let col_of = |v: f64| floor((v - g.x0 as f64) * g.inv);
        let gy0 = row_of(qy - reach).max(0.0);
        let gy1 = row_of(qy + reach).min(g.ny as f64 - 1.0);
        if gy0 > gy1 {
            return;
        }
        for gy in gy0 as usize..=gy1 as usize {
            let ry0 = g.y0 as f64 + gy as f64 * g.cell;
            let dy = (ry0 - qy).max(qy - (ry0 + g.cell)).max(0.0);
            if dy > reach {
                continue;
            }
            let dx = (reach * reach - dy * dy).sqrt();
            let gx0 = col_of(qx - dx).max(0.0);
            let gx1 = col_of(qx + dx).min(g.nx as f64 - 1.0);
            if gx0 > gx1 {
                continue;
            }
            let row = gy * g.nx;
            let a = g.start[row + gx0 as usize] as usize;
            let b = g.start[row + gx1 as usize + 1] as usize;
            self.scan(q, qi, a..b, out);
        }
    }

    /// Offers the data points `range` (in cell order) within the radius of query `q` (index
    /// `qi`) to `out`, the `k` best by (squared distance, index) so far.
    fn scan(&self, q: &[f32], qi: usize, range: Range<usize>, out: &mut Vec<(f32, u32)>) {
        let r2 = self.r * self.r;
        let g = &self.grid;
        for (p, &di) in g.sorted[range.clone()].iter().zip(&g.order[range]) {
            let mut d2 = 0f32;
            for j in 0..D {
                d2 += (q[j] - p[j]) * (q[j] - p[j]);
            }
            if d2 > r2 {
                continue;
            }
            if self.drop_self && di as usize == qi {
                continue;
            }
            keep_best(out, self.k, d2, di);
        }
    }

    /// All queries, visited in grid-cell order so that neighbouring queries scan the same
    /// (cached) cells; each query's neighbours are kept in fixed slots, then emitted in query
    /// order.
    fn query_in_cell_order(&self) -> EdgeList {
        let nq = self.queries.len() / D;
        let k = self.k;
        let qcells: Vec<usize> = (0..nq)
            .map(|qi| self.grid.cell_index(&self.queries[qi * D..(qi + 1) * D]))
            .collect();
        let mut qorder: Vec<u32> = (0..nq as u32).collect();
        qorder.sort_unstable_by_key(|&qi| qcells[qi as usize]);
        drop(qcells);
        let found: Vec<Vec<u32>> = qorder
            .par_chunks(GRID_CHUNK)
            .map(|qs| {
                // Per query: its index, its neighbour count, then the neighbours.
                let mut flat = Vec::with_capacity(qs.len() * (k + 2));
                let mut buf = Vec::with_capacity(k + 1);
                for &qi in qs {
                    self.neighbours(qi as usize, &mut buf);
                    flat.push(qi);
                    flat.push(buf.len() as u32);
                    flat.extend(buf.iter().map(|&(_, di)| di));
                }
                flat
            })
            .collect();
        drop(qorder);
        let mut counts = vec![0u32; nq];
        let mut slots = vec![0u32; nq * k];
        for flat in &found {
            let mut at = 0;
            while at < flat.len() {
                let (qi, n) = (flat[at] as usize, flat[at + 1] as usize);
                counts[qi] = n as u32;
                slots[qi * k..qi * k + n].copy_from_slice(&flat[at + 2..at + 2 + n]);
                at += 2 + n;
            }
        }
        drop(found);
        let total: usize = counts.iter().map(|&c| c as usize).sum();
        let mut edges = EdgeList {
            src: Vec::with_capacity(total),
            dst: Vec::with_capacity(total),
        };
        for qi in 0..nq {
            for &di in &slots[qi * k..qi * k + counts[qi] as usize] {
                edges.src.push(qi as i64);
                edges.dst.push(di as i64);
            }
        }
        edges
    }

    /// All queries in index order, in parallel chunks of [`GRID_CHUNK`] whose edge lists are
    /// then concatenated.
    fn query_in_index_order(&self) -> EdgeList {
        let nq = self.queries.len() / D;
        let (k, chunk) = (self.k, GRID_CHUNK);
        let parts: Vec<(Vec<i64>, Vec<i64>)> = (0..nq.div_ceil(chunk))
            .into_par_iter()
            .map(|c| {
                let mut src = Vec::with_capacity(chunk * k);
                let mut dst = Vec::with_capacity(chunk * k);
                let mut buf = Vec::with_capacity(k + 1);
                for qi in c * chunk..((c + 1) * chunk).min(nq) {
                    self.neighbours(qi, &mut buf);
                    for &(_, di) in &buf {
                        src.push(qi as i64);
                        dst.push(di as i64);
                    }
                }
                (src, dst)
            })
            .collect();
        if parts.len() == 1 {
            let (src, dst) = parts.into_iter().next().expect("one part");
            return EdgeList { src, dst };
        }
        let total = parts.iter().map(|p| p.0.len()).sum();
        let mut edges = EdgeList {
            src: Vec::with_capacity(total),
            dst: Vec::with_capacity(total),
        };
        for (s, d) in parts {
            edges.src.extend(s);
            edges.dst.extend(d);
        }
        edges
    }
}

/// Inserts the candidate `(d2, di)` into `out`, which holds the best (at most `k`, `k ≥ 1`)
/// candidates so far sorted by (squared distance, index), if it is among the `k` best.
fn keep_best(out: &mut Vec<(f32, u32)>, k: usize, d2: f32, di: u32) {
    let worse = |e: &(f32, u32)| e.0.total_cmp(&d2).then(e.1.cmp(&di)).is_gt();
    if out.len() == k {
        if !worse(&out[k - 1]) {
            return;
        }
        out.pop();
    }
    let at = out.iter().position(worse).unwrap_or(out.len());
    out.insert(at, (d2, di));
}

/// kNN within a radius on a uniform grid over the first two coordinates, with cells of side
/// `radius / 2`: a query only looks at the cells that meet its disc. The neighbours are ordered by
/// (squared distance, index), exactly as [`brute_force`] orders them, and the distances are
/// computed with the same expression. Returns `None` when the grid would be too coarse.
fn grid_query<const D: usize>(
    queries: &[f32],
    data: &[f32],
    params: KnnParams,
    same_set: bool,
) -> Option<EdgeList> {
    let nd = data.len() / D;
    let nq = queries.len() / D;
    let r = params.radius;
    if nd == 0 || nq == 0 || params.k == 0 {
        return Some(EdgeList::default());
    }
    if r.is_nan() || r <= 0.0 {
        return None;
    }
    let search = GridSearch {
        grid: Grid::<D>::new(data, r)?,
        queries,
        r,
        k: params.k,
        drop_self: same_set && !params.keep_self,
    };
    Some(if nq > LARGE_QUERY_SET {
        search.query_in_cell_order()
    } else {
        search.query_in_index_order()
    })
}

fn query<const D: usize>(
    queries: &[f32],
    data: &[f32],
    params: KnnParams,
    same_set: bool,
) -> EdgeList {
    grid_query::<D>(queries, data, params, same_set)
        .unwrap_or_else(|| query_all::<D>(queries, data, params, same_set))
}

/// kNN graph of a point set with itself (`tx__neighbors__tx`). `points` is row-major with
/// `dim` ∈ {2, 3} columns.
pub fn knn_same(points: &[f32], dim: usize, params: KnnParams) -> Result<EdgeList, GraphError> {
    check(points, dim, "points")?;
    Ok(match dim {
        2 => query::<2>(points, points, params, true),
        _ => query::<3>(points, points, params, true),
    })
}

/// Bipartite kNN graph: each query point to its nearest `data` points (`tx__neighbors__bd`
/// with transcripts as queries and boundary centroids as data). Both sets have `dim` columns.
pub fn knn_bipartite(
    queries: &[f32],
    data: &[f32],
    dim: usize,
    params: KnnParams,
) -> Result<EdgeList, GraphError> {
    check(queries, dim, "queries")?;
    check(data, dim, "data")?;
    Ok(match dim {
        2 => query::<2>(queries, data, params, false),
        _ => query::<3>(queries, data, params, false),
    })
}

/// Marks an empty slot of a [`NeighbourRows`] row.
pub const NO_NEIGHBOUR: u32 = u32::MAX;

/// A kNN result as fixed-width rows: row `i` holds query `i`'s neighbours, nearest first, in
/// `k` slots, the unused ones [`NO_NEIGHBOUR`]. Four bytes per slot, where an [`EdgeList`]
/// takes sixteen per edge: for callers that only read each query's neighbours.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NeighbourRows {
    /// Slots per row.
    pub k: usize,
    /// Row-major neighbour indices, `k` per query.
    pub index: Vec<u32>,
}

impl NeighbourRows {
    /// Number of rows (queries).
    pub fn len(&self) -> usize {
        self.index.len().checked_div(self.k).unwrap_or(0)
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Query `i`'s neighbours, nearest first, without the empty slots.
    pub fn row(&self, i: usize) -> &[u32] {
        let r = &self.index[i * self.k..(i + 1) * self.k];
        let n = r.iter().position(|&d| d == NO_NEIGHBOUR).unwrap_or(self.k);
        &r[..n]
    }

    /// The same neighbours as an edge list grouped by query, nearest first.
    pub fn to_edges(&self) -> EdgeList {
        let mut e = EdgeList::default();
        for i in 0..self.len() {
            for &d in self.row(i) {
                e.src.push(i as i64);
                e.dst.push(d as i64);
            }
        }
        e
    }
}

/// [`NeighbourRows`] of `queries` against `data`: the grid engine when the radius suits it,
/// otherwise the kd-tree, one query per row written in place (no per-query list).
fn query_rows<const D: usize>(
    queries: &[f32],
    data: &[f32],
    params: KnnParams,
    same_set: bool,
) -> NeighbourRows {
    let (nq, nd, k) = (queries.len() / D, data.len() / D, params.k);
    let mut rows = NeighbourRows {
        k,
        index: vec![NO_NEIGHBOUR; nq * k],
    };
    if nd == 0 || nq == 0 || k == 0 {
        return rows;
    }
    let drop_self = same_set && !params.keep_self;
    let r = params.radius;
    let grid = (r.is_finite() && r > 0.0)
        .then(|| Grid::<D>::new(data, r))
        .flatten();
    if let Some(grid) = grid {
        let search = GridSearch {
            grid,
            queries,
            r,
            k,
            drop_self,
        };
        rows.index
            .par_chunks_mut(GRID_CHUNK * k)
            .enumerate()
            .for_each(|(c, out)| {
                let mut buf = Vec::with_capacity(k + 1);
                for (j, slots) in out.chunks_exact_mut(k).enumerate() {
                    search.neighbours(c * GRID_CHUNK + j, &mut buf);
                    for (s, &(_, di)) in slots.iter_mut().zip(&buf) {
                        *s = di;
                    }
                }
            });
        return rows;
    }
    let data_rows = as_rows::<D>(data);
    let tree: ImmutableKdTree<f32, u64, D, 32> = ImmutableKdTree::new_from_slice(&data_rows);
    let want = NonZeroUsize::new(k + usize::from(drop_self)).expect("k > 0");
    let r2 = r * r;
    rows.index
        .par_chunks_mut(k)
        .enumerate()
        .with_min_len(1024)
        .for_each(|(qi, slots)| {
            let q: [f32; D] = queries[qi * D..(qi + 1) * D].try_into().expect("D values");
            let found = tree.nearest_n_within::<SquaredEuclidean>(&q, r2, want, true);
            let kept = found
                .into_iter()
                .filter(|nn| !(drop_self && nn.item as usize == qi));
            for (s, nn) in slots.iter_mut().zip(kept) {
                *s = nn.item as u32;
            }
        });
    rows
}

/// [`knn_same`] as [`NeighbourRows`]: the same neighbours (up to the order of exactly tied
/// distances), in `k` four-byte slots per point. At most `u32::MAX − 1` points.
pub fn knn_same_rows(
    points: &[f32],
    dim: usize,
    params: KnnParams,
) -> Result<NeighbourRows, GraphError> {
    check(points, dim, "points")?;
    checked_rows(points, points, dim, params, ("points", true))
}

/// [`knn_bipartite`] as [`NeighbourRows`]: each query's nearest `data` points, in `k`
/// four-byte slots per query (a query that is also a data point finds itself). At most
/// `u32::MAX − 1` data points.
pub fn knn_bipartite_rows(
    queries: &[f32],
    data: &[f32],
    dim: usize,
    params: KnnParams,
) -> Result<NeighbourRows, GraphError> {
    check(queries, dim, "queries")?;
    check(data, dim, "data")?;
    checked_rows(queries, data, dim, params, ("data", false))
}

/// [`query_rows`] once the `data` (named `field`) is known to fit 32-bit indices.
fn checked_rows(
    queries: &[f32],
    data: &[f32],
    dim: usize,
    params: KnnParams,
    (field, same_set): (&str, bool),
) -> Result<NeighbourRows, GraphError> {
    if data.len() / dim >= NO_NEIGHBOUR as usize {
        return Err(GraphError::Invalid {
            field: field.into(),
            message: format!("{} points do not fit 32-bit indices", data.len() / dim),
        });
    }
    Ok(match dim {
        2 => query_rows::<2>(queries, data, params, same_set),
        _ => query_rows::<3>(queries, data, params, same_set),
    })
}

/// Exhaustive O(N·M) search with the same semantics as [`knn_same`] (when `same_set`) or
/// [`knn_bipartite`]; ties are broken by the lower index. Meant for tests and tiny inputs.
pub fn brute_force(
    queries: &[f32],
    data: &[f32],
    dim: usize,
    params: KnnParams,
    same_set: bool,
) -> EdgeList {
    let r2 = params.radius * params.radius;
    let mut out = EdgeList::default();
    for (qi, q) in queries.chunks_exact(dim).enumerate() {
        let mut cand: Vec<(f32, usize)> = data
            .chunks_exact(dim)
            .enumerate()
            .filter(|(di, _)| !(same_set && !params.keep_self && *di == qi))
            .map(|(di, d)| {
                (
                    q.iter().zip(d).map(|(a, b)| (a - b) * (a - b)).sum::<f32>(),
                    di,
                )
            })
            .filter(|(d2, _)| *d2 <= r2)
            .collect();
        let order = |a: &(f32, usize), b: &(f32, usize)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
        if params.k == 0 {
            continue;
        }
        if cand.len() > params.k {
            cand.select_nth_unstable_by(params.k - 1, order);
            cand.truncate(params.k);
        }
        cand.sort_by(order);
        for &(_, di) in &cand {
            out.src.push(qi as i64);
            out.dst.push(di as i64);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    fn same(points: &[f32], dim: usize, p: KnnParams) {
        let fast = knn_same(points, dim, p).unwrap();
        let slow = brute_force(points, points, dim, p, true);
        assert_eq!(
            (fast.src, fast.dst),
            (slow.src, slow.dst),
            "{p:?} dim {dim}"
        );
    }

    #[test]
    fn grid_engine_equals_brute_force_exactly() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        for case in 0..40 {
            let dim = 2 + case % 2;
            let n = rng.random_range(1..600);
            let side = rng.random_range(5.0..80.0f32);
            let pts: Vec<f32> = (0..n * dim)
                .map(|i| {
                    if i % dim == 2 {
                        rng.random_range(0.0..15.0)
                    } else {
                        1000.0 + rng.random_range(0.0..side)
                    }
                })
                .collect();
            for (k, r) in [(1, 1.0), (3, 5.0), (5, 2.5), (20, 40.0)] {
                let mut p = KnnParams::new(k, r);
                same(&pts, dim, p);
                p.keep_self = true;
                same(&pts, dim, p);
                let data: Vec<f32> = pts.iter().step_by(3).copied().take(dim * (n / 3)).collect();
                let fast = knn_bipartite(&pts, &data, dim, KnnParams::new(k, r)).unwrap();
                let slow = brute_force(&pts, &data, dim, KnnParams::new(k, r), false);
                assert_eq!((fast.src, fast.dst), (slow.src, slow.dst));
            }
        }
        // Large query sets take the cell-ordered path.
        let n = LARGE_QUERY_SET + 5000;
        let side = (n as f32 / 0.4).sqrt();
        let pts: Vec<f32> = (0..n)
            .flat_map(|_| {
                [
                    rng.random_range(0.0..side),
                    rng.random_range(0.0..side),
                    rng.random_range(0.0..10.0),
                ]
            })
            .collect();
        let p = KnnParams::new(4, 5.0);
        let fast = knn_same(&pts, 3, p).unwrap();
        let tree = query_all::<3>(&pts, &pts, p, true);
        assert_eq!((fast.src, fast.dst), (tree.src, tree.dst));
        let data: Vec<f32> = pts[..3 * 2000].to_vec();
        let fast = knn_bipartite(&pts, &data, 3, KnnParams::new(3, 15.0)).unwrap();
        let slow = brute_force(&pts, &data, 3, KnnParams::new(3, 15.0), false);
        assert_eq!((fast.src, fast.dst), (slow.src, slow.dst));
        // Lattices whose spacing is the radius or half of it: points on cell edges, exact ties,
        // neighbours at exactly the radius.
        for spacing in [0.5f32, 1.0, 2.5, 5.0] {
            let pts: Vec<f32> = (0..900)
                .flat_map(|i| [(i % 30) as f32 * spacing - 7.0, (i / 30) as f32 * spacing])
                .collect();
            for k in [1, 4, 9] {
                same(&pts, 2, KnnParams::new(k, 5.0));
            }
        }
    }
}
