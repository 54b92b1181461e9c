// reference.h: plain C++ CPU references for every kernel in this directory,
// mirroring kernels/cpu (the oracle) operation for operation, so a GPU
// session can call kernel and reference on the same inputs from host code.
// Half inputs are passed as raw bits with their dtype code (common.cuh).
// g++ checks it here: g++ -std=c++17 -fsyntax-only reference.h
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace tsref {

inline float bits_f32(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }
inline uint32_t f32_bits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }

inline float f16(uint16_t h) {
  uint32_t v = uint32_t(h & 0x7fff) << 13;
  switch (h & 0x7c00) {
    case 0: v = f32_bits(float(v >> 13) * 0x1p-24f); break;
    case 0x7c00: v |= 0x7f800000u; break;
    default: v += 112u << 23;
  }
  return bits_f32(uint32_t(h & 0x8000) << 16 | v);
}

// ld: element i of a tensor of dtype dt (1 F32, 2 F16, 3 BF16) as float.
inline float ld(const void* p, int dt, int64_t i) {
  if (dt == 1) return static_cast<const float*>(p)[i];
  uint16_t h = static_cast<const uint16_t*>(p)[i];
  return dt == 3 ? bits_f32(uint32_t(h) << 16) : f16(h);
}

inline void ref_rmsnorm(float* dst, const void* x, int xdt, const void* g, int gdt, int rows, int dim, float eps) {
  for (int r = 0; r < rows; r++) {
    int64_t b = int64_t(r) * dim;
    double ss = 0;
    for (int i = 0; i < dim; i++) { double v = ld(x, xdt, b + i); ss += v * v; }
    float rs = float(1 / std::sqrt(ss / dim + double(eps)));
    for (int i = 0; i < dim; i++) dst[b + i] = ld(x, xdt, b + i) * rs * ld(g, gdt, i);
  }
}

inline void ref_layernorm(float* dst, const void* x, int xdt, const void* g, int gdt, const void* beta, int bdt,
                          int rows, int dim, float eps) {
  for (int r = 0; r < rows; r++) {
    int64_t b = int64_t(r) * dim;
    double s = 0;
    for (int i = 0; i < dim; i++) s += ld(x, xdt, b + i);
    double mean = s / dim, ss = 0;
    for (int i = 0; i < dim; i++) { double dv = double(ld(x, xdt, b + i)) - mean; ss += dv * dv; }
    float rstd = float(1 / std::sqrt(ss / dim + double(eps))), mf = float(mean);
    for (int i = 0; i < dim; i++) {
      float v = (ld(x, xdt, b + i) - mf) * rstd * ld(g, gdt, i);
      dst[b + i] = bdt ? v + ld(beta, bdt, i) : v;
    }
  }
}


// act codes: 1 ReLU, 2 SiLU, 3 GELU tanh, 4 GELU erf; float64, rounded once.
inline float ref_act1(int a, float v) {
  double x = v;
  switch (a) {
    case 1: return v > 0 ? v : 0;
    case 2: return float(x / (1 + std::exp(-x)));
    case 3: return float(0.5 * x * (1 + std::tanh(0.7978845608028654 * (x + 0.044715 * x * x * x))));
    case 4: return float(0.5 * x * (1 + std::erf(x / std::sqrt(2.0))));
  }
  return NAN;
}
inline void ref_act(float* dst, const void* x, int xdt, int a, int64_t n) {
  for (int64_t i = 0; i < n; i++) dst[i] = ref_act1(a, ld(x, xdt, i));
}
inline void ref_glu(float* dst, const void* g, int gdt, const void* u, int udt, int a, int64_t n) {
  for (int64_t i = 0; i < n; i++) dst[i] = ref_act1(a, ld(g, gdt, i)) * ld(u, udt, i);
}
inline void ref_add(float* dst, const void* a, int adt, const void* b, int bdt, int64_t n) {
  for (int64_t i = 0; i < n; i++) dst[i] = ld(a, adt, i) + ld(b, bdt, i);
}
inline void ref_scale(float* dst, const void* x, int xdt, float s, int64_t n) {
  for (int64_t i = 0; i < n; i++) dst[i] = ld(x, xdt, i) * s;
}
// ref_matmul: dst[n,m] = x[n,k]·w[m,k]ᵀ (+ bias), float32 accumulation.
inline void ref_matmul(float* dst, const float* x, const void* w, int wdt, const void* bias, int bdt, int n, int m,
                       int k) {
  for (int i = 0; i < n; i++)
    for (int j = 0; j < m; j++) {
      float s = 0;
      for (int c = 0; c < k; c++) s += x[int64_t(i) * k + c] * ld(w, wdt, int64_t(j) * k + c);
      dst[int64_t(i) * m + j] = bdt ? s + ld(bias, bdt, j) : s;
    }
}
inline void ref_embedding(float* dst, const void* table, int tdt, const int32_t* ids, int n, int dim) {
  for (int r = 0; r < n; r++)
    for (int i = 0; i < dim; i++) dst[int64_t(r) * dim + i] = ld(table, tdt, int64_t(ids[r]) * dim + i);
}

