//go:build cuda

package cuda_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/tessera-llm/tessera/kernels/cuda"
	"github.com/tessera-llm/tessera/worker/kvcache"
	"github.com/tessera-llm/tessera/worker/model"
	"github.com/tessera-llm/tessera/worker/weights"
)

// Decode benchmarks on random bf16 checkpoints of two real geometries,
// written on the spot (TESSERA_BENCH_DIR, default a temporary directory;
// the LLaMA-8B one is 16 GB). One op is one decode step of the whole batch;
// tok/s counts every sequence's token.
//
//	go test -tags cuda ./kernels/cuda -run '^$' -bench Decode -benchtime 20x

type shape struct {
	arch                                         string
	hidden, layers, heads, kvHeads, inter, vocab int
}

var (
	bloom560m = shape{"bloom", 1024, 24, 16, 16, 4096, 250880}
	llama8b   = shape{"llama", 4096, 32, 32, 8, 14336, 128256}
)

// xorshift fills bf16 weights fast: uniform in about ±1/sqrt(cols).
type xorshift uint64

func (x *xorshift) next() uint64 {
	*x ^= *x << 13
	*x ^= *x >> 7
	*x ^= *x << 17
	return uint64(*x)
}

func randomBF16(rng *xorshift, rows, cols int, ones bool) []byte {
	n := rows * cols
	out := make([]byte, 2*n)
	if ones {
		for i := range n {
			binary.LittleEndian.PutUint16(out[2*i:], 0x3f80)
		}
		return out
	}
	// bf16 of ±u·2^e, u in [1,2), with 2^e near 1/sqrt(cols).
	exp := uint16(127 - 1)
	for c := cols; c >= 4; c /= 4 {
		exp--
	}
	for i := 0; i < n; i += 4 {
		r := rng.next()
		for j := 0; j < 4 && i+j < n; j++ {
			b := uint16(r >> (16 * j))
			binary.LittleEndian.PutUint16(out[2*(i+j):], b&0x8000|(exp-uint16(b>>7&1))<<7|b&0x7f)
		}
	}
	return out
}

func writeRandom(b *testing.B, dir string, s shape) {
	b.Helper()
	rng := xorshift(0x9e3779b97f4a7c15)
	var ts []weights.WriteTensor
	add := func(name string, rows, cols int, ones bool) {
		sh := []int{rows, cols}
		if rows == 1 {
			sh = []int{cols}
		}
		ts = append(ts, weights.WriteTensor{Name: name, DType: "BF16", Shape: sh, Data: randomBF16(&rng, rows, cols, ones)})
	}
	h, d := s.hidden, s.hidden/s.heads
	var cfg map[string]any
	switch s.arch {
	case "llama":
		cfg = map[string]any{"model_type": "llama", "hidden_size": h, "num_hidden_layers": s.layers,
			"num_attention_heads": s.heads, "num_key_value_heads": s.kvHeads, "intermediate_size": s.inter,
			"vocab_size": s.vocab, "rms_norm_eps": 1e-5, "max_position_embeddings": 8192, "rope_theta": 500000.0}
		add("model.embed_tokens.weight", s.vocab, h, false)
		for l := range s.layers {
			p := fmt.Sprintf("model.layers.%d.", l)
			add(p+"input_layernorm.weight", 1, h, true)
			add(p+"post_attention_layernorm.weight", 1, h, true)
			add(p+"self_attn.q_proj.weight", s.heads*d, h, false)
			add(p+"self_attn.k_proj.weight", s.kvHeads*d, h, false)
			add(p+"self_attn.v_proj.weight", s.kvHeads*d, h, false)
			add(p+"self_attn.o_proj.weight", h, s.heads*d, false)
			add(p+"mlp.gate_proj.weight", s.inter, h, false)
			add(p+"mlp.up_proj.weight", s.inter, h, false)
			add(p+"mlp.down_proj.weight", h, s.inter, false)
		}
		add("model.norm.weight", 1, h, true)
		add("lm_head.weight", s.vocab, h, false)
	case "bloom":
		cfg = map[string]any{"model_type": "bloom", "hidden_size": h, "n_layer": s.layers, "n_head": s.heads,
			"vocab_size": s.vocab, "layer_norm_epsilon": 1e-5, "tie_word_embeddings": true}
		ln := func(p string) {
			add(p+".weight", 1, h, true)
			add(p+".bias", 1, h, false)
		}
		lin := func(p string, out, in int) {
			add(p+".weight", out, in, false)
			add(p+".bias", 1, out, false)
		}
		add("transformer.word_embeddings.weight", s.vocab, h, false)
		ln("transformer.word_embeddings_layernorm")
		for l := range s.layers {
			p := fmt.Sprintf("transformer.h.%d.", l)
			ln(p + "input_layernorm")
			lin(p+"self_attention.query_key_value", 3*h, h)
			lin(p+"self_attention.dense", h, h)
			ln(p + "post_attention_layernorm")
			lin(p+"mlp.dense_h_to_4h", s.inter, h)
			lin(p+"mlp.dense_4h_to_h", h, s.inter)
		}
		ln("transformer.ln_f")
	}
	raw, _ := json.Marshal(cfg)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), raw, 0o644); err != nil {
		b.Fatal(err)
	}
	if err := weights.Write(filepath.Join(dir, "model.safetensors"), ts, nil); err != nil {
		b.Fatal(err)
	}
}

