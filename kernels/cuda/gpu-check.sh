#!/bin/bash
# The CUDA backend's whole GPU check, meant for one `run` call on the GPU
# host (H200, CUDA 13, no Go, no network). Prepare on a CPU machine, in the
# repository root:   ../shared/gpu/pack.sh      (Go toolchain + vendor/ in .gpu/)
# then on the GPU host, in the repository root, with .gpu carried along:
#   bash kernels/cuda/gpu-check.sh
# It generates the PTX (copied to $OUT/ptx so the session can commit it),
# builds everything with -tags cuda, runs the conformance, golden and
# benchmark tests, and writes $OUT/cuda.log ending in a short table.
set -uo pipefail
OUT=${OUT:-/tmp/tessera-gpu-out}
mkdir -p "$OUT/ptx"
log="$OUT/cuda.log"
: >"$log"
step() { echo "== $*" | tee -a "$log"; }

# .gpu/vendor is ~90 MB, above what a device run carries (64 MiB): ship it
# as .gpu/vendor.tar.xz (~7 MB) instead, see docs/cuda.md; env.sh then finds
# ./vendor in place.
if [ ! -d vendor ] && [ ! -d .gpu/vendor ] && [ -f .gpu/vendor.tar.xz ]; then
  tar -xJf .gpu/vendor.tar.xz
fi
# shellcheck disable=SC1091
source .gpu/env.sh
# The compat header must precede the CUDA headers for gorgonia.org/cu.
export CGO_CFLAGS="-I$PWD/kernels/cuda/include ${CGO_CFLAGS:-}"
export TESSERA_BENCH_DIR=${TESSERA_BENCH_DIR:-/tmp/tessera-bench}

step "device"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | tee -a "$log"
nvcc --version 2>&1 | tail -1 | tee -a "$log"
go version 2>&1 | tee -a "$log"

step "make cuda-ptx"
make cuda-ptx 2>&1 | tee -a "$log"
ptx=${PIPESTATUS[0]}
cp kernels/cuda/ptx/*.ptx "$OUT/ptx/" 2>/dev/null

step "go build -tags cuda ./... and make cuda"
build=1
if go build -tags cuda ./... 2>&1 | tee -a "$log" && make cuda BIN=/tmp/tessera-cuda 2>&1 | tee -a "$log"; then
  build=0
fi

step "go test -tags cuda ./kernels/cuda/... -run . -bench . -benchtime 20x"
if [ "$ptx" = 0 ] && [ "$build" = 0 ]; then
  go test -tags cuda ./kernels/cuda/... -run . -bench . -benchtime 20x -timeout 30m -v 2>&1 | tee "$OUT/test.log" >>"$log"
fi

{
  echo
  echo "== summary"
  printf '%-28s %s\n' "make cuda-ptx" "$([ "$ptx" = 0 ] && echo ok || echo FAILED)"
  printf '%-28s %s\n' "build -tags cuda" "$([ "$build" = 0 ] && echo ok || echo FAILED)"
  if [ -f "$OUT/test.log" ]; then
    grep -E '^(--- )?(PASS|FAIL|ok|panic)' "$OUT/test.log" | grep -vE '^    ' | awk '
      /^--- PASS: Test[A-Za-z0-9]* / {printf "%-28s pass\n", $3}
      /^--- FAIL: Test[A-Za-z0-9]* / {printf "%-28s FAIL\n", $3}
      /^(ok|FAIL)[ \t]/ {print "package: " $0}
      /^panic/ {print "PANIC: " $0}'
    echo
    printf '%-40s %s\n' "benchmark" "decode tok/s"
    awk '/^BenchmarkDecode/ {for (i = 1; i <= NF; i++) if ($i == "tok/s") printf "%-40s %s\n", $1, $(i-1)}' "$OUT/test.log"
  fi
} | tee -a "$log"
