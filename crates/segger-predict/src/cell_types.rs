//! Cell types after assignment (`predict --cell_types K`): each transcript gets one of K
//! expression types from its neighbourhood; a transcript whose type is clearly not its
//! boundary's leaves it; new cells are linked only between transcripts of one type and cut to
//! the sample's typical cell size.
//!
//! 1. Neighbourhood: the genes of each transcript's `NEIGHBOURS` nearest transcripts in x-y,
//!    itself included (`segger_graph::knn::knn_same_rows`).
//! 2. Types: k-means of the neighbourhood compositions (gene shares) into K, from k-means++
//!    seeds, the best of `RESTARTS` starts (least inertia), fitted on an even sample of at
//!    most `KMEANS_SAMPLE` transcripts; then `REFINE` rounds of a
//!    multinomial naive Bayes: each type's gene profile from the transcripts it holds (+1
//!    pseudo-count), each transcript's type the one maximising the log-likelihood of its
//!    neighbourhood's genes plus `OWN_WEIGHT` times its own gene's.
//! 3. A boundary's type is the most common type among its transcripts. A transcript whose
//!    boundary's type is worse than its own by more than `MARGIN` nats is unassigned, unless
//!    it lies within the inner reach of the boundary (`--inner_reach` equivalent radii of its
//!    centroid: the nucleus and its rim). Such a transcript is *unconfirmed* when the
//!    neighbours in its boundary's cell do not confirm it: the same log-likelihood over only
//!    those of its `NEIGHBOURS` nearest transcripts that are in that cell (and its own gene)
//!    does not put the boundary's type `MARGIN` nats behind the best (a transcript at the
//!    edge between two cells of different types, whose neighbourhood mixes both).
//! 4. A transcript whose chosen boundary (within `--reach`) scored below the cut joins it when
//!    the boundary's type is its own and at least `--join_neighbours` (default
//!    `JOIN_NEIGHBOURS`) of its `NEIGHBOURS`
//!    nearest transcripts are already in the boundary's cell (the neighbourhood the cut left
//!    at the edge of a cell of its type).
//! 5. Unassigned transcripts of one type within `LINK` neighbourhood radii (the sample's
//!    median distance from a transcript to the farthest of its `NEIGHBOURS` nearest) are
//!    joined; a component of at least `MIN_COMPONENT` transcripts becomes round(size /
//!    typical) cells (k-means in x-y), the typical size being the median transcript count of
//!    the boundaries' cells.
//! 6. An unconfirmed transcript (step 3) that joined no new cell goes back to its boundary.
//! 7. Borders of the new cells (`--border_rounds`, default `BORDER_ROUNDS`): in each round,
//!    every assigned transcript within `BORDER_NEIGHBOURS` neighbours of a new cell weighs the
//!    cells of its `BORDER_NEIGHBOURS` nearest transcripts (Gaussian weights of width
//!    `BORDER_WIDTH` neighbourhood radii; its own cell with weight 1) and takes the cell that
//!    maximises log(weight) + log P(its gene | the cell's type), the cell's type being the
//!    most common among its transcripts. Only moves into or out of a new cell are made; all
//!    transcripts move at once, from the assignment of the round before. The nucleus and its
//!    rim are not protected here: a nuclear transcript whose neighbours and gene favour the
//!    new cell beside it is mostly one that diffused, or the nucleus is one of two merged
//!    (protecting them halves what the step gains on the simulated tissues).
//!
//! Measured on simulated tissue in docs/accuracy.md ("Cell types").

use std::collections::HashMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use segger_graph::knn::{
    knn_bipartite, knn_bipartite_rows, knn_same, knn_same_rows, KnnParams, NO_NEIGHBOUR,
};

use crate::state::{CellKind, CellTable, TxRecord, UnionFind, NO_CELL, NO_GENE};

/// Transcripts in a neighbourhood (the transcript itself included).
pub const NEIGHBOURS: usize = 10;
/// k-means starts; the one with the least inertia is kept.
pub const RESTARTS: u64 = 10;
/// Lloyd iterations per start.
const ITERATIONS: usize = 60;
/// Transcripts k-means is fitted on (an even sample of the sample).
pub const KMEANS_SAMPLE: usize = 200_000;
/// Naive-Bayes rounds after k-means.
pub const REFINE: usize = 5;
/// Weight of a transcript's own gene against its neighbourhood's.
pub const OWN_WEIGHT: f32 = 5.0;
/// Log-likelihood (nats) by which a boundary's type must lose to unassign a transcript.
pub const MARGIN: f32 = 3.0;
/// The default of [`Join::neighbours`] (`--join_neighbours`): a transcript whose chosen
/// boundary scored below the cut joins it when the boundary's type is its own and at least
/// this many of its `NEIGHBOURS` nearest transcripts (itself included) are already in the
/// boundary's cell.
pub const JOIN_NEIGHBOURS: usize = 3;
/// Largest link between two unassigned transcripts of one type (x-y), in neighbourhood radii:
/// the sample's median distance from a transcript to the farthest of its [`NEIGHBOURS`] nearest
/// (itself among them), so that the link follows the sample's density (that radius is 2.7 µm
/// on the simulated tissues of docs/accuracy.md, links up to 3.5 µm; 1.8 µm on the lung
/// preview).
pub const LINK: f32 = 1.3;
/// Smallest component that becomes cells.
pub const MIN_COMPONENT: usize = 10;
/// Links searched per transcript.
const LINK_NEIGHBOURS: usize = 32;
/// The default of `--border_rounds`: rounds of the border refinement of the new cells (step 7
/// of the module doc); 0 turns it off.
pub const BORDER_ROUNDS: usize = 3;
/// The most `--border_rounds` accepts.
pub const MAX_BORDER_ROUNDS: usize = 10;
/// Nearest transcripts a transcript weighs in the border refinement (itself not among them).
pub const BORDER_NEIGHBOURS: usize = 20;
/// Transcripts of the new cells whose neighbours the border refinement searches at a time.
const BORDER_CHUNK: usize = 1 << 20;
/// Width (standard deviation) of a neighbour's Gaussian weight in the border refinement, in
/// neighbourhood radii (2 µm on the simulated tissues of docs/accuracy.md); neighbours beyond
/// three widths are not weighed.
pub const BORDER_WIDTH: f32 = 0.75;
/// The largest number of types [`choose_types`] tries.
pub const AUTO_MAX: usize = 30;
/// [`choose_types`] stops after this many numbers of types in a row that do not improve on
/// the best.
pub const AUTO_PATIENCE: usize = 2;

/// What the stage did.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct TypeStats {
    /// Number of types.
    pub types: usize,
    /// Transcripts per type.
    pub per_type: Vec<usize>,
    /// Transcripts taken back from their boundary.
    pub vetoed: usize,
    /// Of those, the ones the neighbours in their boundary's cell did not confirm and that
    /// joined no new cell: back in their boundary.
    pub returned: usize,
    /// Transcripts whose chosen boundary scored below the cut that joined it (its type theirs,
    /// enough of their neighbourhood in its cell: [`Join`]).
    pub joined: usize,
    /// New cells made from the typed components.
    pub new_cells: usize,
    /// The typical cell size (transcripts) the components were cut to.
    pub typical_size: usize,
    /// The largest link within a new cell's component, in µm ([`LINK`] neighbourhood radii).
    pub link: f32,
    /// With the number of types chosen from the data: the criterion (BIC, lower is better) of
    /// each number tried.
    pub criterion: Vec<(usize, f64)>,
    /// Transcripts the border refinement moved into or out of a new cell (step 7 of the module
    /// doc), each counted once.
    pub border_moved: usize,
}

