package cuda

import (
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"
	"unsafe"

	"github.com/tessera-llm/tessera/kernels"
)

// Backend is the CUDA kernels.Backend for one device. Weights keep their
// dtype on the device (bf16 stays bf16); activations are float32. It is
// safe for concurrent use: every op is serialised onto the device's
// goroutine. Device errors (an out-of-memory, a faulting kernel) panic,
// like the shape errors the interface already treats as programming
// errors: the context is unusable after a kernel fault anyway.
type Backend struct {
	dev  *device
	name string
}

var _ kernels.Backend = (*Backend)(nil)

// opened are the backends Open shares, by device index.
var (
	openMu sync.Mutex
	opened = map[int]*Backend{}
)

// forget drops b from the backends Open shares.
func forget(b *Backend) {
	openMu.Lock()
	defer openMu.Unlock()
	for i, o := range opened {
		if o == b {
			delete(opened, i)
		}
	}
}

// newBackend starts device index through drv.
func newBackend(drv driver, index int, syncEach bool) (*Backend, error) {
	d, err := startDevice(drv, index, syncEach)
	if err != nil {
		return nil, err
	}
	return &Backend{dev: d, name: fmt.Sprintf("cuda:%d", index)}, nil
}

// Name returns "cuda:N".
func (b *Backend) Name() string { return b.name }

// Device describes the device: its name, compute capability and the PTX
// loaded.
func (b *Backend) Device() string {
	i := b.dev.info
	return fmt.Sprintf("%s (sm_%d%d, %s)", i.name, i.major, i.minor, i.ptx)
}

// SetSyncEach makes every launch wait for its kernel and return its
// execution error (TESSERA_CUDA_SYNC=1 sets it at Open).
func (b *Backend) SetSyncEach(on bool) {
	must(b.dev.do(func() error { b.dev.syncEach = on; return nil }))
}

// Sync waits for all submitted work and returns the first error it hit.
func (b *Backend) Sync() error { return b.dev.do(b.dev.drv.sync) }

// Launches is how many kernels the backend has launched.
func (b *Backend) Launches() int64 {
	var n int64
	must(b.dev.do(func() error { n = b.dev.launches; return nil }))
	return n
}

// Close waits for the device, frees what the backend holds and destroys
// its context. Tensors made by the backend must not be used afterwards.
func (b *Backend) Close() error {
	forget(b)
	return b.dev.close()
}

// Tensor is a dense row-major array in device memory. Views made by Rows
// and View share their parent's allocation, which is freed (on the device
// goroutine, once the device is idle) after the last of them is collected.
type Tensor struct {
	buf   *buffer
	off   int64 // bytes into buf
	dtype kernels.DType
	shape []int
	n     int
}

type buffer struct{ ptr devPtr }

var _ kernels.Tensor = (*Tensor)(nil)

// DType is the element type.
func (t *Tensor) DType() kernels.DType { return t.dtype }

// Shape is the tensor's dimensions; callers must not modify it.
func (t *Tensor) Shape() []int { return t.shape }

// Len is the number of elements.
func (t *Tensor) Len() int { return t.n }

// String describes the tensor's dtype and shape, e.g. "BF16[4 8]".
func (t *Tensor) String() string { return fmt.Sprintf("%v%v", t.dtype, t.shape) }

func (t *Tensor) ptr() devPtr {
	if t == nil || t.buf == nil || t.buf.ptr == 0 {
		return 0
	}
	return t.buf.ptr + devPtr(t.off)
}

func (t *Tensor) bytes() int64 { return int64(t.n) * int64(t.dtype.Size()) }

