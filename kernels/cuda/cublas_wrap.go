//go:build cuda

package cuda

/*
#cgo CFLAGS: -I${SRCDIR} -I${SRCDIR}/include
#cgo linux CFLAGS: -I/usr/local/cuda/include
#cgo linux LDFLAGS: -L/usr/local/cuda/lib64 -lcublas -lcuda
#include "cublas_wrap.h"
*/
import "C"

import (
	"fmt"

	"github.com/tessera-llm/tessera/kernels"
)

// blas is a cuBLAS handle. It is used only on the device goroutine, with
// the context current, and runs on the legacy default stream like every
// kernel launch, so GEMMs and kernels are ordered without events.
type blas struct{ h C.uintptr_t }

func blasError(op string, s C.int) error {
	if s == 0 {
		return nil
	}
	return fmt.Errorf("cuda: %s: cuBLAS status %d (%s)", op, int(s), C.GoString(C.ts_blas_status(s)))
}

func newBlas() (*blas, error) {
	var h C.uintptr_t
	if err := blasError("cublasCreate", C.ts_blas_create(&h)); err != nil {
		return nil, err
	}
	return &blas{h: h}, nil
}

func (b *blas) close() error { return blasError("cublasDestroy", C.ts_blas_destroy(b.h)) }

// gemm: dst[n,m] = x[n,k] · w[m,k]ᵀ, x and w of dtype dt, f32 out and
// accumulation.
func (b *blas) gemm(m, n, k int, w, x devPtr, dt kernels.DType, dst devPtr) error {
	s := C.ts_gemm(b.h, C.int(m), C.int(n), C.int(k), C.uint64_t(w), C.uint64_t(x), C.int(dt), C.uint64_t(dst))
	return blasError("cublasGemmEx", s)
}
