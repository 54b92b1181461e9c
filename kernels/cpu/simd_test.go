package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/tessera-llm/tessera/kernels"
)

// withFallback runs f with the pure-Go kernels forced, restoring useSIMD.
func withFallback(f func()) {
	saved := useSIMD
	useSIMD = false
	defer func() { useSIMD = saved }()
	f()
}

// TestFallback reruns the op tests with the pure-Go kernels, so both
// paths hold to the float64 references whatever the CPU.
func TestFallback(t *testing.T) {
	if !useSIMD {
		t.Skip("the SIMD kernels are not in use: every test already runs the fallback")
	}
	for _, tc := range []struct {
		name string
		f    func(*testing.T)
	}{
		{"MatMul", TestMatMul}, {"MatMul3D", TestMatMul3D}, {"Norms", TestNorms},
		{"Activations", TestActivations}, {"Embedding", TestEmbedding},
		{"AddScale", TestAddScale}, {"RoPE", TestRoPE}, {"Attend", TestAttend},
		{"DecodeMatchesPrefill", TestDecodeMatchesPrefill}, {"ConcurrentCallers", TestConcurrentCallers},
		{"TensorBasics", TestTensorBasics}, {"DecodeAllocs", TestDecodeAllocs},
		{"QuantizeBound", TestQuantizeBound}, {"MatMulQ8", TestMatMulQ8}, {"MatMuls", TestMatMuls}, {"Q8RowsAndEmbedding", TestQ8RowsAndEmbedding},
	} {
		t.Run(tc.name, func(t *testing.T) { withFallback(func() { tc.f(t) }) })
	}
}

// oddLens are vector lengths around the kernels' 16- and 32-lane steps.
var oddLens = []int{1, 2, 3, 7, 15, 16, 17, 31, 32, 33, 47, 63, 64, 65, 100, 127, 129, 255, 1000, 1027}

// halfBits returns n random halves of dt (bf16 or f16) and their values,
// with a few special values (zeros, subnormals, large) mixed in.
func halfBits(r *rand.Rand, dt kernels.DType, n int) ([]uint16, []float32) {
	h := make([]uint16, n)
	v := make([]float32, n)
	for i := range h {
		x := float32(r.Float64()*4 - 2)
		switch r.IntN(16) {
		case 0:
			x = 0
		case 1:
			x = 3e-6 // an f16 subnormal
		case 2:
			x = -6e4
		}
		if dt == kernels.BF16 {
			h[i] = toBF16(x)
			v[i] = bf16(h[i])
		} else {
			h[i] = toF16(x)
			v[i] = f16(h[i])
		}
	}
	return h, v
}

func TestSIMDKernels(t *testing.T) {
	if !hasAVX512 {
		t.Skip("no AVX-512 kernels on this CPU or build")
	}
	r := rand.New(rand.NewPCG(31, 32))
	for _, n := range oddLens {
		x, w := randVec(r, n), randVec(r, 2*n+1)
		var got float32
		gemvRowsF32(&x[0], &w[n+1], 0, n, 1, &got)
		checkDot(t, name("gemvRowsF32 n=", n), got, x, w[n+1:])
		checkDot(t, name("dot n=", n), dot(x, w[:n]), x, w)

		for _, dt := range []kernels.DType{kernels.BF16, kernels.F16} {
			hb, hv := halfBits(r, dt, 3*(n+1))
			gv := gemvRowsF16
			xk := x
			if dt == kernels.BF16 {
				// The bf16 kernels read x de-interleaved and zero padded.
				gv = gemvRowsBF16EO
				xk = make([]float32, eoLen(n))
				for i := range xk {
					xk[i] = float32(math.NaN())
				}
				deinterleave(xk, x)
			}
			gv(&xk[0], &hb[2*(n+1)], 0, n, 1, &got)
			checkDot(t, name("gemvRows", dt, " n=", n), got, x, hv[2*(n+1):])

			// widen must be exact and must not write past n.
			dst := make([]float32, n+1)
			dst[n] = 42
			if dt == kernels.BF16 {
				widenBF16(dst[:n], hb[:n])
			} else {
				widenF16(dst[:n], hb[:n])
			}
			for i := range n {
				if dst[i] != hv[i] && !(math.IsNaN(float64(dst[i])) && math.IsNaN(float64(hv[i]))) {
					t.Fatalf("widen %v n=%d [%d] = %v, want %v", dt, n, i, dst[i], hv[i])
				}
			}
			if dst[n] != 42 {
				t.Fatalf("widen %v n=%d wrote past the end", dt, n)
			}
		}

		y := randVec(r, n+1)
		y[n] = 42
		wantY := make([]float64, n)
		for i := range n {
			wantY[i] = float64(y[i]) + 0.75*float64(x[i])
		}
		axpy(y[:n], x, 0.75)
		assertClose(t, name("axpy n=", n), y[:n], wantY, 1e-6)
		if y[n] != 42 {
			t.Fatalf("axpy n=%d wrote past the end", n)
		}
	}
}

