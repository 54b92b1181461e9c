// Runs every kernel of ../all.cu under emu.h and compares it with the
// reference.h function it mirrors (relative norm error, bound 1e-5; top-k
// exact). No GPU, no nvcc:
//   g++ -std=c++20 -O1 -pthread -o /tmp/emu_test emu_test.cpp && /tmp/emu_test
#include "emu.h"
#include "../all.cu"
#include "../reference.h"

#include <cstdio>
#include <random>
#include <string>

static std::mt19937_64 rng(12345);
static int failures = 0;

static std::vector<float> rnd(size_t n, float scale) {
  std::uniform_real_distribution<float> u(-scale, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}
static std::vector<uint16_t> bf16(const std::vector<float>& v) {
  std::vector<uint16_t> o(v.size());
  for (size_t i = 0; i < v.size(); i++) o[i] = f32_to_bf16(v[i]);
  return o;
}
static const float kNaN = std::nanf("");
static std::vector<float> poisoned(size_t n) { return std::vector<float>(n, kNaN); }

static void check(const std::string& name, const std::vector<float>& got, const std::vector<float>& want,
                  double bound = 1e-5) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); i++) {
    if (std::isnan(got[i]) && !std::isnan(want[i])) {
      std::printf("FAIL %s: element %zu NaN (unwritten?)\n", name.c_str(), i);
      failures++;
      return;
    }
    double d = double(got[i]) - want[i];
    num += d * d;
    den += double(want[i]) * want[i];
  }
  double e = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  bool ok = e <= bound;
  if (!ok) failures++;
  std::printf("%s %-60s %.3g\n", ok ? "ok  " : "FAIL", name.c_str(), e);
}

