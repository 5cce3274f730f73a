#!/usr/bin/env python3
"""How well any method could do on a simulated sample: segmentations that know the truth.

An analysis, not part of the product. On the transcripts `segger evaluate` scores when it has
no prediction (qv >= 20, no control probes, a true cell), it prints majority-matched correct /
wrong / unassigned (%, as `segger evaluate` counts them) of:
1. true outlines: each transcript in the true cell whose polygon (cell_boundaries.parquet)
   contains it. Transcript diffusion is what it gets wrong.
2. oracle, position: each transcript in the true cell maximising
   density(cell) * Phi(-signed distance to the outline / sigma), density being the cell's
   transcripts per um^2 of its polygon and sigma the simulator's diffusion (--sigma): the
   most likely cell given its position alone.
3. oracle, position + expression: the same times P(gene | the cell's true type), the type
   profiles counted from the truth (+0.5 pseudo-count).
With a PREDICTION_DIR (segger_transcripts.parquet) it also splits that prediction's correct,
wrong and unassigned transcripts by whether they lie inside their true cell's outline (wrong
inside: the inferred shape is wrong; wrong outside: a transcript diffused out of its cell).

Usage: benches/accuracy/ceiling.py RAW_DIR [PREDICTION_DIR] [--sigma 0.8]
Needs numpy, scipy, pandas, pyarrow, shapely (>= 2).
"""
import argparse

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import shapely
from scipy.stats import norm

CONTROL = ("NegControl", "BLANK", "Unassigned", "DeprecatedCodeword", "Intergenic")


def score(pick, truth, n):
    """Majority-matched (correct, wrong, unassigned) in % of n; pick < 0 is unassigned."""
    a = pick >= 0
    df = pd.DataFrame({"p": pick[a], "t": truth[a]})
    match = df.groupby("p").t.agg(lambda s: s.value_counts().index[0])
    ok = df.t.to_numpy() == match.loc[df.p].to_numpy()
    return 100 * ok.sum() / n, 100 * (~ok).sum() / n, 100 * (~a).sum() / n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("raw")
    ap.add_argument("prediction", nargs="?")
    ap.add_argument("--sigma", type=float, default=0.8)
    args = ap.parse_args()
    tx = pq.read_table(f"{args.raw}/transcripts.parquet").to_pandas()
    gt = pq.read_table(f"{args.raw}/ground_truth.parquet").to_pandas()
    tx = tx.merge(gt, on="transcript_id")
    keep = (
        (tx.qv >= 20)
        & ~tx.feature_name.str.startswith(CONTROL)
        & (tx.true_cell_id.fillna("") != "")
    )
    tx = tx[keep].reset_index(drop=True)
    n = len(tx)
    cb = pq.read_table(f"{args.raw}/cell_boundaries.parquet").to_pandas()
    ids, polys = [], []
    for cid, g in cb.groupby("cell_id", sort=False):
        ids.append(cid)
        polys.append(shapely.Polygon(np.c_[g.vertex_x, g.vertex_y]))
    polys = np.array(polys)
    row = {c: i for i, c in enumerate(ids)}
    truth = tx.true_cell_id.map(row).to_numpy()
    pts = shapely.points(tx.x_location.to_numpy(), tx.y_location.to_numpy())
    tree = shapely.STRtree(polys)

    def show(name, pick):
        c, w, u = score(pick, truth, n)
        print(f"{name:32s} {c:5.1f} / {w:4.1f}   unassigned {u:4.1f}")

    print(f"{args.raw}: {n} scored transcripts; correct / wrong (%)")
    pi, gi = tree.query(pts, predicate="within")
    inside_pick = np.full(n, -1)
    inside_pick[pi] = gi
    show("true outlines", inside_pick)

    ctype = tx.groupby("true_cell_id").true_cell_type.first()
    types = np.array([ctype.get(c) for c in ids], dtype=object)
    count = tx.groupby("true_cell_id").size()
    density = np.array([count.get(c, 0) for c in ids], float) / shapely.area(polys)
    profile = pd.crosstab(tx.true_cell_type, tx.feature_name) + 0.5
    profile = profile.div(profile.sum(axis=1), axis=0)
    s = args.sigma
    qi, qg = tree.query(pts, predicate="dwithin", distance=max(4 * s, 1e-6))
    d = shapely.distance(pts[qi], shapely.boundary(polys[qg]))
    signed = np.where(shapely.within(pts[qi], polys[qg]), -d, d)
    if s > 0:
        spatial = norm.cdf(-signed / s)
    else:
        spatial = (signed <= 0).astype(float)
    spatial = spatial * density[qg]
    genes = tx.feature_name.to_numpy()[qi]
    expr = np.array(
        [profile.at[t, g] if t is not None else 0.0 for t, g in zip(types[qg], genes)]
    )
    for name, w in (("oracle, position", spatial), ("oracle, position + expression", spatial * expr)):
        df = pd.DataFrame({"i": qi, "c": qg, "w": w})
        df = df[df.w > 0]
        best = df.loc[df.groupby("i").w.idxmax()]
        pick = np.full(n, -1)
        pick[best.i.to_numpy()] = best.c.to_numpy()
        show(name, pick)

    if args.prediction:
        pr = pq.read_table(f"{args.prediction}/segger_transcripts.parquet").to_pandas()
        m = tx[["transcript_id"]].merge(
            pr[["transcript_id", "segger_cell_id"]], on="transcript_id", how="left"
        )
        cells = pd.Index(m.segger_cell_id.dropna().unique())
        pick = np.full(n, -1)
        a = m.segger_cell_id.notna().to_numpy()
        pick[a] = cells.get_indexer(m.segger_cell_id[a])
        show("prediction", pick)
        df = pd.DataFrame({"p": pick[a], "t": truth[a]})
        match = df.groupby("p").t.agg(lambda s: s.value_counts().index[0])
        state = np.full(n, "unassigned", dtype=object)
        state[np.flatnonzero(a)] = np.where(
            df.t.to_numpy() == match.loc[df.p].to_numpy(), "correct", "wrong"
        )
        inside = np.zeros(n, bool)
        inside[pi[gi == truth[pi]]] = True
        table = pd.crosstab(
            pd.Series(np.where(inside, "inside its true cell", "outside (diffused)")),
            pd.Series(state),
        ) * 100 / n
        table = table.rename_axis(index=None, columns=None)
        print("prediction by where the transcript lies (% of scored):")
        print(table.round(1).to_string())


if __name__ == "__main__":
    main()
