#!/usr/bin/env bash
# Accuracy against a known truth: for each tissue preset and seed, simulate ~700 cells, build
# the dataset, train 20 epochs on the CPU and predict, all with defaults, then evaluate the
# segmentation beside the geometric baselines. Writes WORK/<preset>-<seed>/evaluation.json and
# prints one line per run. Usage: benches/accuracy/run.sh [WORK] [PRESETS] [SEEDS]
#   e.g. benches/accuracy/run.sh /tmp/acc "easy hard" "0 1 2"
set -euo pipefail
work=${1:-/tmp/segger-accuracy}
presets=${2:-easy hard}
seeds=${3:-0 1 2}
segger=${SEGGER:-target/release/segger}
epochs=${EPOCHS:-20}
mkdir -p "$work"
for p in $presets; do
  for s in $seeds; do
    d="$work/$p-$s"
    rm -rf "$d"
    mkdir -p "$d"
    "$segger" simulate --out "$d/raw" --cells 700 --seed "$s" --preset "$p" >/dev/null
    "$segger" create_dataset --input "$d/raw" --output "$d/dataset" --platform xenium >/dev/null
    t0=$(date +%s.%N)
    "$segger" train --train_dir "$d/dataset/train_tiles" --val_dir "$d/dataset/val_tiles" \
      --epochs "$epochs" --accelerator cpu --default_root_dir "$d/model" >"$d/train.log" 2>&1
    t1=$(date +%s.%N)
    "$segger" predict --model "$d/model" --input "$d/dataset" --output "$d/prediction" \
      ${PREDICT_FLAGS:-} >/dev/null 2>&1
    "$segger" evaluate --prediction "$d/prediction" --truth "$d/raw/ground_truth.parquet" \
      --baseline "$d/raw" --output "$d/evaluation.json" --json >/dev/null
    auroc=$(awk -F, 'END {print $5}' "$d/model/metrics.csv")
    python3 - "$d/evaluation.json" "$p" "$s" "$auroc" "$(echo "$t1 - $t0" | bc)" <<'PY'
import json, sys
e = json.load(open(sys.argv[1]))
def f(m):
    t = m["truth"]
    return f'{100*t["correct_majority"]:.1f}/{100*t["wrong_majority"]:.1f}'
row = [f'{sys.argv[2]} seed {sys.argv[3]}: segger {f(e["segmentation"])} (auroc {float(sys.argv[4]):.3f}, train {float(sys.argv[5]):.0f} s)']
row += [f'{k} {f(v)}' for k, v in e["baselines"].items()]
print(" | ".join(row))
PY
  done
done
