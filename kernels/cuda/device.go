//go:build cuda

package cuda

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"
	"unsafe"

	"gorgonia.org/cu"

	"github.com/tessera-llm/tessera/kernels"
)

// kernelNames are the extern "C" kernels of kernels/all.cu that Open
// resolves; a PTX missing one fails Open.
var kernelNames = []string{
	"ts_rmsnorm", "ts_layernorm", "ts_softmax",
	"ts_act", "ts_glu", "ts_add", "ts_scale", "ts_add_bias", "ts_to_half",
	"ts_embedding", "ts_alibi", "ts_write_kv", "ts_rope",
	"ts_attend_decode", "ts_attend_prefill", "ts_topk_lse",
}

// metaLimit is how many small host arrays (ids, positions, block tables,
// slopes, kv maps) the device keeps uploaded, keyed by content, before it
// frees them all and starts over.
const metaLimit = 512

// device owns one CUDA context. All device work runs on one goroutine
// locked to its OS thread (the context is current there and nowhere else),
// fed through work; every kernel and GEMM goes to the legacy default
// stream, so they run in submission order.
type device struct {
	index        int
	name         string
	major, minor int
	ptxName      string
	syncEach     bool

	work chan func()

	// Owned by the device goroutine.
	ctx      cu.CUContext
	mod      cu.Module
	fns      map[string]cu.Function
	blas     *blas
	meta     map[string]cu.DevicePtr
	ropes    map[kernels.RoPEKey]*ropeDev
	half     devBuf // activations converted for half GEMMs
	topk     devBuf // TopK outputs
	launches int64

	freeMu   sync.Mutex
	freeList []cu.DevicePtr
}

// devBuf is a growable scratch allocation.
type devBuf struct {
	ptr   cu.DevicePtr
	bytes int64
}

// ropeDev is a cos/sin table on the device for positions [0, n).
type ropeDev struct {
	n        int
	cos, sin cu.DevicePtr
}

func startDevice(index int, syncEach bool) (*device, error) {
	d := &device{index: index, syncEach: syncEach, work: make(chan func()),
		fns: map[string]cu.Function{}, meta: map[string]cu.DevicePtr{}, ropes: map[kernels.RoPEKey]*ropeDev{}}
	ready := make(chan error)
	go d.loop(ready)
	if err := <-ready; err != nil {
		return nil, err
	}
	return d, nil
}

// loop is the device goroutine. It never unlocks its thread: when it
// returns (Close, or a failed start) the thread exits with it.
func (d *device) loop(ready chan<- error) {
	runtime.LockOSThread()
	if err := d.init(); err != nil {
		ready <- err
		return
	}
	ready <- nil
	for f := range d.work {
		if err := d.drainFrees(); err != nil {
			panic(err)
		}
		f()
	}
}

func (d *device) init() error {
	n, err := cu.NumDevices()
	if err != nil {
		return fmt.Errorf("cuda: counting devices: %w", err)
	}
	if d.index < 0 || d.index >= n {
		return fmt.Errorf("cuda: device %d not present (%d devices)", d.index, n)
	}
	dev, err := cu.GetDevice(d.index)
	if err != nil {
		return fmt.Errorf("cuda: device %d: %w", d.index, err)
	}
	if d.major, err = dev.Attribute(cu.ComputeCapabilityMajor); err != nil {
		return fmt.Errorf("cuda: device %d: %w", d.index, err)
	}
	if d.minor, err = dev.Attribute(cu.ComputeCapabilityMinor); err != nil {
		return fmt.Errorf("cuda: device %d: %w", d.index, err)
	}
	if d.name, err = dev.Name(); err != nil {
		return fmt.Errorf("cuda: device %d: %w", d.index, err)
	}
	name, image, err := ptxFor(d.major, d.minor)
	if err != nil {
		return err
	}
	d.ptxName = name
	// cuCtxCreate makes the new context current on this (locked) thread.
	if d.ctx, err = dev.MakeContext(cu.SchedAuto); err != nil {
		return fmt.Errorf("cuda: creating a context on device %d: %w", d.index, err)
	}
	if d.mod, err = cu.LoadData(image); err != nil {
		d.ctx.Destroy()
		return fmt.Errorf("cuda: loading %s on %s (sm_%d%d): %w", name, d.name, d.major, d.minor, err)
	}
	for _, k := range kernelNames {
		fn, err := d.mod.Function(k)
		if err != nil {
			d.ctx.Destroy()
			return fmt.Errorf("cuda: kernel %s missing from %s (regenerate with make cuda-ptx): %w", k, name, err)
		}
		d.fns[k] = fn
	}
	if d.blas, err = newBlas(); err != nil {
		d.ctx.Destroy()
		return err
	}
	return nil
}

