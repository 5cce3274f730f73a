//! Scoring one tile: each transcript against its candidate boundaries (model score, distance,
//! reach, expression term) and the links between unassigned transcripts.

use std::path::Path;

use segger_data::TileBounds;
use segger_graph::knn::{knn_bipartite, KnnParams};
use segger_graph::{Batch, NodeFeatures, NodeIds};

use crate::state::{TxRecord, NO_CELL, NO_GENE};
use crate::{PredictConfig, PredictError, LONE_RATIO};

/// The result of one tile: records with the tile-local boundary index in `cell`.
pub(crate) struct TileResult {
    pub records: Vec<TxRecord>,
    pub links: Vec<(i64, i64)>,
    /// Ids of the core transcripts within the inner reach of their chosen boundary (kept only
    /// for the cell-type stage, which never takes them from it).
    pub near: Vec<i64>,
    /// `(id, tile-local boundary)` of the core transcripts whose chosen boundary scored below
    /// the cut outside the inner reach (cell-type stage only).
    pub below: Vec<(i64, u32)>,
    /// `(id, tile-local boundary)` of the unassigned core transcripts whose best candidate
    /// within `return_reach` (the reach and the lone reach aside) passes the cut: where they go
    /// when they join no new cell ([`PredictConfig::return_reach`]).
    pub fallback: Vec<(i64, u32)>,
}

