// RMSNorm, LayerNorm and softmax: one block per row, sums in float64 like
// kernels/cpu (elementwise.go). References: reference.h ref_rmsnorm,
// ref_layernorm, ref_softmax.
#include "common.cuh"

// ts_rmsnorm: dst = x / sqrt(mean(x²)+eps) * gamma per row of dim; grid.x =
// rows. LLaMA's order: (x·r)·gamma. dst may alias x.
extern "C" __global__ void ts_rmsnorm(float* dst, const void* x, int xdt, const void* g, int gdt, int dim,
                                      float eps) {
  __shared__ double sh[32];
  long long base = (long long)blockIdx.x * dim;
  double ss = 0;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) {
    double v = ld(x, xdt, base + i);
    ss += v * v;
  }
  ss = block_sum(ss, sh);
  float rs = (float)(1.0 / sqrt(ss / (double)dim + (double)eps));
  for (int i = threadIdx.x; i < dim; i += blockDim.x) {
    dst[base + i] = __fmul_rn(__fmul_rn(ld(x, xdt, base + i), rs), ld(g, gdt, i));
  }
}

// ts_layernorm: dst = (x-mean)/sqrt(var+eps)*gamma + beta (beta absent when
// bdt == 0), mean and biased variance in float64 over two passes.
extern "C" __global__ void ts_layernorm(float* dst, const void* x, int xdt, const void* g, int gdt, const void* b,
                                        int bdt, int dim, float eps) {
  __shared__ double sh[32];
  long long base = (long long)blockIdx.x * dim;
  double s = 0;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) s += (double)ld(x, xdt, base + i);
  double mean = block_sum(s, sh) / (double)dim;
  double ss = 0;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) {
    double dv = (double)ld(x, xdt, base + i) - mean;
    ss += dv * dv;
  }
  ss = block_sum(ss, sh);
  float rstd = (float)(1.0 / sqrt(ss / (double)dim + (double)eps));
  float mf = (float)mean;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) {
    float v = __fmul_rn(__fmul_rn(__fsub_rn(ld(x, xdt, base + i), mf), rstd), ld(g, gdt, i));
    if (bdt != 0) v = __fadd_rn(v, ld(b, bdt, i));
    dst[base + i] = v;
  }
}

// ts_softmax: max-subtracted softmax over each row of dim; e = exp in
// float64 of the float32 difference, sum in float64. dst may alias x.
extern "C" __global__ void ts_softmax(float* dst, const void* x, int xdt, int dim) {
  __shared__ float shf[32];
  __shared__ double shd[32];
  long long base = (long long)blockIdx.x * dim;
  float m = -INFINITY;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) m = fmaxf(m, ld(x, xdt, base + i));
  m = block_max(m, shf);
  double s = 0;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) {
    float e = (float)exp((double)__fsub_rn(ld(x, xdt, base + i), m));
    dst[base + i] = e;
    s += (double)e;
  }
  s = block_sum(s, shd);
  float inv = (float)(1.0 / s);
  for (int i = threadIdx.x; i < dim; i += blockDim.x) dst[base + i] = __fmul_rn(dst[base + i], inv);
}
