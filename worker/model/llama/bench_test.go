package llama_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/tessera-llm/tessera/worker/kvcache"
	"github.com/tessera-llm/tessera/worker/model"
	"github.com/tessera-llm/tessera/worker/model/modeltest"
	"github.com/tessera-llm/tessera/worker/weights"
)

// shape is a LLaMA geometry for random checkpoints.
type shape struct {
	hidden, layers, heads, kvHeads, inter, vocab int
}

// reference is the CPU reference shape of docs/benchmarks.md (200.8M parameters).
var reference = shape{hidden: 1024, layers: 12, heads: 16, kvHeads: 4, inter: 2816, vocab: 32000}

// writeRandomLlama writes config.json and a random model.safetensors in dt.
func writeRandomLlama(tb testing.TB, dir string, s shape, dt weights.DType) {
	tb.Helper()
	cfg := map[string]any{"model_type": "llama", "hidden_size": s.hidden, "num_hidden_layers": s.layers,
		"num_attention_heads": s.heads, "num_key_value_heads": s.kvHeads, "intermediate_size": s.inter,
		"vocab_size": s.vocab, "rms_norm_eps": 1e-6, "max_position_embeddings": 4096}
	raw, _ := json.Marshal(cfg)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), raw, 0o644); err != nil {
		tb.Fatal(err)
	}
	d := s.hidden / s.heads
	rng := rand.New(rand.NewPCG(1, 2))
	var ts []weights.WriteTensor
	add := func(name string, rows, cols int, ones bool) {
		vals := make([]float32, rows*cols)
		scale := float32(1 / math.Sqrt(float64(cols)))
		for i := range vals {
			if ones {
				vals[i] = 1
			} else {
				vals[i] = (rng.Float32()*2 - 1) * scale
			}
		}
		data, err := weights.EncodeFloat32(dt, vals)
		if err != nil {
			tb.Fatal(err)
		}
		shape := []int{rows, cols}
		if rows == 1 {
			shape = []int{cols}
		}
		ts = append(ts, weights.WriteTensor{Name: name, DType: dt, Shape: shape, Data: data})
	}
	add("model.embed_tokens.weight", s.vocab, s.hidden, false)
	for l := range s.layers {
		p := fmt.Sprintf("model.layers.%d.", l)
		add(p+"input_layernorm.weight", 1, s.hidden, true)
		add(p+"post_attention_layernorm.weight", 1, s.hidden, true)
		add(p+"self_attn.q_proj.weight", s.heads*d, s.hidden, false)
		add(p+"self_attn.k_proj.weight", s.kvHeads*d, s.hidden, false)
		add(p+"self_attn.v_proj.weight", s.kvHeads*d, s.hidden, false)
		add(p+"self_attn.o_proj.weight", s.hidden, s.heads*d, false)
		add(p+"mlp.gate_proj.weight", s.inter, s.hidden, false)
		add(p+"mlp.up_proj.weight", s.inter, s.hidden, false)
		add(p+"mlp.down_proj.weight", s.hidden, s.inter, false)
	}
	add("model.norm.weight", 1, s.hidden, true)
	add("lm_head.weight", s.vocab, s.hidden, false)
	if err := weights.Write(filepath.Join(dir, "model.safetensors"), ts, nil); err != nil {
		tb.Fatal(err)
	}
}

func loadRandom(b *testing.B, s shape, dt weights.DType, cacheTokens int) model.CausalLM {
	dir := b.TempDir()
	writeRandomLlama(b, dir, s, dt)
	m, err := model.Load(dir, model.WithCache(cacheTokens, 16))
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
	for _, dt := range []weights.DType{"F32", "BF16"} {
		b.Run(string(dt), func(b *testing.B) {
			lm := loadRandom(b, reference, dt, 512)
			logits := lm.Backend().Alloc(1, reference.vocab)
			var seq kvcache.Seq
			ctx := context.Background()
			reset := func() {
				lm.Cache().Release(&seq)
				p := prompt(16, reference.vocab)
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
				tok[0] = int32(i % reference.vocab)
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
	for _, dt := range []weights.DType{"F32", "BF16"} {
		b.Run(string(dt), func(b *testing.B) {
			lm := loadRandom(b, reference, dt, 256)
			logits := lm.Backend().Alloc(1, reference.vocab)
			p := prompt(n, reference.vocab)
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
// token once its buffers exist.
func TestDecodeAllocatesNothing(t *testing.T) {
	m, err := model.Load(filepath.Join(modeltest.Root(t), "testdata/golden/llama"))
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
