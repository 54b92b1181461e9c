package cpu

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/tessera-llm/tessera/kernels"
)

// BenchmarkMatMul reports GFLOP/s (2·n·m·k per op) and, for the weight
// stream, GB/s of weight bytes read per op (what bounds decode).
func BenchmarkMatMul(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	be := New()
	for _, sh := range []struct {
		name    string
		n, m, k int
	}{
		{"prefill", 128, 1024, 1024},
		{"decode", 1, 2816, 1024},
		{"batch4", 4, 2816, 1024},
		{"lmhead", 1, 32000, 1024},
		{"prefill-mlp", 128, 2816, 1024},
		{"prefill-down", 128, 1024, 2816},
	} {
		for _, dt := range append(dtypes, kernels.Q8_0) {
			for _, impl := range impls() {
				b.Run(fmt.Sprintf("%s/%dx%dx%d/%v/%s", sh.name, sh.n, sh.m, sh.k, dt, impl.name), func(b *testing.B) {
					x := be.FromFloat32(randVec(r, sh.n*sh.k), sh.n, sh.k)
					w := benchWeight(b, be, r, dt, sh.m, sh.k)
					dst := be.Alloc(sh.n, sh.m)
					defer impl.use()()
					sec := measure(b, func() { be.MatMul(dst, x, w, nil) })
					b.ReportMetric(2*float64(sh.n*sh.m*sh.k)/sec/1e9, "GFLOP/s")
					if sh.n < gemmMinRows {
						b.ReportMetric(float64(weightBytes(dt, sh.m, sh.k))/sec/1e9, "weightGB/s")
					}
				})
			}
		}
	}
}

// benchWeight is a random [m, k] weight of dtype dt (Q8_0: quantized
// from F32).
func benchWeight(b *testing.B, be *Backend, r *rand.Rand, dt kernels.DType, m, k int) kernels.Tensor {
	if dt != kernels.Q8_0 {
		w, _ := upload(b, be, dt, randVec(r, m*k), m, k)
		return w
	}
	w, _ := upload(b, be, kernels.F32, randVec(r, m*k), m, k)
	q, err := be.Quantize(w, dt)
	if err != nil {
		b.Fatal(err)
	}
	return q
}

// weightBytes is the storage of an [m, k] weight: Q8_0 keeps one byte per
// weight and a float16 scale per 32.
func weightBytes(dt kernels.DType, m, k int) int {
	if dt == kernels.Q8_0 {
		return m*k + 2*m*q8Blocks(k)
	}
	return m * k * dt.Size()
}

// BenchmarkAttend reports GB/s of KV cache read and GFLOP/s (4·hd per
// visible key per head: q·k and p·v).
func BenchmarkAttend(b *testing.B) {
	r := rand.New(rand.NewPCG(3, 4))
	be := New()
	const heads, kv, hd, bs = 32, 8, 128, 16
	for _, sh := range []struct {
		name    string
		n, keys int
	}{
		{"decode", 1, 1024},
		{"decode", 1, 4096},
		{"prefill", 256, 256},
	} {
		for _, impl := range impls() {
			b.Run(fmt.Sprintf("%s/n=%d/keys=%d/%s", sh.name, sh.n, sh.keys, impl.name), func(b *testing.B) {
				defer impl.use()()
				f := newKV(be, r, sh.keys, kv, hd, bs)
				a := &kernels.Attention{Heads: heads, KVHeads: kv, HeadDim: hd, Scale: 0.088, Mask: kernels.Causal,
					BlockSize: bs, Table: f.table, Keys: sh.keys}
				q := be.FromFloat32(randVec(r, sh.n*heads*hd), sh.n, heads*hd)
				dst := be.Alloc(sh.n, heads*hd)
				sec := measure(b, func() { be.Attend(dst, q, f.kc, f.vc, a) })
				visible := 0 // (query, key) pairs
				for i := range sh.n {
					visible += sh.keys - sh.n + i + 1
				}
				b.ReportMetric(4*float64(visible*heads*hd)/sec/1e9, "GFLOP/s")
				if sh.n == 1 {
					b.ReportMetric(2*float64(sh.keys*kv*hd*4)/sec/1e9, "kvGB/s")
				}
			})
		}
	}
}

// impl is a kernel implementation a benchmark runs under: "simd" (the
// AVX-512 kernels, where the CPU has them) and "go" (the fallback).
type impl struct {
	name string
	simd bool
}

func impls() []impl {
	if hasAVX512 {
		return []impl{{"simd", true}, {"go", false}}
	}
	return []impl{{"go", false}}
}

// use selects the implementation and returns a func restoring the old one.
func (i impl) use() func() {
	saved := useSIMD
	useSIMD = i.simd
	return func() { useSIMD = saved }
}

// measure runs op in the benchmark loop and returns wall seconds per op.
// It also reports CPU milliseconds per op, which on a busy machine track
// a kernel's own cost better than wall time.
func measure(b *testing.B, op func()) float64 {
	op() // warm scratch and caches
	b.ResetTimer()
	c0 := cpuTime()
	for b.Loop() {
		op()
	}
	n := float64(b.N)
	b.ReportMetric(float64(cpuTime()-c0)/1e6/n, "cpu-ms/op")
	return b.Elapsed().Seconds() / n
}