fn sigmoid(s: f32) -> f32 {
    1.0 / (1.0 + (-s).exp())
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Whether `(x, y)` lies in the core `[x, x + w) × [y, y + h)` of a tile (f32 compared in f64,
/// as dataset creation does).
fn in_core(b: &TileBounds, x: f32, y: f32) -> bool {
    let (x, y) = (x as f64, y as f64);
    x >= b.x && x < b.x + b.width && y >= b.y && y < b.y + b.height
}

/// Pseudo-transcripts of the tile's gene distribution added to each boundary's expression
/// profile (`--expression_weight`).
pub const PROFILE_PRIOR: f32 = 30.0;
/// A transcript first assigned to a boundary counts towards the boundary's profile when it lies
/// within this many equivalent radii of the boundary's centroid (the nucleus and its rim: the
/// transcripts least likely to belong to another cell).
pub const PROFILE_REACH: f32 = 1.5;
/// The neighbourhood whose genes weigh a transcript's candidates: the transcript and its
/// nearest neighbours, at most this many in all...
pub const NEIGHBOURHOOD_SIZE: usize = 10;
/// ...within this distance (µm, in the x-y plane).
pub const NEIGHBOURHOOD_RADIUS: f32 = 3.0;

/// The boundaries' expression profiles within one tile, from a first assignment, and the term
/// they add to a candidate: `weight × mean over the transcript's neighbourhood of
/// ln(p_b(g) / p(g))`, where `p_b` is the gene distribution of the profile's transcripts
/// ([`PROFILE_REACH`]; smoothed towards `p` by [`PROFILE_PRIOR`] pseudo-transcripts, the
/// transcript itself left out of the profile it belongs to) and `p` that of the whole tile.
struct ExpressionProfiles<'a> {
    genes: &'a [i64],
    n_genes: usize,
    counts: Vec<f32>,
    totals: Vec<f32>,
    background: Vec<f32>,
    /// `ln(p_b(g) / p(g))` by boundary and gene, nobody left out.
    log_ratio: Vec<f32>,
    /// The boundary each transcript's count went to, or [`NO_CELL`].
    member: Vec<u32>,
}

impl<'a> ExpressionProfiles<'a> {
    /// Profiles of `boundaries` boundaries from `member` (per transcript of the tile: the
    /// boundary whose profile it counts towards, or [`NO_CELL`]).
    fn new(genes: &'a [i64], member: Vec<u32>, boundaries: usize) -> Self {
        let gene = |g: i64| g.max(0) as usize;
        let n_genes = genes.iter().map(|&g| gene(g) + 1).max().unwrap_or(1);
        let mut background = vec![1.0f32; n_genes];
        for &g in genes {
            background[gene(g)] += 1.0;
        }
        let total: f32 = background.iter().sum();
        background.iter_mut().for_each(|p| *p /= total);
        let mut counts = vec![0.0f32; boundaries * n_genes];
        let mut totals = vec![0.0f32; boundaries];
        for (i, &b) in member.iter().enumerate() {
            if b != NO_CELL {
                counts[b as usize * n_genes + gene(genes[i])] += 1.0;
                totals[b as usize] += 1.0;
            }
        }
        let mut me = Self {
            genes,
            n_genes,
            counts,
            totals,
            background,
            log_ratio: Vec::new(),
            member,
        };
        me.log_ratio = (0..boundaries * n_genes)
            .map(|k| me.ratio(k / n_genes, k % n_genes, 0.0))
            .collect();
        me
    }

    /// `ln(p_b(g) / p(g))` with `out` transcripts of gene `g` left out of `b`'s profile.
    fn ratio(&self, b: usize, g: usize, out: f32) -> f32 {
        let count = (self.counts[b * self.n_genes + g] - out).max(0.0);
        let total = (self.totals[b] - out).max(0.0);
        let p0 = self.background[g];
        ((count + PROFILE_PRIOR * p0) / (total + PROFILE_PRIOR) / p0).ln()
    }

    /// The mean log-ratio of the genes of `hood` (tile-local transcripts, `me` among them)
    /// under boundary `b`; `me` is left out of `b`'s profile when it is `b`'s member.
    fn mean_log_ratio(&self, hood: &[u32], me: usize, b: usize) -> f32 {
        let sum: f32 = hood
            .iter()
            .map(|&j| {
                let g = self.genes[j as usize].max(0) as usize;
                if j as usize == me && self.member[me] as usize == b {
                    self.ratio(b, g, 1.0)
                } else {
                    self.log_ratio[b * self.n_genes + g]
                }
            })
            .sum();
        sum / hood.len().max(1) as f32
    }
}

/// The transcripts of one tile of a batch, in tile-local indices.
struct TileView<'a> {
    /// Transcript ids.
    ids: &'a [i64],
    /// Positions, `pd` values per transcript.
    pos: &'a [f32],
    pd: usize,
    /// The tile's first transcript in the batch.
    t0: usize,
    /// Transcripts in the tile (margin included).
    n: usize,
    /// The transcripts in the tile's core: those it decides.
    core: Vec<usize>,
}

impl TileView<'_> {
    /// The x-y positions of `which`, flattened.
    fn xy(&self, which: impl Iterator<Item = usize>) -> Vec<f32> {
        which
            .flat_map(|i| [self.pos[i * self.pd], self.pos[i * self.pd + 1]])
            .collect()
    }
}

/// A transcript's candidate boundaries within reach, found by [`candidates`].
struct Candidates {
    /// (scored index, boundary, ranking logit, model logit). The distance term only ranks the
    /// candidates; the cut applies to the model's score.
    pairs: Vec<(usize, usize, f32, f32)>,
    /// (scored index, boundary) pairs close enough for the transcript to count towards the
    /// boundary's expression profile ([`PROFILE_REACH`]; only with the expression term).
    inner: Vec<(usize, u32)>,
    /// (scored index, boundary) pairs within `inner_reach` radii: assigned whatever the score.
    inside: Vec<(usize, u32)>,
    /// Pairs like `pairs` that the reach or the lone reach left out but that lie within
    /// `return_reach` radii (empty when it is 0).
    fallback: Vec<(usize, usize, f32, f32)>,
}

/// The model's embeddings of a batch, `d` values per node.
struct Embeddings<'a> {
    ztx: &'a [f32],
    zbd: &'a [f32],
    d: usize,
}

