//go:build cuda

package cuda

import (
	"errors"
	"fmt"
	"os"
	"unsafe"

	"github.com/tessera-llm/tessera/kernels"
	"gorgonia.org/cu"
)

// Importing gorgonia.org/cu runs cuInit in its package init and exits the
// process when that fails, so only binaries meant for GPU hosts link this
// file: `make cuda` builds them as bin/tessera-cuda, which bin/tessera
// hands a --device cuda:N command to (worker/devexec).
func init() {
	open := func(i int) func() (kernels.Backend, error) {
		return func() (kernels.Backend, error) { return Open(i) }
	}
	kernels.Register("cuda", open(0))
	n, err := cu.NumDevices()
	if err != nil || n < 1 {
		n = 1
	}
	for i := range n {
		kernels.Register(fmt.Sprintf("cuda:%d", i), open(i))
	}
}

// Open returns the backend of device index, creating its context on first
// use; later calls share it. It fails when no PTX is embedded (run make
// cuda-ptx), the device is absent, or the PTX does not load.
//
// TESSERA_CUDA_SYNC=1 makes every launch wait for its kernel and report
// its execution error (slow; for debugging and the conformance tests).
func Open(index int) (*Backend, error) {
	openMu.Lock()
	defer openMu.Unlock()
	if b := opened[index]; b != nil {
		return b, nil
	}
	b, err := newBackend(&cuDriver{}, index, os.Getenv("TESSERA_CUDA_SYNC") == "1")
	if err != nil {
		return nil, err
	}
	opened[index] = b
	return b, nil
}

// cuDriver is the driver seam filled by gorgonia.org/cu and cuBLAS. Every
// kernel and GEMM goes to the legacy default stream.
type cuDriver struct {
	ctx  cu.CUContext
	mod  cu.Module
	fns  map[string]cu.Function
	blas *blas
}

func (c *cuDriver) open(index int, pick func(major, minor int) (string, string, error), names []string) (info deviceInfo, err error) {
	n, err := cu.NumDevices()
	if err != nil {
		return info, fmt.Errorf("cuda: counting devices: %w", err)
	}
	if index < 0 || index >= n {
		return info, fmt.Errorf("cuda: device %d not present (%d devices)", index, n)
	}
	dev, err := cu.GetDevice(index)
	if err != nil {
		return info, fmt.Errorf("cuda: device %d: %w", index, err)
	}
	if info.major, err = dev.Attribute(cu.ComputeCapabilityMajor); err != nil {
		return info, fmt.Errorf("cuda: device %d: %w", index, err)
	}
	if info.minor, err = dev.Attribute(cu.ComputeCapabilityMinor); err != nil {
		return info, fmt.Errorf("cuda: device %d: %w", index, err)
	}
	if info.name, err = dev.Name(); err != nil {
		return info, fmt.Errorf("cuda: device %d: %w", index, err)
	}
	name, image, err := pick(info.major, info.minor)
	if err != nil {
		return info, err
	}
	info.ptx = name
	// cuCtxCreate makes the new context current on this (locked) thread.
	if c.ctx, err = dev.MakeContext(cu.SchedAuto); err != nil {
		return info, fmt.Errorf("cuda: creating a context on device %d: %w", index, err)
	}
	fail := func(err error) (deviceInfo, error) {
		c.ctx.Destroy()
		return info, err
	}
	if c.mod, err = cu.LoadData(image); err != nil {
		return fail(fmt.Errorf("cuda: loading %s on %s (sm_%d%d): %w", name, info.name, info.major, info.minor, err))
	}
	c.fns = make(map[string]cu.Function, len(names))
	for _, k := range names {
		fn, err := c.mod.Function(k)
		if err != nil {
			return fail(fmt.Errorf("cuda: kernel %s missing from %s (regenerate with make cuda-ptx): %w", k, name, err))
		}
		c.fns[k] = fn
	}
	if c.blas, err = newBlas(); err != nil {
		return fail(err)
	}
	return info, nil
}

func (c *cuDriver) close() error {
	return errors.Join(c.blas.close(), c.mod.Unload(), c.ctx.Destroy())
}

func (c *cuDriver) alloc(bytes int64) (devPtr, error) {
	p, err := cu.MemAlloc(bytes)
	return devPtr(p), err
}

func (c *cuDriver) free(p devPtr) error { return cu.MemFree(cu.DevicePtr(p)) }

func (c *cuDriver) memInfo() (free, total int64) {
	f, t, _ := cu.MemInfo()
	return f, t
}

func (c *cuDriver) memsetD32(p devPtr, words int64) error {
	return cu.MemsetD32(cu.DevicePtr(p), 0, words)
}

func (c *cuDriver) htod(dst devPtr, src unsafe.Pointer, bytes int64) error {
	return cu.MemcpyHtoD(cu.DevicePtr(dst), src, bytes)
}

func (c *cuDriver) dtoh(dst unsafe.Pointer, src devPtr, bytes int64) error {
	return cu.MemcpyDtoH(dst, cu.DevicePtr(src), bytes)
}

// launch passes each 8-byte argument slot by address, as cuLaunchKernel
// wants; the driver reads each parameter's own size from its slot.
func (c *cuDriver) launch(kernel string, gx, gy, bx, shared int, args []uint64) error {
	fn, ok := c.fns[kernel]
	if !ok {
		return fmt.Errorf("unknown kernel %s", kernel)
	}
	ptrs := make([]unsafe.Pointer, len(args))
	for i := range args {
		ptrs[i] = unsafe.Pointer(&args[i])
	}
	return fn.Launch(gx, gy, 1, bx, 1, 1, shared, cu.NoStream, ptrs)
}

func (c *cuDriver) sync() error { return cu.Synchronize() }

func (c *cuDriver) gemm(m, n, k int, w, x devPtr, dt kernels.DType, dst devPtr) error {
	return c.blas.gemm(m, n, k, w, x, dt, dst)
}
