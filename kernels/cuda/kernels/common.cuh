// Shared device helpers for Tessera's CUDA kernels. Every kernel is
// extern "C" (unmangled names for cuModuleGetFunction) and takes only
// pointers, int, float and long long parameters: the Go side passes each
// parameter as one 8-byte slot (gorgonia.org/cu's Launch contract).
//
// DType codes are kernels.DType's: 1 F32, 2 F16, 3 BF16 (0: absent tensor).
// Activation codes are kernels.Activation's: 1 ReLU, 2 SiLU, 3 GELUTanh,
// 4 GELUErf. Mask codes are kernels.Mask's: 1 Causal, 2 Bidirectional,
// 3 Prefix.
#pragma once

#if defined(__CUDACC__)
#define TS_DEV __device__ __forceinline__
#define TS_EXTERN_SHARED extern __shared__
#else
// Host builds: the syntax check (hostcheck.h) and the emulator (emu/emu.h).
#define TS_DEV inline
#define TS_EXTERN_SHARED extern
#endif

#ifndef INFINITY
#define INFINITY __int_as_float(0x7f800000)
#endif

#define TS_F32 1
#define TS_F16 2
#define TS_BF16 3

// Largest head dimension the attention kernels hold in registers:
// TS_MAXJ values per lane, 32 lanes.
#define TS_MAXJ 8
#define TS_MAX_HEAD_DIM (32 * TS_MAXJ)

// f16_to_f32 widens an IEEE half exactly (subnormals, Inf, NaN), the same
// bit arithmetic as kernels/cpu's f16.
TS_DEV float f16_to_f32(unsigned short h) {
  unsigned v = (unsigned)(h & 0x7fff) << 13;
  unsigned e = h & 0x7c00;
  if (e == 0) {
    v = __float_as_uint((float)(v >> 13) * 5.9604644775390625e-8f);  // mant × 2⁻²⁴
  } else if (e == 0x7c00) {
    v |= 0x7f800000u;
  } else {
    v += 112u << 23;
  }
  return __uint_as_float(((unsigned)(h & 0x8000) << 16) | v);
}

TS_DEV float bf16_to_f32(unsigned short h) { return __uint_as_float((unsigned)h << 16); }

// ld reads element i of a tensor of dtype dt as float32. dt is uniform
// across a launch, so the branch never diverges.
TS_DEV float ld(const void* p, int dt, long long i) {
  if (dt == TS_F32) return ((const float*)p)[i];
  unsigned short h = ((const unsigned short*)p)[i];
  return dt == TS_BF16 ? bf16_to_f32(h) : f16_to_f32(h);
}

// f32_to_bf16 rounds to nearest even (NaN stays a quiet NaN).
TS_DEV unsigned short f32_to_bf16(float f) {
  unsigned u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (unsigned short)(u >> 16);
}

TS_DEV unsigned short f32_to_f16(float f) {
#if defined(__CUDA_ARCH__)
  unsigned short r;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(r) : "f"(f));
  return r;
#else
  (void)f;
  return 0;  // host syntax check only
#endif
}

template <typename T>
TS_DEV T warp_sum(T v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

TS_DEV float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// block_sum returns the sum of v over the block to every thread. sh holds
// 32 elements of shared memory; blockDim.x is a multiple of 32.
template <typename T>
TS_DEV T block_sum(T v, T* sh) {
  int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // sh may still be read by a previous call
  if (lane == 0) sh[w] = v;
  __syncthreads();
  v = (int)threadIdx.x < nw ? sh[threadIdx.x] : T(0);
  if (w == 0) v = warp_sum(v);
  if (threadIdx.x == 0) sh[0] = v;
  __syncthreads();
  return sh[0];
}

TS_DEV float block_max(float v, float* sh) {
  int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) sh[w] = v;
  __syncthreads();
  v = (int)threadIdx.x < nw ? sh[threadIdx.x] : -INFINITY;
  if (w == 0) v = warp_max(v);
  if (threadIdx.x == 0) sh[0] = v;
  __syncthreads();
  return sh[0];
}

// visible and first_visible are the range [first, visible) of keys the
// query at absolute position p sees (kernels.Attention.Visible): every mask
// makes one contiguous range visible; a sliding window (window > 0, causal
// only) starts it window-1 keys before p.
TS_DEV int visible(int mask, int prefix, int keys, int p) {
  if (mask == 1) return p + 1;
  if (mask == 3) {
    int v = prefix > p + 1 ? prefix : p + 1;
    return v < keys ? v : keys;
  }
  return keys;
}

TS_DEV int first_visible(int mask, int window, int p) {
  return mask == 1 && window > 0 && p + 1 > window ? p + 1 - window : 0;
}
