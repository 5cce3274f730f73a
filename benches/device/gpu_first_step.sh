#!/bin/bash
# First-step (compilation + autotune) timings of issue 5, run on a lent device from the repo root:
#   parity on CUDA (fused and generic), gpu_bench cold (no kernel caches) and warm (caches on
#   disk), the same first step with minimal autotune, and the PyTorch Geometric baseline.
# Prepared here with:
#   CUDARC_CUDA_VERSION=13000 cargo build --release -p segger-benches --features cuda --bin gpu_bench
#   CUDARC_CUDA_VERSION=13000 cargo test --release -p segger-model --features cuda --test parity --no-run
#   mkdir -p target/device && cp <parity test binary> target/device/parity_test
# copied (stripped, gzipped) to target/device/bin/gpu_bench.gz and target/device/parity_test.gz, and
#   target/device carried.
set -u
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total --format=csv
cp benches/device/cubecl.toml ./cubecl.toml
gunzip -kf target/device/parity_test.gz target/device/bin/gpu_bench.gz
chmod +x target/device/parity_test target/device/bin/gpu_bench
rm -rf /tmp/cubecl-cache
B=target/device/bin/gpu_bench

echo "== parity on CUDA"
SEGGER_PARITY_DIR=$PWD/tests/data/parity timeout 120 \
  target/device/parity_test --ignored parity_cuda --nocapture >"$OUT/parity.txt" 2>&1
grep -E "worst|exceeds|test result|panicked" "$OUT/parity.txt" | head -30

echo "== gpu_bench cuda, cold (no kernel caches)"
rm -rf /tmp/cubecl-cache
nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 >"$OUT/mem.txt" &
SMI=$!
timeout 200 $B cuda all 20 2>&1 | tee "$OUT/cold.txt" | grep -v "^\s*$"
kill $SMI
echo "nvidia-smi memory.used max MiB: $(sort -n "$OUT/mem.txt" | tail -1) (idle $(head -1 "$OUT/mem.txt"))"

echo "== gpu_bench cuda step, warm caches"
timeout 60 $B cuda step 20 2>&1 | tee "$OUT/warm.txt"

echo "== gpu_bench cuda step, no caches, CUBECL_AUTOTUNE_LEVEL=minimal"
rm -rf /tmp/cubecl-cache
CUBECL_AUTOTUNE_LEVEL=minimal timeout 80 $B cuda step 20 2>&1 | tee "$OUT/minimal.txt"

echo "== PyTorch Geometric baseline"
PYTHONUNBUFFERED=1 timeout 100 python3 benches/pyg/gpu_step.py 2>&1 | tee "$OUT/pyg.txt"
