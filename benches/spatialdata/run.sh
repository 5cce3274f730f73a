#!/usr/bin/env bash
# Opens `segger predict`'s SpatialData store with the `spatialdata` Python package and checks it
# against the prediction's segger_transcripts.parquet (check.py), then breaks copies of the
# store and checks that check.py fails on each.
#
#   benches/spatialdata/run.sh [VENV_DIR]
#
# VENV_DIR: a virtual environment, created with `pip install spatialdata` unless it already has
# spatialdata; by default a throwaway one in a temporary folder. SPATIALDATA_VERSION=X.Y.Z pins
# the version (default: the latest). Needs python3 ≥ 3.11 with venv, PyPI, and cargo (builds
# segger-cli unless SEGGER names a binary).
# The sample: `segger simulate` of 150 cells, its dataset, one epoch of training on the CPU, and
# `segger predict` (as crates/segger-cli/tests/outputs.rs does).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
venv=${1:-$work/venv}

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

t=$(now)
if ! "$venv/bin/python" -c "import spatialdata" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "spatialdata${SPATIALDATA_VERSION:+==$SPATIALDATA_VERSION}"
fi
py=$venv/bin/python
echo "== pip install spatialdata $("$py" -c 'import spatialdata; print(spatialdata.__version__)'): $(since "$t") s"

# SEGGER=PATH uses a built binary (CI: the one `cargo test --workspace` built) instead of
# building segger-cli alone, which would rebuild its dependencies with that crate's features.
if [ -n "${SEGGER:-}" ]; then
  segger=$SEGGER
else
  t=$(now)
  cargo build --release -p segger-cli 2>&1 | tail -1
  segger=${CARGO_TARGET_DIR:-$root/target}/release/segger
  echo "== cargo build: $(since "$t") s"
fi

t=$(now)
export SEGGER_LOG=warn
"$segger" simulate --out "$work/raw" --cells 150 --seed 3 >/dev/null
"$segger" create_dataset --platform xenium --input "$work/raw" --output "$work/dataset" >/dev/null
"$segger" train --train_dir "$work/dataset/train_tiles" --val_dir "$work/dataset/val_tiles" \
  --epochs 1 --accelerator cpu --default_root_dir "$work/model" >/dev/null
"$segger" predict --accelerator cpu --model "$work/model" --input "$work/dataset" \
  --output "$work/seg" >/dev/null
echo "== sample, training and prediction: $(since "$t") s"

store=$work/seg/segger_spatialdata.zarr
tx=$work/seg/segger_transcripts.parquet
t=$(now)
"$py" benches/spatialdata/check.py "$store" "$tx"
echo "== check.py on the store: $(since "$t") s (the Python process included)"

# broken NAME PYTHON_CODE: a copy of the store, broken by PYTHON_CODE (run with the copy's path
# as `store`), must fail the check.
broken() {
  local copy=$work/broken-${1// /-}.zarr
  cp -r "$store" "$copy"
  "$py" -c "import sys, json, pathlib; store = pathlib.Path(sys.argv[1]); $2" "$copy"
  if "$py" benches/spatialdata/check.py "$copy" "$tx" >/dev/null 2>"$work/err"; then
    echo "FAILED: check.py accepted the store with $1" >&2
    exit 1
  fi
  echo "== broken copy ($1): check.py fails as it should: $(tail -n 1 "$work/err" | cut -c1-150)"
}

broken "no points parquet" \
  "import shutil; shutil.rmtree(store / 'points/transcripts/points.parquet')"
broken "an unknown table format version" "
p = store / 'tables/table/zarr.json'; m = json.loads(p.read_text())
m['attributes']['version'] = '9.9'; p.write_text(json.dumps(m))"
broken "the table annotating a missing element" "
import zarr; a = zarr.open_array(store / 'tables/table/uns/spatialdata_attrs/region', mode='r+')
a[()] = 'nuclei'"
broken "one transcript moved to another cell" "
import pyarrow as pa, pyarrow.parquet as pq, pyarrow.compute as pc
p = store / 'points/transcripts/points.parquet/part.0.parquet'; t = pq.read_table(p)
c = t.column('segger_cell_id').to_pylist(); i = next(k for k, v in enumerate(c) if v)
c[i] = next(v for v in c if v and v != c[i])
t = t.set_column(t.schema.get_field_index('segger_cell_id'), 'segger_cell_id', pa.array(c))
pq.write_table(t, p)"
broken "a cell's polygon missing" "
import geopandas as gpd
p = store / 'shapes/cells/shapes.parquet'; g = gpd.read_parquet(p); g.iloc[1:].to_parquet(p)"
echo "== all checks passed"