impl Embeddings<'_> {
    /// The model logit of transcript `i` against boundary `j` (batch indices).
    fn tx_bd(&self, i: usize, j: usize) -> f32 {
        let d = self.d;
        dot(&self.ztx[i * d..(i + 1) * d], &self.zbd[j * d..(j + 1) * d])
    }

    /// The model logit of transcripts `i` and `j` (batch indices).
    fn tx_tx(&self, i: usize, j: usize) -> f32 {
        let d = self.d;
        dot(&self.ztx[i * d..(i + 1) * d], &self.ztx[j * d..(j + 1) * d])
    }
}

/// Scores tile `t` of a batch: each transcript of its core against its `k_bd` nearest
/// boundaries within `dist_bd`, and (with `use_cc`) links from unassigned transcripts to
/// similar neighbours.
#[allow(clippy::too_many_arguments)]
pub(crate) fn score_tile(
    cfg: &PredictConfig,
    batch: &Batch,
    tokens: Option<&[i64]>,
    t: usize,
    bounds: Option<&TileBounds>,
    ztx: &[f32],
    zbd: &[f32],
    d: usize,
    path: &Path,
) -> Result<TileResult, PredictError> {
    let g = &batch.graph;
    let (t0, t1) = (batch.tx_ptr[t], batch.tx_ptr[t + 1]);
    let (b0, b1) = (batch.bd_ptr[t], batch.bd_ptr[t + 1]);
    let pd = g.tx.pos_dim;
    let bpd = g.bd.pos_dim;
    let ids = match &g.tx.ids {
        NodeIds::Int(v) => &v[t0..t1],
        _ => {
            return Err(PredictError::Input(format!(
                "{}: tx.id: the tile has no transcript ids, so its transcripts cannot be reported",
                path.display()
            )))
        }
    };
    let n = t1 - t0;
    let pos = &g.tx.pos[t0 * pd..t1 * pd];
    let core: Vec<usize> = (0..n)
        .filter(|&i| bounds.is_none_or(|b| in_core(b, pos[i * pd], pos[i * pd + 1])))
        .collect();
    let tile = TileView {
        ids,
        pos,
        pd,
        t0,
        n,
        core,
    };
    let emb = Embeddings { ztx, zbd, d };
    let knn_error = |source| PredictError::Graph {
        path: path.to_path_buf(),
        source,
    };
    // With the expression term, every transcript of the tile (its margin too) is scored, so
    // that the boundaries' expression profiles can be estimated; otherwise the core only.
    let genes = tokens.map(|tk| &tk[t0..t1]);
    let expression = cfg.expression_weight > 0.0 && genes.is_some();
    let scored: Vec<usize> = if expression {
        (0..n).collect()
    } else {
        tile.core.clone()
    };
    let queries = tile.xy(scored.iter().copied());
    let bd_xy: Vec<f32> = (b0..b1)
        .flat_map(|j| [g.bd.pos[j * bpd], g.bd.pos[j * bpd + 1]])
        .collect();
    let cand = knn_bipartite(&queries, &bd_xy, 2, KnnParams::new(cfg.k_bd, cfg.dist_bd))
        .map_err(knn_error)?;
    // Equivalent radius of each boundary, from its area feature (column 0 of bd.x).
    let radius: Vec<f32> = match &g.bd.x {
        NodeFeatures::Dense { values, width } if *width > 0 => (b0..b1)
            .map(|j| (values[j * width].max(0.0) / std::f32::consts::PI).sqrt())
            .collect(),
        _ => vec![0.0; b1 - b0],
    };
    let c = candidates(cfg, &cand, &queries, &bd_xy, &radius, expression, |q, b| {
        emb.tx_bd(scored[q] + t0, b + b0)
    });
    let mut best = choose(&c.pairs, scored.len(), |_, _| 0.0);
    let mut context = None;
    if let (true, Some(genes)) = (expression, genes) {
        // Every transcript of the tile is scored here (`scored[q] == q`, `queries` holds the
        // x-y of all of them). A transcript counts towards its first choice's profile when it
        // passed the cut and lies within PROFILE_REACH radii of it.
        let mut member = vec![NO_CELL; n];
        for &(q, b) in &c.inner {
            if best[q].2 == b && best[q].1 >= cfg.cut() {
                member[q] = b;
            }
        }
        let profiles = ExpressionProfiles::new(genes, member, b1 - b0);
        let params = KnnParams {
            k: NEIGHBOURHOOD_SIZE,
            radius: NEIGHBOURHOOD_RADIUS,
            keep_self: true,
        };
        let nb = knn_bipartite(&queries, &queries, 2, params).map_err(knn_error)?;
        let mut hood: Vec<Vec<u32>> = vec![Vec::new(); n];
        for (q, j) in nb.src.iter().zip(&nb.dst) {
            hood[*q as usize].push(*j as u32);
        }
        context = Some((profiles, hood));
    }
    // The expression term of transcript `q` for boundary `b` (0 without it).
    let bonus = |q: usize, b: usize| match &context {
        Some((profiles, hood)) => cfg.expression_weight * profiles.mean_log_ratio(&hood[q], q, b),
        None => 0.0,
    };
    if context.is_some() {
        best = choose(&c.pairs, scored.len(), bonus);
    }
    // The best candidate within the return reach, for the transcripts left unassigned.
    let fallback_choice = if c.fallback.is_empty() {
        None
    } else {
        Some(choose(
            c.pairs.iter().chain(&c.fallback),
            scored.len(),
            bonus,
        ))
    };
    // Whether each scored transcript lies within `inner_reach` radii of its chosen boundary.
    let mut near_chosen = vec![false; scored.len()];
    for &(q, b) in &c.inside {
        if best[q].2 == b {
            near_chosen[q] = true;
        }
    }
    // Back to the core's transcripts (with the expression term every tile transcript was
    // scored; without it, the core's only).
    let core = expression.then_some(tile.core.as_slice());
    let (best, near_chosen) = (to_core(best, core), to_core(near_chosen, core));
    let (records, assigned) = records_of(cfg, &tile, tokens, &best, &near_chosen);
    let fallback = match fallback_choice.map(|fb| to_core(fb, core)) {
        Some(fb) => records
            .iter()
            .zip(&fb)
            .filter_map(|(r, &(_, score, b))| {
                (r.cell == NO_CELL && b != NO_CELL && score >= cfg.cut()).then_some((r.id, b))
            })
            .collect(),
        None => Vec::new(),
    };
    let links = if cfg.use_cc {
        component_links(cfg, &tile, &emb, &assigned).map_err(knn_error)?
    } else {
        Vec::new()
    };
    let near = if cfg.cell_types != crate::CellTypes::Off {
        tile.core
            .iter()
            .zip(&near_chosen)
            .filter(|&(_, &n)| n)
            .map(|(&i, _)| tile.ids[i])
            .collect()
    } else {
        Vec::new()
    };
    let below = if cfg.cell_types != crate::CellTypes::Off && cfg.join_neighbours > 0 {
        records
            .iter()
            .zip(&best)
            .filter(|(r, b)| r.cell == NO_CELL && b.2 != NO_CELL)
            .map(|(r, b)| (r.id, b.2))
            .collect()
    } else {
        Vec::new()
    };
    Ok(TileResult {
        records,
        links,
        near,
        below,
        fallback,
    })
}