// TestRowKernels: a gemvRows call over several rows is bit for bit the
// one-row calls it replaces and the gemv4 kernel over 4 rows, its
// prefetching twin (gemvRows*PF) bit for bit itself, and axpyRows the
// axpyAVX calls (row strides wider than a row, runs up to 17 rows); none
// touches anything past its rows.
func TestRowKernels(t *testing.T) {
	if !hasAVX512 {
		t.Skip("no AVX-512 kernels on this CPU or build")
	}
	r := rand.New(rand.NewPCG(33, 34))
	for _, k := range oddLens {
		ld := k + 5
		for _, rows := range []int{1, 2, 3, 16, 17} {
			x, w, a := randVec(r, k), randVec(r, rows*ld), randVec(r, rows)
			hb, _ := halfBits(r, kernels.F16, rows*ld)
			xs := make([]uint16, 2*eoLen(k))
			splitBF16(xs, x)
			xp := make([]float32, eoLen(k))
			deinterleave(xp, x)
			plain := map[string][]float32{}
			for _, rk := range []*rowKernels{&plainRows, &prefetchRows} {
				for _, kc := range []struct {
					name string
					run  func(rows int, w int, out *float32)
					four func(out *float32)
				}{
					{"F32", func(n, at int, o *float32) { rk.f32(&x[0], &w[at], ld, k, n, o) },
						func(o *float32) { gemv4F32(&x[0], &w[0], ld, k, o) }},
					{"F16", func(n, at int, o *float32) { rk.f16(&x[0], &hb[at], ld, k, n, o) },
						func(o *float32) { gemv4F16(&x[0], &hb[0], ld, k, o) }},
					{"BF16EO", func(n, at int, o *float32) { rk.bf16EO(&xp[0], &hb[at], ld, k, n, o) },
						func(o *float32) { gemv4BF16EO(&xp[0], &hb[0], ld, k, o) }},
					{"BF16DP", func(n, at int, o *float32) {
						if hasBF16 {
							rk.bf16DP(&xs[0], &hb[at], ld, k, n, o)
						}
					}, func(o *float32) {
						if hasBF16 {
							gemv4BF16DP(&xs[0], &hb[0], ld, k, o)
						}
					}},
				} {
					got := make([]float32, rows+1)
					got[rows] = 42
					kc.run(rows, 0, &got[0])
					for i := range rows {
						var want float32
						kc.run(1, i*ld, &want)
						if got[i] != want && !math.IsNaN(float64(want)) {
							t.Fatalf("gemvRows%s k=%d rows=%d [%d] = %v, one row %v", kc.name, k, rows, i, got[i], want)
						}
					}
					if got[rows] != 42 {
						t.Fatalf("gemvRows%s k=%d rows=%d wrote past out", kc.name, k, rows)
					}
					if want, ok := plain[kc.name]; !ok {
						plain[kc.name] = got
					} else if !slices.EqualFunc(got, want, func(a, b float32) bool { return a == b || a != a && b != b }) {
						t.Fatalf("gemvRows%sPF k=%d rows=%d = %v, without prefetch %v", kc.name, k, rows, got, want)
					}
					if rows >= 4 {
						var four [4]float32
						kc.four(&four[0])
						for i, v := range four {
							if v != got[i] && !math.IsNaN(float64(v)) {
								t.Fatalf("gemv4%s k=%d row %d = %v, gemvRows %v", kc.name, k, i, v, got[i])
							}
						}
					}
				}
			}
			y := randVec(r, k+1)
			y[k] = 42
			want := slices.Clone(y)
			axpyRows(&y[0], &w[0], ld, k, rows, &a[0])
			for i := range rows {
				axpyAVX(&want[0], &w[i*ld], k, a[i])
			}
			if !slices.Equal(y, want) {
				t.Fatalf("axpyRows k=%d rows=%d differs from %d axpyAVX calls", k, rows, rows)
			}
		}
	}
}

