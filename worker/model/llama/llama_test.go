package llama_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/tessera-llm/tessera/kernels/cpu"
	"github.com/tessera-llm/tessera/shard/plan"
	"github.com/tessera-llm/tessera/shard/spec"
	"github.com/tessera-llm/tessera/worker/engine"
	"github.com/tessera-llm/tessera/worker/model"
	_ "github.com/tessera-llm/tessera/worker/model/llama"
	"github.com/tessera-llm/tessera/worker/model/modeltest"
)

func TestGoldenLlama(t *testing.T) {
	modeltest.CheckCausal(t, filepath.Join(modeltest.Root(t), "testdata/golden/llama"))
}

// TestGoldenFamily holds the LLaMA-family variants to llama.cpp's logits
// (testdata/golden/README.md), whole and split pp=2 × tp=2.
func TestGoldenFamily(t *testing.T) {
	for _, name := range []string{"llama3-scaled", "llama-yarn", "llama-linear", "qwen2", "mistral-swa"} {
		dir := filepath.Join(modeltest.Root(t), "testdata/golden", name)
		t.Run(name, func(t *testing.T) {
			modeltest.CheckCausal(t, dir)
		})
		t.Run(name+"/pp2_tp2", func(t *testing.T) {
			s, err := spec.Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			p, err := plan.New(s, []plan.Worker{{ID: "a"}, {ID: "b"}, {ID: "c"}, {ID: "d"}}, plan.WithShape(2, 2), plan.WithDTypeBytes(4))
			if err != nil {
				t.Fatal(err)
			}
			pl, err := engine.LoadPipeline(dir, p, model.WithCache(512, 16))
			if err != nil {
				t.Fatal(err)
			}
			modeltest.CheckCausalLM(t, dir, pl)
		})
	}
}

// TestUnsupportedConfig: what a LLaMA-family config asks for and Tessera
// does not implement is a load error naming the field.
func TestUnsupportedConfig(t *testing.T) {
	base := `"hidden_size":64,"num_hidden_layers":2,"num_attention_heads":4,"intermediate_size":128,"vocab_size":320,"max_position_embeddings":256`
	cases := []struct{ cfg, want string }{
		{`{"model_type":"llama",` + base + `,"rope_scaling":{"rope_type":"longrope","factor":2}}`, `rope_scaling.rope_type "longrope"`},
		{`{"model_type":"llama",` + base + `,"rope_scaling":{"rope_type":"yarn","factor":4,"mscale":1}}`, `rope_scaling.mscale`},
		{`{"model_type":"llama",` + base + `,"rope_scaling":{"rope_type":"yarn","factor":4,"truncate":false}}`, `truncate=false`},
		{`{"model_type":"llama",` + base + `,"rope_parameters":{"rope_type":"llama3","factor":8}}`, `rope_parameters.low_freq_factor is required`},
		{`{"model_type":"llama",` + base + `,"rope_scaling":{"rope_type":"linear","factor":0.5}}`, `factor must be at least 1`},
		{`{"model_type":"llama",` + base + `,"attention_bias":true}`, `attention_bias=true`},
		{`{"model_type":"mistral",` + base + `,"sliding_window":-1}`, `sliding_window -1`},
		{`{"model_type":"qwen2",` + base + `,"use_sliding_window":true}`, `use_sliding_window=true`},
	}
	for _, tc := range cases {
		_, err := spec.Parse([]byte(tc.cfg))
		if !errors.Is(err, spec.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s:\n got %v\nwant an error naming %q", tc.cfg, err, tc.want)
		}
	}
	// Mistral's window loads, and null (Mistral v0.2 on) is none.
	for cfg, want := range map[string]int{`"sliding_window":64`: 64, `"sliding_window":null`: 0} {
		s, err := spec.Parse([]byte(`{"model_type":"mistral",` + base + `,` + cfg + `}`))
		if err != nil || s.SlidingWindow != want {
			t.Errorf("mistral with %s: window %v, %v; want %d", cfg, s, err, want)
		}
	}
}
