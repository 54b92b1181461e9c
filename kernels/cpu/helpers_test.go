package cpu

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/tessera-llm/tessera/kernels"
)

var dtypes = []kernels.DType{kernels.F32, kernels.F16, kernels.BF16}

// backends are the configurations every op is tested under: serial, the
// default, and more goroutines than cores so chunks interleave.
func backends() []*Backend {
	return []*Backend{New(WithThreads(1)), New(), New(WithThreads(5))}
}

func randVec(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.Float64()*2 - 1)
	}
	return v
}

// encode returns data as little-endian bytes of dt and the values dt
// actually holds, widened to float64 for the reference.
func encode(dt kernels.DType, data []float32) ([]byte, []float64) {
	raw := make([]byte, len(data)*dt.Size())
	held := make([]float64, len(data))
	for i, v := range data {
		switch dt {
		case kernels.F32:
			binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
			held[i] = float64(v)
		case kernels.F16:
			h := toF16(v)
			binary.LittleEndian.PutUint16(raw[2*i:], h)
			held[i] = f16Ref(h)
		case kernels.BF16:
			h := toBF16(v)
			binary.LittleEndian.PutUint16(raw[2*i:], h)
			held[i] = float64(math.Float32frombits(uint32(h) << 16))
		}
	}
	return raw, held
}

// upload makes a tensor of dtype dt from data and returns the float64
// values it holds.
func upload(t testing.TB, b *Backend, dt kernels.DType, data []float32, shape ...int) (kernels.Tensor, []float64) {
	t.Helper()
	raw, held := encode(dt, data)
	x, err := b.Upload(dt, raw, shape...)
	if err != nil {
		t.Fatal(err)
	}
	return x, held
}

func f64s(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

// assertClose checks |got-want| <= tol·max(|want|, rms(want)) elementwise:
// relative error, with the vector's rms as the floor near zero.
func assertClose(t testing.TB, what string, got []float32, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	var ss float64
	for _, w := range want {
		ss += w * w
	}
	floor := math.Sqrt(ss / float64(max(len(want), 1)))
	bad := 0
	for i, w := range want {
		g := float64(got[i])
		if math.Abs(g-w) > tol*max(math.Abs(w), floor) || math.IsNaN(g) {
			if bad < 5 {
				t.Errorf("%s[%d] = %.9g, want %.9g (rel err %.3g)", what, i, g, w, math.Abs(g-w)/max(math.Abs(w), floor))
			}
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d of %d values off", what, bad, len(want))
	}
}

// assertWithin is assertClose after moving each got value up to slack[i]
// toward want[i]: for kernels that round their inputs, slack is the bound
// on what the rounding can cost and tol covers the arithmetic.
func assertWithin(t testing.TB, what string, got []float32, want, slack []float64, tol float64) {
	t.Helper()
	got = slices.Clone(got)
	for i, s := range slack {
		if d := float64(got[i]) - want[i]; math.Abs(d) <= s {
			got[i] = float32(want[i])
		} else {
			got[i] -= float32(math.Copysign(s, d))
		}
	}
	assertClose(t, what, got, want, tol)
}

func read(b *Backend, x kernels.Tensor) []float32 {
	out := make([]float32, x.Len())
	b.Read(x, out)
	return out
}

func name(parts ...any) string { return fmt.Sprint(parts...) }
