//go:build cuda

package cuda_test

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/tessera-llm/tessera/kernels"
	"github.com/tessera-llm/tessera/kernels/cpu"
	"github.com/tessera-llm/tessera/kernels/cuda"
)

// The conformance tests run every op on the CUDA backend and on the CPU
// oracle from the same fresh random inputs and compare ‖gpu−cpu‖/‖cpu‖:
// at most 1e-5 when every input is F32, 1e-2 when one is half (MatMul
// rounds activations to the weight's half type for cuBLAS). GPU outputs
// are poisoned with NaN before each run, every launch is synchronised and
// error-checked (SetSyncEach), and the device is synchronised after each op.

var dtypes = []kernels.DType{kernels.F32, kernels.F16, kernels.BF16}

func tol(dts ...kernels.DType) float64 {
	for _, dt := range dts {
		if dt != kernels.F32 {
			return 1e-2
		}
	}
	return 1e-5
}

type harness struct {
	t   *testing.T
	c   *cpu.Backend
	g   *cuda.Backend
	rng *rand.Rand
}

// pair is one logical tensor on both backends.
type pair struct{ c, g kernels.Tensor }

func newHarness(t *testing.T) *harness {
	t.Helper()
	g, err := cuda.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	g.SetSyncEach(true)
	t.Logf("device: %s", g.Device())
	return &harness{t: t, c: cpu.New(), g: g, rng: rand.New(rand.NewPCG(uint64(os.Getpid()), 7))}
}

func (h *harness) randVec(n int, scale float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32((h.rng.Float64()*2 - 1) * scale)
	}
	return v
}

func encode(dt kernels.DType, data []float32) []byte {
	raw := make([]byte, len(data)*dt.Size())
	for i, v := range data {
		switch dt {
		case kernels.F32:
			binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
		case kernels.BF16:
			u := math.Float32bits(v)
			u += 0x7fff + (u>>16)&1
			binary.LittleEndian.PutUint16(raw[2*i:], uint16(u>>16))
		case kernels.F16:
			binary.LittleEndian.PutUint16(raw[2*i:], toF16(v))
		}
	}
	return raw
}

// toF16 rounds a float32 in the normal half range to the nearest half
// (test inputs stay within ±8, so no overflow or subnormal handling).
func toF16(f float32) uint16 {
	u := math.Float32bits(f)
	sign := uint16(u>>16) & 0x8000
	a := math.Abs(float64(f))
	if a < 0x1p-14 {
		return sign | uint16(math.RoundToEven(a/0x1p-24))
	}
	e := math.Floor(math.Log2(a))
	m := math.RoundToEven((a/math.Exp2(e) - 1) * 1024)
	if m == 1024 {
		m, e = 0, e+1
	}
	return sign | uint16(e+15)<<10 | uint16(m)
}

// upload makes a random tensor of dt with values in ±scale on both backends.
func (h *harness) upload(dt kernels.DType, scale float64, shape ...int) pair {
	h.t.Helper()
	n := 1
	for _, d := range shape {
		n *= d
	}
	return h.uploadData(dt, h.randVec(n, scale), shape...)
}

func (h *harness) uploadData(dt kernels.DType, data []float32, shape ...int) pair {
	h.t.Helper()
	raw := encode(dt, data)
	c, err := h.c.Upload(dt, raw, shape...)
	if err != nil {
		h.t.Fatal(err)
	}
	g, err := h.g.Upload(dt, raw, shape...)
	if err != nil {
		h.t.Fatal(err)
	}
	return pair{c, g}
}

// out allocates an output: zeros on the CPU, NaN-poisoned on the GPU.
func (h *harness) out(shape ...int) pair {
	c := h.c.Alloc(shape...)
	g := h.g.Alloc(shape...)
	poison := make([]float32, g.Len())
	for i := range poison {
		poison[i] = float32(math.NaN())
	}
	h.g.Write(g, poison)
	return pair{c, g}
}

