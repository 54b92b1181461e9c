package cpu

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/tessera-llm/tessera/kernels"
)

// q8Shapes cover the group (4 rows) and block (32 columns) edges.
var q8Shapes = []struct{ m, k int }{
	{1, 1}, {1, 32}, {3, 31}, {4, 32}, {5, 33}, {8, 64}, {13, 100}, {17, 1027}, {64, 256}, {7, 1024},
}

// quantized uploads random weights of dtype dt, quantizes them and
// returns the tensor and the values the checkpoint held.
func quantized(t testing.TB, b *Backend, r *rand.Rand, dt kernels.DType, m, k int) (kernels.Tensor, []float64) {
	t.Helper()
	w, held := upload(t, b, dt, randVec(r, m*k), m, k)
	q, err := b.Quantize(w, kernels.Q8_0)
	if err != nil {
		t.Fatal(err)
	}
	return q, held
}

// TestQuantizeBound: each dequantized weight is within max|w|/254 of its
// 32-weight block of the weight it came from (round to nearest of d =
// max|w|/127), plus 127 times what storing d as float16 moved it.
func TestQuantizeBound(t *testing.T) {
	r := rand.New(rand.NewPCG(81, 82))
	b := New()
	for _, dt := range dtypes {
		for _, sh := range q8Shapes {
			q, held := quantized(t, b, r, dt, sh.m, sh.k)
			if q.DType() != kernels.Q8_0 || q.Len() != sh.m*sh.k {
				t.Fatalf("Quantize gave %v with %d elements", q, q.Len())
			}
			got := read(b, q)
			for row := range sh.m {
				for b0 := 0; b0 < sh.k; b0 += q8Block {
					blk := held[row*sh.k+b0 : row*sh.k+min(b0+q8Block, sh.k)]
					var amax float64
					for _, v := range blk {
						amax = max(amax, math.Abs(v))
					}
					// Rounding to the float32 scale d, then d's own rounding
					// to float16, which moves a quant q by q·Δd.
					d := float32(amax) / 127
					bound := amax/254*(1+1e-5) + 127*math.Abs(float64(d)-float64(f16(toF16(d))))
					for i, v := range blk {
						if e := math.Abs(float64(got[row*sh.k+b0+i]) - v); e > bound {
							t.Fatalf("%v %dx%d: w[%d,%d] = %g dequantizes to %g, off by %g > %g",
								dt, sh.m, sh.k, row, b0+i, v, got[row*sh.k+b0+i], e, bound)
						}
					}
				}
			}
		}
	}
}

// TestMatMulQ8 checks the Q8_0 GEMV (few rows of x) and GEMM (many) against
// a float64 product with the dequantized weights, with and without bias,
// on every thread configuration. Where x is quantized to int8 (the GEMV's
// gemv4Q8VNNI, the GEMM's gemm4x32Q8) the bound adds what that rounding
// can cost (q8ActBound).
func TestMatMulQ8(t *testing.T) {
	r := rand.New(rand.NewPCG(83, 84))
	for _, b := range backends() {
		for _, sh := range q8Shapes {
			q, _ := quantized(t, b, r, kernels.BF16, sh.m, sh.k)
			w := f64s(read(b, q))
			bias := randVec(r, sh.m)
			for _, n := range []int{1, 2, 3, 5, 8, 9, 16, 33, 70} {
				xv := randVec(r, n*sh.k)
				x := b.FromFloat32(xv, n, sh.k)
				// The GEMM quantizes x too where k is whole blocks (matMulQ8).
				intAct := useSIMD && useVNNI && (n < simdGemmRows || sh.k%q8Block == 0)
				for _, withBias := range []bool{false, true} {
					var bt kernels.Tensor
					if withBias {
						bt = b.FromFloat32(bias, sh.m)
					}
					want := make([]float64, n*sh.m)
					slack := make([]float64, n*sh.m)
					for i := range n {
						for o := range sh.m {
							s := 0.0
							for p := range sh.k {
								s += float64(xv[i*sh.k+p]) * w[o*sh.k+p]
							}
							if withBias {
								s += float64(bias[o])
							}
							want[i*sh.m+o] = s
							if intAct {
								slack[i*sh.m+o] = q8ActBound(xv[i*sh.k:(i+1)*sh.k], w[o*sh.k:(o+1)*sh.k])
							}
						}
					}
					dst := b.Alloc(n, sh.m)
					b.MatMul(dst, x, q, bt)
					what := name("Q8 ", n, "x", sh.m, "x", sh.k, " bias ", withBias, " threads ", b.Threads(), " int8 x ", intAct)
					assertWithin(t, what, read(b, dst), want, slack, 1e-5)
				}
			}
		}
	}
}

