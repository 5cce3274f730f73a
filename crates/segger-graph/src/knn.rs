//! k-nearest-neighbours-within-a-radius graphs on a kd-tree (`kiddo`).
//!
//! Every query point is linked to up to `k` of its nearest data points whose Euclidean
//! distance is at most `radius` (inclusive). Edges come out grouped by query, nearest first:
//! row 0 (`src`) is the query index and row 1 (`dst`) the neighbour index, as in the
//! reference's `get_kdtree_edge_index`.

use std::num::NonZeroUsize;

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
    if points.len() % dim != 0 {
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

/// kNN graph of a point set with itself (`tx__neighbors__tx`). `points` is row-major with
/// `dim` ∈ {2, 3} columns.
pub fn knn_same(points: &[f32], dim: usize, params: KnnParams) -> Result<EdgeList, GraphError> {
    check(points, dim, "points")?;
    Ok(match dim {
        2 => query_all::<2>(points, points, params, true),
        _ => query_all::<3>(points, points, params, true),
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
        2 => query_all::<2>(queries, data, params, false),
        _ => query_all::<3>(queries, data, params, false),
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
