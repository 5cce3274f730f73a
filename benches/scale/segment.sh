#!/usr/bin/env bash
# Whole-sample scale: `segger segment --epochs 1` (CPU) on simulated Xenium samples of growing
# size, with wall time and peak RSS per stage (from OUT/run.json) and for the whole process
# (/usr/bin/time). Prints one markdown table row per size; docs/benchmarks.md quotes them.
#
#   cargo build --release -p segger-cli
#   benches/scale/segment.sh WORK_DIR "1 10 30"      # sizes in millions of transcripts
#
# Each size needs about 0.35 GB (dataset) + 0.11 GB (outputs) of disk per million transcripts
# in WORK_DIR; a size's folders are removed after its row is printed (KEEP=1 keeps them).
set -euo pipefail

work=${1:?usage: segment.sh WORK_DIR "SIZES_IN_MILLIONS"}
sizes=${2:-"1 10 30"}
root=$(cd "$(dirname "$0")/../.." && pwd)
segger=${SEGGER:-${CARGO_TARGET_DIR:-$root/target}/release/segger}
[ -x "$segger" ] || { echo "no $segger: cargo build --release -p segger-cli" >&2; exit 2; }
command -v /usr/bin/time >/dev/null || { echo "needs GNU time (/usr/bin/time)" >&2; exit 2; }
mkdir -p "$work"

echo "| transcripts | kept | dataset s / MB | training s / MB | prediction s / MB | total wall | peak RSS | transcripts/s (prediction) |"
echo "|---|---|---|---|---|---|---|---|"
for m in $sizes; do
    raw="$work/sim${m}m"
    out="$work/seg${m}m"
    rm -rf "$raw" "$out"
    # segger simulate's easy tissue holds about 66.6 transcripts per cell.
    cells=$(( m * 15000 ))
    "$segger" simulate --out "$raw" --cells "$cells" --seed 1 >"$work/sim${m}m.log" 2>&1
    /usr/bin/time -v "$segger" segment --input "$raw" --output "$out" --epochs 1 \
        --accelerator cpu >"$work/seg${m}m.log" 2>&1
    python3 - "$out/run.json" "$work/seg${m}m.log" "$m" <<'EOF'
import json, re, sys
run = json.load(open(sys.argv[1]))
log = open(sys.argv[2]).read()
st = {s["stage"]: s for s in run["completed"]}
wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", log).group(1)
rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", log).group(1)) / 1024
kept = re.search(r"^(\d+) transcripts, ", log, re.M).group(1)
tps = re.search(r"; (\d+) transcripts/s in prediction", log).group(1)
cell = lambda s: f"{st[s]['seconds']:.0f} / {st[s]['peak_rss_mb']:.0f}"
print(f"| {sys.argv[3]}M | {int(kept):,} | {cell('dataset')} | {cell('model')} | "
      f"{cell('segmentation')} | {wall} | {rss:,.0f} MB | {int(tps):,} |")
EOF
    [ "${KEEP:-0}" = 1 ] || rm -rf "$raw" "$out"
done
