package weights

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

// refHalf decodes a 16-bit float with the given exponent and mantissa
// widths from its fields, in float64, independently of the code under test.
func refHalf(h uint16, expBits, mantBits int) float64 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	bias := 1<<(expBits-1) - 1
	e := int(h>>mantBits) & (1<<expBits - 1)
	m := math.Ldexp(float64(int(h)&(1<<mantBits-1)), -mantBits)
	switch {
	case e == 1<<expBits-1 && m == 0:
		return math.Inf(int(sign))
	case e == 1<<expBits-1:
		return math.NaN()
	case e == 0:
		return sign * math.Ldexp(m, 1-bias)
	}
	return sign * math.Ldexp(1+m, e-bias)
}

func refF16(h uint16) float64  { return refHalf(h, 5, 10) }
func refBF16(h uint16) float64 { return refHalf(h, 8, 7) }

func sameFloat(a, b float64) bool {
	if math.IsNaN(a) || math.IsNaN(b) {
		return math.IsNaN(a) && math.IsNaN(b)
	}
	return a == b && math.Signbit(a) == math.Signbit(b)
}

func TestWidenExhaustive(t *testing.T) {
	for _, tc := range []struct {
		name  string
		conv  func(uint16) float32
		ref   func(uint16) float64
		nanOK func(h uint16, f float32) bool // payload and sign kept
	}{
		{"F16", F16ToF32, refF16, func(h uint16, f float32) bool {
			b := math.Float32bits(f)
			return b>>31 == uint32(h>>15) && (b>>13)&0x3ff == uint32(h&0x3ff)
		}},
		{"BF16", BF16ToF32, refBF16, func(h uint16, f float32) bool {
			return math.Float32bits(f) == uint32(h)<<16
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for i := range 1 << 16 {
				h := uint16(i)
				got, want := tc.conv(h), tc.ref(h)
				if !sameFloat(float64(got), want) {
					t.Fatalf("%#04x: got %v, want %v", h, got, want)
				}
				if math.IsNaN(want) && !tc.nanOK(h, got) {
					t.Fatalf("%#04x: NaN payload/sign lost: %#08x", h, math.Float32bits(got))
				}
			}
		})
	}
}

// narrowRef rounds x to the nearest value of a 16-bit format by search over
// all its finite positive values, ties to the even bit pattern, overflow to
// Inf per IEEE (values at or past max + half an ulp become Inf).
type narrowRef struct {
	vals []float64 // finite non-negative values, ascending, indexed by bits
	inf  uint16
}

func newNarrowRef(ref func(uint16) float64, inf uint16) narrowRef {
	var r narrowRef
	for h := uint16(0); h < inf; h++ {
		r.vals = append(r.vals, ref(h))
	}
	r.inf = inf
	return r
}

func (r narrowRef) round(x float64) uint16 {
	var sign uint16
	if math.Signbit(x) {
		sign, x = 0x8000, -x
	}
	n := len(r.vals)
	maxv, ulp := r.vals[n-1], r.vals[n-1]-r.vals[n-2]
	if x >= maxv+ulp/2 { // the tie at max+ulp/2 goes to the even pattern: Inf
		return sign | r.inf
	}
	i := sort.SearchFloat64s(r.vals, x) // vals[i-1] < x <= vals[i]
	if i == n {
		return sign | uint16(n-1)
	}
	if r.vals[i] == x || i == 0 {
		return sign | uint16(i)
	}
	lo, hi := x-r.vals[i-1], r.vals[i]-x
	switch {
	case lo < hi:
		return sign | uint16(i-1)
	case hi < lo:
		return sign | uint16(i)
	case i%2 == 0:
		return sign | uint16(i)
	}
	return sign | uint16(i-1)
}

