#!/bin/bash
# The GPU check of issue 5 (fast message passing), run from the repo root on a lent device
# (docs/benchmarks.md, "GPU"): the fused op against the generic ops on CUDA, parity on CUDA,
# per-op timings, the seed training step, the GATv2 layer at three sizes, a profiled step.
# Prepared here (the device has no Rust toolchain and no network):
#   export CUDARC_CUDA_VERSION=13000
#   cargo build --release -p segger-benches --features cuda --bin gpu_bench
#   cargo test --release -p segger-model --features wgpu,cuda --test parity --test wgpu --no-run
#   mkdir -p target/device/bin
#   cp <parity test binary> target/device/parity_test; cp <wgpu test binary> target/device/gpu_test
#   cp target/release/gpu_bench target/device/bin/; strip and gzip the three binaries
# then carried with `target/device` (about 31 MB). The parity fixtures are tests/data/parity; the
# GPU tests are #[ignore]d, so `--ignored` and a name filter pick the CUDA ones.
set -u
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
gunzip -kf target/device/parity_test.gz target/device/gpu_test.gz target/device/bin/gpu_bench.gz
chmod +x target/device/parity_test target/device/gpu_test target/device/bin/gpu_bench
cp benches/device/cubecl.toml ./cubecl.toml
B=target/device/bin/gpu_bench
echo "== fused op vs generic on CUDA"
timeout 100 target/device/gpu_test --ignored cuda --skip half --nocapture >"$OUT/op_test.txt" 2>&1
grep -E "fused vs|test result|panicked" "$OUT/op_test.txt" | head -40
echo "== parity on CUDA"
SEGGER_PARITY_DIR=$PWD/tests/data/parity timeout 100 \
  target/device/parity_test --ignored parity_cuda --nocapture >"$OUT/parity.txt" 2>&1
grep -E "worst|test result" "$OUT/parity.txt" | head
echo "== ops"
timeout 100 $B cuda ops 2>&1 | tee "$OUT/ops.txt"
echo "== step"
nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 >"$OUT/mem.txt" &
SMI=$!
timeout 60 $B cuda step 20 2>&1 | tee "$OUT/step.txt"
kill $SMI
echo "nvidia-smi memory.used max MiB during the step run: $(sort -n "$OUT/mem.txt" | tail -1)"
echo "== layer"
timeout 100 $B cuda layer 2>&1 | tee "$OUT/layer.txt"
echo "== profiled step"
mkdir -p /tmp/gpu_check
cp benches/device/profile.toml ./cubecl.toml
timeout 60 $B cuda step 3 >"$OUT/step_profiled.txt" 2>&1
cp /tmp/gpu_check/profile.log "$OUT/profile.log" 2>/dev/null
