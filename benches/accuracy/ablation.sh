#!/usr/bin/env bash
# What each change of the defaults buys, one step at a time, on samples made by run.sh:
# for each WORK/<name>/raw, train and predict from the reference's settings to today's
# defaults and print validation AUROC and majority-matched correct / wrong per step.
# Usage: benches/accuracy/ablation.sh WORK "easy-0 hard-0"
set -euo pipefail
work=$1
runs=$2
segger=${SEGGER:-target/release/segger}
epochs=${EPOCHS:-20}
ref_predict="--cell_types 0 --distance_scale 0 --reach 0 --lone_reach 0 --use_cc false --expression_weight 0 --inner_reach 0 --score_cut 0.5 --k_tx 5 --dist_tx 5"
# name | create_dataset flags | train flags | predict flags
# The bidirectional rows before the cosine schedule train at the earlier constant 3e-3; their
# logits are scaled (the bidirectional architecture's), which docs/accuracy.md's rows predate.
# The rows before the lone reach pin it off (and the inner reach at its earlier 1.5); the rows
# with cell types before "unconfirmed transcripts back" cannot turn that step off, so with
# today's binary they differ from docs/accuracy.md's rows by it, and every row with cell types
# before the last links new cells within 1.3 neighbourhood radii (a constant, cell_types::LINK;
# those rows were measured with 2.5 µm), so their figures differ from the table's; the last
# two rows differ by it alone.
steps=(
  "reference|--k_bd 3 --tile_size 50 --negatives random|--architecture reference --learning_rate 1e-4 --lr_schedule constant|$ref_predict"
  "+ lr 3e-3|--k_bd 3 --tile_size 50 --negatives random|--architecture reference --learning_rate 3e-3 --lr_schedule constant|$ref_predict"
  "+ competing negatives|--k_bd 3 --tile_size 50|--architecture reference --learning_rate 3e-3 --lr_schedule constant|$ref_predict"
  "+ k_bd 1|--tile_size 50|--architecture reference --learning_rate 3e-3 --lr_schedule constant|$ref_predict"
  "+ 25 µm tiles|--tile_size 25|--architecture reference --learning_rate 3e-3 --lr_schedule constant|$ref_predict"
  "+ bd→tx messages|--tile_size 25|--learning_rate 3e-3 --lr_schedule constant|$ref_predict"
  "+ calibrated cut|--tile_size 25|--learning_rate 3e-3 --lr_schedule constant|--cell_types 0 --distance_scale 0 --reach 0 --use_cc false --expression_weight 0 --inner_reach 0 --k_tx 5 --dist_tx 5 --lone_reach 0"
  "+ distance term|--tile_size 25|--learning_rate 3e-3 --lr_schedule constant|--cell_types 0 --reach 0 --use_cc false --expression_weight 0 --inner_reach 0 --lone_reach 0"
  "+ reach 2.5 radii|--tile_size 25|--learning_rate 3e-3 --lr_schedule constant|--cell_types 0 --use_cc false --expression_weight 0 --inner_reach 0 --lone_reach 0"
  "+ components|--tile_size 25|--learning_rate 3e-3 --lr_schedule constant|--cell_types 0 --expression_weight 0 --inner_reach 0 --lone_reach 0"
  "+ expression term|--tile_size 25|--learning_rate 3e-3 --lr_schedule constant|--cell_types 0 --inner_reach 0 --lone_reach 0"
  "+ inner reach 1.5 radii|--tile_size 25|--learning_rate 3e-3 --lr_schedule constant|--cell_types 0 --inner_reach 1.5 --lone_reach 0"
  "+ cell types, K from the data|--tile_size 25|--learning_rate 3e-3 --lr_schedule constant|--join_neighbours 0 --inner_reach 1.5 --lone_reach 0"
  "+ cosine schedule, lr 6e-3, scaled logits|--tile_size 25||--join_neighbours 0 --inner_reach 1.5 --lone_reach 0"
  "+ below-cut transcripts join a boundary of their type|--tile_size 25||--inner_reach 1.5 --lone_reach 0"
  "+ inner reach 1.25, unconfirmed transcripts back|--tile_size 25||--lone_reach 0"
  "+ lone reach 2 radii|--tile_size 25||"
  "+ new cells linked within 1.3 neighbourhood radii|--tile_size 25||"
  "+ 20 µm tiles (defaults)|||"
)
for r in $runs; do
  d="$work/$r"
  prev_ds="" prev_tr=""
  for s in "${steps[@]}"; do
    IFS='|' read -r name ds_flags tr_flags pr_flags <<<"$s"
    a="$d/ablation"
    if [ "$ds_flags" != "$prev_ds" ]; then
      rm -rf "$a/dataset"
      "$segger" create_dataset --input "$d/raw" --output "$a/dataset" --platform xenium $ds_flags >/dev/null
      prev_tr="-"
    fi
    if [ "$tr_flags" != "$prev_tr" ]; then
      rm -rf "$a/model"
      "$segger" train --train_dir "$a/dataset/train_tiles" --val_dir "$a/dataset/val_tiles" \
        --epochs "$epochs" --accelerator cpu --default_root_dir "$a/model" $tr_flags >/dev/null 2>&1
    fi
    prev_ds=$ds_flags prev_tr=$tr_flags
    rm -rf "$a/prediction"
    "$segger" predict --model "$a/model" --input "$a/dataset" --output "$a/prediction" $pr_flags >/dev/null 2>&1
    r5=$(awk -F, 'NR==6 {print $5}' "$a/model/metrics.csv")
    r20=$(awk -F, 'END {print $5}' "$a/model/metrics.csv")
    m=$("$segger" evaluate --prediction "$a/prediction" --truth "$d/raw/ground_truth.parquet" \
      --output "$a/evaluation.json" --json | python3 -c "import json,sys; t=json.load(sys.stdin)['segmentation']['truth']; print(f\"{100*t['correct_majority']:.1f} | {100*t['wrong_majority']:.1f}\")")
    printf '| %s | %s | %.3f | %.3f | %s |\n' "$r" "$name" "$r5" "$r20" "$m"
  done
done
