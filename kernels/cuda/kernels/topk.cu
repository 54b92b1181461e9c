// Top-k and log-sum-exp over a vocabulary slice (kernels.TopKRow): one
// block of 1024 threads per row. The log-sum-exp is m + log Σ exp(x-m) in
// float64; the top k are found by k block-wide arg-max rounds, each taking
// the best entry strictly worse than the previous pick under the order
// "higher logit, then lower id" (TopKRow's tie rule). Logits must not be NaN.
// Reference: reference.h ref_topk_lse.
#include "common.cuh"

// better reports whether (av, ai) ranks before (bv, bi); id -1 is "none".
TS_DEV bool better(float av, int ai, float bv, int bi) {
  if (ai < 0) return false;
  if (bi < 0) return true;
  return av > bv || (av == bv && ai < bi);
}

TS_DEV void warp_best(float& v, int& id) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    float ov = __shfl_xor_sync(0xffffffffu, v, o);
    int oi = __shfl_xor_sync(0xffffffffu, id, o);
    if (better(ov, oi, v, id)) {
      v = ov;
      id = oi;
    }
  }
}

// ts_topk_lse: logits [rows, len] (row stride stride); writes ids [rows, k]
// (global ids offset+i), vals [rows, k] and lse [rows].
extern "C" __global__ void ts_topk_lse(const float* logits, int len, long long stride, int k, int offset, int* ids,
                                       float* vals, double* lse) {
  __shared__ float shf[32];
  __shared__ double shd[32];
  __shared__ float bv[32];
  __shared__ int bi[32];
  const float* x = logits + (long long)blockIdx.x * stride;
  int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  float m = -INFINITY;
  for (int i = threadIdx.x; i < len; i += blockDim.x) m = fmaxf(m, x[i]);
  m = block_max(m, shf);
  double s = 0;
  if (m != -INFINITY)
    for (int i = threadIdx.x; i < len; i += blockDim.x) s += exp((double)x[i] - (double)m);
  s = block_sum(s, shd);
  if (threadIdx.x == 0) lse[blockIdx.x] = m == -INFINITY ? -(double)INFINITY : (double)m + log(s);

  float pv = 0.f;
  int pi = -1;  // previous pick; none yet
  for (int r = 0; r < k; r++) {
    float v = 0.f;
    int id = -1;
    for (int i = threadIdx.x; i < len; i += blockDim.x) {
      float xi = x[i];
      if (pi >= 0 && !better(pv, pi, xi, i)) continue;  // not strictly worse than the previous pick
      if (better(xi, i, v, id)) {
        v = xi;
        id = i;
      }
    }
    warp_best(v, id);
    __syncthreads();
    if (lane == 0) {
      bv[w] = v;
      bi[w] = id;
    }
    __syncthreads();
    if (w == 0) {
      v = lane < nw ? bv[lane] : 0.f;
      id = lane < nw ? bi[lane] : -1;
      warp_best(v, id);
      if (lane == 0) {
        bv[0] = v;
        bi[0] = id;
      }
    }
    __syncthreads();
    pv = bv[0];
    pi = bi[0];
    if (threadIdx.x == 0) {
      ids[(long long)blockIdx.x * k + r] = offset + pi;
      vals[(long long)blockIdx.x * k + r] = pv;
    }
  }
}
