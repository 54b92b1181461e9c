package cpu

import (
	"fmt"
	"math"
	"sync"
	"unsafe"

	"github.com/tessera-llm/tessera/kernels"
)

// Tensor is the CPU backend's tensor: a dense row-major array in host
// memory. Exactly one of F32 (for kernels.F32), Half (for kernels.F16 and
// kernels.BF16, raw IEEE half or bfloat16 bits) or Q8 with Scales (for
// kernels.Q8_0, in the grouped layout q8.go describes) holds the elements.
// Views made by Rows and View share storage with the tensor they came from.
type Tensor struct {
	dtype kernels.DType
	shape []int
	// F32 holds the elements of a float32 tensor.
	F32 []float32
	// Half holds the raw bits of a float16 or bfloat16 tensor.
	Half []uint16
	// Q8 and Scales hold a Q8_0 tensor's quants and block scales (IEEE
	// half bits, as llama.cpp stores them).
	Q8     []int8
	Scales []uint16
}

var _ kernels.Tensor = (*Tensor)(nil)

// DType is the element type.
func (t *Tensor) DType() kernels.DType { return t.dtype }

// Shape is the tensor's dimensions; callers must not modify it.
func (t *Tensor) Shape() []int { return t.shape }

// Len is the number of elements.
func (t *Tensor) Len() int {
	switch t.dtype {
	case kernels.F32:
		return len(t.F32)
	case kernels.Q8_0:
		return t.shape[0] * t.shape[1]
	}
	return len(t.Half)
}

// String describes the tensor's dtype and shape, e.g. "BF16[4 8]".
func (t *Tensor) String() string { return fmt.Sprintf("%v%v", t.dtype, t.shape) }

// Data returns the float32 storage of t, shared, not copied: writes through
// it change the tensor. It panics if t is not a CPU float32 tensor.
func Data(t kernels.Tensor) []float32 {
	c, ok := t.(*Tensor)
	if !ok {
		panic(fmt.Sprintf("cpu.Data: %T is not a CPU tensor", t))
	}
	if c.dtype != kernels.F32 {
		panic(fmt.Sprintf("cpu.Data: tensor is %v, not F32", c))
	}
	return c.F32
}

// tensor asserts that t is a CPU tensor; op names the caller for the panic.
func tensor(op string, t kernels.Tensor) *Tensor { return kernels.Own[*Tensor]("cpu", op, t) }

// f32 asserts that t is a CPU float32 tensor.
func f32(op string, t kernels.Tensor) *Tensor { return kernels.OwnF32[*Tensor]("cpu", op, t) }

// check panics with a failed shared argument check, naming the op.
func check(op string, err error) {
	if err != nil {
		panic("cpu." + op + ": " + err.Error())
	}
}

func numel(op string, shape []int) int {
	n, err := kernels.Numel(shape)
	check(op, err)
	return n
}

// lastDim is the size of t's last dimension (1 for a scalar).
func lastDim(t *Tensor) int {
	if len(t.shape) == 0 {
		return 1
	}
	return t.shape[len(t.shape)-1]
}

// widen converts the elements [off, off+len(dst)) of t to float32 in dst.
func widen(dst []float32, t *Tensor, off int) {
	switch t.dtype {
	case kernels.F32:
		copy(dst, t.F32[off:off+len(dst)])
	case kernels.BF16:
		widenBF16(dst, t.Half[off:off+len(dst)])
	case kernels.F16:
		widenF16(dst, t.Half[off:off+len(dst)])
	case kernels.Q8_0:
		k := t.shape[1]
		if off%k != 0 || len(dst)%k != 0 {
			panic(fmt.Sprintf("cpu: Q8_0 tensor %v is read in whole rows, not [%d, %d)", t, off, off+len(dst)))
		}
		dequantRows(dst, t, off/k)
	default:
		panic(fmt.Sprintf("cpu: unsupported dtype %v", t.dtype))
	}
}