impl TypeStats {
    /// Whether the stage changed the assignment (two types or more were used).
    pub fn applied(&self) -> bool {
        self.types >= 2 && !self.per_type.is_empty()
    }
}

/// The transcripts with a gene, read in place: `sub[j]` is `records[idx[j]]`.
#[derive(Clone, Copy)]
struct Sub<'a> {
    records: &'a [TxRecord],
    idx: &'a [usize],
}

impl<'a> Sub<'a> {
    fn new(records: &'a [TxRecord], idx: &'a [usize]) -> Self {
        Self { records, idx }
    }

    fn len(&self) -> usize {
        self.idx.len()
    }

    /// x, y of each transcript, interleaved.
    fn xy(&self) -> Vec<f32> {
        self.idx
            .iter()
            .flat_map(|&i| [self.records[i].x, self.records[i].y])
            .collect()
    }
}

impl std::ops::Index<usize> for Sub<'_> {
    type Output = TxRecord;

    fn index(&self, j: usize) -> &TxRecord {
        &self.records[self.idx[j]]
    }
}

/// Per-transcript neighbourhood genes (`NEIGHBOURS` per row, gene ids) of `sub`: the
/// neighbour rows are searched straight into the output and their indices replaced by genes in
/// place, so the stage holds four bytes per neighbour.
/// Also returns the neighbourhood radius: the median distance from a transcript to the farthest
/// of its neighbours (0 when no row is full).
fn neighbourhoods(sub: Sub<'_>, genes: &[u32]) -> (Vec<u32>, f32) {
    let pts = sub.xy();
    let params = KnnParams {
        k: NEIGHBOURS,
        radius: f32::MAX,
        keep_self: true,
    };
    let mut out = knn_same_rows(&pts, 2, params)
        .expect("2-D points, fewer than 2³² transcripts")
        .index;
    // squared distances to the farthest neighbour of each full row
    let mut far: Vec<f32> = out
        .par_chunks(NEIGHBOURS)
        .enumerate()
        .filter(|(_, row)| row[NEIGHBOURS - 1] != NO_NEIGHBOUR)
        .map(|(i, row)| {
            row.iter()
                .map(|&j| {
                    let (dx, dy) = (
                        pts[2 * i] - pts[2 * j as usize],
                        pts[2 * i + 1] - pts[2 * j as usize + 1],
                    );
                    dx * dx + dy * dy
                })
                .fold(0.0, f32::max)
        })
        .collect();
    let radius = if far.is_empty() {
        0.0
    } else {
        let mid = far.len() / 2;
        far.select_nth_unstable_by(mid, f32::total_cmp).1.sqrt()
    };
    drop(far);
    drop(pts);
    // a row with fewer than NEIGHBOURS points (a tiny sample) is padded with the transcript's
    // own gene
    out.par_chunks_mut(NEIGHBOURS)
        .zip(genes.par_iter())
        .for_each(|(row, &own)| {
            for s in row {
                *s = if *s == NO_NEIGHBOUR {
                    own
                } else {
                    genes[*s as usize]
                };
            }
        });
    (out, radius)
}

/// Squared distance between a neighbourhood's composition and a dense centre, given the
/// centre's squared norm: |v|² − 2 v·c + |c|².
fn sq_dist(nb: &[u32], norm_v: f32, centre: &[f32], norm_c: f32) -> f32 {
    let w = 1.0 / NEIGHBOURS as f32;
    let dot: f32 = nb.iter().map(|&g| centre[g as usize] * w).sum();
    (norm_v - 2.0 * dot + norm_c).max(0.0)
}

/// Squared norm of a neighbourhood's composition, summed over its genes in ascending order
/// (a fixed order, so the result does not depend on the run).
fn composition_norm(nb: &[u32]) -> f32 {
    let mut sorted = nb.to_vec();
    sorted.sort_unstable();
    let w = 1.0 / NEIGHBOURS as f32;
    sorted
        .chunk_by(|a, b| a == b)
        .map(|run| (run.len() as f32 * w).powi(2))
        .sum()
}

fn dense(nb: &[u32], n_genes: usize) -> Vec<f32> {
    let mut v = vec![0.0; n_genes];
    for &g in nb {
        v[g as usize] += 1.0 / NEIGHBOURS as f32;
    }
    v
}

/// k-means of the compositions into `k`: (labels, inertia).
fn kmeans_start(
    nbs: &[u32],
    norms: &[f32],
    n_genes: usize,
    k: usize,
    seed: u64,
) -> (Vec<u16>, f64) {
    let n = norms.len();
    let row = |i: usize| &nbs[i * NEIGHBOURS..(i + 1) * NEIGHBOURS];
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut centres: Vec<Vec<f32>> = vec![dense(row(rng.random_range(0..n)), n_genes)];
    let mut best_d: Vec<f32> = vec![f32::INFINITY; n];
    while centres.len() < k {
        let c = centres.last().expect("one centre");
        let nc: f32 = c.iter().map(|x| x * x).sum();
        best_d
            .par_iter_mut()
            .enumerate()
            .for_each(|(i, d)| *d = d.min(sq_dist(row(i), norms[i], c, nc)));
        let total: f64 = best_d.iter().map(|&d| d as f64).sum();
        let pick = if total > 0.0 {
            let mut t = rng.random::<f64>() * total;
            let mut pick = n - 1;
            for (i, &d) in best_d.iter().enumerate() {
                t -= d as f64;
                if t <= 0.0 {
                    pick = i;
                    break;
                }
            }
            pick
        } else {
            rng.random_range(0..n)
        };
        centres.push(dense(row(pick), n_genes));
    }
    let mut labels = vec![0u16; n];
    let mut inertia = 0.0;
    for _ in 0..ITERATIONS {
        let norms_c: Vec<f32> = centres
            .iter()
            .map(|c| c.iter().map(|x| x * x).sum())
            .collect();
        let assigned: Vec<(u16, f32)> = (0..n)
            .into_par_iter()
            .map(|i| {
                let mut best = (0u16, f32::INFINITY);
                for (q, c) in centres.iter().enumerate() {
                    let d = sq_dist(row(i), norms[i], c, norms_c[q]);
                    if d < best.1 {
                        best = (q as u16, d);
                    }
                }
                best
            })
            .collect();
        inertia = assigned.iter().map(|&(_, d)| d as f64).sum();
        let changed = assigned.iter().zip(&labels).any(|(&(a, _), &b)| a != b);
        for (l, &(a, _)) in labels.iter_mut().zip(&assigned) {
            *l = a;
        }
        let mut sums = vec![vec![0.0f32; n_genes]; k];
        let mut counts = vec![0usize; k];
        for (i, &l) in labels.iter().enumerate() {
            let q = l as usize;
            counts[q] += 1;
            for &g in row(i) {
                sums[q][g as usize] += 1.0 / NEIGHBOURS as f32;
            }
        }
        for q in 0..k {
            if counts[q] > 0 {
                centres[q] = sums[q].iter().map(|s| s / counts[q] as f32).collect();
            }
        }
        if !changed {
            break;
        }
    }
    (labels, inertia)
}

