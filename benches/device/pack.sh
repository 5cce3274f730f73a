#!/bin/bash
# Packs what the device scripts run into target/device (carried to the lent machine): the
# gpu_bench binary, the parity and wgpu test binaries (stripped, gzipped) and the parity
# fixtures without their float64 files. Build first (see gpu_step_check.sh).
set -eu
cd "$(dirname "$0")/../.."
newest() { ls -t target/release/deps/$1-* | grep -v '\.d$' | head -1; }
mkdir -p target/device/bin target/device/parity
for pair in "$(newest parity):target/device/parity_test" "$(newest wgpu):target/device/gpu_test" \
  "$(newest optim):target/device/optim_test" \
  "target/release/gpu_bench:target/device/bin/gpu_bench"; do
  src=${pair%%:*}; dst=${pair#*:}
  strip -o "$dst" "$src"
  gzip -f "$dst"
done
for f in ../shared/fixtures/parity/*.safetensors; do
  case $f in *.f64.safetensors) ;; *) cp "$f" target/device/parity/ ;; esac
done
du -sh target/device
