package llama_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/tessera-llm/tessera/kernels"
	"github.com/tessera-llm/tessera/worker/kvcache"
	"github.com/tessera-llm/tessera/worker/model"
	"github.com/tessera-llm/tessera/worker/model/modeltest"
	"github.com/tessera-llm/tessera/worker/weights"
)

// reference is the CPU reference shape of docs/benchmarks.md (200.8M parameters).
var reference = modeltest.LlamaShape{Hidden: 1024, Layers: 12, Heads: 16, KVHeads: 4, Inter: 2816, Vocab: 32000}

// variants are the weight formats benchmarked: the checkpoint's F32 and
// BF16, and BF16 converted to Q8_0 at load.
var variants = []struct {
	name  string
	dt    weights.DType
	quant kernels.DType
}{{"F32", "F32", 0}, {"BF16", "BF16", 0}, {"Q8_0", "BF16", kernels.Q8_0}}

func loadRandom(b *testing.B, s modeltest.LlamaShape, dt weights.DType, quant kernels.DType, cacheTokens int) model.CausalLM {
	dir := b.TempDir()
	modeltest.WriteRandomLlama(b, dir, s, dt)
	m, err := model.Load(dir, model.WithCache(cacheTokens, 16), model.WithQuantize(quant))
	if err != nil {
		b.Fatal(err)
	}
	return m.(model.CausalLM)
}

func prompt(n, vocab int) []int32 {
	ids := make([]int32, n)
	for i := range ids {
		ids[i] = int32((i*7919 + 13) % vocab)
	}
	return ids
}

// BenchmarkDecode measures single-sequence decode on the reference shape:
// one op is one generated token, with the context between 16 and 272 tokens.
func BenchmarkDecode(b *testing.B) {
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			lm := loadRandom(b, reference, v.dt, v.quant, 512)
			logits := lm.Backend().Alloc(1, reference.Vocab)
			var seq kvcache.Seq
			ctx := context.Background()
			reset := func() {
				lm.Cache().Release(&seq)
				p := prompt(16, reference.Vocab)
				batch := model.Batch{Tokens: p, Spans: []model.Span{{Seq: &seq, N: len(p)}}}
				if err := lm.Forward(ctx, &batch, logits); err != nil {
					b.Fatal(err)
				}
			}
			reset()
			tok := []int32{42}
			batch := model.Batch{Tokens: tok, Spans: []model.Span{{Seq: &seq, N: 1}}}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if seq.Len >= 272 {
					b.StopTimer()
					reset()
					b.StartTimer()
				}
				tok[0] = int32(i % reference.Vocab)
				if err := lm.Forward(ctx, &batch, logits); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tok/s")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// BenchmarkPrefill measures a 128-token prompt on the reference shape.
func BenchmarkPrefill(b *testing.B) {
	const n = 128
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			lm := loadRandom(b, reference, v.dt, v.quant, 256)
			logits := lm.Backend().Alloc(1, reference.Vocab)
			p := prompt(n, reference.Vocab)
			var seq kvcache.Seq
			batch := model.Batch{Tokens: p, Spans: []model.Span{{Seq: &seq, N: n}}}
			b.ResetTimer()
			for range b.N {
				lm.Cache().Release(&seq)
				if err := lm.Forward(context.Background(), &batch, logits); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "tok/s")
		})
	}
}

// TestDecodeAllocatesNothing holds the decode loop to zero allocations per
// token once its buffers exist, with the checkpoint's weights and with Q8_0.
func TestDecodeAllocatesNothing(t *testing.T) {
	t.Run("checkpoint", func(t *testing.T) { decodeAllocs(t, 0) })
	t.Run("Q8_0", func(t *testing.T) { decodeAllocs(t, kernels.Q8_0) })
}

func decodeAllocs(t *testing.T, quant kernels.DType) {
	m, err := model.Load(filepath.Join(modeltest.Root(t), "testdata/golden/llama"), model.WithQuantize(quant))
	if err != nil {
		t.Fatal(err)
	}
	lm := m.(model.CausalLM)
	logits := lm.Backend().Alloc(1, lm.Spec().Vocab)
	var seq kvcache.Seq
	p := []int32{1, 5, 9}
	ctx := context.Background()
	if err := lm.Forward(ctx, &model.Batch{Tokens: p, Spans: []model.Span{{Seq: &seq, N: len(p)}}}, logits); err != nil {
		t.Fatal(err)
	}
	tok := []int32{7}
	batch := model.Batch{Tokens: tok, Spans: []model.Span{{Seq: &seq, N: 1}}}
	step := func() {
		if err := lm.Forward(ctx, &batch, logits); err != nil {
			t.Fatal(err)
		}
	}
	step() // the first decode step lays out the workspace for n=1
	if allocs := testing.AllocsPerRun(20, step); allocs != 0 {
		t.Fatalf("decode step allocates %.1f times per token, want 0", allocs)
	}
}
