package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/tessera-llm/tessera/kernels"
)

func TestRegistered(t *testing.T) {
	b, err := kernels.Open("cpu")
	if err != nil {
		t.Fatal(err)
	}
	if b.Name() != "cpu" {
		t.Fatalf("Name() = %q", b.Name())
	}
	if _, ok := b.(*Backend); !ok {
		t.Fatalf("Open(cpu) = %T", b)
	}
}

func TestTensorBasics(t *testing.T) {
	b := New()
	x := b.FromFloat32([]float32{0, 1, 2, 3, 4, 5}, 3, 2)
	if got := x.Shape(); !slices.Equal(got, []int{3, 2}) || x.Len() != 6 || x.DType() != kernels.F32 {
		t.Fatalf("FromFloat32: %v", x)
	}
	r := b.Rows(x, 1, 3)
	if !slices.Equal(r.Shape(), []int{2, 2}) || !slices.Equal(read(b, r), []float32{2, 3, 4, 5}) {
		t.Fatalf("Rows(1,3) = %v %v", r, read(b, r))
	}
	Data(r)[0] = 20 // views share storage
	if Data(x)[2] != 20 {
		t.Fatal("Rows does not share storage")
	}
	v := b.View(x, 6)
	Data(v)[5] = 50
	if Data(x)[5] != 50 || !slices.Equal(v.Shape(), []int{6}) {
		t.Fatal("View does not share storage")
	}
	if a := b.Alloc(2, 3); a.Len() != 6 || slices.ContainsFunc(Data(a), func(f float32) bool { return f != 0 }) {
		t.Fatal("Alloc not zeroed")
	}
	for _, dt := range dtypes {
		data := []float32{1.5, -2, 0.25, 3}
		w, held := upload(t, b, dt, data, 2, 2)
		if w.DType() != dt {
			t.Errorf("Upload(%v) dtype %v", dt, w.DType())
		}
		assertClose(t, "Read "+dt.String(), read(b, w), held, 0)
		hr := b.Rows(w, 1, 2)
		assertClose(t, "Rows "+dt.String(), read(b, hr), held[2:], 0)
	}
	if _, err := b.Upload(kernels.BF16, make([]byte, 7), 2, 2); err == nil {
		t.Error("Upload accepted a short buffer")
	}
	if _, err := b.Upload(kernels.DType(9), nil); err == nil {
		t.Error("Upload accepted an unknown dtype")
	}
}

func TestShapePanics(t *testing.T) {
	b := New()
	x := b.Alloc(2, 3)
	w := b.Alloc(4, 5)
	for _, tc := range []struct {
		name, want string
		f          func()
	}{
		{"matmul k", "does not end in k=5", func() { b.MatMul(b.Alloc(2, 4), x, w, nil) }},
		{"matmul dst", "dst", func() { b.MatMul(b.Alloc(2, 3), b.Alloc(2, 5), w, nil) }},
		{"matmul bias", "bias", func() { b.MatMul(b.Alloc(2, 4), b.Alloc(2, 5), w, b.Alloc(3)) }},
		{"matmul alias", "must not share", func() { x := b.Alloc(8, 4); b.MatMul(b.Rows(x, 2, 6), b.Rows(x, 0, 4), b.Alloc(4, 4), nil) }},
		{"data of half", "not F32", func() { h, _ := upload(t, b, kernels.BF16, make([]float32, 4), 4); Data(h) }},
		{"view count", "has 7 elements", func() { b.View(x, 7) }},
		{"rows range", "out of range", func() { b.Rows(x, 1, 3) }},
		{"add", "length mismatch", func() { b.Add(x, x, w) }},
		{"layernorm gamma", "parameter", func() { b.LayerNorm(x, x, b.Alloc(4), nil, 1e-5) }},
		{"embedding id", "outside vocabulary", func() { b.Embedding(b.Alloc(1, 5), w, []int32{4}) }},
		{"attend window", "over a causal mask", func() {
			a := kernels.Attention{Heads: 1, KVHeads: 1, HeadDim: 3, Scale: 1, Mask: kernels.Prefix, Window: 2, BlockSize: 1, Table: []int32{0, 1}, Keys: 2}
			b.Attend(x, x, b.Alloc(2, 1, 1, 3), b.Alloc(2, 1, 1, 3), &a)
		}},
		{"rope range", "bad RoPE", func() {
			b.ApplyRoPE(b.Alloc(1, 8), []int32{0}, kernels.RoPE{Heads: 1, HeadDim: 8, Offset: 4, Dim: 6, Theta: 1e4})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				r := recover()
				if r == nil || !strings.Contains(fmt.Sprint(r), tc.want) {
					t.Fatalf("panic %v, want one mentioning %q", r, tc.want)
				}
			}()
			tc.f()
		})
	}
}

func matmulRef(x, w, bias []float64, n, m, k int) []float64 {
	out := make([]float64, n*m)
	for i := range n {
		for j := range m {
			var s float64
			for l := range k {
				s += x[i*k+l] * w[j*k+l]
			}
			if bias != nil {
				s += bias[j]
			}
			out[i*m+j] = s
		}
	}
	return out
}

