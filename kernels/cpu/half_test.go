package cpu

import (
	"math"
	"testing"
)

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
