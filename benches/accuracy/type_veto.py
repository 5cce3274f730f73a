#!/usr/bin/env python3
"""Cell-type veto and typed components after `segger predict`, on a simulated sample.

An analysis, not part of the product: it measures how far knowing each transcript's cell type
would take the assignment (docs/accuracy.md, "Cell types"); `segger predict --cell_types K`
is the product's version of the estimated types.

Steps, on the transcripts that dataset creation keeps (qv >= 20, no control probes):
1. Types: with `--types oracle`, the simulator's true cell type (background transcripts get
   their own label); with `--types kmeans`, k-means (K = --k types, k-means++ seeds, best of 5
   restarts) of each transcript's neighbourhood composition (gene shares of its --kn nearest
   transcripts in x-y, itself included), then --refine rounds of a multinomial naive Bayes:
   each type's gene profile from the transcripts it holds (+1 pseudo-count), and each
   transcript's type the one maximising the log-likelihood of its neighbourhood's genes plus
   --own times that of its own gene.
2. A nucleus's type is the most common type among the transcripts inside it.
3. Veto: a transcript that segger gave to a nucleus, lies outside that nucleus and has another
   type is set unassigned (k-means: only when the nucleus's type is worse than the
   transcript's by more than --margin in that log-likelihood).
4. segger's new cells (components) are dropped; the unassigned transcripts are linked within
   --link um, when both have the same type, into components; a component of at
   least --min transcripts becomes round(size / typical) cells (k-means in x-y), typical being
   the median transcript count of the nucleated cells.
5. Majority-matched correct / wrong as `segger evaluate` counts them.

Usage: type_veto.py RAW_DIR PREDICTION_DIR [--types oracle|kmeans] [--k 5] [--margin 3]
Needs numpy, scipy, pandas, pyarrow.
"""
import argparse

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

CONTROL = ("NegControl", "BLANK", "Unassigned", "DeprecatedCodeword", "Intergenic")


def evaluate(truth, pred):
    """Majority-matched correct and wrong shares over the transcripts with a true cell."""
    has = truth != ""
    df = pd.DataFrame({"p": pred, "t": truth})
    df = df[(df.p >= 0) & has]
    best = df.groupby("p").t.agg(lambda s: s.value_counts().index[0])
    matched = pd.Series(pred).map(best).values
    assigned = has & (pred >= 0)
    return ((assigned & (matched == truth)).sum() / has.sum(),
            (assigned & (matched != truth)).sum() / has.sum())