/// The pairs of `cand` (scored transcript, boundary) within reach (and, beyond the lone reach,
/// with another candidate near: [`PredictConfig::lone_reach`]), with their ranking and
/// model logits (`logit(q, b)`), and the pairs close enough for the profiles and the inner
/// reach.
fn candidates(
    cfg: &PredictConfig,
    cand: &segger_graph::knn::EdgeList,
    queries: &[f32],
    bd_xy: &[f32],
    radius: &[f32],
    expression: bool,
    logit: impl Fn(usize, usize) -> f32,
) -> Candidates {
    let mut c = Candidates {
        pairs: Vec::with_capacity(cand.src.len()),
        inner: Vec::new(),
        inside: Vec::new(),
        fallback: Vec::new(),
    };
    let dist = |q: usize, b: usize| {
        (queries[2 * q] - bd_xy[2 * b]).hypot(queries[2 * q + 1] - bd_xy[2 * b + 1])
    };
    // per transcript, the two nearest candidates in their own radii (the lone reach only)
    let mut nearest = Vec::new();
    if cfg.lone_reach > 0.0 {
        nearest = vec![[(f32::INFINITY, usize::MAX); 2]; queries.len() / 2];
        for (q, b) in cand.src.iter().zip(&cand.dst) {
            let (q, b) = (*q as usize, *b as usize);
            if radius[b] > 0.0 {
                let r = dist(q, b) / radius[b];
                let n = &mut nearest[q];
                if r < n[0].0 {
                    n[1] = n[0];
                    n[0] = (r, b);
                } else if r < n[1].0 {
                    n[1] = (r, b);
                }
            }
        }
    }
    for (q, b) in cand.src.iter().zip(&cand.dst) {
        let (q, b) = (*q as usize, *b as usize);
        let dist = dist(q, b);
        let mut kept = !(cfg.reach > 0.0 && radius[b] > 0.0 && dist > cfg.reach * radius[b]);
        if kept && cfg.lone_reach > 0.0 && radius[b] > 0.0 && dist > cfg.lone_reach * radius[b] {
            let n = nearest[q];
            let other = if n[0].1 == b { n[1].0 } else { n[0].0 };
            kept = other <= LONE_RATIO * dist / radius[b];
        }
        let returns =
            cfg.return_reach > 0.0 && (radius[b] <= 0.0 || dist <= cfg.return_reach * radius[b]);
        if !kept && !returns {
            continue;
        }
        let raw = logit(q, b);
        let mut rank = raw;
        if cfg.distance_scale > 0.0 {
            rank -= (dist - radius[b]).max(0.0) / cfg.distance_scale;
        }
        if !kept {
            c.fallback.push((q, b, rank, raw));
            continue;
        }
        if expression && dist <= PROFILE_REACH * radius[b] {
            c.inner.push((q, b as u32));
        }
        if dist <= cfg.inner_reach * radius[b] {
            c.inside.push((q, b as u32));
        }
        c.pairs.push((q, b, rank, raw));
    }
    c
}

