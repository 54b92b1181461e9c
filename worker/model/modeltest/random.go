package modeltest

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/tessera-llm/tessera/worker/weights"
)

// LlamaShape is a LLaMA geometry for random checkpoints.
type LlamaShape struct {
	Hidden, Layers, Heads, KVHeads, Inter, Vocab int
}

// WriteRandomLlama writes config.json and a random model.safetensors in
// dt to dir: weights for benchmarks, of any size, made on the spot.
func WriteRandomLlama(tb testing.TB, dir string, s LlamaShape, dt weights.DType) {
	tb.Helper()
	cfg := map[string]any{"model_type": "llama", "hidden_size": s.Hidden, "num_hidden_layers": s.Layers,
		"num_attention_heads": s.Heads, "num_key_value_heads": s.KVHeads, "intermediate_size": s.Inter,
		"vocab_size": s.Vocab, "rms_norm_eps": 1e-6, "max_position_embeddings": 4096}
	raw, _ := json.Marshal(cfg)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), raw, 0o644); err != nil {
		tb.Fatal(err)
	}
	d := s.Hidden / s.Heads
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
	add("model.embed_tokens.weight", s.Vocab, s.Hidden, false)
	for l := range s.Layers {
		p := fmt.Sprintf("model.layers.%d.", l)
		add(p+"input_layernorm.weight", 1, s.Hidden, true)
		add(p+"post_attention_layernorm.weight", 1, s.Hidden, true)
		add(p+"self_attn.q_proj.weight", s.Heads*d, s.Hidden, false)
		add(p+"self_attn.k_proj.weight", s.KVHeads*d, s.Hidden, false)
		add(p+"self_attn.v_proj.weight", s.KVHeads*d, s.Hidden, false)
		add(p+"self_attn.o_proj.weight", s.Hidden, s.Heads*d, false)
		add(p+"mlp.gate_proj.weight", s.Inter, s.Hidden, false)
		add(p+"mlp.up_proj.weight", s.Inter, s.Hidden, false)
		add(p+"mlp.down_proj.weight", s.Hidden, s.Inter, false)
	}
	add("model.norm.weight", 1, s.Hidden, true)
	add("lm_head.weight", s.Vocab, s.Hidden, false)
	if err := weights.Write(filepath.Join(dir, "model.safetensors"), ts, nil); err != nil {
		tb.Fatal(err)
	}
}