/// Each type's log gene profile from the transcripts it holds (+1 pseudo-count).
fn log_profiles(labels: &[u16], genes: &[u32], k: usize, n_genes: usize) -> Vec<Vec<f32>> {
    let mut counts = vec![vec![1.0f64; n_genes]; k];
    for (&l, &g) in labels.iter().zip(genes) {
        counts[l as usize][g as usize] += 1.0;
    }
    counts
        .into_iter()
        .map(|c| {
            let total: f64 = c.iter().sum();
            c.iter().map(|x| (x / total).ln() as f32).collect()
        })
        .collect()
}

/// Log-likelihood of transcript `i` under each type: its neighbourhood's genes plus
/// `OWN_WEIGHT` times its own.
fn log_likelihood(nb: &[u32], own: u32, logp: &[Vec<f32>]) -> Vec<f32> {
    logp.iter()
        .map(|lp| nb.iter().map(|&g| lp[g as usize]).sum::<f32>() + OWN_WEIGHT * lp[own as usize])
        .collect()
}

/// Assigns types, takes back transcripts whose boundary is of another type (never those whose
/// id is in `protected`, sorted: the nucleus and its rim), and replaces the component cells
/// with typed components, as `stage` says ([`Stage`]). When the number of types is chosen from
/// the data and that chooses one type, nothing changes and the stats say so
/// ([`TypeStats::applied`]). `records` keep their order; new cells are added to `cells` with
/// ids from `next_id`. Transcripts without a gene keep their assignment and take no part.
pub fn apply(
    records: &mut [TxRecord],
    cells: &mut CellTable,
    protected: &[i64],
    stage: Stage<'_>,
    mut next_id: impl FnMut() -> String,
) -> TypeStats {
    let Stage {
        join,
        k,
        make_cells,
        border_rounds,
    } = stage;
    let idx: Vec<usize> = (0..records.len())
        .filter(|&i| records[i].gene != NO_GENE)
        .collect();
    let n = idx.len();
    let too_few = |k: usize| TypeStats {
        types: k,
        ..TypeStats::default()
    };
    if n < NEIGHBOURS || k.is_some_and(|k| k < 2 || n < k) {
        return too_few(k.unwrap_or(1));
    }
    // the transcripts with a gene are read through `idx` ([`Sub`]), not copied
    let genes: Vec<u32> = idx.iter().map(|&i| records[i].gene).collect();
    let n_genes = genes.iter().copied().max().unwrap_or(0) as usize + 1;
    let (nbs, hood_radius) = neighbourhoods(Sub::new(records, &idx), &genes);
    let row = |i: usize| &nbs[i * NEIGHBOURS..(i + 1) * NEIGHBOURS];
    let norms: Vec<f32> = (0..n)
        .into_par_iter()
        .map(|i| composition_norm(row(i)))
        .collect();
    // k-means on an even sample of at most KMEANS_SAMPLE transcripts; the naive-Bayes rounds
    // then type every transcript
    let step = n.div_ceil(KMEANS_SAMPLE);
    let sample: Vec<usize> = (0..n).step_by(step).collect();
    let s_nbs: Vec<u32> = sample
        .iter()
        .flat_map(|&i| row(i).iter().copied())
        .collect();
    let s_norms: Vec<f32> = sample.iter().map(|&i| norms[i]).collect();
    let s_genes: Vec<u32> = sample.iter().map(|&i| genes[i]).collect();
    let fit = |k: usize| {
        (0..RESTARTS)
            .map(|s| kmeans_start(&s_nbs, &s_norms, n_genes, k, s))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .expect("at least one start")
            .0
    };
    let (k, s_labels, criterion) = match k {
        Some(k) => (k, fit(k), Vec::new()),
        None => {
            let chosen = choose_types(&s_nbs, &s_norms, &s_genes, n_genes, fit);
            match chosen.labels {
                Some(labels) => (chosen.k, labels, chosen.criterion),
                None => {
                    return TypeStats {
                        criterion: chosen.criterion,
                        ..too_few(1)
                    }
                }
            }
        }
    };
    let (labels, logp, per_type) = refine(
        &nbs,
        &genes,
        log_profiles(&s_labels, &s_genes, k, n_genes),
        n_genes,
    );

    // the type of each boundary cell: the most common among its transcripts
    let mut votes: HashMap<u32, Vec<usize>> = HashMap::new();
    for (j, &i) in idx.iter().enumerate() {
        let r = &records[i];
        if r.cell != NO_CELL && cells.kinds[r.cell as usize] == CellKind::Boundary {
            votes.entry(r.cell).or_insert_with(|| vec![0; k])[labels[j] as usize] += 1;
        }
    }
    let cell_type: HashMap<u32, usize> = votes
        .iter()
        .map(|(&c, v)| {
            let best = (0..k)
                .max_by_key(|&q| (v[q], std::cmp::Reverse(q)))
                .expect("k ≥ 2");
            (c, best)
        })
        .collect();
    let mut sizes: Vec<usize> = votes.values().map(|v| v.iter().sum()).collect();
    sizes.sort_unstable();
    let typical = sizes.get(sizes.len() / 2).copied().unwrap_or(1).max(1);

    // (index, boundary cell) of the transcripts the veto takes from their boundary (step 3 of
    // the module doc); one that joins below the cut (step 4) is unassigned now, so never here
    let vetoed: Vec<(usize, u32)> = (0..n)
        .filter_map(|j| {
            let c = records[idx[j]].cell;
            if c == NO_CELL
                || cells.kinds[c as usize] == CellKind::Component
                || protected.binary_search(&records[idx[j]].id).is_ok()
            {
                return None;
            }
            let ct = cell_type[&c];
            if ct == labels[j] as usize {
                return None;
            }
            let ll = log_likelihood(row(j), genes[j], &logp);
            (ll[labels[j] as usize] - ll[ct] > MARGIN).then_some((j, c))
        })
        .collect();
    // the join candidates' and the vetoed transcripts' nearest neighbours, in one search
    let cand = join_candidates(Sub::new(records, &idx), &labels, join, &cell_type);
    let at: Vec<(usize, u32)> = cand.iter().chain(&vetoed).copied().collect();
    let mut near = vec![Vec::with_capacity(NEIGHBOURS); at.len()];
    for (a, b) in nearest(Sub::new(records, &idx), &at) {
        near[a].push(b);
    }
    let (cand_near, vetoed_near) = near.split_at(cand.len());
    // below-cut transcripts that join their chosen boundary (step 4)
    let joined = join_below_cut(Sub::new(records, &idx), &cand, cand_near, join.neighbours);
    for &(j, c) in &joined {
        records[idx[j]].cell = c;
    }
    let unconfirmed = unconfirmed(
        Sub::new(records, &idx),
        &genes,
        &logp,
        &vetoed,
        vetoed_near,
        &cell_type,
    );
    let mut free = vec![false; n];
    let mut joined_at = joined.iter().map(|&(j, _)| j).peekable();
    let mut vetoed_at = vetoed.iter().map(|&(j, _)| j).peekable();
    for j in 0..n {
        if joined_at.next_if_eq(&j).is_some() {
            continue;
        }
        let c = records[idx[j]].cell;
        let taken = vetoed_at.next_if_eq(&j).is_some();
        if taken || c == NO_CELL || cells.kinds[c as usize] == CellKind::Component {
            free[j] = true;
            records[idx[j]].cell = NO_CELL;
        }
    }

    // typed components of the free transcripts
    let link = LINK * hood_radius;
    let fidx: Vec<usize> = (0..n).filter(|&j| free[j] && make_cells).collect();
    let pts: Vec<f32> = fidx
        .iter()
        .flat_map(|&j| [records[idx[j]].x, records[idx[j]].y])
        .collect();
    let mut uf = UnionFind::new(fidx.len());
    if fidx.len() > 1 {
        let e = knn_same(&pts, 2, KnnParams::new(LINK_NEIGHBOURS, link)).expect("2-D points");
        for (&a, &b) in e.src.iter().zip(&e.dst) {
            if labels[fidx[a as usize]] == labels[fidx[b as usize]] {
                uf.union(a as u32, b as u32);
            }
        }
    }
    let mut members: HashMap<u32, Vec<usize>> = HashMap::new();
    for f in 0..fidx.len() {
        members.entry(uf.find(f as u32)).or_default().push(f);
    }
    let mut comps: Vec<Vec<usize>> = members
        .into_values()
        .filter(|m| m.len() >= MIN_COMPONENT)
        .collect();
    // deterministic order: by the smallest member
    comps.sort_by_key(|m| m[0]);
    let mut new_cells = 0;
    for m in comps {
        let parts = ((m.len() as f64 / typical as f64).round() as usize).max(1);
        let xy: Vec<[f32; 2]> = m.iter().map(|&f| [pts[2 * f], pts[2 * f + 1]]).collect();
        let part = if parts == 1 {
            vec![0usize; m.len()]
        } else {
            split_xy(&xy, parts)
        };
        let ids: Vec<u32> = (0..parts)
            .map(|_| cells.push_component(next_id()))
            .collect();
        let mut used = vec![false; parts];
        for (&f, &p) in m.iter().zip(&part) {
            records[idx[fidx[f]]].cell = ids[p];
            used[p] = true;
        }
        new_cells += used.iter().filter(|&&u| u).count();
    }
    let mut returned = 0;
    for (j, c) in unconfirmed {
        let r = &mut records[idx[j]];
        if r.cell == NO_CELL {
            r.cell = c;
            returned += 1;
        }
    }
    drop(nbs);
    let border_moved = if new_cells > 0 && border_rounds > 0 {
        let border = Border {
            idx: &idx,
            genes: &genes,
            labels: &labels,
            logp: &logp,
            kinds: &cells.kinds,
            width: BORDER_WIDTH * hood_radius,
        };
        border.refine(records, border_rounds)
    } else {
        0
    };
    TypeStats {
        types: k,
        per_type,
        vetoed: vetoed.len(),
        returned,
        joined: joined.len(),
        new_cells,
        typical_size: typical,
        link,
        criterion,
        border_moved,
    }
}