// TestMatMulQ8NoVNNI reruns TestMatMulQ8 on the float-activation AVX-512
// kernel that CPUs without AVX512_VNNI use.
func TestMatMulQ8NoVNNI(t *testing.T) {
	if !useVNNI {
		t.Skip("the VNNI kernel is not in use: TestMatMulQ8 already runs the float one")
	}
	useVNNI = false
	defer func() { useVNNI = true }()
	TestMatMulQ8(t)
}

// TestMatMulOtherPrefetch reruns the GEMV tests with the other prefetch
// choice than this host's (usePrefetch), so both kernels run everywhere.
func TestMatMulOtherPrefetch(t *testing.T) {
	if !hasAVX512 {
		t.Skip("no AVX-512 kernels on this CPU or build")
	}
	usePrefetch = !usePrefetch
	defer func() { usePrefetch = !usePrefetch }()
	t.Run("MatMul", TestMatMul)
	t.Run("MatMulQ8", TestMatMulQ8)
}

// q8ActBound is how far x·w can move when each whole 32-block of x is
// quantized to int8 (quantizeAct): every x is off by at most max|x|/254 of
// its block, so the dot by Σ over blocks of that times Σ|w| there.
func q8ActBound(x []float32, w []float64) float64 {
	var bound float64
	for b := 0; b+q8Block <= len(x); b += q8Block {
		var amax, wsum float64
		for i := b; i < b+q8Block; i++ {
			amax = max(amax, math.Abs(float64(x[i])))
			wsum += math.Abs(w[i])
		}
		bound += amax / 254 * wsum
	}
	return bound * (1 + 1e-5)
}

// TestQ8RowsAndEmbedding: a Q8_0 row view multiplies and embeds like the
// same rows of the whole tensor, and a view inside a group is refused.
func TestQ8RowsAndEmbedding(t *testing.T) {
	r := rand.New(rand.NewPCG(85, 86))
	b := New()
	const m, k = 23, 70
	q, _ := quantized(t, b, r, kernels.F32, m, k)
	all := read(b, q)

	view := b.Rows(q, 8, 19)
	if got := read(b, view); !slices.Equal(got, all[8*k:19*k]) {
		t.Fatal("Rows(8, 19) of a Q8_0 tensor reads other values than the tensor's rows 8..18")
	}
	x := b.FromFloat32(randVec(r, k), 1, k)
	whole, part := b.Alloc(1, m), b.Alloc(1, 11)
	b.MatMul(whole, x, q, nil)
	b.MatMul(part, x, view, nil)
	if !slices.Equal(read(b, part), read(b, whole)[8:19]) {
		t.Fatal("x · Rows(8, 19)ᵀ differs from columns 8..18 of x · Wᵀ")
	}

	ids := []int32{0, 22, 5, 5, 17}
	dst := b.Alloc(len(ids), k)
	b.Embedding(dst, q, ids)
	got := read(b, dst)
	for i, id := range ids {
		if !slices.Equal(got[i*k:(i+1)*k], all[int(id)*k:int(id+1)*k]) {
			t.Fatalf("Embedding row %d (id %d) differs from the dequantized table", i, id)
		}
	}

	defer func() {
		if recover() == nil {
			t.Fatal("Rows(2, 9) of a Q8_0 tensor did not panic: its rows are interleaved in groups of 4")
		}
	}()
	b.Rows(q, 2, 9)
}

func TestQuantizeRefuses(t *testing.T) {
	b := New()
	for _, tc := range []struct {
		name string
		w    kernels.Tensor
		dt   kernels.DType
	}{
		{"not 2-D", b.Alloc(2, 3, 4), kernels.Q8_0},
		{"vector", b.Alloc(8), kernels.Q8_0},
		{"unknown format", b.Alloc(4, 32), kernels.BF16},
		{"beyond a float16 scale", huge(b, 127*65520), kernels.Q8_0},
		{"NaN", huge(b, float32(math.NaN())), kernels.Q8_0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := b.Quantize(tc.w, tc.dt); !errors.Is(err, kernels.ErrQuantize) {
				t.Fatalf("Quantize(%v, %v) = %v, want ErrQuantize", tc.w, tc.dt, err)
			}
		})
	}
}

