// emu.h runs the CUDA kernels on the host, without nvcc or a GPU, to test
// their logic against reference.h: every CUDA thread of a block is an OS
// thread, __syncthreads is a block barrier, and __shfl_xor_sync exchanges
// through per-warp slots between two warp barriers. Blocks run one after
// another; shared memory is a function-static (one block at a time).
// It checks indexing, reductions, masking, tiling and online softmax, not
// device numerics (host libm stands in for CUDA's), performance, or PTX.
//   g++ -std=c++20 -O1 -pthread -o /tmp/emu_test emu_test.cpp && /tmp/emu_test
#pragma once
#include <barrier>
#include <cmath>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

struct ts_dim3 {
  unsigned x = 1, y = 1, z = 1;
};
inline thread_local ts_dim3 threadIdx, blockIdx;
inline ts_dim3 blockDim, gridDim;

#define __global__
#define __device__
#define __forceinline__
#define __shared__ static

namespace emu {
inline std::unique_ptr<std::barrier<>> block_bar;
inline std::vector<std::unique_ptr<std::barrier<>>> warp_bar;
inline unsigned long long slot[1024];
}  // namespace emu

inline void __syncthreads() { emu::block_bar->arrive_and_wait(); }

template <typename T>
T __shfl_xor_sync(unsigned, T v, int o) {
  int t = threadIdx.x, w = t >> 5;
  std::memcpy(&emu::slot[t], &v, sizeof(T));
  emu::warp_bar[w]->arrive_and_wait();
  T r;
  std::memcpy(&r, &emu::slot[(t & ~31) | ((t & 31) ^ o)], sizeof(T));
  emu::warp_bar[w]->arrive_and_wait();
  return r;
}

inline unsigned __float_as_uint(float f) { unsigned u; std::memcpy(&u, &f, 4); return u; }
inline float __uint_as_float(unsigned u) { float f; std::memcpy(&f, &u, 4); return f; }
inline float __int_as_float(int u) { float f; std::memcpy(&f, &u, 4); return f; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }

// Dynamic shared memory (TS_EXTERN_SHARED float tile[]).
float tile[1 << 16];

namespace emu {
// launch runs kernel f on grid (gx, gy) of bx threads (a multiple of 32).
template <class F, class... A>
void launch(int gx, int gy, int bx, F f, A... args) {
  gridDim = {unsigned(gx), unsigned(gy), 1};
  blockDim = {unsigned(bx), 1, 1};
  for (int by = 0; by < gy; by++)
    for (int bxi = 0; bxi < gx; bxi++) {
      block_bar = std::make_unique<std::barrier<>>(bx);
      warp_bar.clear();
      for (int w = 0; w < bx / 32; w++) warp_bar.push_back(std::make_unique<std::barrier<>>(32));
      std::vector<std::thread> ts;
      for (int t = 0; t < bx; t++)
        ts.emplace_back([=] {
          threadIdx = {unsigned(t), 0, 0};
          blockIdx = {unsigned(bxi), unsigned(by), 0};
          f(args...);
        });
      for (auto& t : ts) t.join();
    }
}
}  // namespace emu
