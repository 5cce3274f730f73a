#!/bin/bash
# Issue 5 device check, run from the repo root on a lent device: every GPU kernel against the
# generic ops or the host on CUDA (fused GATv2, AdamW per parameter and multi-tensor, column
# sums, squared norms, f16/bf16); clip-inside-AdamW; parity on CUDA with the CPU's one-ulp
# sensitivity (tests/parity.rs); the seed training step with the multi-tensor optimiser step,
# the per-parameter one and session 2's (Burn's AdamW + host-read clip) on one warm device; the
# step with plain-f32 matmuls (the default, CubeCL's unit kernel) against TF32
# ones, and the model's matmul shapes alone with each kernel; host
# time per phase and live tensor bytes (sampled: a lower bound of the peak; exact-size pages:
# an upper bound); column-sum kernel against Burn's reduction; the edge
# kernel's lane variant against the default (op and step); the PyG
# baseline step on the same GPU (peak allocated and reserved; f32, TF32 and 16-mixed); the step
# in f32, 16-mixed and bf16-mixed (parity and training in mixed precision run with the parity
# and optimiser tests); a profiled step. When
# target/device/bin/gpu_bench_base.gz exists (gpu_bench built from an earlier commit), its step
# runs too, on the same warm device, for a before/after figure.
# Prepared here (no Rust toolchain and no network on the device):
#   export CUDARC_CUDA_VERSION=13000
#   cargo build --release -p segger-benches --features cuda --bin gpu_bench
#   cargo test --release -p segger-model --features wgpu,cuda --test parity --test wgpu --test optim --no-run
#   then benches/device/pack.sh (stripped, gzipped binaries under target/device)
# and carried with `target/device`. The parity fixtures are tests/data/parity. The GPU tests are
# #[ignore]d: `--ignored` and a name filter pick the CUDA ones.
# Sections run in order of priority (correctness, then the issue's targets, then diagnostics)
# within BUDGET seconds (default 540, for one 600 s device call): each command's timeout is cut
# to what is left, and a section with less than 20 s left is skipped and says so.
set -u
OUT=${OUT:-/tmp/gpu_check}
END=$((SECONDS + ${BUDGET:-540}))
# `t N cmd...`: cmd under a timeout of N s, or of what is left of the budget.
t() {
  local want=$1 left=$((END - SECONDS - 5))
  shift
  if [ "$left" -lt 20 ]; then echo "(skipped, out of time: $*)"; return 0; fi
  timeout $((want < left ? want : left)) "$@"
}
mkdir -p "$OUT" /tmp/gpu_check
nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total --format=csv,noheader
gunzip -kf target/device/parity_test.gz target/device/gpu_test.gz target/device/optim_test.gz \
  target/device/bin/gpu_bench*.gz
chmod +x target/device/parity_test target/device/gpu_test target/device/optim_test target/device/bin/gpu_bench*
cp benches/device/cubecl.toml ./cubecl.toml
B=target/device/bin/gpu_bench
echo "== kernels vs generic on CUDA (unit matmul, column sums, norms, AdamW, GATv2)"
t 120 target/device/gpu_test --ignored cuda --skip half --nocapture >"$OUT/op_test.txt" 2>&1
grep -E "^test |test result|panicked|step 3|unit matmul" "$OUT/op_test.txt" | head -30
echo "== parity on CUDA (unit matmul and elementwise linear)"
SEGGER_PARITY_DIR=$PWD/tests/data/parity t 150 \
  target/device/parity_test --ignored parity_cuda --nocapture >"$OUT/parity.txt" 2>&1