// huge is a [6, 40] weight whose row 5, column 37 holds v, the rest 1.
func huge(b *Backend, v float32) kernels.Tensor {
	w := make([]float32, 6*40)
	for i := range w {
		w[i] = 1
	}
	w[5*40+37] = v
	return b.FromFloat32(w, 6, 40)
}

func TestParseQuantization(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want kernels.DType
		ok   bool
	}{
		{"", 0, true}, {"none", 0, true}, {"q8", kernels.Q8_0, true}, {"Q8_0", kernels.Q8_0, true},
		{"q4", 0, false}, {"int8", 0, false},
	} {
		got, err := kernels.ParseQuantization(tc.in)
		if got != tc.want || (err == nil) != tc.ok {
			t.Errorf("ParseQuantization(%q) = %v, %v; want %v, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

// TestMatMuls: MatMuls gives exactly the products separate MatMuls give,
// fused (decode rows, one dtype, up to maxFused weights) or not, for every
// weight format, with and without biases, on every thread configuration.
func TestMatMuls(t *testing.T) {
	r := rand.New(rand.NewPCG(87, 88))
	const k = 96
	widths := []int{40, 13, 13, 7}
	for _, b := range backends() {
		for _, dt := range append(dtypes, kernels.Q8_0) {
			ws := make([]kernels.Tensor, len(widths))
			bs := make([]kernels.Tensor, len(widths))
			for i, m := range widths {
				if dt == kernels.Q8_0 {
					ws[i], _ = quantized(t, b, r, kernels.F32, m, k)
				} else {
					ws[i], _ = upload(t, b, dt, randVec(r, m*k), m, k)
				}
				if i%2 == 0 {
					bs[i] = b.FromFloat32(randVec(r, m), m)
				}
			}
			for _, n := range []int{1, 3, 9} {
				for _, count := range []int{1, 2, 3, 4} {
					x := b.FromFloat32(randVec(r, n*k), n, k)
					got := make([]kernels.Tensor, count)
					for i := range got {
						got[i] = b.Alloc(n, widths[i])
					}
					b.MatMuls(got, x, ws[:count], bs[:count])
					for i := range got {
						want := b.Alloc(n, widths[i])
						b.MatMul(want, x, ws[i], bs[i])
						if !slices.Equal(read(b, got[i]), read(b, want)) {
							t.Errorf("threads %d, %v, n=%d, %d products: product %d differs from MatMul", b.Threads(), dt, n, count, i)
						}
					}
				}
			}
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("MatMuls with 2 outputs and 1 weight did not panic")
		}
	}()
	b := New()
	b.MatMuls([]kernels.Tensor{b.Alloc(1, 4), b.Alloc(1, 4)}, b.Alloc(1, 4), []kernels.Tensor{b.Alloc(4, 4)}, []kernels.Tensor{nil})
}

// TestQuantizeActSIMD: quantizeActAVX agrees bit for bit with
// quantizeBlock's Go arithmetic, on blocks of every magnitude, all-zero
// blocks, values on rounding boundaries (k/2 steps of the scale) and
// a k%32 tail that neither path quantizes.
func TestQuantizeActSIMD(t *testing.T) {
	if !hasAVX512 {
		t.Skip("no AVX-512 kernels on this CPU or build")
	}
	r := rand.New(rand.NewPCG(41, 42))
	for _, k := range []int{32, 64, 100, 1024, 2816} {
		const n = 3
		x := make([]float32, n*k)
		for i := range x {
			switch b := i / q8Block % 4; {
			case b == 1: // zero block (and its neighbours' boundaries)
			case b == 2: // halfway points of a scale of 1: q·127/127 ± 0.5
				x[i] = float32(r.IntN(255)-127) / 2
			default:
				x[i] = float32(r.NormFloat64() * math.Pow(10, float64(r.IntN(12)-6)))
			}
		}
		var simd, ref q8Act
		quantizeAct(&simd, x, n, k)
		withFallback(func() { quantizeAct(&ref, x, n, k) })
		if !slices.Equal(simd.q, ref.q) || !slices.Equal(simd.c, ref.c) || !slices.Equal(simd.d, ref.d) {
			for i := range ref.d {
				if simd.d[i] != ref.d[i] || simd.c[i] != ref.c[i] || !slices.Equal(simd.q[64*i:64*i+64], ref.q[64*i:64*i+64]) {
					t.Fatalf("k=%d block %d: SIMD d=%v c=%d q=%v, Go d=%v c=%d q=%v", k, i,
						simd.d[i], simd.c[i], simd.q[64*i:64*i+32], ref.d[i], ref.c[i], ref.q[64*i:64*i+32])
				}
			}
		}
	}
}
