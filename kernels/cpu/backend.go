package cpu

import (
	"encoding/binary"
	"fmt"
	"math"
	"runtime"
	"slices"

	"github.com/tessera-llm/tessera/kernels"
)

func init() {
	kernels.Register("cpu", func() (kernels.Backend, error) { return New(), nil })
}

// Backend is the pure-Go kernels.Backend. It is safe for concurrent use:
// every op runs on the calling goroutine plus a fixed set of worker
// goroutines shared by all callers.
type Backend struct {
	threads int
	pool    *pool
	ropes   ropeCache
}

var _ kernels.Backend = (*Backend)(nil)

// Option configures New.
type Option func(*config)

type config struct{ threads int }

// WithThreads sets how many goroutines (the caller included) an op may
// use. n <= 0 means runtime.GOMAXPROCS(0), the default.
func WithThreads(n int) Option { return func(c *config) { c.threads = n } }

// New returns a CPU backend. Its worker goroutines are started here and
// stop when the Backend is garbage collected or closed.
func New(opts ...Option) *Backend {
	var c config
	for _, o := range opts {
		o(&c)
	}
	if c.threads <= 0 {
		c.threads = runtime.GOMAXPROCS(0)
	}
	b := &Backend{threads: c.threads, pool: newPool(c.threads)}
	runtime.AddCleanup(b, (*pool).close, b.pool)
	return b
}

// Threads reports how many goroutines an op may use.
func (b *Backend) Threads() int { return b.threads }

// Name returns "cpu".
func (b *Backend) Name() string { return "cpu" }

// Alloc returns a zeroed float32 tensor.
func (b *Backend) Alloc(shape ...int) kernels.Tensor {
	return &Tensor{dtype: kernels.F32, shape: slices.Clone(shape), F32: make([]float32, numel("Alloc", shape))}
}

// FromFloat32 copies data into a new float32 tensor of the given shape.
func (b *Backend) FromFloat32(data []float32, shape ...int) kernels.Tensor {
	n := numel("FromFloat32", shape)
	if len(data) != n {
		panic(fmt.Sprintf("cpu.FromFloat32: %d values for shape %v", len(data), shape))
	}
	return &Tensor{dtype: kernels.F32, shape: slices.Clone(shape), F32: slices.Clone(data)}
}

// Upload decodes little-endian raw bytes of dtype dt into a new tensor that
// keeps dt (half weights stay half and are widened inside the kernels).
func (b *Backend) Upload(dt kernels.DType, raw []byte, shape ...int) (kernels.Tensor, error) {
	n, err := kernels.UploadLen(dt, raw, shape)
	if err != nil {
		return nil, fmt.Errorf("cpu.Upload: %w", err)
	}
	t := &Tensor{dtype: dt, shape: slices.Clone(shape)}
	if dt == kernels.F32 {
		t.F32 = make([]float32, n)
		for i := range t.F32 {
			t.F32[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
	} else {
		t.Half = make([]uint16, n)
		for i := range t.Half {
			t.Half[i] = binary.LittleEndian.Uint16(raw[2*i:])
		}
	}
	return t, nil
}

// Read copies t into dst (len(dst) >= t.Len()). Half tensors are widened.
func (b *Backend) Read(t kernels.Tensor, dst []float32) {
	c := tensor("Read", t)
	if len(dst) < c.Len() {
		panic(fmt.Sprintf("cpu.Read: dst has %d elements, tensor %v has %d", len(dst), c, c.Len()))
	}
	widen(dst[:c.Len()], c, 0)
}

// Rows is a view of rows [a, b) of t seen as [Shape[0], rest...]; it
// shares t's storage.
func (b *Backend) Rows(t kernels.Tensor, lo, hi int) kernels.Tensor {
	c := tensor("Rows", t)
	check("Rows", kernels.CheckRows(c, lo, hi))
	if c.dtype == kernels.Q8_0 {
		return q8Rows(c, lo, hi)
	}
	row := 1
	for _, d := range c.shape[1:] {
		row *= d
	}
	v := &Tensor{dtype: c.dtype, shape: append([]int{hi - lo}, c.shape[1:]...)}
	if c.dtype == kernels.F32 {
		v.F32 = c.F32[lo*row : hi*row : hi*row]
	} else {
		v.Half = c.Half[lo*row : hi*row : hi*row]
	}
	return v
}

// View is t with another shape of the same element count, sharing storage.
func (b *Backend) View(t kernels.Tensor, shape ...int) kernels.Tensor {
	c := tensor("View", t)
	if n := numel("View", shape); n != c.Len() {
		panic(fmt.Sprintf("cpu.View: shape %v has %d elements, tensor %v has %d", shape, n, c, c.Len()))
	}
	if c.dtype == kernels.Q8_0 && !slices.Equal(shape, c.shape) {
		panic(fmt.Sprintf("cpu.View: Q8_0 tensor %v cannot be reshaped to %v", c, shape))
	}
	return &Tensor{dtype: c.dtype, shape: slices.Clone(shape), F32: c.F32, Half: c.Half, Q8: c.Q8, Scales: c.Scales}
}