/// Per scored transcript (of `n`), its best candidate in `pairs` by ranking logit plus
/// `bonus(q, b)`: (choice key, model score with the bonus, boundary), or
/// `(NaN, NaN, NO_CELL)` without candidates.
fn choose<'a>(
    pairs: impl IntoIterator<Item = &'a (usize, usize, f32, f32)>,
    n: usize,
    bonus: impl Fn(usize, usize) -> f32,
) -> Vec<(f32, f32, u32)> {
    let mut best: Vec<(f32, f32, u32)> = vec![(f32::NAN, f32::NAN, NO_CELL); n];
    for &(q, b, logit, raw) in pairs {
        let e = bonus(q, b);
        let key = logit + e;
        let cur = &mut best[q];
        if cur.0.is_nan() || key > cur.0 {
            *cur = (key, sigmoid(raw + e), b as u32);
        }
    }
    best
}

/// `v` (one value per scored transcript) in the order of the tile's core: `core`'s entries
/// when every tile transcript was scored, `v` itself when only the core was.
fn to_core<T: Copy>(v: Vec<T>, core: Option<&[usize]>) -> Vec<T> {
    match core {
        Some(core) => core.iter().map(|&i| v[i]).collect(),
        None => v,
    }
}

/// The records of the tile's core from each core transcript's choice (`best`, and whether it
/// lies within the inner reach of it), and which tile transcripts were assigned.
fn records_of(
    cfg: &PredictConfig,
    tile: &TileView<'_>,
    tokens: Option<&[i64]>,
    best: &[(f32, f32, u32)],
    near_chosen: &[bool],
) -> (Vec<TxRecord>, Vec<bool>) {
    let (pos, pd) = (tile.pos, tile.pd);
    let mut records = Vec::with_capacity(tile.core.len());
    let mut assigned = vec![false; tile.n];
    for (q, &i) in tile.core.iter().enumerate() {
        let (_, score, b) = best[q];
        let cell = if score >= cfg.cut() || (b != NO_CELL && near_chosen[q]) {
            b
        } else {
            NO_CELL
        };
        assigned[i] = cell != NO_CELL;
        records.push(TxRecord {
            id: tile.ids[i],
            x: pos[i * pd],
            y: pos[i * pd + 1],
            z: if pd == 3 { pos[i * pd + 2] } else { f32::NAN },
            gene: tokens.map_or(NO_GENE, |tk| tk[tile.t0 + i] as u32),
            cell,
            score,
        });
    }
    (records, assigned)
}

