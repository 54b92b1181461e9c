package cuda

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"
	"unsafe"

	"github.com/tessera-llm/tessera/kernels"
)

// kernelNames are the extern "C" kernels of kernels/all.cu that Open
// resolves; a PTX missing one fails Open.
var kernelNames = []string{
	"ts_rmsnorm", "ts_layernorm",
	"ts_act", "ts_glu", "ts_add", "ts_scale", "ts_add_bias", "ts_to_half",
	"ts_embedding", "ts_write_kv", "ts_rope",
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
	index    int
	info     deviceInfo
	syncEach bool

	work chan func()

	// Owned by the device goroutine.
	drv      driver
	meta     map[string]devPtr
	ropes    map[kernels.RoPEKey]*ropeDev
	half     devBuf // activations converted for half GEMMs
	topk     devBuf // TopK outputs
	launches int64

	freeMu   sync.Mutex
	freeList []devPtr
}

// devBuf is a growable scratch allocation.
type devBuf struct {
	ptr   devPtr
	bytes int64
}

// ropeDev is a cos/sin table on the device for positions [0, n).
type ropeDev struct {
	n        int
	cos, sin devPtr
}

func startDevice(drv driver, index int, syncEach bool) (*device, error) {
	d := &device{index: index, syncEach: syncEach, drv: drv, work: make(chan func()),
		meta: map[string]devPtr{}, ropes: map[kernels.RoPEKey]*ropeDev{}}
	ready := make(chan error)
	go d.loop(ready)
	if err := <-ready; err != nil {
		return nil, err
	}
	return d, nil
}

// loop is the device goroutine. It never unlocks its thread: when it
// returns (Close, or a failed start) the thread exits with it, and with it
// whatever context was current there.
func (d *device) loop(ready chan<- error) {
	runtime.LockOSThread()
	info, err := d.drv.open(d.index, ptxFor, kernelNames)
	if err != nil {
		ready <- err
		return
	}
	d.info = info
	ready <- nil
	for f := range d.work {
		if err := d.drainFrees(); err != nil {
			panic(err)
		}
		f()
	}
}

// do runs f on the device goroutine and returns its error.
func (d *device) do(f func() error) error {
	errc := make(chan error, 1)
	d.work <- func() { errc <- f() }
	return <-errc
}

// deferFree queues a device allocation for freeing on the device
// goroutine; it is called from GC cleanups, on any goroutine.
func (d *device) deferFree(p devPtr) {
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
	if err := d.drv.sync(); err != nil {
		return fmt.Errorf("cuda: synchronize before free: %w", err)
	}
	for _, p := range list {
		if err := d.drv.free(p); err != nil {
			return fmt.Errorf("cuda: free: %w", err)
		}
	}
	return nil
}

// alloc returns bytes of device memory (0 for an empty request).
func (d *device) alloc(bytes int64) (devPtr, error) {
	if bytes == 0 {
		return 0, nil
	}
	p, err := d.drv.alloc(bytes)
	if err != nil {
		free, total := d.drv.memInfo()
		return 0, fmt.Errorf("cuda: allocating %d bytes on %s (%d of %d free): %w", bytes, d.info.name, free, total, err)
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
func (d *device) upload(kind string, raw []byte) (devPtr, error) {
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
	if err := d.drv.htod(p, unsafe.Pointer(&raw[0]), int64(len(raw))); err != nil {
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
		dst *devPtr
		src []float32
	}{{&nt.cos, cos}, {&nt.sin, sin}} {
		if *x.dst, err = d.alloc(int64(4 * len(x.src))); err != nil {
			return nil, err
		}
		if err = d.drv.htod(*x.dst, unsafe.Pointer(&x.src[0]), int64(4*len(x.src))); err != nil {
			return nil, fmt.Errorf("cuda: uploading a RoPE table: %w", err)
		}
	}
	d.ropes[k] = nt
	return nt, nil
}

// Kernel parameters: each is one 8-byte slot, the value in its low bytes
// (the driver reads the parameter's own size from it, little-endian).
func pInt(v int) uint64 {
	if v > math.MaxInt32 || v < math.MinInt32 {
		panic(fmt.Sprintf("cuda: kernel parameter %d overflows int32", v))
	}
	return uint64(uint32(int32(v)))
}
func pI64(v int) uint64       { return uint64(int64(v)) }
func pF32(v float32) uint64   { return uint64(math.Float32bits(v)) }
func pPtr(p devPtr) uint64    { return uint64(p) }
func pDType(t *Tensor) uint64 { return uint64(t.dtype) }

func ceilDiv(a, b int) int    { return (a + b - 1) / b }
func optPtr(t *Tensor) devPtr { return t.ptr() }

// elemBlocks is the grid of a grid-stride elementwise kernel over n
// elements: 256 threads a block, at most 65535 blocks, none for no work.
func elemBlocks(n int) int { return int(min((int64(n)+255)/256, 65535)) }

// launch runs kernel name on grid (gx, gy) of bx threads; an empty grid
// launches nothing. With syncEach it waits for the kernel and reports its
// execution error too.
func (d *device) launch(name string, gx, gy, bx, shared int, args ...uint64) error {
	if gx == 0 || gy == 0 {
		return nil
	}
	if err := d.drv.launch(name, gx, gy, bx, shared, args); err != nil {
		return fmt.Errorf("cuda: launching %s (grid %d×%d, block %d, %d B shared): %w", name, gx, gy, bx, shared, err)
	}
	d.launches++
	if d.syncEach {
		return d.syncErr(name)
	}
	return nil
}

// syncErr waits for the device and names op in the error it reports.
func (d *device) syncErr(op string) error {
	if err := d.drv.sync(); err != nil {
		return fmt.Errorf("cuda: %s failed: %w", op, err)
	}
	return nil
}

// close releases everything the device holds and ends its goroutine.
func (d *device) close() error {
	err := d.do(func() error {
		var errs []error
		errs = append(errs, d.drv.sync(), d.drainFrees())
		for _, p := range d.meta {
			errs = append(errs, d.drv.free(p))
		}
		for _, t := range d.ropes {
			errs = append(errs, d.drv.free(t.cos), d.drv.free(t.sin))
		}
		for _, b := range []devBuf{d.half, d.topk} {
			if b.ptr != 0 {
				errs = append(errs, d.drv.free(b.ptr))
			}
		}
		errs = append(errs, d.drv.close())
		return errors.Join(errs...)
	})
	close(d.work)
	return err
}
