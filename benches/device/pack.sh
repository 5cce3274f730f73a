#!/bin/bash
# Packs what the device scripts run into target/device (carried to the lent machine): the
# gpu_bench binary and the parity, wgpu and optim test binaries (stripped, gzipped). The parity
# fixtures travel with the working tree (tests/data/parity). Build first (see
# gpu_step_check.sh). For a before/after step figure, build gpu_bench at the earlier commit
# first and copy it to target/release/gpu_bench_base (e.g. from a `git worktree` with
# CARGO_TARGET_DIR=target); it is packed too when present.
set -eu
cd "$(dirname "$0")/../.."
newest() { ls -t target/release/deps/$1-* | grep -v '\.d$' | head -1; }
mkdir -p target/device/bin
for pair in "$(newest parity):target/device/parity_test" "$(newest wgpu):target/device/gpu_test" \
  "$(newest optim):target/device/optim_test" \
  "target/release/gpu_bench:target/device/bin/gpu_bench" \
  $([ -f target/release/gpu_bench_base ] && echo "target/release/gpu_bench_base:target/device/bin/gpu_bench_base"); do
  src=${pair%%:*}; dst=${pair#*:}
  strip -o "$dst" "$src"
  gzip -f "$dst"
done
du -sh target/device