/// The border refinement of the new cells (step 7 of the module doc), over the transcripts
/// with a gene (at `idx` in the records).
struct Border<'a> {
    idx: &'a [usize],
    /// Each transcript's gene.
    genes: &'a [u32],
    /// Each transcript's type.
    labels: &'a [u16],
    /// Each type's log gene profile.
    logp: &'a [Vec<f32>],
    kinds: &'a [CellKind],
    /// Width of the Gaussian weights, µm.
    width: f32,
}

impl Border<'_> {
    /// Runs `rounds` rounds on `records`; returns how many transcripts ended in another cell.
    fn refine(&self, records: &mut [TxRecord], rounds: usize) -> usize {
        let n = self.idx.len();
        let start: Vec<u32> = self.idx.iter().map(|&i| records[i].cell).collect();
        let all = Sub::new(records, self.idx).xy();
        let params = KnnParams::new(
            BORDER_NEIGHBOURS + 1,
            3.0 * self.width.max(f32::MIN_POSITIVE),
        );
        let rows_of = |at: &[usize]| {
            let q: Vec<f32> = at
                .iter()
                .flat_map(|&j| [all[2 * j], all[2 * j + 1]])
                .collect();
            knn_bipartite_rows(&q, &all, 2, params).expect("2-D points, fewer than 2³² transcripts")
        };
        // the transcripts that may move: those of the new cells and the assigned ones among
        // their neighbours
        let in_new: Vec<usize> = (0..n)
            .filter(|&j| {
                start[j] != NO_CELL && self.kinds[start[j] as usize] == CellKind::Component
            })
            .collect();
        let mut near = vec![false; n];
        for &j in &in_new {
            near[j] = true;
        }
        // in chunks, so that the search holds at most BORDER_CHUNK rows at a time
        for chunk in in_new.chunks(BORDER_CHUNK) {
            for &d in &rows_of(chunk).index {
                if d != NO_NEIGHBOUR && start[d as usize] != NO_CELL {
                    near[d as usize] = true;
                }
            }
        }
        drop(in_new);
        let movable: Vec<usize> = (0..n).filter(|&j| near[j]).collect();
        drop(near);
        let rows = rows_of(&movable);
        let k = self.logp.len();
        let mut cur = start.clone();
        for _ in 0..rounds {
            let types = self.cell_types(&cur, k);
            let next: Vec<(usize, u32)> = movable
                .par_iter()
                .enumerate()
                .filter_map(|(m, &j)| {
                    let row = &rows.index[m * rows.k..(m + 1) * rows.k];
                    let to = self.choose(j, row, &cur, &types, &all);
                    (to != cur[j]).then_some((j, to))
                })
                .collect();
            if next.is_empty() {
                break;
            }
            for (j, to) in next {
                cur[j] = to;
            }
        }
        let mut moved = 0;
        for j in 0..n {
            if cur[j] != start[j] {
                records[self.idx[j]].cell = cur[j];
                moved += 1;
            }
        }
        moved
    }

    /// Each cell's type: the most common among its transcripts (`u16::MAX` for an empty cell).
    fn cell_types(&self, cur: &[u32], k: usize) -> Vec<u16> {
        let mut counts = vec![0u32; self.kinds.len() * k];
        for (&c, &l) in cur.iter().zip(self.labels) {
            if c != NO_CELL {
                counts[c as usize * k + l as usize] += 1;
            }
        }
        counts
            .chunks_exact(k)
            .map(
                |v| match (0..k).max_by_key(|&q| (v[q], std::cmp::Reverse(q))) {
                    Some(q) if v[q] > 0 => q as u16,
                    _ => u16::MAX,
                },
            )
            .collect()
    }

    /// The cell transcript `j` takes in a round, from its neighbours' cells `cur` (`row`: its
    /// nearest transcripts, itself possibly among them). `j` is assigned: [`Border::refine`]
    /// moves only assigned transcripts, and only to cells.
    fn choose(&self, j: usize, row: &[u32], cur: &[u32], types: &[u16], all: &[f32]) -> u32 {
        let own = cur[j];
        // (cell, summed weight), its own cell first with weight 1
        let mut votes: Vec<(u32, f32)> = vec![(own, 1.0)];
        let (x, y) = (all[2 * j], all[2 * j + 1]);
        let two_w2 = 2.0 * self.width * self.width;
        for &d in row {
            let d = d as usize;
            if d == NO_NEIGHBOUR as usize || d == j || cur[d] == NO_CELL {
                continue;
            }
            let (dx, dy) = (all[2 * d] - x, all[2 * d + 1] - y);
            let w = (-(dx * dx + dy * dy) / two_w2).exp();
            match votes.iter_mut().find(|v| v.0 == cur[d]) {
                Some(v) => v.1 += w,
                None => votes.push((cur[d], w)),
            }
        }
        if votes.len() == 1 {
            return own;
        }
        let own_new = self.kinds[own as usize] == CellKind::Component;
        let gene = self.genes[j] as usize;
        let score = |c: u32, w: f32| -> f32 {
            match types[c as usize] {
                u16::MAX => f32::NEG_INFINITY,
                t => w.ln() + self.logp[t as usize][gene],
            }
        };
        let mut best = (own, score(own, votes[0].1));
        for &(c, w) in &votes[1..] {
            if !own_new && self.kinds[c as usize] != CellKind::Component {
                continue;
            }
            let s = score(c, w);
            if s > best.1 {
                best = (c, s);
            }
        }
        best.0
    }
}