func TestMatMul(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	shapes := []struct{ n, m, k int }{
		{1, 1, 1}, {1, 7, 13}, {1, 64, 256}, {1, 301, 129},
		{2, 5, 9}, {3, 33, 70}, {4, 4, 4}, {5, 9, 17}, {8, 16, 64},
		{17, 31, 45}, {64, 67, 129}, {33, 300, 8},
		// Widths the decode GEMVs meet, with odd row counts (items of 4 rows
		// and a partial last one).
		{2, 1000, 1024}, {1, 130, 700}, {3, 257, 1536},
		// GEMM panels of at most 16 x rows (gemm12x16): a 16-row batch, and
		// 16 rows after a full panel.
		{16, 37, 70}, {48, 30, 33},
	}
	for _, b := range backends() {
		for _, sh := range shapes {
			for _, dt := range dtypes {
				for _, withBias := range []bool{false, true} {
					t.Run(fmt.Sprintf("threads=%d/%dx%dx%d/%v/bias=%v", b.Threads(), sh.n, sh.m, sh.k, dt, withBias), func(t *testing.T) {
						xd := randVec(r, sh.n*sh.k)
						w, wv := upload(t, b, dt, randVec(r, sh.m*sh.k), sh.m, sh.k)
						var bias kernels.Tensor
						var bv []float64
						if withBias {
							bias, bv = upload(t, b, dt, randVec(r, sh.m), sh.m)
						}
						dst := b.Alloc(sh.n, sh.m)
						b.MatMul(dst, b.FromFloat32(xd, sh.n, sh.k), w, bias)
						var slack []float64
						if dt == kernels.BF16 && useSIMD && useBF16 && sh.n < simdGemmRows {
							slack = bf16ActBound(xd, wv, sh.n, sh.m, sh.k)
						}
						assertWithin(t, "dst", Data(dst), matmulRef(f64s(xd), wv, bv, sh.n, sh.m, sh.k), slack, 1e-5)
					})
				}
			}
		}
	}
}

// TestMatMulNoBF16 reruns TestMatMul on the even/odd bf16 GEMV (float32
// x) that CPUs without AVX512_BF16 use.
func TestMatMulNoBF16(t *testing.T) {
	if !useBF16 {
		t.Skip("the VDPBF16PS kernel is not in use: TestMatMul already runs the even/odd one")
	}
	useBF16 = false
	defer func() { useBF16 = true }()
	TestMatMul(t)
}

// bf16ActBound is how far each x·wᵀ can move when x is split into two
// bf16 parts (splitBF16, the VDPBF16PS GEMV): every x by at most 2⁻¹⁶ of
// itself, or by its whole remainder after hi where that is below the
// smallest normal (the instruction treats subnormals as zero).
func bf16ActBound(x []float32, w []float64, n, m, k int) []float64 {
	out := make([]float64, n*m)
	for i := range n {
		for o := range m {
			var s float64
			for p := range k {
				xv := float64(x[i*k+p])
				s += math.Abs(xv*w[o*k+p]) * 0x1p-16
				if math.Abs(xv-float64(bf16(toBF16(x[i*k+p])))) < 0x1p-126 || math.Abs(xv) < 0x1p-126 {
					s += 0x1p-125 * math.Abs(w[o*k+p])
				}
			}
			out[i*m+o] = s * (1 + 1e-5)
		}
	}
	return out
}

// TestMatMul3D: x with leading batch dims is treated as its flattened rows.
func TestMatMul3D(t *testing.T) {
	b := New()
	r := rand.New(rand.NewPCG(3, 4))
	xd, wd := randVec(r, 2*3*8), randVec(r, 5*8)
	dst := b.Alloc(2, 3, 5)
	b.MatMul(dst, b.FromFloat32(xd, 2, 3, 8), b.FromFloat32(wd, 5, 8), nil)
	assertClose(t, "dst", Data(dst), matmulRef(f64s(xd), f64s(wd), nil, 6, 5, 8), 1e-5)
}

func normRef(x, gamma, beta []float64, n, d int, eps float64, rms bool) []float64 {
	out := make([]float64, n*d)
	for i := range n {
		row := x[i*d : i*d+d]
		var mean, v float64
		for _, f := range row {
			mean += f
		}
		mean /= float64(d)
		if rms {
			mean = 0
		}
		for _, f := range row {
			v += (f - mean) * (f - mean)
		}
		v /= float64(d)
		for j, f := range row {
			out[i*d+j] = (f - mean) / math.Sqrt(v+eps) * gamma[j]
			if beta != nil {
				out[i*d+j] += beta[j]
			}
		}
	}
	return out
}

