package engine_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/tessera-llm/tessera/shard/plan"
	"github.com/tessera-llm/tessera/shard/spec"
	"github.com/tessera-llm/tessera/worker/engine"
	"github.com/tessera-llm/tessera/worker/kvcache"
	"github.com/tessera-llm/tessera/worker/model"
	"github.com/tessera-llm/tessera/worker/model/modeltest"
)

// BenchmarkShardedDecode compares one decode step of an unsharded model
// with the same model split in-process (ranks all-reducing through shared
// memory, stages handing hidden states on). One op is one token.
func BenchmarkShardedDecode(b *testing.B) {
	shape := modeltest.LlamaShape{Hidden: 512, Layers: 8, Heads: 8, KVHeads: 2, Inter: 1408, Vocab: 8000}
	dir := b.TempDir()
	modeltest.WriteRandomLlama(b, dir, shape, "F32")
	s, err := spec.Load(dir)
	if err != nil {
		b.Fatal(err)
	}
	for _, pt := range [][2]int{{1, 1}, {1, 2}, {2, 1}, {2, 2}, {1, 4}} {
		b.Run(fmt.Sprintf("pp%d_tp%d", pt[0], pt[1]), func(b *testing.B) {
			var lm model.CausalLM
			if pt == [2]int{1, 1} {
				m, err := model.Load(dir, model.WithCache(512, 16))
				if err != nil {
					b.Fatal(err)
				}
				lm = m.(model.CausalLM)
			} else {
				ws := make([]plan.Worker, pt[0]*pt[1])
				for i := range ws {
					ws[i].ID = fmt.Sprint(i)
				}
				p, err := plan.New(s, ws, plan.WithShape(pt[0], pt[1]), plan.WithDTypeBytes(4))
				if err != nil {
					b.Fatal(err)
				}
				if lm, err = engine.LoadPipeline(dir, p, model.WithCache(512, 16)); err != nil {
					b.Fatal(err)
				}
			}
			logits := lm.Backend().Alloc(1, shape.Vocab)
			var seq kvcache.Seq
			ctx := context.Background()
			tok := []int32{1}
			batch := model.Batch{Tokens: tok, Spans: []model.Span{{Seq: &seq, N: 1}}}
			b.ResetTimer()
			for i := range b.N {
				if seq.Len >= 256 {
					lm.Cache().Release(&seq)
				}
				tok[0] = int32(i % shape.Vocab)
				if err := lm.Forward(ctx, &batch, logits); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/token")
		})
	}
}
