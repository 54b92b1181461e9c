package cpu

import (
	"math"
	"testing"
)

// toF16 rounds f to the nearest IEEE half (ties to even), used by tests and
// by nothing on the hot path.
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

// f16Ref decodes an IEEE half by its definition, in float64.
func f16Ref(h uint16) float64 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	exp := int(h>>10) & 0x1f
	mant := float64(h & 0x3ff)
	switch exp {
	case 0:
		return sign * mant * math.Pow(2, -24)
	case 0x1f:
		if mant == 0 {
			return sign * math.Inf(1)
		}
		return math.NaN()
	}
	return sign * (1 + mant/1024) * math.Pow(2, float64(exp-15))
}

func TestF16AllValues(t *testing.T) {
	for i := range 1 << 16 {
		h := uint16(i)
		got, want := f16(h), f16Ref(h)
		if math.IsNaN(want) {
			if !math.IsNaN(float64(got)) {
				t.Fatalf("f16(%#04x) = %v, want NaN", h, got)
			}
			continue
		}
		if float64(got) != want || math.Signbit(float64(got)) != math.Signbit(want) {
			t.Fatalf("f16(%#04x) = %v, want %v", h, got, want)
		}
		if back := toF16(got); back != h {
			t.Fatalf("toF16(f16(%#04x)) = %#04x", h, back)
		}
	}
}

func TestHalfRounding(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   float32
		f16  uint16
		bf16 uint16
	}{
		{"one", 1, 0x3c00, 0x3f80},
		{"minus two", -2, 0xc000, 0xc000},
		{"f16 max", 65504, 0x7bff, 0x4780},
		{"f16 overflow", 70000, 0x7c00, 0x4789},
		{"smallest f16 subnormal", 0x1p-24, 0x0001, 0x3380},
		{"below half of smallest subnormal", 0x1p-26, 0x0000, 0x3280},
		{"tie rounds to even", 1 + 0x1p-11, 0x3c00, 0x3f80},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := toF16(tc.in); got != tc.f16 {
				t.Errorf("toF16(%v) = %#04x, want %#04x", tc.in, got, tc.f16)
			}
			if got := toBF16(tc.in); got != tc.bf16 {
				t.Errorf("toBF16(%v) = %#04x, want %#04x", tc.in, got, tc.bf16)
			}
		})
	}
}