/// The settings of the cell-type stage ([`apply`]).
#[derive(Debug, Clone, Copy)]
pub struct Stage<'a> {
    /// The transcripts that may join the boundary they chose below the cut.
    pub join: Join<'a>,
    /// The number of types, or `None` to choose it from the data ([`choose_types`]).
    pub k: Option<usize>,
    /// Make new cells of the transcripts taken back (`--use_cc`); false leaves them
    /// unassigned.
    pub make_cells: bool,
    /// Rounds of the border refinement of the new cells (step 7 of the module doc;
    /// `--border_rounds`).
    pub border_rounds: usize,
}

/// What the stage needs to let transcripts join the boundary they chose below the cut.
#[derive(Debug, Clone, Copy, Default)]
pub struct Join<'a> {
    /// `(transcript id, cell)`: the unassigned transcripts whose chosen boundary scored below
    /// the cut, with that boundary's cell; sorted by id.
    pub below: &'a [(i64, u32)],
    /// Of a transcript's [`NEIGHBOURS`] nearest (itself among them), how many must be in the
    /// boundary's cell (`--join_neighbours`, default [`JOIN_NEIGHBOURS`]); 0: none joins.
    pub neighbours: usize,
}

/// The transcripts of `sub` (index, cell) that may join the boundary they chose below the
/// cut: unassigned, of the boundary's type (none when `join.neighbours` is 0). Sorted by
/// index.
fn join_candidates(
    sub: Sub<'_>,
    labels: &[u16],
    join: Join<'_>,
    cell_type: &HashMap<u32, usize>,
) -> Vec<(usize, u32)> {
    if join.neighbours == 0 {
        return Vec::new();
    }
    let below = join.below;
    (0..sub.len())
        .filter(|&j| sub[j].cell == NO_CELL)
        .filter_map(|j| {
            let at = below.binary_search_by_key(&sub[j].id, |b| b.0).ok()?;
            let c = below[at].1;
            (cell_type.get(&c) == Some(&(labels[j] as usize))).then_some((j, c))
        })
        .collect()
}

/// Of the candidates `cand` ([`join_candidates`]), with `near` their [`NEIGHBOURS`] nearest
/// transcripts, those that join: at least `neighbours` of them in the boundary's cell.
fn join_below_cut(
    sub: Sub<'_>,
    cand: &[(usize, u32)],
    near: &[Vec<usize>],
    neighbours: usize,
) -> Vec<(usize, u32)> {
    cand.iter()
        .zip(near)
        .filter(|(&(_, c), near)| near.iter().filter(|&&b| sub[b].cell == c).count() >= neighbours)
        .map(|(&x, _)| x)
        .collect()
}

/// `(query, neighbour)` pairs: the [`NEIGHBOURS`] nearest transcripts of `sub` (in x-y) to each
/// transcript `at[query].0`, itself among them.
fn nearest(sub: Sub<'_>, at: &[(usize, u32)]) -> Vec<(usize, usize)> {
    if at.is_empty() {
        return Vec::new();
    }
    let q: Vec<f32> = at.iter().flat_map(|&(j, _)| [sub[j].x, sub[j].y]).collect();
    let all = sub.xy();
    let e = knn_bipartite(&q, &all, 2, KnnParams::new(NEIGHBOURS, f32::MAX)).expect("2-D points");
    e.src
        .iter()
        .zip(&e.dst)
        .map(|(&a, &b)| (a as usize, b as usize))
        .collect()
}

/// Of the transcripts `vetoed` (index, boundary cell) taken from their boundary, with `near`
/// their [`NEIGHBOURS`] nearest transcripts, those the neighbours in that cell do not confirm
/// (step 3 of the module doc): under [`log_likelihood`] of only the neighbours in the cell (and
/// its own gene), the boundary's type is within [`MARGIN`] nats of the best type. Sorted by
/// index.
fn unconfirmed(
    sub: Sub<'_>,
    genes: &[u32],
    logp: &[Vec<f32>],
    vetoed: &[(usize, u32)],
    near: &[Vec<usize>],
    cell_type: &HashMap<u32, usize>,
) -> Vec<(usize, u32)> {
    vetoed
        .iter()
        .zip(near)
        .filter(|&(&(j, c), near)| {
            let in_cell: Vec<u32> = near
                .iter()
                .filter(|&&b| b != j && sub[b].cell == c)
                .map(|&b| genes[b])
                .collect();
            let ll = log_likelihood(&in_cell, genes[j], logp);
            let best = ll.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            best - ll[cell_type[&c]] <= MARGIN
        })
        .map(|(&v, _)| v)
        .collect()
}

/// The number of types [`choose_types`] picked, the k-means labels of its sample, and the
/// criterion of every number tried.
struct Chosen {
    k: usize,
    /// `None` when one type wins.
    labels: Option<Vec<u16>>,
    criterion: Vec<(usize, f64)>,
}