// copyOf is a fresh F32 copy of p (for in-place ops), equal on both sides.
func (h *harness) copyOf(p pair) pair {
	v := make([]float32, p.c.Len())
	h.c.Read(p.c, v)
	return pair{h.c.FromFloat32(v, p.c.Shape()...), h.g.FromFloat32(v, p.g.Shape()...)}
}

// check synchronises the device and compares p's two sides.
func (h *harness) check(name string, p pair, limit float64) {
	h.t.Helper()
	if err := h.g.Sync(); err != nil {
		h.t.Fatalf("%s: device error: %v", name, err)
	}
	c := make([]float32, p.c.Len())
	g := make([]float32, p.g.Len())
	h.c.Read(p.c, c)
	h.g.Read(p.g, g)
	var num, den float64
	for i := range c {
		if math.IsNaN(float64(g[i])) && !math.IsNaN(float64(c[i])) {
			h.t.Errorf("%s: element %d is NaN on the GPU (unwritten or invalid), %v on the CPU", name, i, c[i])
			return
		}
		d := float64(g[i]) - float64(c[i])
		num += d * d
		den += float64(c[i]) * float64(c[i])
	}
	e := math.Sqrt(num)
	if den > 0 {
		e /= math.Sqrt(den)
	}
	if e > limit || math.IsNaN(e) {
		h.t.Errorf("%s: ‖gpu−cpu‖/‖cpu‖ = %.3g > %.0e", name, e, limit)
	} else {
		h.t.Logf("%s: %.3g", name, e)
	}
}

func TestRegistered(t *testing.T) {
	for _, name := range []string{"cuda", "cuda:0"} {
		b, err := kernels.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		if b.Name() != "cuda:0" {
			t.Errorf("%s opened %q", name, b.Name())
		}
	}
}

func TestMatMul(t *testing.T) {
	h := newHarness(t)
	for _, wdt := range dtypes {
		for _, s := range [][3]int{{1, 64, 96}, {3, 257, 130}, {33, 128, 1024}, {5, 1000, 7}} {
			for _, bdt := range []kernels.DType{0, kernels.F32, kernels.BF16} {
				n, m, k := s[0], s[1], s[2]
				x := h.upload(kernels.F32, 1, n, k)
				w := h.upload(wdt, 1, m, k)
				var bias pair
				if bdt != 0 {
					bias = h.upload(bdt, 1, m)
				}
				dst := h.out(n, m)
				h.c.MatMul(dst.c, x.c, w.c, bias.c)
				h.g.MatMul(dst.g, x.g, w.g, bias.g)
				h.check(fmt.Sprintf("MatMul w=%v %v bias=%v", wdt, s, bdt), dst, tol(wdt, bdt))
			}
		}
	}
	// x with a leading shape [2, 3, k].
	x := h.upload(kernels.F32, 1, 2, 3, 40)
	w := h.upload(kernels.BF16, 1, 24, 40)
	dst := h.out(2, 3, 24)
	h.c.MatMul(dst.c, x.c, w.c, nil)
	h.g.MatMul(dst.g, x.g, w.g, nil)
	h.check("MatMul 3-D", dst, 1e-2)
}