// do runs f on the device goroutine and returns its error.
func (d *device) do(f func() error) error {
	errc := make(chan error, 1)
	d.work <- func() { errc <- f() }
	return <-errc
}

// deferFree queues a device allocation for freeing on the device
// goroutine; it is called from GC cleanups, on any goroutine.
func (d *device) deferFree(p cu.DevicePtr) {
	d.freeMu.Lock()
	d.freeList = append(d.freeList, p)
	d.freeMu.Unlock()
}

// drainFrees frees queued allocations once the device is idle, since a
// kernel already submitted may still read them.
func (d *device) drainFrees() error {
	d.freeMu.Lock()
	list := d.freeList
	d.freeList = nil
	d.freeMu.Unlock()
	if len(list) == 0 {
		return nil
	}
	if err := cu.Synchronize(); err != nil {
		return fmt.Errorf("cuda: synchronize before free: %w", err)
	}
	for _, p := range list {
		if err := cu.MemFree(p); err != nil {
			return fmt.Errorf("cuda: free: %w", err)
		}
	}
	return nil
}

// alloc returns bytes of device memory (0 for an empty request).
func (d *device) alloc(bytes int64) (cu.DevicePtr, error) {
	if bytes == 0 {
		return 0, nil
	}
	p, err := cu.MemAlloc(bytes)
	if err != nil {
		free, total, _ := cu.MemInfo()
		return 0, fmt.Errorf("cuda: allocating %d bytes on %s (%d of %d free): %w", bytes, d.name, free, total, err)
	}
	return p, nil
}

// grow makes b hold at least bytes, keeping nothing of its contents.
func (d *device) grow(b *devBuf, bytes int64) error {
	if b.bytes >= bytes {
		return nil
	}
	if b.ptr != 0 {
		d.deferFree(b.ptr)
		if err := d.drainFrees(); err != nil {
			return err
		}
	}
	bytes = max(bytes, 2*b.bytes)
	p, err := d.alloc(bytes)
	if err != nil {
		*b = devBuf{}
		return err
	}
	*b = devBuf{ptr: p, bytes: bytes}
	return nil
}

// upload returns a device copy of raw, a small host array of the given
// kind. Copies are cached by content: a block table or a slope list that
// every layer passes is uploaded once. cuMemcpyHtoD from pageable memory
// waits for earlier work, so replacing the cache never races a kernel.
func (d *device) upload(kind string, raw []byte) (cu.DevicePtr, error) {
	if len(raw) == 0 {
		return 0, nil
	}
	key := kind + string(raw)
	if p, ok := d.meta[key]; ok {
		return p, nil
	}
	if len(d.meta) >= metaLimit {
		for _, p := range d.meta {
			d.deferFree(p)
		}
		clear(d.meta)
		if err := d.drainFrees(); err != nil {
			return 0, err
		}
	}
	p, err := d.alloc(int64(len(raw)))
	if err != nil {
		return 0, err
	}
	if err := cu.MemcpyHtoD(p, unsafe.Pointer(&raw[0]), int64(len(raw))); err != nil {
		return 0, fmt.Errorf("cuda: uploading %s: %w", kind, err)
	}
	d.meta[key] = p
	return p, nil
}

func int32Bytes(s []int32) []byte {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), 4*len(s))
}

func float32Bytes(s []float32) []byte {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), 4*len(s))
}

