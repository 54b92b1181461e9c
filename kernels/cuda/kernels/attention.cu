// Attention over the paged KV cache (kernels.Attention): pools are
// [blocks, bs, kvHeads, hd] float32; token t lives in block table[t/bs],
// slot t%bs. Query i of n sits at absolute position keys-n+i and sees keys
// [first_visible(mask, window, ...), visible(mask, ...)); blocks before the
// first are never read. Scores are q·k·scale (+ slopes[h]*t), the
// softmax runs online (running max m, sum l) in float32. Query head h reads
// kv head kvmap[h], or h/(heads/kvheads) when kvmap is null.
// Reference: reference.h ref_attend.
#include "common.cuh"

TS_DEV int kv_head(const int* kvmap, int h, int heads, int kvheads) {
  return kvmap ? kvmap[h] : h / (heads / kvheads);
}

// ts_attend_decode: one block (8 warps) per (query, head), grid (n, heads).
// Each warp walks keys w, w+8, ... with a lane-split dot product and keeps
// its own (m, l, acc); the warps merge at the end. Best for few queries.
extern "C" __global__ void ts_attend_decode(float* dst, const float* q, const float* kc, const float* vc,
                                            const int* table, const float* slopes, const int* kvmap, int heads,
                                            int kvheads, int hd, float scale, int mask, int prefix, int window,
                                            int bs, int keys, int n) {
  __shared__ float sm[32], sl[32];
  __shared__ float sacc[8 * TS_MAX_HEAD_DIM];
  int i = blockIdx.x, h = blockIdx.y;
  int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  int g = kv_head(kvmap, h, heads, kvheads);
  int vis = visible(mask, prefix, keys, keys - n + i);
  int first = first_visible(mask, window, keys - n + i);
  const float* qr = q + ((long long)i * heads + h) * hd;
  long long kvStride = (long long)kvheads * hd;
  float slope = slopes ? slopes[h] : 0.f;
  float qv[TS_MAXJ], acc[TS_MAXJ];
#pragma unroll
  for (int j = 0; j < TS_MAXJ; j++) {
    int d = lane + 32 * j;
    qv[j] = d < hd ? qr[d] : 0.f;
    acc[j] = 0.f;
  }
  float m = -INFINITY, l = 0.f;
  for (int t = first + w; t < vis; t += nw) {
    long long base = ((long long)table[t / bs] * bs + t % bs) * kvStride + (long long)g * hd;
    float s = 0.f;
#pragma unroll
    for (int j = 0; j < TS_MAXJ; j++) {
      int d = lane + 32 * j;
      if (d < hd) s += qv[j] * kc[base + d];
    }
    s = warp_sum(s) * scale;
    if (slopes) s += slope * (float)t;
    float nm = fmaxf(m, s);
    float alpha = expf(m - nm), p = expf(s - nm);
    l = l * alpha + p;
#pragma unroll
    for (int j = 0; j < TS_MAXJ; j++) {
      int d = lane + 32 * j;
      if (d < hd) acc[j] = acc[j] * alpha + p * vc[base + d];
    }
    m = nm;
  }
  if (lane == 0) {
    sm[w] = m;
    sl[w] = l;
  }
#pragma unroll
  for (int j = 0; j < TS_MAXJ; j++) {
    int d = lane + 32 * j;
    if (d < hd) sacc[w * TS_MAX_HEAD_DIM + d] = acc[j];
  }
  __syncthreads();
  float M = -INFINITY;
  for (int ww = 0; ww < nw; ww++) M = fmaxf(M, sm[ww]);
  float L = 0.f;
  for (int ww = 0; ww < nw; ww++)
    if (sm[ww] != -INFINITY) L += sl[ww] * expf(sm[ww] - M);
  float* out = dst + ((long long)i * heads + h) * hd;
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    float o = 0.f;
    for (int ww = 0; ww < nw; ww++)
      if (sm[ww] != -INFINITY) o += sacc[ww * TS_MAX_HEAD_DIM + d] * expf(sm[ww] - M);
    out[d] = o / L;
  }
}

#define TS_BQ 16       // queries per prefill block
#define TS_PF_WARPS 4  // warps per prefill block; each owns TS_BQ/TS_PF_WARPS rows
#define TS_ROWS (TS_BQ / TS_PF_WARPS)

