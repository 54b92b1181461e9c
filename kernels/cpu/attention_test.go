package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/tessera-llm/tessera/kernels"
)

// ropeRef rotates one row, with the angle computed as Hugging Face does
// (float32 inv_freq and float32 pos·inv_freq) and the rest in float64.
func ropeRef(x []float64, pos int32, r kernels.RoPE) {
	half := r.Dim / 2
	for h := range r.Heads {
		base := h*r.HeadDim + r.Offset
		for i := range half {
			inv := 1 / float32(math.Pow(float64(r.Theta), float64(float32(2*i)/float32(r.Dim))))
			a := float64(float32(pos) * inv)
			c, s := math.Cos(a), math.Sin(a)
			x1, x2 := x[base+i], x[base+i+half]
			x[base+i] = x1*c - x2*s
			x[base+i+half] = x2*c + x1*s
		}
	}
}

func TestRoPE(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	for _, b := range backends() {
		for _, tc := range []struct {
			name string
			// ropes are applied in order, each with its own positions.
			ropes []kernels.RoPE
			pos   [][]int32
		}{
			{"llama whole head", []kernels.RoPE{{Heads: 4, HeadDim: 16, Dim: 16, Theta: 10000}}, [][]int32{{0, 1, 2, 3, 4000}}},
			{"decode", []kernels.RoPE{{Heads: 3, HeadDim: 8, Dim: 8, Theta: 500000}}, [][]int32{{77}}},
			{"partial rotary", []kernels.RoPE{{Heads: 2, HeadDim: 12, Offset: 0, Dim: 4, Theta: 10000}}, [][]int32{{5, 9}}},
			{"chatglm halves", []kernels.RoPE{
				{Heads: 2, HeadDim: 16, Offset: 0, Dim: 8, Theta: 10000},
				{Heads: 2, HeadDim: 16, Offset: 8, Dim: 8, Theta: 10000},
			}, [][]int32{{0, 1, 2, 3, 3, 3}, {0, 0, 0, 0, 1, 2}}},
		} {
			t.Run(fmt.Sprintf("threads=%d/%s", b.Threads(), tc.name), func(t *testing.T) {
				r0 := tc.ropes[0]
				n := len(tc.pos[0])
				xd := randVec(r, n*r0.Heads*r0.HeadDim)
				want := f64s(xd)
				x := b.FromFloat32(xd, n, r0.Heads*r0.HeadDim)
				for k, rp := range tc.ropes {
					b.ApplyRoPE(x, tc.pos[k], rp)
					for i, p := range tc.pos[k] {
						w := r0.Heads * r0.HeadDim
						ropeRef(want[i*w:i*w+w], p, rp)
					}
				}
				assertClose(t, "RoPE", Data(x), want, 1e-5)
			})
		}
	}
}

// TestRoPETableGrowth: a later, larger position regrows the cached table
// and earlier positions still agree.
func TestRoPETableGrowth(t *testing.T) {
	b := New()
	rp := kernels.RoPE{Heads: 1, HeadDim: 4, Dim: 4, Theta: 10000}
	xd := []float32{1, 2, 3, 4}
	want := f64s(xd)
	ropeRef(want, 10, rp)
	for _, p := range []int32{10, 100000, 10} {
		x := b.FromFloat32(xd, 1, 4)
		b.ApplyRoPE(x, []int32{p}, rp)
		if p == 10 {
			assertClose(t, "RoPE", Data(x), want, 1e-6)
		}
	}
}

// alibiSlopes follows DESIGN.md: with c the largest power of two <= n, the
// first c slopes are 2^(-8i/c), i = 1..c; the rest are every other slope
// for 2c.
func alibiSlopes(n int) []float32 {
	c := 1
	for c*2 <= n {
		c *= 2
	}
	var s []float32
	for i := 1; i <= c; i++ {
		s = append(s, float32(math.Pow(2, -8*float64(i)/float64(c))))
	}
	for i := 1; len(s) < n; i += 2 {
		s = append(s, float32(math.Pow(2, -8*float64(i)/float64(2*c))))
	}
	return s
}