grep -E "worst|exceeds|test result|panicked" "$OUT/parity.txt" | head -30
echo "== step: plain-f32 matmuls (default, unit kernel) vs TF32, alternating"
nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 >"$OUT/mem.txt" &
SMI=$!
t 150 $B cuda step-matmul 30 2>&1 | grep -E "precision|first|median|memory" | tee "$OUT/step_matmul.txt"
kill $SMI
echo "nvidia-smi memory.used max MiB during the step runs: $(sort -n "$OUT/mem.txt" | tail -1)"
echo "== PyG step on the same GPU (plain f32, then TF32)"
t 150 python3 benches/pyg/gpu_step.py 2>&1 | tee "$OUT/pyg.txt" | grep -v "layer"
echo "== host time per phase of the step, live tensor bytes (sampled: a lower bound of the peak)"
t 60 $B cuda phases 20 2>&1 | grep -E "phases|live|total" | tee "$OUT/phases.txt"
echo "== upper bound of the live-bytes peak: exact-size pages (benches/device/peak.toml)"
cp benches/device/peak.toml ./cubecl.toml
t 60 $B cuda step 3 2>&1 | grep -E "median|memory" | tee "$OUT/peak.txt"
cp benches/device/cubecl.toml ./cubecl.toml
echo "== step: f32, 16-mixed and bf16-mixed alternating; then 16-mixed alone (its own pool)"
t 120 $B cuda step-mixed 20 2>&1 | grep -E "first|median|scale" | tee "$OUT/step_mixed.txt"
t 60 $B cuda step-f16 10 2>&1 | grep -E "median|scale|memory" | tee -a "$OUT/step_mixed.txt"
echo "== the model's matmul shapes with each kernel"
t 90 $B cuda matmul 2>&1 | grep -E "^matmul" | tee "$OUT/matmul.txt"
for p in f16 bf16; do
  t 60 target/device/gpu_test --ignored half_${p}_on_cuda --nocapture >"$OUT/half_$p.txt" 2>&1
  grep -E "^test |panicked|half" "$OUT/half_$p.txt" | head -24
done
echo "== clip inside AdamW vs clip then AdamW on CUDA"
SEGGER_PARITY_DIR=$PWD/tests/data/parity t 60 target/device/optim_test --ignored cuda \
  >"$OUT/optim.txt" 2>&1
grep -E "^test |panicked|test result" "$OUT/optim.txt" | head
echo "== step: multi-tensor optimiser step, per parameter, Burn AdamW + host clip, multi again"
t 150 $B cuda step-baseline 30 2>&1 | tee "$OUT/step.txt"
if [ -x target/device/bin/gpu_bench_base ]; then
  echo "== step of the earlier commit's gpu_bench, then this one's, on the same warm device"
  t 60 target/device/bin/gpu_bench_base cuda step 30 2>&1 | grep -E "median" | tee "$OUT/step_base.txt"
  t 60 $B cuda step 30 2>&1 | grep -E "median" | tee -a "$OUT/step_base.txt"
fi
echo "== step: default edge kernel vs its lane variant, alternating"
t 120 $B cuda step-edge 30 2>&1 | grep -E "edge kernel|median" | tee "$OUT/step_edge.txt"
echo "== column sums: kernel vs Burn's two-stage reduction; edge kernel lanes vs default"
t 120 $B cuda ops 2>&1 | tee "$OUT/ops.txt" | grep -E "col_sum|linear|gatv2"
echo "== profiled step"
cp benches/device/profile.toml ./cubecl.toml
t 60 $B cuda step 3 >"$OUT/step_profiled.txt" 2>&1
cp /tmp/gpu_check/profile.log "$OUT/profile.log" 2>/dev/null
python3 - "$OUT/profile.log" <<'PY' 2>&1 | tail -25
# The profile holds 4 steps (the first + 3); the last quarter of its lines is one warm step.
import re, sys, collections
lines = open(sys.argv[1], errors="replace").read().splitlines()
last = lines[3 * len(lines) // 4:]
tot = collections.Counter(); cnt = collections.Counter()
unit = {"ns": 1e-6, "µs": 1e-3, "us": 1e-3, "ms": 1, "s": 1e3}
for line in last:
    parts = [p.strip() for p in line.split("|")]
    m = re.match(r"([0-9.]+)(ns|µs|us|ms|s)$", parts[1]) if len(parts) > 2 else None
    if m:
        tot[parts[2]] += float(m.group(1)) * unit[m.group(2)]; cnt[parts[2]] += 1
print("one warm step: launches", sum(cnt.values()), "profiled kernel ms", round(sum(tot.values()), 2))
for k, v in tot.most_common(18):
    print(f"{v:8.3f} ms {cnt[k]:5d}x {k}")
PY