// ts_attend_prefill: flash-style tiling. A block (4 warps) takes TS_BQ
// queries of one head, grid (ceil(n/TS_BQ), heads). Key/value tiles of bk
// tokens are staged in dynamic shared memory (2*bk*hd floats) and shared by
// the block's queries; each warp updates the online softmax of its rows.
extern "C" __global__ void ts_attend_prefill(float* dst, const float* q, const float* kc, const float* vc,
                                             const int* table, const float* slopes, const int* kvmap, int heads,
                                             int kvheads, int hd, float scale, int mask, int prefix, int window,
                                             int bs, int keys, int n, int bk) {
  TS_EXTERN_SHARED float tile[];
  float* sk = tile;
  float* sv = tile + (long long)bk * hd;
  int h = blockIdx.y, q0 = blockIdx.x * TS_BQ;
  int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
  int g = kv_head(kvmap, h, heads, kvheads);
  long long kvStride = (long long)kvheads * hd;
  float slope = slopes ? slopes[h] : 0.f;
  int last = min(q0 + TS_BQ, n) - 1;
  // Both ends of the visible range are nondecreasing in p.
  int maxVis = visible(mask, prefix, keys, keys - n + last);
  int minFirst = first_visible(mask, window, keys - n + q0);

  float qv[TS_ROWS][TS_MAXJ], acc[TS_ROWS][TS_MAXJ], m[TS_ROWS], l[TS_ROWS];
  int vis[TS_ROWS], first[TS_ROWS];
#pragma unroll
  for (int r = 0; r < TS_ROWS; r++) {
    int i = q0 + w + TS_PF_WARPS * r;
    vis[r] = i < n ? visible(mask, prefix, keys, keys - n + i) : 0;
    first[r] = i < n ? first_visible(mask, window, keys - n + i) : 0;
    m[r] = -INFINITY;
    l[r] = 0.f;
#pragma unroll
    for (int j = 0; j < TS_MAXJ; j++) {
      int d = lane + 32 * j;
      qv[r][j] = (i < n && d < hd) ? q[((long long)i * heads + h) * hd + d] : 0.f;
      acc[r][j] = 0.f;
    }
  }
  for (int t0 = minFirst; t0 < maxVis; t0 += bk) {
    __syncthreads();
    for (int x = threadIdx.x; x < bk * hd; x += blockDim.x) {
      int tt = x / hd, d = x - tt * hd, t = t0 + tt;
      if (t < maxVis) {
        long long base = ((long long)table[t / bs] * bs + t % bs) * kvStride + (long long)g * hd;
        sk[x] = kc[base + d];
        sv[x] = vc[base + d];
      }
    }
    __syncthreads();
#pragma unroll
    for (int r = 0; r < TS_ROWS; r++) {
      int lim = min(bk, vis[r] - t0);
      for (int tt = max(0, first[r] - t0); tt < lim; tt++) {
        float s = 0.f;
#pragma unroll
        for (int j = 0; j < TS_MAXJ; j++) {
          int d = lane + 32 * j;
          if (d < hd) s += qv[r][j] * sk[tt * hd + d];
        }
        s = warp_sum(s) * scale;
        if (slopes) s += slope * (float)(t0 + tt);
        float nm = fmaxf(m[r], s);
        float alpha = expf(m[r] - nm), p = expf(s - nm);
        l[r] = l[r] * alpha + p;
#pragma unroll
        for (int j = 0; j < TS_MAXJ; j++) {
          int d = lane + 32 * j;
          if (d < hd) acc[r][j] = acc[r][j] * alpha + p * sv[tt * hd + d];
        }
        m[r] = nm;
      }
    }
  }
#pragma unroll
  for (int r = 0; r < TS_ROWS; r++) {
    int i = q0 + w + TS_PF_WARPS * r;
    if (i >= n) continue;
    float* out = dst + ((long long)i * heads + h) * hd;
#pragma unroll
    for (int j = 0; j < TS_MAXJ; j++) {
      int d = lane + 32 * j;
      if (d < hd) out[d] = acc[r][j] / l[r];
    }
  }
}
