#!/bin/bash
# The CUDA backend's whole GPU check, in one `run` call of at most 10
# minutes on the GPU host (H200, CUDA 13, driver 580, no Go, no network).
# Prepare on a CPU machine, in the repository root (docs/cuda.md):
#   ../shared/gpu/pack.sh && tar -cJf .gpu/vendor.tar.xz -C .gpu vendor && rm -rf .gpu/vendor
# then on the GPU host, in the repository root, with .gpu carried along:
#   bash kernels/cuda/gpu-check.sh
# It assembles the committed PTX with CUDA 13's ptxas, builds bin/tessera
# and bin/tessera-cuda, probes the device through the worker's handoff,
# runs the conformance tests against kernels/cpu, the fp32 and bf16 golden
# tests and the decode benchmarks (LLaMA-8B and BLOOM-560m shapes, batch 1
# and 32), then `tessera bench-model --device cuda:0`, and writes
# $OUT/cuda.log ending in a short table. GPU_CHECK_DRY=1 stops before the
# first step that needs the device (a rehearsal on a CPU machine).
set -uo pipefail
OUT=${OUT:-/tmp/tessera-gpu-out}
mkdir -p "$OUT"
log="$OUT/cuda.log"
: >"$log"
step() { echo "== $*" | tee -a "$log"; }
declare -A status
order=()
record() { status[$1]=$2; order+=("$1"); }

if [ ! -d vendor ] && [ ! -d .gpu/vendor ] && [ -f .gpu/vendor.tar.xz ]; then
  tar -xJf .gpu/vendor.tar.xz
fi
# shellcheck disable=SC1091
source .gpu/env.sh
export TESSERA_BENCH_DIR=${TESSERA_BENCH_DIR:-/tmp/tessera-bench}
bin=/tmp/tessera-gpu/tessera

step "host"
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; nvcc --version | tail -1; go version; } 2>&1 | tee -a "$log"

step "ptxas (CUDA on this host) on the committed PTX"
if ptxas -arch=sm_90 -o /dev/null kernels/cuda/ptx/tessera.sm_90.ptx 2>&1 | tee -a "$log" &&
  ptxas -arch=sm_90 -o /dev/null kernels/cuda/ptx/tessera.compute_80.ptx 2>&1 | tee -a "$log"; then
  record ptxas ok
else record ptxas FAILED; fi

step "make cuda (bin/tessera and bin/tessera-cuda)"
if make cuda BIN=$bin 2>&1 | tail -20 | tee -a "$log" && [ -x $bin-cuda ]; then
  record "make cuda" ok
else record "make cuda" FAILED; fi

step "go test -tags cuda -c ./kernels/cuda"
if go test -tags cuda -c -o /tmp/tessera-gpu/cuda.test ./kernels/cuda 2>&1 | tee -a "$log"; then
  record "test binary" ok
else record "test binary" FAILED; fi

if [ "${GPU_CHECK_DRY:-}" = 1 ]; then
  echo "GPU_CHECK_DRY=1: stopping before the device steps" | tee -a "$log"
else
  step "tessera worker --device cuda:0 handoff probe"
  if $bin probe-device cpu >/dev/null && $bin-cuda probe-device cuda:0 2>&1 | tee -a "$log"; then
    record "probe cuda:0" ok
  else record "probe cuda:0" FAILED; fi

  step "conformance and golden tests (TESSERA_CUDA_SYNC=1)"
  (cd kernels/cuda && TESSERA_CUDA_SYNC=1 timeout 150 /tmp/tessera-gpu/cuda.test -test.run . -test.v -test.timeout 145s) \
    >"$OUT/test.log" 2>&1
  record "tests" "$([ $? = 0 ] && echo ok || echo FAILED)"
  cat "$OUT/test.log" >>"$log"

  step "decode benchmarks"
  (cd kernels/cuda && timeout 200 /tmp/tessera-gpu/cuda.test -test.run '^$' -test.bench Decode -test.benchtime 20x) \
    >"$OUT/bench.log" 2>&1
  record "benchmarks" "$([ $? = 0 ] && echo ok || echo FAILED)"
  cat "$OUT/bench.log" >>"$log"

  step "tessera bench-model --device cuda:0"
  if timeout 45 $bin-cuda bench-model --device cuda:0 --model models/docbloom-3m --prompt 128 --gen 64 \
    >"$OUT/bench-model.log" 2>&1; then
    record "bench-model" ok
  else record "bench-model" FAILED; fi
  cat "$OUT/bench-model.log" >>"$log"
fi

{
  echo
  echo "== summary"
  for s in "${order[@]}"; do printf '%-28s %s\n' "$s" "${status[$s]}"; done
  if [ -f "$OUT/test.log" ]; then
    awk '/^--- (PASS|FAIL): Test[A-Za-z0-9]* / {printf "%-28s %s\n", $3, ($2 == "PASS:" ? "pass" : "FAIL")}
         /^panic/ {print "PANIC: " $0}' "$OUT/test.log"
  fi
  if [ -f "$OUT/bench.log" ]; then
    printf '%-40s %s\n' "benchmark" "decode tok/s"
    awk '/^BenchmarkDecode/ {for (i = 1; i <= NF; i++) if ($i == "tok/s") printf "%-40s %s\n", $1, $(i-1)}' "$OUT/bench.log"
  fi
  [ -f "$OUT/bench-model.log" ] && tail -4 "$OUT/bench-model.log"
} | tee -a "$log"