// span returns elements [off, off+n) of t as float32: the storage itself
// for an F32 tensor, else widened into buf (grown as needed).
func span(t *Tensor, off, n int, buf *[]float32) []float32 {
	if t.dtype == kernels.F32 {
		return t.F32[off : off+n]
	}
	b := grow(buf, n)
	widen(b, t, off)
	return b
}

// grow returns (*buf)[:n], reallocating when the capacity is too small.
func grow[T any](buf *[]T, n int) []T {
	if cap(*buf) < n {
		*buf = make([]T, n+n/4)
	}
	return (*buf)[:n]
}

// toBF16 rounds f to the nearest bfloat16 (ties to even).
func toBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 {
		return uint16(b>>16) | 0x40
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

// toF16 rounds f to the nearest IEEE half (ties to even): Q8_0's block
// scales, and test data. It is not on a hot path.
func toF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23&0xff) - 127 + 15
	mant := b & 0x7fffff
	switch {
	case b&0x7fffffff > 0x7f800000: // NaN
		return sign | 0x7e00 | uint16(mant>>13)
	case exp >= 0x1f: // overflow or Inf
		return sign | 0x7c00
	case exp <= 0: // subnormal or zero
		if exp < -10 {
			return sign
		}
		mant |= 0x800000
		shift := uint32(14 - exp)
		h := mant >> shift
		rem := mant & (1<<shift - 1)
		half := uint32(1) << (shift - 1)
		if rem > half || (rem == half && h&1 == 1) {
			h++
		}
		return sign | uint16(h)
	}
	h := uint32(exp)<<10 | mant>>13
	rem := mant & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && h&1 == 1) {
		h++ // may carry into the exponent, which is still correct
	}
	return sign | uint16(h)
}

// bf16 widens a bfloat16 to float32 (exact).
func bf16(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// f16 widens an IEEE half to float32 (exact, including subnormals, ±Inf and
// NaN payloads). It is small enough to inline into the kernels' loops.
func f16(h uint16) float32 {
	v := uint32(h&0x7fff) << 13
	switch h & 0x7c00 {
	case 0: // zero or subnormal: mant × 2⁻²⁴, exact in float32
		v = math.Float32bits(float32(v>>13) * 0x1p-24)
	case 0x7c00: // Inf or NaN: exponent 31 becomes 255
		v |= 0x7f800000
	default: // rebias the exponent from 15 to 127
		v += 112 << 23
	}
	return math.Float32frombits(uint32(h&0x8000)<<16 | v)
}

func widenBF16(dst []float32, src []uint16) {
	src = src[:len(dst)]
	if useSIMD && len(dst) > 0 {
		widenBF16AVX(&dst[0], &src[0], len(dst))
		return
	}
	for i, h := range src {
		dst[i] = math.Float32frombits(uint32(h) << 16)
	}
}

func widenF16(dst []float32, src []uint16) {
	src = src[:len(dst)]
	if useSIMD && len(dst) > 0 {
		widenF16AVX(&dst[0], &src[0], len(dst))
		return
	}
	tab := f16Table()
	for i, h := range src {
		dst[i] = tab[h]
	}
}

// f16Table maps every half to its float32 value (256 KiB, built on first
// use). In the kernels' loops one load beats f16's branches: the exponents
// real weights use touch a small, cache-resident part of it.
var f16Table = sync.OnceValue(func() *[1 << 16]float32 {
	t := new([1 << 16]float32)
	for i := range t {
		t[i] = f16(uint16(i))
	}
	return t
})

// overlaps reports whether two float32 tensors share any storage.
func overlaps(a, b *Tensor) bool {
	if len(a.F32) == 0 || len(b.F32) == 0 {
		return false
	}
	pa, pb := uintptr(unsafe.Pointer(unsafe.SliceData(a.F32))), uintptr(unsafe.Pointer(unsafe.SliceData(b.F32)))
	return pa < pb+uintptr(4*len(b.F32)) && pb < pa+uintptr(4*len(a.F32))
}