func TestNarrow(t *testing.T) {
	f16 := newNarrowRef(refF16, 0x7c00)
	bf16 := newNarrowRef(refBF16, 0x7f80)
	for _, tc := range []struct {
		name  string
		conv  func(float32) uint16
		widen func(uint16) float32
		ref   narrowRef
		isNaN func(uint16) bool
	}{
		{"F16", F32ToF16, F16ToF32, f16, func(h uint16) bool { return h&0x7c00 == 0x7c00 && h&0x3ff != 0 }},
		{"BF16", F32ToBF16, BF16ToF32, bf16, func(h uint16) bool { return h&0x7f80 == 0x7f80 && h&0x7f != 0 }},
	} {
		check := func(t *testing.T, f float32) {
			t.Helper()
			got := tc.conv(f)
			if math.IsNaN(float64(f)) {
				if !tc.isNaN(got) || got>>15 != uint16(math.Float32bits(f)>>31) {
					t.Fatalf("%v (%#08x): got %#04x, want a NaN of the same sign", f, math.Float32bits(f), got)
				}
				return
			}
			if want := tc.ref.round(float64(f)); got != want {
				t.Fatalf("%g (%#08x): got %#04x (%g), want %#04x (%g)", f, math.Float32bits(f), got, tc.widen(got), want, tc.widen(want))
			}
		}
		t.Run(tc.name+"/exact", func(t *testing.T) {
			for i := range 1 << 16 {
				f := tc.widen(uint16(i))
				check(t, f)
				if !math.IsNaN(float64(f)) && tc.conv(f) != uint16(i) {
					t.Fatalf("%#04x does not round-trip", i)
				}
			}
		})
		t.Run(tc.name+"/ties", func(t *testing.T) {
			// Every midpoint between neighbours (and max..Inf) is exact
			// in float32; it and its float32 neighbours must round right.
			vals := append(append([]float64{}, tc.ref.vals...), 2*tc.ref.vals[len(tc.ref.vals)-1]-tc.ref.vals[len(tc.ref.vals)-2])
			for i := 1; i < len(vals); i++ {
				mid := (vals[i-1] + vals[i]) / 2
				m := float32(mid)
				if float64(m) != mid {
					t.Fatalf("midpoint %g not exact in float32", mid)
				}
				for _, f := range []float32{m, -m, math.Nextafter32(m, 0), math.Nextafter32(m, float32(math.Inf(1)))} {
					check(t, f)
				}
			}
		})
		t.Run(tc.name+"/random", func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 2))
			for range 200000 {
				check(t, math.Float32frombits(r.Uint32()))
			}
		})
	}
}