// The slopes the attention tests use are the BLOOM golden's for 12 heads.
func TestALiBiSlopes(t *testing.T) {
	golden := []float32{0.5, 0.25, 0.125, 0.0625, 0.03125, 0.015625, 0.0078125, 0.00390625, 0.70710677, 0.35355338, 0.17677668, 0.088388339}
	// torch computes the powers in float32, so allow an ulp or so.
	assertClose(t, "alibiSlopes(12)", alibiSlopes(12), f64s(golden), 2e-7)
}

// attendRef is the float64 reference: k and v are [keys, kvHeads*hd], q is
// [n, heads*hd].
func attendRef(q, k, v []float64, a *kernels.Attention, n int) []float64 {
	hd := a.HeadDim
	out := make([]float64, n*a.Heads*hd)
	for i := range n {
		p := a.Keys - n + i
		for h := range a.Heads {
			kv := a.KVHead(h)
			qv := q[(i*a.Heads+h)*hd:][:hd]
			var idx []int
			var sc []float64
			for j := range a.Keys {
				ok := true
				switch a.Mask {
				case kernels.Causal:
					ok = j <= p && (a.Window == 0 || p-j < a.Window)
				case kernels.Prefix:
					ok = j < a.PrefixLen || j <= p
				}
				if !ok {
					continue
				}
				var s float64
				for d := range hd {
					s += qv[d] * k[(j*a.KVHeads+kv)*hd+d]
				}
				s *= float64(a.Scale)
				if a.Slopes != nil {
					s += float64(a.Slopes[h]) * float64(j)
				}
				idx = append(idx, j)
				sc = append(sc, s)
			}
			m := math.Inf(-1)
			for _, s := range sc {
				m = max(m, s)
			}
			var sum float64
			for x := range sc {
				sc[x] = math.Exp(sc[x] - m)
				sum += sc[x]
			}
			o := out[(i*a.Heads+h)*hd:][:hd]
			for x, j := range idx {
				for d := range hd {
					o[d] += sc[x] / sum * v[(j*a.KVHeads+kv)*hd+d]
				}
			}
		}
	}
	return out
}

// kvFixture is one sequence's keys and values written through WriteKV into
// pools whose block table is shuffled among spare blocks.
type kvFixture struct {
	k, v   []float32
	kc, vc kernels.Tensor
	table  []int32
}

func newKV(b *Backend, r *rand.Rand, keys, kvHeads, hd, bs int) *kvFixture {
	w := kvHeads * hd
	f := &kvFixture{k: randVec(r, keys*w), v: randVec(r, keys*w)}
	need := (keys + bs - 1) / bs
	blocks := need + 3
	perm := r.Perm(blocks)
	for _, p := range perm[:need] {
		f.table = append(f.table, int32(p))
	}
	f.kc, f.vc = b.Alloc(blocks, bs, kvHeads, hd), b.Alloc(blocks, bs, kvHeads, hd)
	// Write in two uneven pieces, as a prefill then a decode would.
	cut := keys / 3
	b.WriteKV(f.kc, f.vc, b.FromFloat32(f.k[:cut*w], cut, w), b.FromFloat32(f.v[:cut*w], cut, w), bs, f.table, 0)
	b.WriteKV(f.kc, f.vc, b.FromFloat32(f.k[cut*w:], keys-cut, w), b.FromFloat32(f.v[cut*w:], keys-cut, w), bs, f.table, cut)
	return f
}