def kmeans(v, k, iters, restarts=1):
    """Lloyd's k-means from k-means++ seeds; the restart with the least inertia wins."""
    best = None
    for seed in range(restarts):
        rng = np.random.default_rng(seed)
        c = v[[rng.integers(len(v))]]
        while len(c) < k:
            d2 = ((v[:, None, :] - c[None]) ** 2).sum(2).min(1)
            c = np.vstack([c, v[rng.choice(len(v), p=d2 / d2.sum())]])
        for _ in range(iters):
            lab = ((v[:, None, :] - c[None]) ** 2).sum(2).argmin(1)
            c = np.array([v[lab == q].mean(0) if (lab == q).any() else c[q] for q in range(k)])
        dist = ((v[:, None, :] - c[None]) ** 2).sum(2)
        inertia = dist.min(1).sum()
        if best is None or inertia < best[0]:
            best = (inertia, dist.argmin(1), dist)
    return best[1], best[2]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("raw")
    ap.add_argument("prediction")
    ap.add_argument("--types", choices=["oracle", "kmeans"], default="oracle")
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--kn", type=int, default=10)
    ap.add_argument("--margin", type=float, default=3.0)
    ap.add_argument("--refine", type=int, default=5)
    ap.add_argument("--own", type=float, default=5.0)
    ap.add_argument("--link", type=float, default=2.5)
    ap.add_argument("--min", type=int, default=10)
    a = ap.parse_args()

    t = pd.read_parquet(f"{a.raw}/transcripts.parquet")
    t = t.merge(pd.read_parquet(f"{a.raw}/ground_truth.parquet"), on="transcript_id", how="left")
    t = t[(t.qv >= 20) & ~t.feature_name.str.startswith(CONTROL)].reset_index(drop=True)
    p = pd.read_parquet(f"{a.prediction}/segger_transcripts.parquet",
                        columns=["transcript_id", "segger_cell_id"])
    t = t.merge(p, on="transcript_id", how="left")
    truth = np.asarray(t.true_cell_id.fillna("").values).astype(str)
    xy = t[["x_location", "y_location"]].values.astype(float)
    n = len(xy)
    _, g = np.unique(t.feature_name.values, return_inverse=True)
    nuclei = sorted(set(pd.read_parquet(f"{a.raw}/nucleus_boundaries.parquet").cell_id))
    ids = {k: i for i, k in enumerate(nuclei)}
    seg = np.asarray(t.segger_cell_id.fillna("").values).astype(str)
    comps = {k: i + len(nuclei) for i, k in enumerate(sorted(set(seg) - set(ids) - {""}))}
    product = np.array([ids.get(s, comps.get(s, -1)) for s in seg])
    print("segger            correct %.3f wrong %.3f" % evaluate(truth, product))

    lab = np.array([ids.get(s, -1) for s in seg])
    inside = np.array([ids.get(s, -1) for s in t.cell_id.values])
    tree = cKDTree(xy)
    _, knn = tree.query(xy, k=a.kn)
    comp = np.zeros((n, g.max() + 1))
    np.add.at(comp, (np.repeat(np.arange(n), a.kn), g[knn].ravel()), 1)
    comp /= comp.sum(1, keepdims=True)
    if a.types == "oracle":
        ty = np.asarray(t.true_cell_type.fillna("background").values).astype(str)
        dist = None
    else:
        ty, dist = kmeans(comp, a.k, 60, restarts=5)
        for _ in range(a.refine):
            # multinomial naive Bayes of the neighbourhood under each type's gene profile
            prof = np.zeros((a.k, comp.shape[1]))
            np.add.at(prof, (ty, g), 1)
            logp = np.log((prof + 1) / (prof + 1).sum(1, keepdims=True))
            nll = -(comp @ logp.T) * a.kn - a.own * logp[:, g].T
            ty = nll.argmin(1)
            # shifted so that the best type scores 1: the veto's relative margin is in nats
            dist = nll - nll.min(1, keepdims=True) + 1.0
        ty = ty.astype(str)
    own = pd.Series(ty[inside >= 0]).groupby(inside[inside >= 0]).agg(
        lambda s: s.value_counts().index[0])
    ntype = np.array([own.get(i, "none") for i in range(len(nuclei))]).astype(str)
    lt = np.where(lab >= 0, ntype[np.maximum(lab, 0)], "")
    veto = (lab >= 0) & (lt != ty) & (inside != lab)
    if dist is not None:
        col = np.where(veto, np.char.replace(lt, "none", "0"), "0").astype(int)
        best = dist.min(1)
        veto &= (dist[np.arange(n), col] - best) / best > a.margin
    lab[veto] = -1
    print("nuclei after veto correct %.3f wrong %.3f (vetoed %.3f)"
          % (*evaluate(truth, lab), veto.mean()))

    pairs = tree.query_pairs(a.link, output_type="ndarray")
    i, j = pairs[:, 0], pairs[:, 1]
    free = np.where(lab < 0)[0]
    pos = -np.ones(n, int)
    pos[free] = np.arange(len(free))
    keep = (pos[i] >= 0) & (pos[j] >= 0)
    keep &= ty[i] == ty[j]
    graph = coo_matrix((np.ones(keep.sum()), (pos[i[keep]], pos[j[keep]])),
                       shape=(len(free), len(free)))
    _, cl = connected_components(graph, directed=False)
    sizes = np.bincount(cl)
    typical = np.median(np.bincount(lab[lab >= 0]))
    nxt = len(nuclei)
    for b in np.where(sizes >= a.min)[0]:
        members = free[cl == b]
        parts = max(1, int(round(len(members) / typical)))
        sub = kmeans(xy[members], parts, 30)[0] if parts > 1 else np.zeros(len(members), int)
        lab[members] = nxt + sub
        nxt += parts
    if a.types == "kmeans":
        truth_type = np.asarray(t.true_cell_type.fillna("background").values).astype(str)
        agree = pd.crosstab(ty, truth_type).max(axis=1).sum() / n
        print("k-means types: %.3f of the transcripts in the majority true type of their cluster"
              % agree)
    print("+ components      correct %.3f wrong %.3f (cells %d, unassigned %.3f)"
          % (*evaluate(truth, lab), nxt, (lab < 0).mean()))


if __name__ == "__main__":
    main()