func TestNarrowCases(t *testing.T) {
	inf := float32(math.Inf(1))
	for _, tc := range []struct {
		name string
		in   float32
		f16  uint16
		bf16 uint16
	}{
		{"zero", 0, 0x0000, 0x0000},
		{"negative zero", float32(math.Copysign(0, -1)), 0x8000, 0x8000},
		{"one", 1, 0x3c00, 0x3f80},
		{"minus two", -2, 0xc000, 0xc000},
		{"f16 max", 65504, 0x7bff, 0x4780},
		{"just under f16 overflow tie", 65519.996, 0x7bff, 0x4780},
		{"f16 overflow tie to inf", 65520, 0x7c00, 0x4780},
		{"f16 smallest subnormal", 0x1p-24, 0x0001, 0x3380},
		{"half smallest subnormal ties to zero", 0x1p-25, 0x0000, 0x3300},
		{"just over half smallest subnormal", math.Nextafter32(0x1p-25, 1), 0x0001, 0x3300},
		{"1.5 subnormal units ties to 2", 0x3p-25, 0x0002, 0x33c0},
		{"largest subnormal", 0x3ffp-24, 0x03ff, 0x3880},
		{"subnormal rounds up to smallest normal", 0x7ffp-25, 0x0400, 0x3880},
		{"f16 smallest normal", 0x1p-14, 0x0400, 0x3880},
		{"1+2^-11 ties to even 1", 1 + 0x1p-11, 0x3c00, 0x3f80},
		{"1+3*2^-11 ties to even up", 1 + 0x3p-11, 0x3c02, 0x3f80},
		{"bf16 1+2^-8 ties to even 1", 1 + 0x1p-8, 0x3c04, 0x3f80},
		{"bf16 1+3*2^-8 ties up", 1 + 0x3p-8, 0x3c0c, 0x3f82},
		{"f32 max", math.MaxFloat32, 0x7c00, 0x7f80},
		{"f32 smallest subnormal", math.SmallestNonzeroFloat32, 0x0000, 0x0000},
		{"+inf", inf, 0x7c00, 0x7f80},
		{"-inf", -inf, 0xfc00, 0xff80},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := F32ToF16(tc.in); got != tc.f16 {
				t.Errorf("F32ToF16(%g) = %#04x, want %#04x", tc.in, got, tc.f16)
			}
			if got := F32ToBF16(tc.in); got != tc.bf16 {
				t.Errorf("F32ToBF16(%g) = %#04x, want %#04x", tc.in, got, tc.bf16)
			}
		})
	}
	nan := float32(math.NaN())
	if h := F32ToF16(nan); h&0x7c00 != 0x7c00 || h&0x3ff == 0 {
		t.Errorf("F32ToF16(NaN) = %#04x, not a NaN", h)
	}
	if h := F32ToBF16(nan); h&0x7f80 != 0x7f80 || h&0x7f == 0 {
		t.Errorf("F32ToBF16(NaN) = %#04x, not a NaN", h)
	}
	// A signalling NaN whose payload lives only in the low bits must not
	// become Inf.
	snan := math.Float32frombits(0x7f800001)
	if h := F32ToF16(snan); h != 0x7e00 {
		t.Errorf("F32ToF16(sNaN) = %#04x, want 0x7e00", h)
	}
	if h := F32ToBF16(snan); h != 0x7fc0 {
		t.Errorf("F32ToBF16(sNaN) = %#04x, want 0x7fc0", h)
	}
}

func TestEncodeDecodeFloat32(t *testing.T) {
	vals := []float32{0, 1, -2.5, 0.125, 65504, 0x1p-24, float32(math.Inf(-1))}
	for _, dt := range []DType{F32, F16, BF16} {
		t.Run(string(dt), func(t *testing.T) {
			b, err := EncodeFloat32(dt, vals)
			if err != nil {
				t.Fatal(err)
			}
			if len(b) != len(vals)*dt.Size() {
				t.Fatalf("encoded %d bytes", len(b))
			}
			got, err := DecodeFloat32(dt, b)
			if err != nil {
				t.Fatal(err)
			}
			for i, v := range vals {
				want := v
				switch dt {
				case F16:
					want = F16ToF32(F32ToF16(v))
				case BF16:
					want = BF16ToF32(F32ToBF16(v))
				}
				if got[i] != want {
					t.Errorf("[%d] = %v, want %v", i, got[i], want)
				}
			}
		})
	}
	if _, err := EncodeFloat32(I8, vals); err == nil {
		t.Error("EncodeFloat32(I8) succeeded")
	}
	if _, err := DecodeFloat32(U8, []byte{1}); err == nil {
		t.Error("DecodeFloat32(U8) succeeded")
	}
	if _, err := DecodeFloat32(F32, []byte{1, 2, 3}); err == nil {
		t.Error("DecodeFloat32 of 3 bytes as F32 succeeded")
	}
}

func TestDTypeSize(t *testing.T) {
	for _, tc := range []struct {
		d    DType
		want int
	}{
		{F32, 4}, {F16, 2}, {BF16, 2}, {F64, 8}, {I64, 8}, {I32, 4}, {I16, 2}, {I8, 1},
		{U8, 1}, {BOOL, 1}, {F8E4M3, 1}, {F8E5M2, 1}, {U16, 2}, {U32, 4}, {U64, 8},
		{"F4", 0}, {"f32", 0}, {"", 0},
	} {
		if got := tc.d.Size(); got != tc.want {
			t.Errorf("%q.Size() = %d, want %d", tc.d, got, tc.want)
		}
	}
}
