"""Checks a `segger predict` SpatialData store against the prediction's transcript table.

    python check.py STORE TRANSCRIPTS_PARQUET

STORE is `segger_spatialdata.zarr`, TRANSCRIPTS_PARQUET the `segger_transcripts.parquet` of the
same prediction. The store must load with `spatialdata.read_zarr` (bad files are errors) and
hold: points `transcripts` with exactly the rows, ids, positions, genes, cells, scores and flags
of the parquet, in its order; shapes `cells`, one valid polygon per cell that covers the cell's
transcripts, indexed by cell id; table `table`, cells x genes counts that annotate `cells`
(region `cells`, region_key `region`, instance_key `cell_id`) and add up to the transcripts of
each cell and gene; the identity to the coordinate system `global` on points and shapes.

Prints one JSON line of counts and timings; exits 1 (with the reason on stderr) when a check
fails, 2 on bad arguments.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import shapely
import spatialdata as sd
from spatialdata.models import get_table_keys
from spatialdata.transformations import Identity, get_transformation


class CheckFailed(Exception):
    """The store disagrees with the transcript table."""


def expect(cond: bool, what: str) -> None:
    if not cond:
        raise CheckFailed(what)


def check_points(sdata: sd.SpatialData, tx: pd.DataFrame) -> pd.DataFrame:
    expect("transcripts" in sdata.points, f"no points element 'transcripts': {list(sdata.points)}")
    el = sdata.points["transcripts"]
    attrs = el.attrs.get("spatialdata_attrs", {})
    expect(attrs.get("feature_key") == "feature_name", f"points feature_key: {attrs}")
    expect(attrs.get("instance_key") == "segger_cell_id", f"points instance_key: {attrs}")
    expect(isinstance(get_transformation(el, "global"), Identity), "points: no identity to 'global'")
    pts = el.compute()
    expect(len(pts) == len(tx), f"points rows {len(pts)} != transcripts {len(tx)}")
    expect(list(pts.index) == list(range(len(pts))), "points index is not the row number")
    for col in ["transcript_id", "x", "y", "assigned"]:
        expect(np.array_equal(pts[col].to_numpy(), tx[col].to_numpy()), f"points column {col} differs")
    if tx["z"].notna().any():
        expect(np.allclose(pts["z"].to_numpy(float), tx["z"].to_numpy(float), equal_nan=True), "z differs")
    expect(
        np.allclose(pts["score"].to_numpy(float), tx["score"].to_numpy(float), equal_nan=True),
        "points column score differs",
    )
    expect(isinstance(pts["feature_name"].dtype, pd.CategoricalDtype), "feature_name is not categorical")
    for col in ["feature_name", "segger_cell_id"]:
        a = pts[col].astype(object).where(pts[col].notna(), None).tolist()
        b = tx[col].astype(object).where(tx[col].notna(), None).tolist()
        expect(a == b, f"points column {col} differs")
    return pts


def check_shapes(sdata: sd.SpatialData, tx: pd.DataFrame) -> pd.Index:
    expect("cells" in sdata.shapes, f"no shapes element 'cells': {list(sdata.shapes)}")
    shapes = sdata.shapes["cells"]
    expect(isinstance(get_transformation(shapes, "global"), Identity), "shapes: no identity to 'global'")
    expect(shapes.index.name == "cell_id", f"shapes index name {shapes.index.name!r}")
    expect(shapes.index.is_unique, "shapes index has duplicates")
    cells = tx["segger_cell_id"].dropna()
    expect(set(shapes.index) == set(cells), "shapes ids != the assigned cell ids of the transcripts")
    expect(bool((shapes.geom_type == "Polygon").all()), "a shape is not a Polygon")
    expect(bool(shapes.is_valid.all()), "an invalid polygon")
    expect(bool((shapes.area > 0).all()), "a polygon without area")
    # Every assigned transcript lies in its cell's polygon (the convex hull of the cell).
    assigned = tx[tx["segger_cell_id"].notna()]
    polys = shapes.geometry.loc[assigned["segger_cell_id"].to_numpy()].to_numpy()
    pts = shapely.points(assigned["x"].to_numpy(float), assigned["y"].to_numpy(float))
    inside = shapely.dwithin(polys, pts, 1e-3)
    expect(bool(inside.all()), f"{int((~inside).sum())} transcripts lie outside their cell's polygon")
    return shapes.index


def check_table(sdata: sd.SpatialData, tx: pd.DataFrame, cell_ids: pd.Index) -> tuple[int, int]:
    expect("table" in sdata.tables, f"no table 'table': {list(sdata.tables)}")
    t = sdata.tables["table"]
    region, region_key, instance_key = get_table_keys(t)
    expect((region, region_key, instance_key) == ("cells", "region", "cell_id"), f"table keys {region, region_key, instance_key}")
    expect(list(t.obs_names) == list(cell_ids), "table obs index != shapes index")
    expect(list(t.obs["cell_id"]) == list(cell_ids), "obs cell_id != shapes index")
    expect(set(t.obs["region"].astype(str)) == {"cells"}, "obs region is not 'cells'")
    # The table is linked to the shapes: joining them keeps every cell, in order.
    _, joined = sd.join_spatialelement_table(sdata=sdata, spatial_element_names="cells", table_name="table", how="inner")
    expect(joined is not None and joined.n_obs == len(cell_ids), "table does not join the shapes")
    # Counts: the transcripts of each cell and gene (those with a gene).
    genes = tx["feature_name"].astype(object)
    a = tx[tx["segger_cell_id"].notna() & genes.notna()]
    expected = pd.crosstab(a["segger_cell_id"].astype(str), a["feature_name"].astype(str))
    expected = expected.reindex(index=list(t.obs_names), columns=list(t.var_names), fill_value=0)
    x = t.X.toarray() if hasattr(t.X, "toarray") else np.asarray(t.X)
    expect(np.array_equal(x, expected.to_numpy()), "table counts != the transcripts per cell and gene")
    total = int(x.sum())
    expect(total == len(a), f"table total {total} != assigned transcripts {len(a)}")
    expect(np.array_equal(t.obs["transcript_count"].to_numpy(), a.groupby("segger_cell_id").size().reindex(t.obs_names).to_numpy()), "obs transcript_count differs")
    return t.n_obs, t.n_vars


def check(store: Path, transcripts: Path) -> dict:
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sdata = sd.read_zarr(store)
    read_s = time.perf_counter() - t0
    # spatialdata warns (UserWarning) about an outdated format, a table annotating a missing
    # element or instance ids of another dtype than the shapes' index: each is a failure.
    complaints = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    expect(not complaints, f"read_zarr warned: {complaints}")
    expect(sdata.coordinate_systems == ["global"], f"coordinate systems {sdata.coordinate_systems}")
    tx = pd.read_parquet(transcripts)
    pts = check_points(sdata, tx)
    cell_ids = check_shapes(sdata, tx)
    n_obs, n_vars = check_table(sdata, tx, cell_ids)
    # What was read is valid SpatialData: spatialdata writes it again and reads it back.
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # spatialdata's own writer's notices
        sdata.write(Path(tmp) / "again.zarr")
        again = sd.read_zarr(Path(tmp) / "again.zarr")
        expect(again.tables["table"].n_obs == n_obs, "the rewritten store lost cells")
    return {
        "spatialdata": sd.__version__,
        "transcripts": len(pts),
        "cells": n_obs,
        "genes": n_vars,
        "assigned": int(tx["segger_cell_id"].notna().sum()),
        "read_s": round(read_s, 3),
        "check_s": round(time.perf_counter() - t0, 3),
        "read_notices": sorted({f"{w.category.__name__}: {str(w.message).splitlines()[0][:80]}" for w in caught}),
    }


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        summary = check(Path(argv[1]), Path(argv[2]))
    except CheckFailed as e:
        print(f"check failed: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 - a store spatialdata cannot read fails the check
        print(f"check failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
