#!/bin/bash
# One GATv2 layer (64 -> 4 heads x 16, forward + backward) on the CPU, side by side in one run:
# our Rust binary (`gpu_bench flex layer`, Burn's flex backend, fused kernels) and PyTorch on
# 2 threads (`benches/pyg/cpu_layer.py`, torch_geometric's GATv2Conv), then both again in the
# other order to expose drift (thermal, other load). Prints `uptime` before each run. Run it
# from the repo root on a quiet machine; it builds nothing. Beforehand:
#   cargo build --release -p segger-benches --bin gpu_bench     # flex is the default backend
#   python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch torch_geometric
# Environment:
#   TORCH_PY  the venv's python (default /tmp/torchvenv/bin/python)
#   SIZES     sizes for cpu_layer.py (default "10k 41k 200k": gpu_bench always runs all three)
#   STEPS     timed PyTorch steps after one warm-up (default 10, as gpu_bench's layer)
#   OUT       folder for the raw outputs (default /tmp/cpu_side_by_side)
#   GPU_BENCH the Rust binary (default target/release/gpu_bench)
set -eu
cd "$(dirname "$0")/.."
TORCH_PY=${TORCH_PY:-/tmp/torchvenv/bin/python}
SIZES=${SIZES:-10k 41k 200k}
STEPS=${STEPS:-10}
OUT=${OUT:-/tmp/cpu_side_by_side}
BIN=${GPU_BENCH:-target/release/gpu_bench}
[ -x "$BIN" ] || { echo "no $BIN: build it first (see the top of $0)" >&2; exit 2; }
[ -x "$TORCH_PY" ] || { echo "no $TORCH_PY: set TORCH_PY or create the venv" >&2; exit 2; }
mkdir -p "$OUT"
echo "$(nproc) cores; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"

run_rust() {
    echo "== rust: $BIN flex layer  (load average $(uptime | sed 's/.*load average: *//'))"
    "$BIN" flex layer >"$OUT/rust_$1.txt" 2>&1 || { cat "$OUT/rust_$1.txt"; return 1; }
    grep -E "^gatv2 |^total" "$OUT/rust_$1.txt"
}

run_torch() {
    echo "== pytorch: cpu_layer.py --sizes $SIZES  (load average $(uptime | sed 's/.*load average: *//'))"
    # shellcheck disable=SC2086
    "$TORCH_PY" benches/pyg/cpu_layer.py --threads 2 --steps "$STEPS" --sizes $SIZES \
        >"$OUT/torch_$1.txt" 2>&1 || { cat "$OUT/torch_$1.txt"; return 1; }
    grep -vi "warn" "$OUT/torch_$1.txt"
}

run_rust 1
run_torch 1
run_torch 2
run_rust 2

echo "== whole-layer medians, ms: run 1 (rust ran first), run 2 (pytorch ran first)"
for name in tile_10k_30k batch_41k_123k 200k_1M; do
    for tag in fused pytorch; do
        [ "$tag" = pytorch ] && f=torch || f=rust
        m1=$(grep -E "^gatv2 layer +$name +$tag " "$OUT/${f}_1.txt" | sed 's/.*median *//;s/ ms//')
        m2=$(grep -E "^gatv2 layer +$name +$tag " "$OUT/${f}_2.txt" | sed 's/.*median *//;s/ ms//')
        if [ -n "$m1$m2" ]; then
            printf '%-15s %-7s %10s %10s\n' "$name" "$tag" "${m1:--}" "${m2:--}"
        fi
    done
done
echo "(raw outputs in $OUT)"
