package weights

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// DType is a safetensors element type, spelled as in the file header
// ("F32", "BF16", "I64", ...).
type DType string

// The element types this package understands. Sub-byte types (F4, F6_*)
// are not supported and are reported as ErrUnknownDType.
const (
	BOOL   DType = "BOOL"
	U8     DType = "U8"
	I8     DType = "I8"
	F8E4M3 DType = "F8_E4M3"
	F8E5M2 DType = "F8_E5M2"
	F8E8M0 DType = "F8_E8M0"
	I16    DType = "I16"
	U16    DType = "U16"
	F16    DType = "F16"
	BF16   DType = "BF16"
	I32    DType = "I32"
	U32    DType = "U32"
	F32    DType = "F32"
	I64    DType = "I64"
	U64    DType = "U64"
	F64    DType = "F64"
	C64    DType = "C64"
)

// Size returns the size of one element in bytes, or 0 if d is not a
// dtype this package knows.
func (d DType) Size() int {
	switch d {
	case BOOL, U8, I8, F8E4M3, F8E5M2, F8E8M0:
		return 1
	case I16, U16, F16, BF16:
		return 2
	case I32, U32, F32:
		return 4
	case I64, U64, F64, C64:
		return 8
	}
	return 0
}

// BF16ToF32 widens a bfloat16 bit pattern to float32. It is exact for
// every input, NaN payloads included.
func BF16ToF32(h uint16) float32 {
	return math.Float32frombits(uint32(h) << 16)
}

// F32ToBF16 narrows f to bfloat16, rounding to nearest with ties to even.
// Values past the bfloat16 range become ±Inf; NaN stays NaN (quieted).
func F32ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 { // NaN: keep sign and top payload, force quiet
		return uint16(b>>16) | 0x0040
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

// F16ToF32 widens an IEEE 754 half-precision bit pattern to float32. It is
// exact for every input: zeros, subnormals, ±Inf and NaN (payload kept).
func F16ToF32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch {
	case exp == 0x1f: // Inf or NaN
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case exp != 0: // normal
		return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
	case mant == 0: // ±0
		return math.Float32frombits(sign)
	}
	// Subnormal: mant * 2^-24. Normalise so the leading 1 is implicit.
	e := uint32(127 - 15 + 1)
	for mant&0x400 == 0 {
		mant <<= 1
		e--
	}
	return math.Float32frombits(sign | e<<23 | (mant&0x3ff)<<13)
}

// F32ToF16 narrows f to IEEE 754 half precision, rounding to nearest with
// ties to even, producing subnormals where needed. Values past the half
// range become ±Inf; NaN stays NaN (quieted).
func F32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23) & 0xff
	mant := b & 0x7fffff
	if exp == 0xff {
		if mant == 0 {
			return sign | 0x7c00
		}
		return sign | 0x7e00 | uint16(mant>>13)
	}
	e := exp - 127 + 15
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 {
		// Half subnormal (or zero): value = m * 2^-24 with m = M >> (14-e),
		// where M is the 24-bit significand with its implicit bit.
		s := uint32(14 - e)
		if s > 24 {
			return sign // at most half the smallest subnormal: rounds to ±0
		}
		m := mant | 0x800000
		r := m >> s
		rem := m & (1<<s - 1)
		half := uint32(1) << (s - 1)
		if rem > half || (rem == half && r&1 == 1) {
			r++ // may carry into the smallest normal, which is correct
		}
		return sign | uint16(r)
	}
	r := uint32(e)<<10 | mant>>13
	rem := mant & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && r&1 == 1) {
		r++ // may carry into the exponent, up to +Inf, which is correct
	}
	return sign | uint16(r)
}

// DecodeFloat32 decodes little-endian F32, F16 or BF16 elements, such as a
// slice returned by Rows or Cols, into a new []float32.
func DecodeFloat32(dt DType, src []byte) ([]float32, error) {
	sz := dt.Size()
	switch dt {
	case F32, F16, BF16:
	default:
		return nil, fmt.Errorf("weights: cannot decode dtype %q to float32 (only F32, F16, BF16): %w", dt, errors.ErrUnsupported)
	}
	if len(src)%sz != 0 {
		return nil, fmt.Errorf("weights: %d bytes is not a whole number of %s elements: %w", len(src), dt, ErrByteCount)
	}
	out := make([]float32, len(src)/sz)
	switch dt {
	case F32:
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
		}
	case F16:
		for i := range out {
			out[i] = F16ToF32(binary.LittleEndian.Uint16(src[2*i:]))
		}
	case BF16:
		for i := range out {
			out[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(src[2*i:])) << 16)
		}
	}
	return out, nil
}

// EncodeFloat32 encodes vals as little-endian F32, F16 or BF16 (rounding to
// nearest even), for example to build the Data of a WriteTensor.
func EncodeFloat32(dt DType, vals []float32) ([]byte, error) {
	switch dt {
	case F32:
		out := make([]byte, 4*len(vals))
		for i, v := range vals {
			binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(v))
		}
		return out, nil
	case F16:
		out := make([]byte, 2*len(vals))
		for i, v := range vals {
			binary.LittleEndian.PutUint16(out[2*i:], F32ToF16(v))
		}
		return out, nil
	case BF16:
		out := make([]byte, 2*len(vals))
		for i, v := range vals {
			binary.LittleEndian.PutUint16(out[2*i:], F32ToBF16(v))
		}
		return out, nil
	}
	return nil, fmt.Errorf("weights: cannot encode float32 as dtype %q (only F32, F16, BF16): %w", dt, errors.ErrUnsupported)
}