// ref_rope_table: Hugging Face's float32 arithmetic (kernels/cpu/rope.go):
// inv[i] = 1/float(theta**(float(2i)/dim)), angle = float(p)*inv[i], then
// float(cos(angle)) and float(sin(angle)); laid out [pos][i], i < dim/2.
inline void ref_rope_table(int dim, float theta, int npos, std::vector<float>& cosT, std::vector<float>& sinT) {
  int half = dim / 2;
  std::vector<float> inv(half);
  for (int i = 0; i < half; i++) inv[i] = 1 / float(std::pow(double(theta), double(float(2 * i) / float(dim))));
  cosT.assign(size_t(npos) * half, 0);
  sinT.assign(size_t(npos) * half, 0);
  for (int p = 0; p < npos; p++)
    for (int i = 0; i < half; i++) {
      double a = double(float(p) * inv[i]);
      cosT[size_t(p) * half + i] = float(std::cos(a));
      sinT[size_t(p) * half + i] = float(std::sin(a));
    }
}
inline void ref_rope(float* x, const int32_t* pos, int n, int heads, int headDim, int off, int dim, float theta) {
  int mx = 0;
  for (int r = 0; r < n; r++) mx = std::max(mx, int(pos[r]));
  std::vector<float> c, s;
  ref_rope_table(dim, theta, mx + 1, c, s);
  int half = dim / 2;
  for (int r = 0; r < n; r++)
    for (int h = 0; h < heads; h++) {
      float* a = x + (int64_t(r) * heads + h) * headDim + off;
      for (int i = 0; i < half; i++) {
        float cc = c[size_t(pos[r]) * half + i], ss = s[size_t(pos[r]) * half + i];
        float x1 = a[i], x2 = a[i + half];
        a[i] = x1 * cc - x2 * ss;
        a[i + half] = x2 * cc + x1 * ss;
      }
    }
}

inline void ref_write_kv(float* kc, float* vc, const void* k, int kdt, const void* v, int vdt, const int32_t* table,
                         int bs, int width, int start, int n) {
  for (int i = 0; i < n; i++) {
    int t = start + i;
    int64_t off = (int64_t(table[t / bs]) * bs + t % bs) * width;
    for (int e = 0; e < width; e++) {
      kc[off + e] = ld(k, kdt, int64_t(i) * width + e);
      vc[off + e] = ld(v, vdt, int64_t(i) * width + e);
    }
  }
}

inline int ref_visible(int mask, int prefix, int keys, int p) {
  if (mask == 1) return p + 1;
  if (mask == 3) return std::min(keys, std::max(prefix, p + 1));
  return keys;
}

// ref_attend: kernels/cpu Attend (scores, max-subtracted softmax with a
// float64 sum, then Σ p·v); both attention kernels are checked against it.
inline void ref_attend(float* dst, const float* q, const float* kc, const float* vc, const int32_t* table,
                       const float* slopes, const int32_t* kvmap, int heads, int kvheads, int hd, float scale,
                       int mask, int prefix, int window, int bs, int keys, int n) {
  int64_t kvStride = int64_t(kvheads) * hd;
  std::vector<float> sc;
  for (int i = 0; i < n; i++)
    for (int h = 0; h < heads; h++) {
      int g = kvmap ? kvmap[h] : h / (heads / kvheads);
      int p = keys - n + i, vis = ref_visible(mask, prefix, keys, p);
      int first = mask == 1 && window > 0 ? std::max(0, p + 1 - window) : 0;
      const float* qr = q + (int64_t(i) * heads + h) * hd;
      float* out = dst + (int64_t(i) * heads + h) * hd;
      sc.assign(vis, 0);
      float m = -INFINITY;
      for (int t = first; t < vis; t++) {
        const float* kr = kc + (int64_t(table[t / bs]) * bs + t % bs) * kvStride + int64_t(g) * hd;
        float s = 0;
        for (int d = 0; d < hd; d++) s += qr[d] * kr[d];
        s *= scale;
        if (slopes) s += slopes[h] * float(t);
        sc[t] = s;
        m = std::max(m, s);
      }
      double sum = 0;
      for (int t = first; t < vis; t++) { sc[t] = float(std::exp(double(sc[t] - m))); sum += sc[t]; }
      float inv = float(1 / sum);
      for (int d = 0; d < hd; d++) out[d] = 0;
      for (int t = first; t < vis; t++) {
        const float* vr = vc + (int64_t(table[t / bs]) * bs + t % bs) * kvStride + int64_t(g) * hd;
        for (int d = 0; d < hd; d++) out[d] += sc[t] * inv * vr[d];
      }
    }
}

// ref_topk_lse: shard/merge.Local for one row: the k best (logit desc, ties
// to the lower id) as global ids offset+i, and log Σ exp over the row.
inline double ref_topk_lse(const float* x, int len, int k, int offset, int32_t* ids, float* vals) {
  k = std::max(0, std::min(k, len));
  std::vector<int32_t> idx(len);
  for (int i = 0; i < len; i++) idx[i] = i;
  std::stable_sort(idx.begin(), idx.end(), [&](int32_t a, int32_t b) { return x[a] > x[b]; });
  for (int r = 0; r < k; r++) { ids[r] = offset + idx[r]; vals[r] = x[idx[r]]; }
  if (len == 0) return -INFINITY;
  float m = x[0];
  for (int i = 1; i < len; i++) m = std::max(m, x[i]);
  if (std::isinf(m) && m < 0) return -INFINITY;
  double s = 0;
  for (int i = 0; i < len; i++) s += std::exp(double(x[i]) - double(m));
  return double(m) + std::log(s);
}

}  // namespace tsref