int main() {
  // Norms, f32 and bf16 inputs.
  for (int dim : {1, 7, 300}) {
    int rows = 3;
    auto x = rnd(size_t(rows) * dim, 4), g = rnd(dim, 1), b = rnd(dim, 1);
    auto xb = bf16(x);
    for (int xdt : {1, 3}) {
      const void* xp = xdt == 1 ? (const void*)x.data() : (const void*)xb.data();
      std::string tag = " d=" + std::to_string(dim) + " xdt=" + std::to_string(xdt);
      auto got = poisoned(x.size()), want = std::vector<float>(x.size());
      emu::launch(rows, 1, 64, ts_rmsnorm, got.data(), xp, xdt, (const void*)g.data(), 1, dim, 1e-6f);
      tsref::ref_rmsnorm(want.data(), xp, xdt, g.data(), 1, rows, dim, 1e-6f);
      check("rmsnorm" + tag, got, want);
      got = poisoned(x.size());
      emu::launch(rows, 1, 64, ts_layernorm, got.data(), xp, xdt, (const void*)g.data(), 1, (const void*)b.data(), 1,
                  dim, 1e-5f);
      tsref::ref_layernorm(want.data(), xp, xdt, g.data(), 1, b.data(), 1, rows, dim, 1e-5f);
      check("layernorm" + tag, got, want);
    }
  }
  // Elementwise.
  {
    long long n = 1000;
    auto x = rnd(n, 5), y = rnd(n, 2);
    auto yb = bf16(y);
    for (int a = 1; a <= 4; a++) {
      auto got = poisoned(n), want = std::vector<float>(n);
      emu::launch(2, 1, 64, ts_act, got.data(), (const void*)x.data(), 1, a, n);
      tsref::ref_act(want.data(), x.data(), 1, a, n);
      check("act " + std::to_string(a), got, want);
      got = poisoned(n);
      emu::launch(2, 1, 64, ts_glu, got.data(), (const void*)x.data(), 1, (const void*)yb.data(), 3, a, n);
      tsref::ref_glu(want.data(), x.data(), 1, yb.data(), 3, a, n);
      check("glu bf16 up " + std::to_string(a), got, want);
    }
    auto got = poisoned(n), want = std::vector<float>(n);
    emu::launch(3, 1, 32, ts_add, got.data(), (const void*)x.data(), 1, (const void*)yb.data(), 3, n);
    tsref::ref_add(want.data(), x.data(), 1, yb.data(), 3, n);
    check("add", got, want);
    got = poisoned(n);
    emu::launch(3, 1, 32, ts_scale, got.data(), (const void*)yb.data(), 3, 0.3f, n);
    tsref::ref_scale(want.data(), yb.data(), 3, 0.3f, n);
    check("scale", got, want);
    // bias over [n/m, m]
    int m = 40;
    auto bias = rnd(m, 1);
    got = x;
    want = x;
    emu::launch(2, 1, 64, ts_add_bias, got.data(), (const void*)bias.data(), 1, m, n);
    for (long long i = 0; i < n; i++) want[i] += bias[i % m];
    check("add_bias", got, want);
    // to_half bf16
    std::vector<unsigned short> h(n, 0xffff);
    emu::launch(2, 1, 64, ts_to_half, h.data(), (const float*)x.data(), 3, n);
    auto xb = bf16(x);
    std::vector<float> hf(n), xbf(n);
    for (long long i = 0; i < n; i++) hf[i] = tsref::ld(h.data(), 3, i), xbf[i] = tsref::ld(xb.data(), 3, i);
    check("to_half bf16", hf, xbf, 0);
  }
  // Embedding, ALiBi, WriteKV.
  {
    int vocab = 50, dim = 33;
    auto table = rnd(size_t(vocab) * dim, 1);
    auto tb = bf16(table);
    std::vector<int> ids = {0, 49, 3, 3, 17};
    auto got = poisoned(ids.size() * dim), want = std::vector<float>(ids.size() * dim);
    emu::launch(int(ids.size()), 1, 32, ts_embedding, got.data(), (const void*)tb.data(), 3, (const int*)ids.data(), dim);
    tsref::ref_embedding(want.data(), tb.data(), 3, ids.data(), int(ids.size()), dim);
    check("embedding bf16", got, want, 0);
    int bs = 4, width = 12, blocks = 6, start = 3, n = 9;
    std::vector<int> tab = {5, 2, 0, 4, 1, 3};
    auto k = rnd(size_t(n) * width, 1), v = rnd(size_t(n) * width, 1);
    std::vector<float> kc(size_t(blocks) * bs * width), vc = kc, kw = kc, vw = kc;
    emu::launch(2, 1, 32, ts_write_kv, kc.data(), vc.data(), (const void*)k.data(), 1, (const void*)v.data(), 1,
                (const int*)tab.data(), bs, width, start, (long long)n * width);
    tsref::ref_write_kv(kw.data(), vw.data(), k.data(), 1, v.data(), 1, tab.data(), bs, width, start, n);
    check("write_kv k", kc, kw, 0);
    check("write_kv v", vc, vw, 0);
  }
  // RoPE with a sub-range.
  {
    int heads = 3, hd = 16, off = 4, dim = 8, n = 4;
    float theta = 10000;
    std::vector<int> pos = {0, 7, 300, 2};
    std::vector<float> c, s;
    tsref::ref_rope_table(dim, theta, 301, c, s);
    auto x = rnd(size_t(n) * heads * hd, 2), want = x;
    emu::launch(n, 1, 32, ts_rope, x.data(), (const int*)pos.data(), (const float*)c.data(), (const float*)s.data(),
                heads, hd, off, dim / 2);
    tsref::ref_rope(want.data(), pos.data(), n, heads, hd, off, dim, theta);
    check("rope sub-range", x, want, 0);
  }
  // Attention: decode and prefill kernels against one reference.
  struct AC {
    int heads, kvheads, hd, n, keys, bs, mask, prefix;
    bool alibi, kvmap;
    int window;
  };
  for (AC c : {AC{4, 2, 8, 1, 9, 4, 1, 0, false, false}, AC{4, 4, 40, 3, 37, 4, 1, 0, true, false},
               AC{2, 1, 64, 2, 20, 8, 2, 0, false, false}, AC{3, 3, 8, 5, 12, 4, 3, 6, false, false},
               AC{6, 4, 16, 20, 25, 4, 1, 0, true, true}, AC{2, 2, 8, 18, 18, 3, 3, 5, false, false},
               AC{2, 1, 40, 17, 40, 8, 2, 0, true, false},
               // Sliding windows: shorter than a block and a tile, decode and prefill rows that start
               // in different tiles, and one wider than the keys.
               AC{4, 2, 8, 1, 30, 4, 1, 0, false, false, 3}, AC{4, 2, 16, 37, 45, 4, 1, 0, true, false, 11},
               AC{6, 4, 16, 20, 25, 4, 1, 0, false, true, 5}, AC{2, 1, 40, 17, 40, 8, 1, 0, false, false, 64}}) {
    int blocks = (c.keys + c.bs - 1) / c.bs + 2;
    size_t cache = size_t(blocks) * c.bs * c.kvheads * c.hd;
    auto kc = rnd(cache, 1), vc = rnd(cache, 1), q = rnd(size_t(c.n) * c.heads * c.hd, 2);
    std::vector<int> tab(blocks);
    for (int i = 0; i < blocks; i++) tab[i] = (i * 5 + 1) % blocks;
    std::vector<float> slopes(c.heads);
    for (int h = 0; h < c.heads; h++) slopes[h] = std::exp2f(-float(h + 1));
    std::vector<int> kvmap(c.heads);
    for (int h = 0; h < c.heads; h++) kvmap[h] = (h * 3) % c.kvheads;
    const float* sp = c.alibi ? slopes.data() : nullptr;
    const int* mp = c.kvmap ? kvmap.data() : nullptr;
    float scale = 1 / std::sqrt(float(c.hd));
    std::vector<float> want(q.size());
    tsref::ref_attend(want.data(), q.data(), kc.data(), vc.data(), tab.data(), sp, mp, c.heads, c.kvheads, c.hd, scale,
                      c.mask, c.prefix, c.window, c.bs, c.keys, c.n);
    char name[160];
    std::snprintf(name, sizeof name, "h%d/%d hd%d n%d keys%d bs%d mask%d alibi%d kvmap%d window%d", c.heads,
                  c.kvheads, c.hd, c.n, c.keys, c.bs, c.mask, c.alibi, c.kvmap, c.window);
    auto got = poisoned(q.size());
    emu::launch(c.n, c.heads, 256, ts_attend_decode, got.data(), (const float*)q.data(), (const float*)kc.data(),
                (const float*)vc.data(), (const int*)tab.data(), sp, mp, c.heads, c.kvheads, c.hd, scale, c.mask,
                c.prefix, c.window, c.bs, c.keys, c.n);
    check(std::string("attend decode ") + name, got, want);
    got = poisoned(q.size());
    int bk = 8;  // small tiles so several are walked
    emu::launch((c.n + TS_BQ - 1) / TS_BQ, c.heads, 128, ts_attend_prefill, got.data(), (const float*)q.data(),
                (const float*)kc.data(), (const float*)vc.data(), (const int*)tab.data(), sp, mp, c.heads, c.kvheads,
                c.hd, scale, c.mask, c.prefix, c.window, c.bs, c.keys, c.n, bk);
    check(std::string("attend prefill ") + name, got, want);
  }
  // Top-k + log-sum-exp.
  {
    int rows = 2, len = 500, k = 7, offset = 1000;
    auto x = rnd(size_t(rows) * len, 10);
    x[10] = x[20];            // a tie: lower id first
    x[len + 3] = -INFINITY;   // a masked token
    std::vector<int> ids(rows * k, -7);
    std::vector<float> vals(rows * k);
    std::vector<double> lse(rows);
    emu::launch(rows, 1, 128, ts_topk_lse, (const float*)x.data(), len, (long long)len, k, offset, ids.data(),
                vals.data(), lse.data());
    for (int r = 0; r < rows; r++) {
      std::vector<int32_t> wi(k);
      std::vector<float> wv(k);
      double wl = tsref::ref_topk_lse(x.data() + size_t(r) * len, len, k, offset, wi.data(), wv.data());
      bool ok = std::abs(lse[r] - wl) <= 1e-12 * std::abs(wl);
      for (int i = 0; i < k; i++) ok = ok && ids[r * k + i] == wi[i] && vals[r * k + i] == wv[i];
      if (!ok) failures++;
      std::printf("%s topk row %d (lse %.15g vs %.15g)\n", ok ? "ok  " : "FAIL", r, lse[r], wl);
    }
  }
  std::printf(failures ? "FAILED: %d\n" : "all kernels match their references\n", failures);
  return failures ? 1 : 0;
}