// rope returns the device cos/sin table for r covering positions
// [0, maxPos], built like kernels/cpu's (n = max(maxPos+1, 256), doubling
// when it grows) by the same kernels.RoPE.Table.
func (d *device) rope(r kernels.RoPE, maxPos int) (*ropeDev, error) {
	k := r.Key()
	t := d.ropes[k]
	if t != nil && t.n > maxPos {
		return t, nil
	}
	n := max(maxPos+1, 256)
	if t != nil {
		n = max(n, 2*t.n)
		d.deferFree(t.cos)
		d.deferFree(t.sin)
	}
	cos, sin := r.Table(n)
	nt := &ropeDev{n: n}
	var err error
	for _, x := range []struct {
		dst *cu.DevicePtr
		src []float32
	}{{&nt.cos, cos}, {&nt.sin, sin}} {
		if *x.dst, err = d.alloc(int64(4 * len(x.src))); err != nil {
			return nil, err
		}
		if err = cu.MemcpyHtoD(*x.dst, unsafe.Pointer(&x.src[0]), int64(4*len(x.src))); err != nil {
			return nil, fmt.Errorf("cuda: uploading a RoPE table: %w", err)
		}
	}
	d.ropes[k] = nt
	return nt, nil
}

// Kernel parameters: each is one 8-byte slot, the value in its low bytes
// (gorgonia.org/cu's Launch copies 8 bytes per parameter; the driver reads
// the parameter's own size from it, little-endian).
func pInt(v int) uint64 {
	if v > math.MaxInt32 || v < math.MinInt32 {
		panic(fmt.Sprintf("cuda: kernel parameter %d overflows int32", v))
	}
	return uint64(uint32(int32(v)))
}
func pI64(v int) uint64             { return uint64(int64(v)) }
func pF32(v float32) uint64         { return uint64(math.Float32bits(v)) }
func pPtr(p cu.DevicePtr) uint64    { return uint64(p) }
func pDType(t *Tensor) uint64       { return uint64(t.dtype) }
func elemBlocks(n int) int          { return int(min(max((int64(n)+255)/256, 1), 65535)) }
func ceilDiv(a, b int) int          { return (a + b - 1) / b }
func optPtr(t *Tensor) cu.DevicePtr { return t.ptr() }

// launch runs kernel name on grid (gx, gy) of bx threads; with syncEach it
// waits for the kernel and reports its execution error too.
func (d *device) launch(name string, gx, gy, bx, shared int, args ...uint64) error {
	fn, ok := d.fns[name]
	if !ok {
		return fmt.Errorf("cuda: unknown kernel %s", name)
	}
	if gx == 0 || gy == 0 {
		return nil
	}
	ptrs := make([]unsafe.Pointer, len(args))
	for i := range args {
		ptrs[i] = unsafe.Pointer(&args[i])
	}
	if err := fn.Launch(gx, gy, 1, bx, 1, 1, shared, cu.NoStream, ptrs); err != nil {
		return fmt.Errorf("cuda: launching %s (grid %d×%d, block %d, %d B shared): %w", name, gx, gy, bx, shared, err)
	}
	d.launches++
	if d.syncEach {
		if err := cu.Synchronize(); err != nil {
			return fmt.Errorf("cuda: %s failed: %w", name, err)
		}
	}
	return nil
}

// close releases everything the device holds and ends its goroutine.
func (d *device) close() error {
	err := d.do(func() error {
		var errs []error
		errs = append(errs, cu.Synchronize(), d.drainFrees())
		for _, p := range d.meta {
			errs = append(errs, cu.MemFree(p))
		}
		for _, t := range d.ropes {
			errs = append(errs, cu.MemFree(t.cos), cu.MemFree(t.sin))
		}
		for _, b := range []devBuf{d.half, d.topk} {
			if b.ptr != 0 {
				errs = append(errs, cu.MemFree(b.ptr))
			}
		}
		errs = append(errs, d.blas.close(), d.mod.Unload(), d.ctx.Destroy())
		return errors.Join(errs...)
	})
	close(d.work)
	return err
}