// TestF16WidenAllValues: the VCVTPH2PS widening agrees with f16 on every
// half (NaNs stay NaN).
func TestF16WidenAllValues(t *testing.T) {
	src := make([]uint16, 1<<16)
	for i := range src {
		src[i] = uint16(i)
	}
	dst := make([]float32, len(src))
	widenF16(dst, src)
	for i, h := range src {
		want := f16(h)
		if math.IsNaN(float64(want)) {
			if !math.IsNaN(float64(dst[i])) {
				t.Fatalf("widenF16(%#04x) = %v, want NaN", h, dst[i])
			}
			continue
		}
		if math.Float32bits(dst[i]) != math.Float32bits(want) {
			t.Fatalf("widenF16(%#04x) = %v, want %v", h, dst[i], want)
		}
	}
}

// checkDot checks got against Σ x[i]·w[i] in float64, to 1e-6 of Σ|x[i]·w[i]|
// (the scale of float32 rounding error, whatever the cancellation).
func checkDot(t *testing.T, what string, got float32, x, w []float32) {
	t.Helper()
	var s, abs float64
	for i := range x {
		s += float64(x[i]) * float64(w[i])
		abs += math.Abs(float64(x[i]) * float64(w[i]))
	}
	if math.Abs(float64(got)-s) > 1e-6*abs || math.IsNaN(float64(got)) {
		t.Errorf("%s = %.9g, want %.9g (Σ|x·w| %.3g)", what, got, s, abs)
	}
}

// bf16Split is v with each value replaced by the sum of its two bf16
// parts (splitBF16), exact in float32.
func bf16Split(v []float32) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		hi := bf16(toBF16(x))
		out[i] = hi + bf16(toBF16(x-hi))
	}
	return out
}

// TestSIMDMatMulMatchesFallback compares the SIMD MatMul (GEMV and packed
// GEMM, every dtype) with the pure-Go one on random odd shapes: ragged
// weight blocks, partial x panels and k tails.
func TestSIMDMatMulMatchesFallback(t *testing.T) {
	if !hasAVX512 {
		t.Skip("no AVX-512 kernels on this CPU or build")
	}
	r := rand.New(rand.NewPCG(33, 34))
	shapes := []struct{ n, m, k int }{
		{1, 1, 1}, {1, 5, 3}, {1, 13, 129}, {2, 37, 33}, {3, 4, 17}, {7, 9, 100},
		{8, 12, 16}, {9, 13, 31}, {31, 25, 65}, {32, 24, 64}, {33, 37, 7}, {70, 101, 257},
		{128, 50, 130},
	}
	for _, b := range []*Backend{New(WithThreads(1)), New(WithThreads(3))} {
		for _, sh := range shapes {
			for _, dt := range dtypes {
				for _, withBias := range []bool{false, true} {
					t.Run(fmt.Sprintf("threads=%d/%dx%dx%d/%v/bias=%v", b.Threads(), sh.n, sh.m, sh.k, dt, withBias), func(t *testing.T) {
						x := b.FromFloat32(randVec(r, sh.n*sh.k), sh.n, sh.k)
						w, _ := upload(t, b, dt, randVec(r, sh.m*sh.k), sh.m, sh.k)
						var bias kernels.Tensor
						if withBias {
							bias, _ = upload(t, b, dt, randVec(r, sh.m), sh.m)
						}
						got, want := b.Alloc(sh.n, sh.m), b.Alloc(sh.n, sh.m)
						// Poison dst: every element must be written.
						for i := range Data(got) {
							Data(got)[i] = float32(math.NaN())
						}
						b.MatMul(got, x, w, bias)
						xf := x
						if dt == kernels.BF16 && useBF16 && sh.n < simdGemmRows {
							// The VDPBF16PS GEMV splits x into two bf16 parts first.
							xf = b.FromFloat32(bf16Split(Data(x)), sh.n, sh.k)
						}
						withFallback(func() { b.MatMul(want, xf, w, bias) })
						assertClose(t, "SIMD vs fallback", Data(got), f64s(Data(want)), 2e-5)
					})
				}
			}
		}
	}
}

