package cpu

import (
	"math/rand/v2"
	"testing"

	"github.com/tessera-llm/tessera/kernels"
)

// TestDecodeAllocs: with preallocated tensors, the per-token ops of a
// decode step allocate nothing once warm.
func TestDecodeAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("AllocsPerRun is slow-ish")
	}
	r := rand.New(rand.NewPCG(21, 22))
	for _, threads := range []int{1, 2, 4} {
		b := New(WithThreads(threads))
		const d, ff, heads, kv, hd, keys, bs = 256, 704, 8, 2, 32, 100, 16
		x := b.FromFloat32(randVec(r, d), 1, d)
		wq, _ := upload(t, b, kernels.BF16, randVec(r, ff*d), ff, d)
		wf, _ := upload(t, b, kernels.F16, randVec(r, ff*d), ff, d)
		w32 := b.FromFloat32(randVec(r, ff*d), ff, d)
		bias := b.FromFloat32(randVec(r, ff), ff)
		gamma := b.FromFloat32(randVec(r, d), d)
		out := b.Alloc(1, ff)
		norm := b.Alloc(1, d)
		f := newKV(b, r, keys, kv, hd, bs)
		q := b.FromFloat32(randVec(r, heads*hd), 1, heads*hd)
		k := b.FromFloat32(randVec(r, kv*hd), 1, kv*hd)
		att := b.Alloc(1, heads*hd)
		a := &kernels.Attention{Heads: heads, KVHeads: kv, HeadDim: hd, Scale: 0.2, Mask: kernels.Causal,
			Slopes: alibiSlopes(heads), BlockSize: bs, Table: f.table, Keys: keys}
		pos := []int32{keys - 1}
		rope := kernels.RoPE{Heads: heads, HeadDim: hd, Dim: hd, Theta: 10000}
		x4 := b.FromFloat32(randVec(r, 4*d), 4, d)
		out4 := b.Alloc(4, ff)
		for _, tc := range []struct {
			name string
			f    func()
		}{
			{"MatMul F32", func() { b.MatMul(out, x, w32, bias) }},
			{"MatMul BF16", func() { b.MatMul(out, x, wq, nil) }},
			{"MatMul F16", func() { b.MatMul(out, x, wf, bias) }},
			{"MatMul 4 rows BF16", func() { b.MatMul(out4, x4, wq, bias) }},
			{"Attend", func() { b.Attend(att, q, f.kc, f.vc, a) }},
			{"WriteKV", func() { b.WriteKV(f.kc, f.vc, k, k, bs, f.table, keys-1) }},
			{"RMSNorm", func() { b.RMSNorm(norm, x, gamma, 1e-6) }},
			{"LayerNorm", func() { b.LayerNorm(norm, x, gamma, gamma, 1e-5) }},
			{"ApplyRoPE", func() { b.ApplyRoPE(q, pos, rope) }},
			{"GLU", func() { b.GLU(out, out, out, kernels.SiLU) }},
			{"Add", func() { b.Add(norm, norm, x) }},
		} {
			for range 20 { // warm the free lists, every worker's scratch and the tables
				tc.f()
			}
			if n := testing.AllocsPerRun(50, tc.f); n != 0 {
				t.Errorf("threads=%d %s: %v allocs per op, want 0", threads, tc.name, n)
			}
		}
	}
}

// TestConcurrentCallers: one Backend shared by several goroutines gives
// each the same answer as a serial run (run with -race).
func TestConcurrentCallers(t *testing.T) {
	r := rand.New(rand.NewPCG(23, 24))
	b := New(WithThreads(3))
	const n, m, k = 9, 130, 70
	x := b.FromFloat32(randVec(r, n*k), n, k)
	w, _ := upload(t, b, kernels.BF16, randVec(r, m*k), m, k)
	want := b.Alloc(n, m)
	b.MatMul(want, x, w, nil)
	errs := make(chan string, 8)
	for range 8 {
		go func() {
			dst := b.Alloc(n, m)
			for range 20 {
				b.MatMul(dst, x, w, nil)
				b.ApplyRoPE(b.Alloc(2, 16), []int32{3, 900}, kernels.RoPE{Heads: 2, HeadDim: 8, Dim: 8, Theta: 10000})
			}
			for i, v := range Data(dst) {
				if v != Data(want)[i] {
					errs <- "concurrent MatMul differs from serial"
					return
				}
			}
			errs <- ""
		}()
	}
	for range 8 {
		if e := <-errs; e != "" {
			t.Error(e)
		}
	}
}