// overlaps reports whether two tensors share device memory.
func overlaps(a, b *Tensor) bool {
	if a.n == 0 || b.n == 0 {
		return false
	}
	pa, pb := a.ptr(), b.ptr()
	return pa < pb+devPtr(b.bytes()) && pb < pa+devPtr(a.bytes())
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

func tensor(op string, t kernels.Tensor) *Tensor { return kernels.Own[*Tensor]("cuda", op, t) }

func f32(op string, t kernels.Tensor) *Tensor { return kernels.OwnF32[*Tensor]("cuda", op, t) }

// optTensor is tensor for an optional argument (nil stays nil).
func optTensor(op string, t kernels.Tensor) *Tensor {
	if t == nil {
		return nil
	}
	return tensor(op, t)
}

// optDType is t's dtype code, 0 for an absent tensor.
func optDType(t *Tensor) uint64 {
	if t == nil {
		return 0
	}
	return uint64(t.dtype)
}

func numel(op string, shape []int) int {
	n, err := kernels.Numel(shape)
	check(op, err)
	return n
}

// newTensor allocates an uninitialised tensor on the device goroutine.
func (b *Backend) newTensor(dt kernels.DType, shape []int, n int) (*Tensor, error) {
	t := &Tensor{dtype: dt, shape: slices.Clone(shape), n: n, buf: &buffer{}}
	p, err := b.dev.alloc(int64(n) * int64(dt.Size()))
	if err != nil {
		return nil, err
	}
	if p != 0 {
		t.buf.ptr = p
		dev := b.dev
		runtime.AddCleanup(t.buf, func(p devPtr) { dev.deferFree(p) }, p)
	}
	return t, nil
}

// Alloc returns a zeroed float32 tensor.
func (b *Backend) Alloc(shape ...int) kernels.Tensor {
	n := numel("Alloc", shape)
	var t *Tensor
	must(b.dev.do(func() error {
		var err error
		if t, err = b.newTensor(kernels.F32, shape, n); err != nil || n == 0 {
			return err
		}
		return b.dev.drv.memsetD32(t.ptr(), int64(n))
	}))
	return t
}

// FromFloat32 copies data into a new float32 tensor of the given shape.
func (b *Backend) FromFloat32(data []float32, shape ...int) kernels.Tensor {
	n := numel("FromFloat32", shape)
	if len(data) != n {
		panic(fmt.Sprintf("cuda.FromFloat32: %d values for shape %v", len(data), shape))
	}
	var t *Tensor
	must(b.dev.do(func() error {
		var err error
		if t, err = b.newTensor(kernels.F32, shape, n); err != nil || n == 0 {
			return err
		}
		return b.dev.drv.htod(t.ptr(), unsafe.Pointer(&data[0]), int64(4*n))
	}))
	return t
}

// Upload copies little-endian raw bytes of dtype dt into a new device
// tensor that keeps dt: bf16 and f16 weights stay half on the device.
func (b *Backend) Upload(dt kernels.DType, raw []byte, shape ...int) (kernels.Tensor, error) {
	n, err := kernels.UploadLen(dt, raw, shape)
	if err != nil {
		return nil, fmt.Errorf("cuda.Upload: %w", err)
	}
	var t *Tensor
	err = b.dev.do(func() error {
		var err error
		if t, err = b.newTensor(dt, shape, n); err != nil || n == 0 {
			return err
		}
		return b.dev.drv.htod(t.ptr(), unsafe.Pointer(&raw[0]), int64(len(raw)))
	})
	if err != nil {
		return nil, fmt.Errorf("cuda.Upload: %w", err)
	}
	return t, nil
}

// Read copies t into dst (len(dst) >= t.Len()), waiting for the work that
// writes it. Half tensors are widened on the host.
func (b *Backend) Read(t kernels.Tensor, dst []float32) {
	c := tensor("Read", t)
	if len(dst) < c.n {
		panic(fmt.Sprintf("cuda.Read: dst has %d elements, tensor %v has %d", len(dst), c, c.n))
	}
	if c.n == 0 {
		return
	}
	if c.dtype == kernels.F32 {
		must(b.dev.do(func() error { return b.dev.drv.dtoh(unsafe.Pointer(&dst[0]), c.ptr(), c.bytes()) }))
		runtime.KeepAlive(c)
		return
	}
	raw := make([]uint16, c.n)
	must(b.dev.do(func() error { return b.dev.drv.dtoh(unsafe.Pointer(&raw[0]), c.ptr(), c.bytes()) }))
	runtime.KeepAlive(c)
	for i, h := range raw {
		if c.dtype == kernels.BF16 {
			dst[i] = math.Float32frombits(uint32(h) << 16)
		} else {
			dst[i] = f16(h)
		}
	}
}

// Write copies src (len(src) == t.Len()) into the float32 tensor t.
func (b *Backend) Write(t kernels.Tensor, src []float32) {
	c := f32("Write", t)
	if len(src) != c.n {
		panic(fmt.Sprintf("cuda.Write: src has %d elements, tensor %v has %d", len(src), c, c.n))
	}
	if c.n == 0 {
		return
	}
	must(b.dev.do(func() error { return b.dev.drv.htod(c.ptr(), unsafe.Pointer(&src[0]), c.bytes()) }))
	runtime.KeepAlive(c)
}

// Rows is a view of rows [lo, hi) of t seen as [Shape[0], rest...].
func (b *Backend) Rows(t kernels.Tensor, lo, hi int) kernels.Tensor {
	c := tensor("Rows", t)
	check("Rows", kernels.CheckRows(c, lo, hi))
	row := 1
	for _, d := range c.shape[1:] {
		row *= d
	}
	return &Tensor{buf: c.buf, off: c.off + int64(lo*row*c.dtype.Size()), dtype: c.dtype,
		shape: append([]int{hi - lo}, c.shape[1:]...), n: (hi - lo) * row}
}

// View is t with another shape of the same element count, sharing storage.
func (b *Backend) View(t kernels.Tensor, shape ...int) kernels.Tensor {
	c := tensor("View", t)
	if n := numel("View", shape); n != c.n {
		panic(fmt.Sprintf("cuda.View: shape %v has %d elements, tensor %v has %d", shape, n, c, c.n))
	}
	return &Tensor{buf: c.buf, off: c.off, dtype: c.dtype, shape: slices.Clone(shape), n: c.n}
}

// f16 widens an IEEE half to float32 exactly (kernels/cpu's f16).
func f16(h uint16) float32 {
	v := uint32(h&0x7fff) << 13
	switch h & 0x7c00 {
	case 0:
		v = math.Float32bits(float32(v>>13) * 0x1p-24)
	case 0x7c00:
		v |= 0x7f800000
	default:
		v += 112 << 23
	}
	return math.Float32frombits(uint32(h&0x8000)<<16 | v)
}