// benchDir returns the checkpoint directory for s, writing it once.
func benchDir(b *testing.B, s shape) string {
	root := os.Getenv("TESSERA_BENCH_DIR")
	if root == "" {
		root = os.TempDir()
	}
	dir := filepath.Join(root, fmt.Sprintf("tessera-bench-%s-%d-%d", s.arch, s.hidden, s.layers))
	if _, err := os.Stat(filepath.Join(dir, "model.safetensors")); err == nil {
		return dir
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	writeRandom(b, dir, s)
	return dir
}

func BenchmarkDecode(b *testing.B) {
	g, err := cuda.Open(0)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		s    shape
	}{{"bloom-560m", bloom560m}, {"llama-8b", llama8b}} {
		dir := ""
		var lm model.CausalLM
		for _, batch := range []int{1, 32} {
			b.Run(fmt.Sprintf("%s/batch=%d", c.name, batch), func(b *testing.B) {
				if lm == nil {
					dir = benchDir(b, c.s)
					m, err := model.Load(dir, model.WithBackend(g), model.WithCache(32*320, 16))
					if err != nil {
						b.Fatal(err)
					}
					lm = m.(model.CausalLM)
				}
				decodeBench(b, lm, c.s.vocab, batch)
			})
		}
		lm = nil
		if os.Getenv("TESSERA_BENCH_DIR") == "" && dir != "" {
			os.RemoveAll(dir)
		}
	}
}

// decodeBench prefills batch sequences with 16 tokens each, then times
// decode steps of one token per sequence (contexts 16 to 272).
func decodeBench(b *testing.B, lm model.CausalLM, vocab, batch int) {
	ctx := context.Background()
	seqs := make([]kvcache.Seq, batch)
	logits := lm.Backend().Alloc(batch, vocab)
	reset := func() {
		for i := range seqs {
			lm.Cache().Release(&seqs[i])
			p := make([]int32, 16)
			for j := range p {
				p[j] = int32((i*131 + j*7919 + 13) % vocab)
			}
			one := lm.Backend().Alloc(1, vocab)
			if err := lm.Forward(ctx, &model.Batch{Tokens: p, Spans: []model.Span{{Seq: &seqs[i], N: len(p)}}}, one); err != nil {
				b.Fatal(err)
			}
		}
	}
	reset()
	toks := make([]int32, batch)
	spans := make([]model.Span, batch)
	for i := range spans {
		spans[i] = model.Span{Seq: &seqs[i], N: 1}
	}
	batchArg := model.Batch{Tokens: toks, Spans: spans}
	host := make([]float32, batch*vocab)
	b.ResetTimer()
	for i := range b.N {
		if seqs[0].Len >= 272 {
			b.StopTimer()
			reset()
			b.StartTimer()
		}
		for j := range toks {
			toks[j] = int32((i*batch + j) % vocab)
		}
		if err := lm.Forward(ctx, &batchArg, logits); err != nil {
			b.Fatal(err)
		}
		lm.Backend().Read(logits, host) // the step is done when its logits are on the host
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "tok/s")
	b.ReportMetric(0, "ns/op")
}