func TestAttend(t *testing.T) {
	r := rand.New(rand.NewPCG(17, 18))
	masks := []struct {
		name           string
		mask           kernels.Mask
		prefix, window int
	}{
		{"causal", kernels.Causal, 0, 0}, {"bidirectional", kernels.Bidirectional, 0, 0}, {"prefix", kernels.Prefix, 7, 0},
		// Windows shorter than a block, of several blocks, and one that covers every key.
		{"window=3", kernels.Causal, 0, 3}, {"window=9", kernels.Causal, 0, 9}, {"window=40", kernels.Causal, 0, 40},
	}
	heads := []struct {
		name          string
		heads, kv, hd int
		kvMap         []int32
	}{
		{"mha", 4, 4, 16, nil},
		{"gqa", 8, 2, 8, nil},
		{"kvmap", 3, 2, 5, []int32{1, 0, 1}},
		// The reference shape's and Llama 3's head widths (whole vectors).
		{"gqa hd=64", 4, 2, 64, nil}, {"mha hd=128", 2, 2, 128, nil},
	}
	for _, b := range backends() {
		for _, m := range masks {
			for _, hc := range heads {
				for _, alibi := range []bool{false, true} {
					for _, bs := range []int{1, 4, 16} {
						for _, shape := range []struct{ n, keys int }{{13, 13}, {1, 13}, {4, 21}} {
							tn := fmt.Sprintf("threads=%d/%s/%s/alibi=%v/bs=%d/n=%d,keys=%d", b.Threads(), m.name, hc.name, alibi, bs, shape.n, shape.keys)
							t.Run(tn, func(t *testing.T) {
								f := newKV(b, r, shape.keys, hc.kv, hc.hd, bs)
								a := &kernels.Attention{
									Heads: hc.heads, KVHeads: hc.kv, HeadDim: hc.hd,
									Scale: float32(1 / math.Sqrt(float64(hc.hd))), Mask: m.mask, PrefixLen: m.prefix,
									Window: m.window, KVMap: hc.kvMap, BlockSize: bs, Table: f.table, Keys: shape.keys,
								}
								if alibi {
									a.Slopes = alibiSlopes(hc.heads)
								}
								qd := randVec(r, shape.n*hc.heads*hc.hd)
								for i := range qd {
									qd[i] *= 4 // peakier softmax
								}
								dst := b.Alloc(shape.n, hc.heads*hc.hd)
								b.Attend(dst, b.FromFloat32(qd, shape.n, hc.heads*hc.hd), f.kc, f.vc, a)
								assertClose(t, "Attend", Data(dst), attendRef(f64s(qd), f64s(f.k), f64s(f.v), a, shape.n), 1e-5)
							})
						}
					}
				}
			}
		}
	}
}

// TestDecodeMatchesPrefill: decoding the last tokens one at a time after a
// prefill gives bit-identical rows to attending all queries at once.
func TestDecodeMatchesPrefill(t *testing.T) {
	r := rand.New(rand.NewPCG(19, 20))
	for _, m := range []struct {
		mask   kernels.Mask
		window int
	}{{kernels.Causal, 0}, {kernels.Prefix, 0}, {kernels.Causal, 5}} {
		for _, bs := range []int{1, 4, 16} {
			t.Run(fmt.Sprintf("mask=%d/window=%d/bs=%d", m.mask, m.window, bs), func(t *testing.T) {
				b := New()
				const keys, heads, kv, hd, prefill = 19, 8, 2, 16, 15
				f := newKV(b, r, keys, kv, hd, bs)
				a := kernels.Attention{Heads: heads, KVHeads: kv, HeadDim: hd, Scale: 0.25, Mask: m.mask, PrefixLen: 6,
					Window: m.window, Slopes: alibiSlopes(heads), BlockSize: bs, Table: f.table}
				qd := randVec(r, keys*heads*hd)
				w := heads * hd
				all := b.Alloc(keys, w)
				a.Keys = keys
				b.Attend(all, b.FromFloat32(qd, keys, w), f.kc, f.vc, &a)

				step := b.Alloc(prefill, w)
				a.Keys = prefill
				b.Attend(step, b.FromFloat32(qd[:prefill*w], prefill, w), f.kc, f.vc, &a)
				got := slices.Clone(Data(step))
				one := b.Alloc(1, w)
				for p := prefill; p < keys; p++ {
					a.Keys = p + 1
					b.Attend(one, b.FromFloat32(qd[p*w:(p+1)*w], 1, w), f.kc, f.vc, &a)
					got = append(got, Data(one)...)
				}
				if !slices.Equal(got, Data(all)) {
					t.Fatal("decode after prefill differs from one-shot prefill")
				}
			})
		}
	}
}
