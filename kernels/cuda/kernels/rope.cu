// Rotate-half RoPE over dims [off, off+2*half) of every head. The cos/sin
// tables are built on the host with Hugging Face's float32 arithmetic
// (reference.h ref_rope_table, the Go side's kernels.RoPE.Table: identical to
// kernels/cpu/rope.go) and indexed [pos][i] here, so the rotation is
// bit-for-bit the CPU's (no contraction into FMA).
#include "common.cuh"

// ts_rope rotates x [n, heads*headDim] in place; grid.x = n rows.
extern "C" __global__ void ts_rope(float* x, const int* pos, const float* cosT, const float* sinT, int heads,
                                   int headDim, int off, int half) {
  long long row = blockIdx.x;
  long long p = pos[row];
  float* xr = x + row * heads * headDim + off;
  for (int j = threadIdx.x; j < heads * half; j += blockDim.x) {
    int h = j / half, i = j - h * half;
    float c = cosT[p * half + i], s = sinT[p * half + i];
    float* a = xr + (long long)h * headDim;
    float x1 = a[i], x2 = a[i + half];
    a[i] = __fsub_rn(__fmul_rn(x1, c), __fmul_rn(x2, s));
    a[i + half] = __fadd_rn(__fmul_rn(x2, c), __fmul_rn(x1, s));
  }
}