func TestNorms(t *testing.T) {
	h := newHarness(t)
	for _, xdt := range dtypes {
		for _, pdt := range dtypes {
			for _, dim := range []int{1, 96, 1000, 4096} {
				x := h.upload(xdt, 4, 5, dim)
				g := h.upload(pdt, 1, dim)
				bt := h.upload(pdt, 1, dim)
				lim := tol(xdt, pdt)
				dst := h.out(5, dim)
				h.c.RMSNorm(dst.c, x.c, g.c, 1e-6)
				h.g.RMSNorm(dst.g, x.g, g.g, 1e-6)
				h.check(fmt.Sprintf("RMSNorm x=%v g=%v d=%d", xdt, pdt, dim), dst, lim)
				dst = h.out(5, dim)
				h.c.LayerNorm(dst.c, x.c, g.c, bt.c, 1e-5)
				h.g.LayerNorm(dst.g, x.g, g.g, bt.g, 1e-5)
				h.check(fmt.Sprintf("LayerNorm x=%v g=%v d=%d", xdt, pdt, dim), dst, lim)
				dst = h.out(5, dim)
				h.c.LayerNorm(dst.c, x.c, g.c, nil, 1e-5)
				h.g.LayerNorm(dst.g, x.g, g.g, nil, 1e-5)
				h.check(fmt.Sprintf("LayerNorm no beta x=%v d=%d", xdt, dim), dst, lim)
			}
		}
	}
	// In place, as the models call it.
	x := h.upload(kernels.F32, 3, 4, 512)
	g := h.upload(kernels.F32, 1, 512)
	h.c.RMSNorm(x.c, x.c, g.c, 1e-5)
	h.g.RMSNorm(x.g, x.g, g.g, 1e-5)
	h.check("RMSNorm in place", x, 1e-5)
}

func TestActivations(t *testing.T) {
	h := newHarness(t)
	for _, a := range []kernels.Activation{kernels.ReLU, kernels.SiLU, kernels.GELUTanh, kernels.GELUErf} {
		for _, dt := range dtypes {
			x := h.upload(dt, 6, 3, 1031)
			dst := h.out(3, 1031)
			h.c.Act(dst.c, x.c, a)
			h.g.Act(dst.g, x.g, a)
			h.check(fmt.Sprintf("Act %d %v", a, dt), dst, tol(dt))
			u := h.upload(dt, 2, 3, 1031)
			dst = h.out(3, 1031)
			h.c.GLU(dst.c, x.c, u.c, a)
			h.g.GLU(dst.g, x.g, u.g, a)
			h.check(fmt.Sprintf("GLU %d %v", a, dt), dst, tol(dt))
		}
		x := h.upload(kernels.F32, 6, 777)
		h.c.Act(x.c, x.c, a)
		h.g.Act(x.g, x.g, a)
		h.check(fmt.Sprintf("Act %d in place", a), x, 1e-5)
	}
}

func TestEmbedding(t *testing.T) {
	h := newHarness(t)
	for _, dt := range dtypes {
		table := h.upload(dt, 1, 1000, 96)
		ids := []int32{0, 999, 5, 5, 123, 17, 998}
		dst := h.out(len(ids), 96)
		h.c.Embedding(dst.c, table.c, ids)
		h.g.Embedding(dst.g, table.g, ids)
		h.check(fmt.Sprintf("Embedding %v", dt), dst, 1e-5) // a gather is exact
	}
}

func TestAddScale(t *testing.T) {
	h := newHarness(t)
	for _, dt := range dtypes {
		a := h.upload(kernels.F32, 1, 3, 1000)
		b := h.upload(dt, 1, 3, 1000)
		dst := h.out(3, 1000)
		h.c.Add(dst.c, a.c, b.c)
		h.g.Add(dst.g, a.g, b.g)
		h.check(fmt.Sprintf("Add %v", dt), dst, tol(dt))
		dst = h.out(3, 1000)
		h.c.Scale(dst.c, b.c, 0.37)
		h.g.Scale(dst.g, b.g, 0.37)
		h.check(fmt.Sprintf("Scale %v", dt), dst, tol(dt))
	}
	a := h.upload(kernels.F32, 1, 4097)
	b := h.upload(kernels.F32, 1, 4097)
	h.c.Add(a.c, a.c, b.c) // residual add in place
	h.g.Add(a.g, a.g, b.g)
	h.check("Add in place", a, 1e-5)
	h.c.Scale(a.c, a.c, -2)
	h.g.Scale(a.g, a.g, -2)
	h.check("Scale in place", a, 1e-5)
}

