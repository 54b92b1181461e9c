package cuda

import (
	"unsafe"

	"github.com/tessera-llm/tessera/kernels"
)

// devPtr is a device address.
type devPtr uint64

// deviceInfo is what opening a device learns about it.
type deviceInfo struct {
	name         string
	major, minor int // compute capability
	ptx          string
}

// driver is the seam between the backend and the device: the few CUDA
// driver and cuBLAS calls the backend makes. Everything else in this
// package (argument checks, launch geometry, GEMM shapes, the workspace,
// the upload cache, deferred frees, the device goroutine) is plain Go that
// builds and is tested without CUDA; only cudriver.go (-tags cuda) fills
// the seam with gorgonia.org/cu and cuBLAS. Every method is called on the
// device goroutine, whose OS thread is locked, because a CUDA context is
// current on one thread only.
type driver interface {
	// open creates a context on device index, current on the calling
	// thread, loads the PTX that pick chooses for the device's compute
	// capability, resolves the named kernels and creates a cuBLAS handle.
	open(index int, pick func(major, minor int) (name, image string, err error), kernels []string) (deviceInfo, error)
	// close releases the handle, the module and the context.
	close() error
	alloc(bytes int64) (devPtr, error)
	free(p devPtr) error
	// memInfo is the device's free and total memory, for error messages.
	memInfo() (free, total int64)
	memsetD32(p devPtr, words int64) error
	htod(dst devPtr, src unsafe.Pointer, bytes int64) error
	dtoh(dst unsafe.Pointer, src devPtr, bytes int64) error
	// launch runs a kernel on grid (gx, gy) of bx threads with shared
	// bytes of dynamic shared memory; each argument is one 8-byte slot.
	launch(kernel string, gx, gy, bx, shared int, args []uint64) error
	// sync waits for all submitted work and reports its first error.
	sync() error
	// gemm: dst[n,m] = x[n,k] · w[m,k]ᵀ, x and w of dtype dt, f32 out and
	// accumulation.
	gemm(m, n, k int, w, x devPtr, dt kernels.DType, dst devPtr) error
}
