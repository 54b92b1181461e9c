/* cublas_wrap.h: the small cuBLAS surface Tessera uses, as static C
 * functions over integer handles and device addresses (no Go pointers cross
 * into C, and no unsafe.Pointer conversions of device addresses in Go).
 */
#ifndef TESSERA_CUBLAS_WRAP_H
#define TESSERA_CUBLAS_WRAP_H
#include <stdint.h>
#include "cushim.h"

/* dtype codes are kernels.DType's: 1 F32, 2 F16, 3 BF16. */
static cudaDataType_t ts_cuda_type(int dt) {
	switch (dt) {
	case 2: return CUDA_R_16F;
	case 3: return CUDA_R_16BF;
	}
	return CUDA_R_32F;
}

static int ts_blas_create(uintptr_t *out) {
	cublasHandle_t h = 0;
	cublasStatus_t s = cublasCreate(&h);
	if (s != CUBLAS_STATUS_SUCCESS) return (int)s;
	/* Full fp32: no TF32 tensor-op shortcut for F32 GEMMs. */
	s = cublasSetMathMode(h, CUBLAS_DEFAULT_MATH);
	*out = (uintptr_t)h;
	return (int)s;
}

static int ts_blas_destroy(uintptr_t h) { return (int)cublasDestroy((cublasHandle_t)h); }

/* ts_gemm: dst[n,m] (row-major f32) = x[n,k] · w[m,k]ᵀ with x and w both of
 * dtype dt (x already converted to it), f32 accumulation
 * (CUBLAS_COMPUTE_32F). Column-major, that is C(m×n) = Wᵀ(m×k) · X(k×n) with
 * W seen as k×m (lda k), X as k×n (ldb k), C ldc m. */
static int ts_gemm(uintptr_t h, int m, int n, int k, uint64_t w, uint64_t x, int dt, uint64_t dst) {
	const float alpha = 1.0f, beta = 0.0f;
	cudaDataType_t t = ts_cuda_type(dt);
	return (int)cublasGemmEx((cublasHandle_t)h, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha,
		(const void *)(uintptr_t)w, t, k, (const void *)(uintptr_t)x, t, k, &beta,
		(void *)(uintptr_t)dst, CUDA_R_32F, m, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
}

static const char *ts_blas_status(int s) { return cublasGetStatusString((cublasStatus_t)s); }

#endif