// TestSIMDElementwise checks the exp, SiLU and RMSNorm kernels on odd
// lengths against float64, with extreme inputs mixed in.
func TestSIMDElementwise(t *testing.T) {
	if !hasAVX512 {
		t.Skip("no AVX-512 kernels on this CPU or build")
	}
	r := rand.New(rand.NewPCG(35, 36))
	for _, n := range oddLens {
		x := randVec(r, n+1)
		for i := range n {
			x[i] *= 30
			switch r.IntN(20) {
			case 0:
				x[i] = -200
			case 1:
				x[i] = 95
			case 2:
				x[i] = 0
			}
		}
		x[n] = 42

		// expSum: dst[i] = exp(x[i]-sub), Σ returned.
		dst := make([]float32, n+1)
		dst[n] = 42
		const sub = 3
		sum := expSumAVX(&dst[0], &x[0], n, sub)
		want := make([]float64, n)
		var wsum float64
		for i := range n {
			want[i] = math.Exp(float64(x[i] - sub)) // the kernel subtracts in float32
			if want[i] > math.MaxFloat32 {
				want[i] = math.Inf(1)
			}
			wsum += want[i]
			e, w := float64(dst[i]), want[i]
			if !(math.Abs(e-w) <= 2e-7*w || (w < 1e-37 && e < 1e-37) || e == w) {
				t.Errorf("exp(%v) = %v, want %v", x[i]-sub, e, w)
			}
		}
		if s := float64(sum); !(math.Abs(s-wsum) <= 1e-6*wsum+1e-37 || s == wsum) {
			t.Errorf("n=%d: expSum returned %v, want %v", n, s, wsum)
		}
		if dst[n] != 42 {
			t.Fatalf("expSum n=%d wrote past the end", n)
		}

		// siluMul with and without u.
		u := randVec(r, n)
		for _, withU := range []bool{false, true} {
			wantS := make([]float64, n)
			for i := range n {
				wantS[i] = float64(act(kernels.SiLU, x[i]))
				if withU {
					wantS[i] *= float64(u[i])
				}
			}
			out := make([]float32, n+1)
			out[n] = 42
			if withU {
				siluMulAVX(&out[0], &x[0], &u[0], n)
			} else {
				siluMulAVX(&out[0], &x[0], nil, n)
			}
			assertClose(t, name("silu n=", n, " u=", withU), out[:n], wantS, 1e-6)
			if out[n] != 42 {
				t.Fatalf("siluMul n=%d wrote past the end", n)
			}
		}

		// sumSquares over n&^7 and mulScale.
		var ss float64
		for _, v := range x[:n&^7] {
			ss += float64(v) * float64(v)
		}
		if got := sumSquaresAVX(&x[0], n); math.Abs(got-ss) > 1e-12*ss {
			t.Errorf("sumSquares n=%d = %v, want %v", n, got, ss)
		}
		g := randVec(r, n)
		for _, withG := range []bool{false, true} {
			out := make([]float32, n+1)
			out[n] = 42
			wantM := make([]float64, n)
			for i := range n {
				wantM[i] = float64(x[i] * 0.37)
				if withG {
					wantM[i] = float64(x[i] * 0.37 * g[i])
				}
			}
			if withG {
				mulScaleAVX(&out[0], &x[0], &g[0], n, 0.37)
			} else {
				mulScaleAVX(&out[0], &x[0], nil, n, 0.37)
			}
			assertClose(t, name("mulScale n=", n, " gamma=", withG), out[:n], wantM, 0)
			if out[n] != 42 {
				t.Fatalf("mulScale n=%d wrote past the end", n)
			}
		}
	}
}
