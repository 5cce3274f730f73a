#!/usr/bin/env python3
"""Where the wrong assignments of a segmentation come from, on a simulated sample.

Usage: benches/accuracy/wrong.py RAW_DIR PREDICTION_DIR
  RAW_DIR: a `segger simulate` sample (transcripts, nucleus_boundaries, ground_truth parquet)
  PREDICTION_DIR: its `segger predict` output (segger_transcripts.parquet)
Needs pandas and pyarrow. Prints, as % of the scored transcripts (with a true cell and kept
by the prediction): unassigned / correct / wrong, by whether the true cell has a nucleus in the
section and whether the prediction put the transcript in a nucleus or a component; then the
share of wrong assignments that go to a cell of the transcript's own type, and the score
quartiles of right and wrong nucleus picks. Predicted cells are matched to the true cell that
holds most of their transcripts (as `segger evaluate`'s majority-matched figures).
"""
import sys

import pandas as pd
import pyarrow.parquet as pq

raw, pred = sys.argv[1], sys.argv[2]
tx = pq.read_table(f"{raw}/transcripts.parquet").to_pandas()
gt = pq.read_table(f"{raw}/ground_truth.parquet").to_pandas()
nb = pq.read_table(f"{raw}/nucleus_boundaries.parquet").to_pandas()
pr = pq.read_table(f"{pred}/segger_transcripts.parquet").to_pandas()
pr["transcript_id"] = pr["transcript_id"].astype("uint64")
nuclei = set(nb.cell_id.unique())
# Split nuclei carry a "-2" suffix; both halves name the same true cell.
nucleated = {n[:-2] if n.endswith("-2") else n for n in nuclei}

d = pr.merge(gt, on="transcript_id").merge(tx[["transcript_id"]], on="transcript_id")
d = d[d.true_cell_id.fillna("") != ""].copy()
seg = d.segger_cell_id.fillna("")
assigned = seg != ""
majority = d[assigned].groupby(seg[assigned]).true_cell_id.agg(lambda s: s.value_counts().index[0])
d["match"] = seg.map(majority)
d["outcome"] = "unassigned"
d.loc[assigned & (d.match == d.true_cell_id), "outcome"] = "correct"
d.loc[assigned & (d.match != d.true_cell_id), "outcome"] = "wrong"
d["true cell has a nucleus"] = d.true_cell_id.isin(nucleated)
d["assigned to"] = "-"
d.loc[assigned, "assigned to"] = seg[assigned].map(lambda c: "nucleus" if c in nuclei else "component")
n = len(d)
print(f"{n} transcripts scored")
print((d.groupby(["true cell has a nucleus", "assigned to", "outcome"]).size() / n * 100).round(1).to_string())
types = d.groupby("true_cell_id").true_cell_type.first()
w = d[d.outcome == "wrong"]
same = (w.match.map(types) == w.true_cell_type).mean()
print(f"wrong assignments to a cell of the transcript's own type: {100 * same:.1f} % "
      f"(one in {d.true_cell_type.nunique()} types by chance: {100 / d.true_cell_type.nunique():.1f} %)")
for name, g in [("right nucleus picks", d[(d.outcome == "correct") & (d["assigned to"] == "nucleus")]),
                ("wrong nucleus picks", d[(d.outcome == "wrong") & (d["assigned to"] == "nucleus")])]:
    print(f"score quartiles, {name}: " + " ".join(f"{q:.3f}" for q in g.score.quantile([0.25, 0.5, 0.75])))