func TestNorms(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, b := range backends() {
		for _, sh := range []struct{ n, d int }{{1, 1}, {1, 7}, {3, 64}, {9, 1000}, {40, 33}} {
			for _, dt := range dtypes {
				tn := fmt.Sprintf("threads=%d/%dx%d/%v", b.Threads(), sh.n, sh.d, dt)
				xd := randVec(r, sh.n*sh.d)
				for i := range xd {
					xd[i] = xd[i]*3 + 5 // an offset mean tests the two-pass variance
				}
				x := b.FromFloat32(xd, sh.n, sh.d)
				gamma, gv := upload(t, b, dt, randVec(r, sh.d), sh.d)
				beta, bv := upload(t, b, dt, randVec(r, sh.d), sh.d)
				t.Run("LayerNorm/"+tn, func(t *testing.T) {
					dst := b.Alloc(sh.n, sh.d)
					b.LayerNorm(dst, x, gamma, beta, 1e-5)
					assertClose(t, "dst", Data(dst), normRef(f64s(xd), gv, bv, sh.n, sh.d, 1e-5, false), 1e-5)
					b.LayerNorm(dst, x, gamma, nil, 1e-5)
					assertClose(t, "no beta", Data(dst), normRef(f64s(xd), gv, nil, sh.n, sh.d, 1e-5, false), 1e-5)
				})
				t.Run("RMSNorm/"+tn, func(t *testing.T) {
					dst := b.Alloc(sh.n, sh.d)
					b.RMSNorm(dst, x, gamma, 1e-6)
					assertClose(t, "dst", Data(dst), normRef(f64s(xd), gv, nil, sh.n, sh.d, 1e-6, true), 1e-5)
				})
			}
		}
	}
}

func actRef(a kernels.Activation, x float64) float64 {
	switch a {
	case kernels.ReLU:
		return max(x, 0)
	case kernels.SiLU:
		return x / (1 + math.Exp(-x))
	case kernels.GELUTanh:
		return 0.5 * x * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(x+0.044715*x*x*x)))
	case kernels.GELUErf:
		return 0.5 * x * (1 + math.Erf(x/math.Sqrt(2)))
	}
	panic("unknown activation")
}

func TestActivations(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	acts := map[string]kernels.Activation{"ReLU": kernels.ReLU, "SiLU": kernels.SiLU, "GELUTanh": kernels.GELUTanh, "GELUErf": kernels.GELUErf}
	for _, b := range backends() {
		for an, a := range acts {
			for _, n := range []int{1, 5, 4096, 10001} {
				t.Run(fmt.Sprintf("threads=%d/%s/%d", b.Threads(), an, n), func(t *testing.T) {
					xd, ud := randVec(r, n), randVec(r, n)
					for i := range xd {
						xd[i] *= 6
					}
					want, glu := make([]float64, n), make([]float64, n)
					for i, v := range xd {
						want[i] = actRef(a, float64(v))
						glu[i] = want[i] * float64(ud[i])
					}
					dst := b.Alloc(n)
					b.Act(dst, b.FromFloat32(xd, n), a)
					assertClose(t, "Act", Data(dst), want, 1e-5)
					x := b.FromFloat32(xd, n)
					b.Act(x, x, a) // in place
					assertClose(t, "Act in place", Data(x), want, 1e-5)
					g := b.FromFloat32(xd, n)
					b.GLU(g, g, b.FromFloat32(ud, n), a)
					assertClose(t, "GLU", Data(g), glu, 1e-5)
				})
			}
		}
	}
}

func TestEmbedding(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for _, b := range backends() {
		for _, dt := range dtypes {
			for _, ids := range [][]int32{{3}, {0, 9, 9, 4, 1}, {}} {
				t.Run(fmt.Sprintf("threads=%d/%v/%d", b.Threads(), dt, len(ids)), func(t *testing.T) {
					const vocab, d = 10, 37
					table, tv := upload(t, b, dt, randVec(r, vocab*d), vocab, d)
					dst := b.Alloc(len(ids), d)
					b.Embedding(dst, table, ids)
					var want []float64
					for _, id := range ids {
						want = append(want, tv[int(id)*d:int(id)*d+d]...)
					}
					assertClose(t, "Embedding", Data(dst), want, 0)
				})
			}
		}
	}
}

func TestAddScale(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	for _, b := range backends() {
		for _, n := range []int{1, 3, 5000, 40000} {
			t.Run(fmt.Sprintf("threads=%d/%d", b.Threads(), n), func(t *testing.T) {
				xd, yd := randVec(r, n), randVec(r, n)
				sum, scaled := make([]float64, n), make([]float64, n)
				for i := range xd {
					sum[i] = float64(xd[i] + yd[i])
					scaled[i] = float64(xd[i] * 0.3)
				}
				x, y := b.FromFloat32(xd, n), b.FromFloat32(yd, n)
				dst := b.Alloc(n)
				b.Add(dst, x, y)
				assertClose(t, "Add", Data(dst), sum, 0)
				b.Add(y, x, y)
				assertClose(t, "Add aliasing b", Data(y), sum, 0)
				b.Scale(x, x, 0.3)
				assertClose(t, "Scale in place", Data(x), scaled, 0)
			})
		}
	}
}