func TestRoPE(t *testing.T) {
	h := newHarness(t)
	for _, r := range []kernels.RoPE{
		{Heads: 4, HeadDim: 64, Offset: 0, Dim: 64, Theta: 10000},
		{Heads: 3, HeadDim: 64, Offset: 0, Dim: 32, Theta: 10000},    // ChatGLM: half the head rotated
		{Heads: 2, HeadDim: 128, Offset: 16, Dim: 64, Theta: 500000}, // an offset sub-range
		{Heads: 8, HeadDim: 8, Offset: 0, Dim: 8, Theta: 10000},
	} {
		for _, pos := range [][]int32{{0}, {5, 6, 7}, {1000}, {4095, 17, 300, 2}} {
			x := h.upload(kernels.F32, 2, len(pos), r.Heads*r.HeadDim)
			h.c.ApplyRoPE(x.c, pos, r)
			h.g.ApplyRoPE(x.g, pos, r)
			h.check(fmt.Sprintf("RoPE %+v pos %v", r, pos), x, 1e-5)
		}
	}
}

// attnCase is one Attend configuration.
type attnCase struct {
	heads, kvHeads, hd int
	n, keys, bs        int
	mask               kernels.Mask
	prefix, window     int
	alibi, kvmap       bool
}

func TestAttend(t *testing.T) {
	h := newHarness(t)
	var cases []attnCase
	for _, geo := range [][3]int{{4, 4, 8}, {8, 2, 64}, {6, 3, 80}, {32, 8, 128}, {4, 1, 256}} {
		for _, nk := range [][2]int{{1, 1}, {1, 37}, {3, 40}, {20, 20}, {37, 100}, {64, 300}} {
			for _, mask := range []kernels.Mask{kernels.Causal, kernels.Bidirectional, kernels.Prefix} {
				cases = append(cases, attnCase{heads: geo[0], kvHeads: geo[1], hd: geo[2], n: nk[0], keys: nk[1],
					bs: 16, mask: mask, prefix: nk[1] / 2, alibi: mask == kernels.Causal && geo[0] == geo[1]})
			}
		}
	}
	cases = append(cases,
		attnCase{heads: 6, kvHeads: 4, hd: 32, n: 2, keys: 50, bs: 4, mask: kernels.Causal, kvmap: true},
		attnCase{heads: 6, kvHeads: 4, hd: 32, n: 25, keys: 50, bs: 4, mask: kernels.Causal, kvmap: true, alibi: true},
		attnCase{heads: 12, kvHeads: 12, hd: 8, n: 9, keys: 9, bs: 3, mask: kernels.Causal, alibi: true},
		// Sliding windows (Mistral): decode and prefill, shorter than a block and spanning several tiles.
		attnCase{heads: 8, kvHeads: 2, hd: 64, n: 1, keys: 300, bs: 16, mask: kernels.Causal, window: 7},
		attnCase{heads: 8, kvHeads: 2, hd: 64, n: 64, keys: 300, bs: 16, mask: kernels.Causal, window: 100},
		attnCase{heads: 6, kvHeads: 4, hd: 32, n: 25, keys: 50, bs: 4, mask: kernels.Causal, kvmap: true, window: 9},
	)
	for _, c := range cases {
		name := fmt.Sprintf("%+v", c)
		blocks := (c.keys+c.bs-1)/c.bs + 3
		width := c.kvHeads * c.hd
		kc, vc := h.out(blocks, c.bs, c.kvHeads, c.hd), h.out(blocks, c.bs, c.kvHeads, c.hd)
		// Zero the caches on both sides, then write keys through WriteKV.
		zero := make([]float32, kc.g.Len())
		for _, p := range []pair{kc, vc} {
			h.g.Write(p.g, zero)
		}
		table := h.rng.Perm(blocks)
		tab := make([]int32, len(table))
		for i, b := range table {
			tab[i] = int32(b)
		}
		// Two writes (a prompt, then the rest), k in BF16 once to cover widening.
		split := c.keys / 2
		for _, part := range [][2]int{{0, split}, {split, c.keys}} {
			if part[1] == part[0] {
				continue
			}
			dt := kernels.F32
			if part[0] > 0 {
				dt = kernels.BF16
			}
			k := h.upload(dt, 1, part[1]-part[0], width)
			v := h.upload(kernels.F32, 1, part[1]-part[0], width)
			h.c.WriteKV(kc.c, vc.c, k.c, v.c, c.bs, tab, part[0])
			h.g.WriteKV(kc.g, vc.g, k.g, v.g, c.bs, tab, part[0])
		}
		h.check("WriteKV k "+name, kc, 1e-5)
		h.check("WriteKV v "+name, vc, 1e-5)
		a := &kernels.Attention{Heads: c.heads, KVHeads: c.kvHeads, HeadDim: c.hd,
			Scale: float32(1 / math.Sqrt(float64(c.hd))), Mask: c.mask, PrefixLen: c.prefix,
			Window: c.window, BlockSize: c.bs, Table: tab, Keys: c.keys}
		if c.alibi {
			a.Slopes = make([]float32, c.heads)
			for i := range a.Slopes {
				a.Slopes[i] = float32(math.Exp2(-8 * float64(i+1) / float64(c.heads)))
			}
		}
		if c.kvmap {
			a.KVMap = make([]int32, c.heads)
			for i := range a.KVMap {
				a.KVMap[i] = int32((i * 7) % c.kvHeads)
			}
		}
		q := h.upload(kernels.F32, 2, c.n, c.heads*c.hd)
		dst := h.out(c.n, c.heads*c.hd)
		h.c.Attend(dst.c, q.c, kc.c, vc.c, a)
		h.g.Attend(dst.g, q.g, kc.g, vc.g, a)
		h.check("Attend "+name, dst, 1e-5)
	}
}