/// Chooses the number of types from the data: for K = 1, 2, … (up to [`AUTO_MAX`]), types are
/// fitted to the sample as for a given K (k-means from `fit`, then [`REFINE`] naive-Bayes
/// rounds), and scored by the Bayesian information criterion of the mixture of their gene
/// profiles over the neighbourhoods,
/// `BIC = −2 · Σᵢ ln Σₜ πₜ Πg pₜ(g)^cᵢg / NEIGHBOURS + p · ln(n / NEIGHBOURS)`,
/// with `p = K · (genes − 1) + K − 1` parameters. The log-likelihood and the sample size are
/// divided by [`NEIGHBOURS`] because each transcript lies in that many neighbourhoods. The
/// search stops when the criterion has not improved for [`AUTO_PATIENCE`] numbers in a row; the
/// least wins.
fn choose_types(
    nbs: &[u32],
    norms: &[f32],
    genes: &[u32],
    n_genes: usize,
    fit: impl Fn(usize) -> Vec<u16>,
) -> Chosen {
    let n = norms.len();
    let row = |i: usize| &nbs[i * NEIGHBOURS..(i + 1) * NEIGHBOURS];
    let mut present = vec![false; n_genes];
    for &g in genes {
        present[g as usize] = true;
    }
    let g_present = present.iter().filter(|&&p| p).count().max(1) as f64;
    let n_eff = (n as f64 / NEIGHBOURS as f64).max(1.0);
    let mut criterion = Vec::new();
    let mut best: (f64, usize, Option<Vec<u16>>) = (f64::INFINITY, 1, None);
    let mut worse = 0;
    for k in 1..=AUTO_MAX.min(n / NEIGHBOURS).max(1) {
        let km = if k == 1 { vec![0u16; n] } else { fit(k) };
        let (_, logp, counts) = refine(nbs, genes, log_profiles(&km, genes, k, n_genes), n_genes);
        let ln_pi: Vec<f64> = counts.iter().map(|&c| (c as f64 / n as f64).ln()).collect();
        // per transcript in parallel, summed in order (a sum that does not depend on the run)
        let per_tx: Vec<f64> = (0..n)
            .into_par_iter()
            .map(|i| {
                let m: Vec<f64> = (0..k)
                    .map(|t| {
                        row(i)
                            .iter()
                            .map(|&g| logp[t][g as usize] as f64)
                            .sum::<f64>()
                            + ln_pi[t]
                    })
                    .collect();
                let top = m.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                top + m.iter().map(|&x| (x - top).exp()).sum::<f64>().ln()
            })
            .collect();
        let ll = per_tx.iter().sum::<f64>() / NEIGHBOURS as f64;
        let params = k as f64 * (g_present - 1.0) + (k - 1) as f64;
        let bic = -2.0 * ll + params * n_eff.ln();
        criterion.push((k, bic));
        if bic < best.0 {
            best = (bic, k, (k > 1).then_some(km));
            worse = 0;
        } else {
            worse += 1;
            if worse >= AUTO_PATIENCE {
                break;
            }
        }
    }
    Chosen {
        k: best.1,
        labels: best.2,
        criterion,
    }
}

/// [`REFINE`] naive-Bayes rounds from the log gene profiles `logp`: each transcript (its
/// neighbourhood `nbs` and own gene `genes`) takes the type of greatest log-likelihood, and the
/// profiles are refitted to the types. Returns the types, their final profiles and the
/// transcripts per type.
fn refine(
    nbs: &[u32],
    genes: &[u32],
    mut logp: Vec<Vec<f32>>,
    n_genes: usize,
) -> (Vec<u16>, Vec<Vec<f32>>, Vec<usize>) {
    let k = logp.len();
    let row = |i: usize| &nbs[i * NEIGHBOURS..(i + 1) * NEIGHBOURS];
    let mut labels = vec![0u16; genes.len()];
    for _ in 0..REFINE {
        labels = (0..genes.len())
            .into_par_iter()
            .map(|i| argmax(&log_likelihood(row(i), genes[i], &logp)) as u16)
            .collect();
        logp = log_profiles(&labels, genes, k, n_genes);
    }
    let mut counts = vec![0usize; k];
    for &l in &labels {
        counts[l as usize] += 1;
    }
    (labels, logp, counts)
}

/// The index of the largest value (the last of equals, as `Iterator::max_by`).
fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x >= v[best] {
            best = i;
        }
    }
    best
}

