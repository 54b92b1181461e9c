// RMSNorm and LayerNorm: one block per row, sums in float64 like
// kernels/cpu (elementwise.go). References: reference.h ref_rmsnorm,
// ref_layernorm.
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