func TestTopK(t *testing.T) {
	h := newHarness(t)
	for _, s := range [][3]int{{1, 50, 5}, {4, 32000, 40}, {2, 250880, 1}, {3, 10, 20}, {1, 1000, 0}} {
		rows, n, k := s[0], s[1], s[2]
		data := h.randVec(rows*n, 10)
		// Ties and a masked token: the tie rule is lower id first.
		data[n/2] = data[n/3]
		data[0] = float32(math.Inf(-1))
		p := h.uploadData(kernels.F32, data, rows, n)
		got := h.g.TopK(p.g, 1000, k)
		if err := h.g.Sync(); err != nil {
			t.Fatal(err)
		}
		wants := h.c.TopK(p.c, 1000, k)
		if len(got) != rows || len(wants) != rows {
			t.Fatalf("TopK %v: %d rows from the GPU, %d from the CPU, want %d", s, len(got), len(wants), rows)
		}
		for r, want := range wants {
			g := got[r]
			if len(g.IDs) != len(want.IDs) || len(g.Logits) != len(want.IDs) {
				t.Fatalf("TopK %v row %d: got %+v, want %+v", s, r, g, want)
			}
			for i := range want.IDs {
				if g.IDs[i] != want.IDs[i] || g.Logits[i] != want.Logits[i] {
					t.Fatalf("TopK %v row %d entry %d: got (%d, %v), want (%d, %v)", s, r, i,
						g.IDs[i], g.Logits[i], want.IDs[i], want.Logits[i])
				}
			}
			if math.Abs(g.LSE-want.LSE) > 1e-9*math.Max(1, math.Abs(want.LSE)) {
				t.Errorf("TopK %v row %d: lse %v, want %v", s, r, g.LSE, want.LSE)
			}
		}
	}
}

// TestReadHalf reads half weights back widened, as kernels/cpu does.
func TestReadHalf(t *testing.T) {
	h := newHarness(t)
	for _, dt := range dtypes {
		p := h.upload(dt, 3, 33)
		h.check(fmt.Sprintf("Read %v", dt), p, 0)
	}
}