/// k-means in x-y into `parts` groups, seeded by the farthest-point rule from the first point
/// (deterministic): each point's group.
fn split_xy(xy: &[[f32; 2]], parts: usize) -> Vec<usize> {
    let d2 = |a: [f32; 2], b: [f32; 2]| (a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2);
    let mut centres = vec![xy[0]];
    while centres.len() < parts {
        let far = (0..xy.len())
            .max_by(|&a, &b| {
                let da = centres
                    .iter()
                    .map(|&c| d2(xy[a], c))
                    .fold(f32::INFINITY, f32::min);
                let db = centres
                    .iter()
                    .map(|&c| d2(xy[b], c))
                    .fold(f32::INFINITY, f32::min);
                da.total_cmp(&db)
            })
            .expect("points");
        centres.push(xy[far]);
    }
    let mut label = vec![0usize; xy.len()];
    for _ in 0..30 {
        for (l, &p) in label.iter_mut().zip(xy) {
            *l = (0..parts)
                .min_by(|&a, &b| d2(p, centres[a]).total_cmp(&d2(p, centres[b])))
                .expect("parts ≥ 1");
        }
        let mut sum = vec![[0.0f64; 3]; parts];
        for (&l, p) in label.iter().zip(xy) {
            sum[l][0] += p[0] as f64;
            sum[l][1] += p[1] as f64;
            sum[l][2] += 1.0;
        }
        for (c, s) in centres.iter_mut().zip(&sum) {
            if s[2] > 0.0 {
                *c = [(s[0] / s[2]) as f32, (s[1] / s[2]) as f32];
            }
        }
    }
    label
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: i64, x: f32, y: f32, gene: u32, cell: u32) -> TxRecord {
        TxRecord {
            id,
            x,
            y,
            z: f32::NAN,
            gene,
            cell,
            score: 0.9,
        }
    }

    /// [`apply`] with nothing protected, no joins and new cells named "new".
    fn plain(
        records: &mut [TxRecord],
        cells: &mut CellTable,
        k: Option<usize>,
        make_cells: bool,
    ) -> TypeStats {
        apply(
            records,
            cells,
            &[],
            Stage {
                join: Join::default(),
                k,
                make_cells,
                border_rounds: BORDER_ROUNDS,
            },
            || "new".into(),
        )
    }

    /// Two cells side by side, one of genes 0-4 (144 transcripts), one of genes 5-9 (96); a
    /// nucleus at the left took every transcript.
    fn two_cells() -> (Vec<TxRecord>, CellTable, u32) {
        let mut cells = CellTable::default();
        let nucleus = cells.intern("left");
        let mut records = Vec::new();
        let mut id = 0;
        for half in 0..2u32 {
            for i in 0..12 {
                for j in 0..(12 - 4 * half) {
                    let x = half as f32 * 14.0 + i as f32;
                    let gene = half * 5 + (i * 7 + j * 3) % 5;
                    records.push(rec(id, x, j as f32, gene, nucleus));
                    id += 1;
                }
            }
        }
        (records, cells, nucleus)
    }

    /// The right cell leaves the nucleus and becomes one new cell.
    #[test]
    fn a_cell_of_another_type_leaves_the_boundary_and_becomes_a_new_cell() {
        let (mut records, mut cells, nucleus) = two_cells();
        let mut next = 0;
        let stats = apply(
            &mut records,
            &mut cells,
            &[],
            Stage {
                join: Join::default(),
                k: Some(2),
                make_cells: true,
                border_rounds: BORDER_ROUNDS,
            },
            || {
                next += 1;
                format!("new-{next}")
            },
        );
        assert_eq!(stats.per_type.iter().sum::<usize>(), 240);
        assert_eq!(stats.vetoed, 96, "{stats:?}");
        // their neighbours in the nucleus's cell are their own cell's: confirmed
        assert_eq!(stats.returned, 0, "{stats:?}");
        // typical size 240 (one boundary cell) → the 96 freed transcripts make one cell
        assert_eq!(stats.new_cells, 1);
        let left = records.iter().filter(|r| r.x < 12.0);
        assert!(left.clone().all(|r| r.cell == nucleus));
        let right: Vec<u32> = records
            .iter()
            .filter(|r| r.x >= 12.0)
            .map(|r| r.cell)
            .collect();
        assert!(right
            .iter()
            .all(|&c| c == right[0] && c != nucleus && c != NO_CELL));
        assert_eq!(cells.ids[right[0] as usize], "new-1");
    }

    /// Below the cut, a transcript joins the boundary it chose when the boundary's type is its
    /// own and enough of its neighbourhood is in the boundary's cell; not when the type
    /// differs, and not when too few of its neighbours are in the cell.
    #[test]
    fn below_the_cut_a_transcript_joins_a_boundary_of_its_type_at_the_cell_edge() {
        let (mut records, mut cells, nucleus) = two_cells();
        let mut below = Vec::new();
        for r in records.iter_mut() {
            // the left cell's two outer columns, and four transcripts of the right cell
            let right_four = r.x >= 14.0 && r.x < 15.0 && r.y < 4.0;
            if r.x < 2.0 || right_four {
                r.cell = NO_CELL;
                below.push((r.id, nucleus));
            }
        }
        let join = Join {
            below: &below,
            neighbours: JOIN_NEIGHBOURS,
        };
        let stats = apply(
            &mut records,
            &mut cells,
            &[],
            Stage {
                join,
                k: Some(2),
                make_cells: false,
                border_rounds: BORDER_ROUNDS,
            },
            || "new".into(),
        );
        // column x = 1 has its neighbours at x = 2, 3 in the cell: it joins; inside column
        // x = 0, at most two of the ten nearest are there (its corners reach more); the right
        // cell's four are of the other type
        let at = |x: f32| records.iter().filter(move |r| r.x == x);
        assert!(at(1.0).all(|r| r.cell == nucleus), "{stats:?}");
        assert!(at(0.0)
            .filter(|r| r.y >= 2.0 && r.y <= 9.0)
            .all(|r| r.cell == NO_CELL));
        assert!(records
            .iter()
            .filter(|r| r.x >= 14.0 && r.x < 15.0 && r.y < 4.0)
            .all(|r| r.cell == NO_CELL));
        let corners = at(0.0).filter(|r| r.cell == nucleus).count();
        assert!(corners <= 4, "{stats:?}");
        assert_eq!(stats.joined, 12 + corners, "{stats:?}");
        assert_eq!(stats.vetoed, 92, "{stats:?}");
    }

    /// Two cells of different genes touching at x = 12, each with its own nucleus, and a
    /// transcript of the left cell with a gene of neither at the edge: most of its neighbours
    /// are the right cell's, so it is taken from its nucleus, but its neighbours in the left
    /// cell confirm the left cell's type and it joins no new cell, so it goes back. Moved into
    /// the right cell's territory (its neighbours in the left cell gone), it stays out.
    #[test]
    fn an_edge_transcript_whose_cell_neighbours_disagree_with_the_veto_goes_back() {
        for (edge_x, back) in [(11.9f32, true), (13.5, false)] {
            let mut cells = CellTable::default();
            let left = cells.intern("left");
            let right = cells.intern("right");
            let mut records = Vec::new();
            for i in 0..24u32 {
                for j in 0..12u32 {
                    let (gene, cell) = if i < 12 {
                        ((i * 7 + j * 3) % 5, left)
                    } else {
                        (5 + (i * 7 + j * 3) % 5, right)
                    };
                    records.push(rec(
                        records.len() as i64,
                        i as f32,
                        j as f32 + 0.5,
                        gene,
                        cell,
                    ));
                }
            }
            let edge = records.len() as i64;
            records.push(rec(edge, edge_x, 6.0, 10, left));
            let stats = plain(&mut records, &mut cells, Some(2), true);
            let r = records
                .iter()
                .find(|r| r.id == edge)
                .expect("edge transcript");
            assert_eq!(stats.vetoed, 1, "{stats:?}");
            assert_eq!(stats.returned, usize::from(back), "{stats:?}");
            assert_eq!(r.cell, if back { left } else { NO_CELL }, "{stats:?}");
            // every other transcript stays where it was
            assert!(records
                .iter()
                .filter(|r| r.id != edge)
                .all(|r| r.cell == if r.x < 12.0 { left } else { right }));
        }
    }

    /// New cells link transcripts within `LINK` neighbourhood radii: two blocks of another
    /// type 2 grid steps apart make one new cell, 4 steps apart two; the same layout scaled by
    /// 10 (a sparser sample) gives the same cells.
    #[test]
    fn new_cells_link_in_units_of_the_neighbourhood_radius() {
        for scale in [1.0f32, 10.0] {
            for (gap, expect) in [(2.0f32, 1), (4.0, 2)] {
                let mut cells = CellTable::default();
                let nucleus = cells.intern("left");
                let mut records = Vec::new();
                let mut push = |x: f32, y: f32, gene: u32| {
                    let id = records.len() as i64;
                    records.push(rec(id, x * scale, y * scale, gene, nucleus));
                };
                for i in 0..12u32 {
                    for j in 0..12u32 {
                        push(i as f32, j as f32, (i * 7 + j * 3) % 5);
                    }
                }
                for block in 0..2u32 {
                    let x0 = 14.0 + block as f32 * (3.0 + gap);
                    for i in 0..4u32 {
                        for j in 0..8u32 {
                            push(x0 + i as f32, j as f32, 5 + (i * 7 + j * 3 + block) % 5);
                        }
                    }
                }
                let stats = plain(&mut records, &mut cells, Some(2), true);
                assert_eq!(stats.vetoed, 64, "{stats:?}");
                assert_eq!(
                    stats.new_cells, expect,
                    "scale {scale}, gap {gap}: {stats:?}"
                );
                let link = stats.link / scale;
                assert!(link > 2.0 && link < 4.0, "{stats:?}");
            }
        }
    }

    /// Transcripts within the inner reach stay with their boundary whatever their type (the
    /// veto, step 3); the border refinement (step 7) then moves those beside the new cell of
    /// their type into it.
    #[test]
    fn protected_transcripts_stay() {
        let run = |rounds: usize| {
            let (mut records, mut cells, nucleus) = two_cells();
            let mut protected: Vec<i64> = records
                .iter()
                .filter(|r| r.x >= 20.0)
                .map(|r| r.id)
                .collect();
            protected.sort_unstable();
            let stats = apply(
                &mut records,
                &mut cells,
                &protected,
                Stage {
                    join: Join::default(),
                    k: Some(2),
                    make_cells: true,
                    border_rounds: rounds,
                },
                || "new".into(),
            );
            assert_eq!(stats.vetoed, 96 - protected.len(), "{stats:?}");
            assert!(records
                .iter()
                .filter(|r| r.x >= 12.0 && r.x < 20.0)
                .all(|r| r.cell != nucleus));
            assert!(records
                .iter()
                .filter(|r| r.x < 12.0)
                .all(|r| r.cell == nucleus));
            (records, stats, nucleus)
        };
        let (records, stats, nucleus) = run(0);
        assert_eq!(stats.border_moved, 0);
        assert!(records
            .iter()
            .filter(|r| r.x >= 20.0)
            .all(|r| r.cell == nucleus));
        let (records, stats, nucleus) = run(BORDER_ROUNDS);
        let new_cell = records.iter().find(|r| r.x == 14.0).expect("x = 14").cell;
        assert_ne!(new_cell, nucleus);
        let moved: Vec<&TxRecord> = records
            .iter()
            .filter(|r| r.x >= 20.0 && r.cell != nucleus)
            .collect();
        assert_eq!(moved.len(), stats.border_moved, "{stats:?}");
        assert!(!moved.is_empty(), "the column beside the new cell moves");
        assert!(moved.iter().all(|r| r.cell == new_cell));
        // the nearest column first: none moves unless the column before it did
        assert!(moved
            .iter()
            .all(|r| r.x == 20.0 || moved.iter().any(|m| m.x == r.x - 1.0)));
    }

    /// Chosen from the data, two cells of disjoint gene sets make two types, and the stage
    /// acts as with two types given.
    #[test]
    fn two_types_are_found_in_two_cells_of_different_genes() {
        let (mut records, mut cells, _) = two_cells();
        let (mut given, mut given_cells, _) = two_cells();
        let stats = plain(&mut records, &mut cells, None, true);
        assert_eq!(stats.types, 2, "{stats:?}");
        assert!(stats.applied());
        let bic = |k: usize| stats.criterion.iter().find(|c| c.0 == k).expect("tried").1;
        assert!(bic(2) < bic(1) && bic(2) < bic(3), "{:?}", stats.criterion);
        let fixed = plain(&mut given, &mut given_cells, Some(2), true);
        assert_eq!(stats.vetoed, fixed.vetoed);
        assert_eq!(stats.new_cells, fixed.new_cells);
        let cells_of = |r: &[TxRecord]| r.iter().map(|r| r.cell).collect::<Vec<_>>();
        assert_eq!(cells_of(&records), cells_of(&given));
    }

    /// One population of genes spread evenly: one type fits best and nothing changes.
    #[test]
    fn one_type_leaves_the_assignment_alone() {
        let mut cells = CellTable::default();
        let nucleus = cells.intern("only");
        let mut records = Vec::new();
        for i in 0..30u32 {
            for j in 0..30u32 {
                let id = (i * 30 + j) as i64;
                let gene = (i * 7 + j * 13 + i * j) % 8;
                let cell = if (i + j) % 5 == 0 { NO_CELL } else { nucleus };
                records.push(rec(id, i as f32, j as f32, gene, cell));
            }
        }
        let before: Vec<u32> = records.iter().map(|r| r.cell).collect();
        let stats = plain(&mut records, &mut cells, None, true);
        assert_eq!(stats.types, 1, "{:?}", stats.criterion);
        assert!(!stats.applied());
        assert!(stats.criterion.len() > AUTO_PATIENCE);
        assert!(records.iter().map(|r| r.cell).eq(before));
        assert_eq!(cells.len(), 1);
    }

    /// Without new cells (`--use_cc false`) the transcripts taken back stay unassigned.
    #[test]
    fn without_new_cells_the_transcripts_taken_back_stay_unassigned() {
        let (mut records, mut cells, nucleus) = two_cells();
        let stats = plain(&mut records, &mut cells, Some(2), false);
        assert_eq!(stats.vetoed, 96, "{stats:?}");
        assert_eq!(stats.new_cells, 0);
        assert_eq!(cells.len(), 1);
        assert!(records
            .iter()
            .all(|r| r.cell == if r.x < 12.0 { nucleus } else { NO_CELL }));
    }

    /// A boundary cell (type 0, gene 0, x < 10) beside a new cell (type 1, gene 1, x ≥ 10)
    /// on a unit grid, with foreign genes at the border and deep inside; `kinds` of the two.
    fn border_case(kinds: [CellKind; 2], rounds: usize) -> (Vec<TxRecord>, usize) {
        let mut records = Vec::new();
        for x in 0..20u32 {
            for y in 0..11u32 {
                let side = u32::from(x >= 10);
                let foreign = matches!((x, y), (9, 5) | (10, 5) | (2, 5));
                let gene = if foreign { 1 - side } else { side };
                records.push(rec((x * 11 + y) as i64, x as f32, y as f32, gene, side));
            }
        }
        let idx: Vec<usize> = (0..records.len()).collect();
        let labels: Vec<u16> = records.iter().map(|r| r.cell as u16).collect();
        let genes: Vec<u32> = records.iter().map(|r| r.gene).collect();
        let logp = vec![
            vec![0.9f32.ln(), 0.1f32.ln()],
            vec![0.1f32.ln(), 0.9f32.ln()],
        ];
        let border = Border {
            idx: &idx,
            genes: &genes,
            labels: &labels,
            logp: &logp,
            kinds: &kinds,
            width: 1.0,
        };
        let moved = border.refine(&mut records, rounds);
        (records, moved)
    }

    /// At the border of a new cell, a transcript goes to the cell its gene and neighbours
    /// favour; one deep inside its cell (no new cell within reach) stays.
    #[test]
    fn the_border_of_a_new_cell_follows_the_genes() {
        let at = |r: &[TxRecord], x: u32, y: u32| r[(x * 11 + y) as usize].cell;
        let (records, moved) =
            border_case([CellKind::Boundary, CellKind::Component], BORDER_ROUNDS);
        assert_eq!(moved, 2);
        assert_eq!(
            at(&records, 9, 5),
            1,
            "gene 1 at the border joins the new cell"
        );
        assert_eq!(
            at(&records, 10, 5),
            0,
            "gene 0 at the border joins the boundary's cell"
        );
        assert_eq!(at(&records, 2, 5), 0, "deep inside: stays");
        let unchanged = |r: &[TxRecord]| {
            r.iter()
                .enumerate()
                .all(|(i, t)| t.cell == u32::from(i / 11 >= 10))
        };
        // two boundary cells: no move (only into or out of a new cell); no rounds: no move
        let (records, moved) = border_case([CellKind::Boundary, CellKind::Boundary], BORDER_ROUNDS);
        assert_eq!(moved, 0);
        assert!(unchanged(&records));
        let (records, moved) = border_case([CellKind::Boundary, CellKind::Component], 0);
        assert_eq!(moved, 0);
        assert!(unchanged(&records));
    }

    #[test]
    fn the_composition_norm_counts_each_gene_once() {
        // shares 0.3, 0.2, 0.4, 0.1 in any order of the neighbours
        let a = composition_norm(&[3, 3, 3, 5, 5, 7, 7, 7, 7, 9]);
        let b = composition_norm(&[7, 9, 3, 7, 5, 3, 7, 5, 3, 7]);
        assert!((a - 0.30).abs() < 1e-6, "{a}");
        assert_eq!(a.to_bits(), b.to_bits());
    }

    #[test]
    fn a_large_component_is_cut_to_the_typical_size() {
        let xy: Vec<[f32; 2]> = (0..40)
            .map(|i| {
                [
                    if i < 20 { 0.0 } else { 30.0 } + (i % 5) as f32,
                    (i % 4) as f32,
                ]
            })
            .collect();
        let l = split_xy(&xy, 2);
        assert!(l[..20].iter().all(|&a| a == l[0]));
        assert!(l[20..].iter().all(|&a| a == l[20]));
        assert_ne!(l[0], l[20]);
    }
}