/// Links (by id) from each unassigned core transcript to its `k_tx` nearest neighbours within
/// `dist_tx` that are unassigned too and whose model score with it passes the cut.
fn component_links(
    cfg: &PredictConfig,
    tile: &TileView<'_>,
    emb: &Embeddings<'_>,
    assigned: &[bool],
) -> Result<Vec<(i64, i64)>, segger_graph::GraphError> {
    let unassigned: Vec<usize> = tile
        .core
        .iter()
        .copied()
        .filter(|&i| !assigned[i])
        .collect();
    let mut links = Vec::new();
    if unassigned.is_empty() {
        return Ok(links);
    }
    // Links are found in the section's plane (x, y): z spans the section's thickness, which is
    // of the order of a cell, and would keep most pairs beyond `dist_tx`.
    let xy = tile.xy(0..tile.n);
    let q = tile.xy(unassigned.iter().copied());
    let params = KnnParams {
        k: cfg.k_tx + 1,
        radius: cfg.dist_tx,
        keep_self: true,
    };
    let nb = knn_bipartite(&q, &xy, 2, params)?;
    let mut taken = vec![0usize; unassigned.len()];
    for (qi, j) in nb.src.iter().zip(&nb.dst) {
        let (qi, j) = (*qi as usize, *j as usize);
        let i = unassigned[qi];
        if j == i || taken[qi] >= cfg.k_tx {
            continue;
        }
        taken[qi] += 1;
        if assigned[j] {
            continue;
        }
        if sigmoid(emb.tx_tx(tile.t0 + i, tile.t0 + j)) >= cfg.cut() {
            links.push((tile.ids[i], tile.ids[j]));
        }
    }
    Ok(links)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Beyond the lone reach a boundary keeps a transcript only when another candidate lies
    /// within `LONE_RATIO` times the distance (each in its own radii); within it, always.
    #[test]
    fn beyond_the_lone_reach_a_boundary_needs_a_neighbour_near_the_transcript() {
        // boundaries (radius 1): 0 at the origin, 1 at x = 5, 2 at x = 20 (radius 2)
        let bd_xy = [0.0f32, 0.0, 5.0, 0.0, 20.0, 0.0];
        let radius = [1.0f32, 1.0, 2.0];
        // transcripts: 0 at x = 2.2 (2.2 radii of boundary 0, 2.8 of boundary 1: shared);
        // 1 at x = -2.2 (7.2 radii of boundary 1: alone with boundary 0); 2 at x = -1.8
        // (within the lone reach); 3 at x = 15.5 (2.25 radii of boundary 2, 10.5 of 1)
        let queries = [2.2f32, 0.0, -2.2, 0.0, -1.8, 0.0, 15.5, 0.0];
        let cand = segger_graph::knn::EdgeList {
            src: vec![0, 0, 1, 1, 2, 2, 3, 3],
            dst: vec![0, 1, 0, 1, 0, 1, 2, 1],
        };
        let mut cfg = PredictConfig::new("m".into(), "i".into(), "o".into());
        cfg.reach = 2.5;
        // (scored index, boundary) of the kept pairs and of the pairs set aside for the return
        let lists = |cfg: &PredictConfig| -> [Vec<(usize, usize)>; 2] {
            let c = candidates(cfg, &cand, &queries, &bd_xy, &radius, false, |_, _| 0.0);
            [&c.pairs, &c.fallback].map(|l| l.iter().map(|p| (p.0, p.1)).collect())
        };
        let pairs = |cfg: &PredictConfig| lists(cfg)[0].clone();
        let fallback = |cfg: &PredictConfig| lists(cfg)[1].clone();
        cfg.lone_reach = 2.0;
        assert_eq!(pairs(&cfg), vec![(0, 0), (2, 0)]);
        cfg.lone_reach = 0.0;
        assert_eq!(pairs(&cfg), vec![(0, 0), (1, 0), (2, 0), (3, 2)]);
        // a lone reach at the reach changes nothing
        cfg.lone_reach = 2.5;
        assert_eq!(pairs(&cfg), vec![(0, 0), (1, 0), (2, 0), (3, 2)]);
        // the pairs the limits leave out within the return reach fall back, the others not
        cfg.return_reach = 0.0;
        cfg.lone_reach = 2.0;
        assert!(fallback(&cfg).is_empty());
        cfg.return_reach = 2.5;
        // 1 → 0 (alone beyond the lone reach), 3 → 2 (same); 0 → 1 is 2.8 radii: beyond
        assert_eq!(fallback(&cfg), vec![(1, 0), (3, 2)]);
        assert_eq!(pairs(&cfg), vec![(0, 0), (2, 0)]);
        cfg.reach = 2.0;
        assert_eq!(fallback(&cfg), vec![(0, 0), (1, 0), (3, 2)]);
        assert_eq!(pairs(&cfg), vec![(2, 0)]);
    }

    #[test]
    fn expression_profiles_favour_the_boundary_whose_genes_a_neighbourhood_shares() {
        // Boundary 0 holds five transcripts of gene 0, boundary 1 five of gene 1; transcript 10
        // (gene 0) belongs to neither.
        let genes: Vec<i64> = [0; 5].into_iter().chain([1; 5]).chain([0]).collect();
        let member: Vec<u32> = [0; 5].into_iter().chain([1; 5]).chain([NO_CELL]).collect();
        let p = ExpressionProfiles::new(&genes, member, 2);
        // Tile: gene 0 six of 11 (+1 pseudo-count each): p(0) = 7/13.
        let p0 = 7.0f32 / 13.0;
        let expect = |count: f32, total: f32| {
            ((count + PROFILE_PRIOR * p0) / (total + PROFILE_PRIOR) / p0).ln()
        };
        let hood = [10u32, 0, 1];
        let to0 = p.mean_log_ratio(&hood, 10, 0);
        let to1 = p.mean_log_ratio(&hood, 10, 1);
        assert!((to0 - expect(5.0, 5.0)).abs() < 1e-5, "{to0}");
        assert!((to1 - expect(0.0, 5.0)).abs() < 1e-5, "{to1}");
        assert!(to0 > 0.0 && to1 < 0.0);
        // A member is left out of its own boundary's profile: weaker evidence.
        let own = p.mean_log_ratio(&[0], 0, 0);
        assert!((own - expect(4.0, 4.0)).abs() < 1e-5, "{own}");
        assert!(own < to0);
    }
}
