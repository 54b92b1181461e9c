// Elementwise kernels: activations, GLU, add, scale, bias, embedding gather,
// ALiBi, WriteKV and the activation down-conversion MatMul feeds cuBLAS.
// Grid-stride loops over n elements. References: reference.h.
#include "common.cuh"

#define TS_GRID_LOOP(i, n) \
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (long long)gridDim.x * blockDim.x)

// act_f applies activation a in float64 and rounds once (kernels/cpu act).
TS_DEV float act_f(int a, float v) {
  double x = (double)v;
  switch (a) {
    case 1:
      return v > 0.f ? v : 0.f;
    case 2:
      return (float)(x / (1.0 + exp(-x)));
    case 3: {
      const double c = 0.7978845608028654;  // √(2/π)
      return (float)(0.5 * x * (1.0 + tanh(c * (x + 0.044715 * x * x * x))));
    }
    case 4:
      return (float)(0.5 * x * (1.0 + erf(x / 1.4142135623730951)));
  }
  return __int_as_float(0x7fc00000);
}

// ts_act: dst = act(x); dst may alias x.
extern "C" __global__ void ts_act(float* dst, const void* x, int xdt, int a, long long n) {
  TS_GRID_LOOP(i, n) dst[i] = act_f(a, ld(x, xdt, i));
}

// ts_glu: dst = act(gate) * up; dst may alias gate or up.
extern "C" __global__ void ts_glu(float* dst, const void* g, int gdt, const void* u, int udt, int a, long long n) {
  TS_GRID_LOOP(i, n) dst[i] = __fmul_rn(act_f(a, ld(g, gdt, i)), ld(u, udt, i));
}

// ts_add: dst = a + b; dst may alias either.
extern "C" __global__ void ts_add(float* dst, const void* a, int adt, const void* b, int bdt, long long n) {
  TS_GRID_LOOP(i, n) dst[i] = __fadd_rn(ld(a, adt, i), ld(b, bdt, i));
}

// ts_scale: dst = x * s; dst may alias x.
extern "C" __global__ void ts_scale(float* dst, const void* x, int xdt, float s, long long n) {
  TS_GRID_LOOP(i, n) dst[i] = __fmul_rn(ld(x, xdt, i), s);
}

// ts_add_bias: dst[r, c] += bias[c] over n = rows*m elements (MatMul's bias).
extern "C" __global__ void ts_add_bias(float* dst, const void* bias, int bdt, int m, long long n) {
  TS_GRID_LOOP(i, n) dst[i] = __fadd_rn(dst[i], ld(bias, bdt, i % m));
}

// ts_to_half converts float32 activations to the weight's half type for a
// cuBLAS GEMM whose inputs must share a type: dt 3 bf16 (RNE), 2 f16.
extern "C" __global__ void ts_to_half(unsigned short* dst, const float* x, int dt, long long n) {
  TS_GRID_LOOP(i, n) dst[i] = dt == TS_BF16 ? f32_to_bf16(x[i]) : f32_to_f16(x[i]);
}

// ts_embedding: dst[r, :] = table[ids[r], :] widened; grid.x = rows.
extern "C" __global__ void ts_embedding(float* dst, const void* table, int tdt, const int* ids, int dim) {
  long long src = (long long)ids[blockIdx.x] * dim, out = (long long)blockIdx.x * dim;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) dst[out + i] = ld(table, tdt, src + i);
}

// ts_write_kv stores k, v [n, width] as tokens start.. of a sequence with
// block table table into pools [blocks, bs, width]; count = n*width.
extern "C" __global__ void ts_write_kv(float* kc, float* vc, const void* k, int kdt, const void* v, int vdt,
                                       const int* table, int bs, int width, int start, long long count) {
  TS_GRID_LOOP(i, count) {
    long long row = i / width;
    int e = (int)(i - row * width);
    int t = start + (int)row;
    long long off = ((long long)table[t / bs] * bs + t % bs) * width + e;
    kc[off] = ld(k, kdt, i);
    vc[off] = ld(v, vdt, i);
  }
}
