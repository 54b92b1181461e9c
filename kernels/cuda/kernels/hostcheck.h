// hostcheck.h lets g++ parse the kernels on a machine without nvcc, a
// syntax and type check only (nothing here runs a kernel):
//   g++ -std=c++17 -fsyntax-only -x c++ -include hostcheck.h all.cu
#pragma once
#include <cmath>
#include <cstring>
struct ts_dim3 { unsigned x, y, z; };
float tile[1];
static ts_dim3 threadIdx, blockIdx, blockDim, gridDim;
#define __global__
#define __device__
#define __forceinline__
#define __shared__ static
inline void __syncthreads() {}
template <typename T> T __shfl_xor_sync(unsigned, T v, int) { return v; }
inline unsigned __float_as_uint(float f) { unsigned u; std::memcpy(&u, &f, 4); return u; }
inline float __uint_as_float(unsigned u) { float f; std::memcpy(&f, &u, 4); return f; }
inline float __int_as_float(int u) { float f; std::memcpy(&f, &u, 4); return f; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
using std::min;
using std::max;
inline int min(int a, int b) { return a < b ? a : b; }
