package spec

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestLoadEncoderAndPrefixConfigs(t *testing.T) {
	cases := []struct {
		dir   string
		want  Spec
		extra map[string]float64
	}{
		{"../../testdata/golden/chatglm", Spec{Arch: "chatglm", Hidden: 64, Layers: 3, Heads: 4, KVHeads: 4, HeadDim: 16,
			Intermediate: 160, Vocab: 512, Positions: RoPE2D, Norm: LayerNorm, Activation: GELUTanh, RopeTheta: 10000,
			MaxPositions: 256, BOS: 1, EOS: 2, PAD: 3},
			map[string]float64{"gmask_token_id": 5, "mask_token_id": 4}},
		{"../../testdata/golden/bert", Spec{Arch: "bert", Hidden: 64, Layers: 2, Heads: 4, KVHeads: 4, HeadDim: 16,
			Intermediate: 128, Vocab: 800, Positions: Learned, Norm: LayerNorm, Activation: GELUErf,
			MaxPositions: 128, TiedEmbeddings: true, BOS: -1, EOS: -1, PAD: 0},
			map[string]float64{"type_vocab_size": 2}},
		{"../../testdata/golden/transformer-marian", Spec{Arch: "marian", Hidden: 64, Layers: 2, Heads: 4, KVHeads: 4, HeadDim: 16,
			Intermediate: 128, Vocab: 512, Positions: Sinusoidal, Norm: LayerNorm, Activation: ReLU,
			MaxPositions: 128, TiedEmbeddings: true, BOS: -1, EOS: 2, PAD: 3},
			map[string]float64{"encoder_layers": 2, "encoder_attention_heads": 4, "encoder_ffn_dim": 128,
				"decoder_start_token_id": 3, "scale_embedding": 1}},
	}
	for _, tc := range cases {
		t.Run(tc.want.Arch, func(t *testing.T) {
			s, err := Load(tc.dir)
			if err != nil {
				t.Fatal(err)
			}
			got := *s
			got.NormEps, got.Extra = 0, nil
			w := tc.want
			if gj, wj := mustJSON(got), mustJSON(w); gj != wj {
				t.Errorf("got  %s\nwant %s", gj, wj)
			}
			if gj, wj := mustJSON(s.Extra), mustJSON(tc.extra); gj != wj {
				t.Errorf("extra %s, want %s", gj, wj)
			}
		})
	}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func TestParseErrorsSeedArchs(t *testing.T) {
	edit := func(base map[string]any, f func(m map[string]any)) string {
		m := map[string]any{}
		for k, v := range base {
			m[k] = v
		}
		f(m)
		b, _ := json.Marshal(m)
		return string(b)
	}
	glm := map[string]any{"model_type": "chatglm", "hidden_size": 64, "num_layers": 2, "num_attention_heads": 4,
		"vocab_size": 100, "bos_token_id": 1, "gmask_token_id": 5}
	bert := map[string]any{"model_type": "bert", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
		"intermediate_size": 128, "vocab_size": 100, "max_position_embeddings": 64}
	marian := map[string]any{"model_type": "marian", "d_model": 64, "decoder_layers": 2, "decoder_attention_heads": 4,
		"decoder_ffn_dim": 128, "encoder_layers": 2, "encoder_attention_heads": 4, "encoder_ffn_dim": 128,
		"vocab_size": 100, "max_position_embeddings": 64, "decoder_start_token_id": 3, "activation_function": "relu"}
	for name, base := range map[string]map[string]any{"chatglm": glm, "bert": bert, "marian": marian} {
		if _, err := Parse([]byte(edit(base, func(map[string]any) {}))); err != nil {
			t.Fatalf("minimal %s config: %v", name, err)
		}
	}
	cases := []struct {
		name    string
		config  string
		mention string
	}{
		{"glm 1-D positions", edit(glm, func(m map[string]any) { m["position_encoding_2d"] = false }), "position_encoding_2d=false"},
		{"glm no gmask", edit(glm, func(m map[string]any) { delete(m, "gmask_token_id") }), "gmask_token_id"},
		{"glm no bos", edit(glm, func(m map[string]any) { delete(m, "bos_token_id") }), "bos_token_id"},
		{"chatglm2", edit(glm, func(m map[string]any) { m["multi_query_attention"] = true }), "ChatGLM2/3"},
		{"glm p-tuning", edit(glm, func(m map[string]any) { m["pre_seq_len"] = 128 }), "pre_seq_len"},
		{"glm quantized", edit(glm, func(m map[string]any) { m["quantization_bit"] = 4 }), "quantization_bit"},
		{"glm glu", edit(glm, func(m map[string]any) { m["glu_activation"] = "reglu" }), "reglu"},
		{"glm head dim", edit(glm, func(m map[string]any) { m["hidden_size"] = 24; m["num_attention_heads"] = 4 }), "multiple of 4"},
		{"bert relative", edit(bert, func(m map[string]any) { m["position_embedding_type"] = "relative_key" }), "relative_key"},
		{"bert act", edit(bert, func(m map[string]any) { m["hidden_act"] = "mish" }), "mish"},
		{"bert decoder", edit(bert, func(m map[string]any) { m["is_decoder"] = true }), "is_decoder"},
		{"bert heads", edit(bert, func(m map[string]any) { m["num_attention_heads"] = 5 }), "multiple"},
		{"bert positions", edit(bert, func(m map[string]any) { delete(m, "max_position_embeddings") }), "max_position_embeddings"},
		{"marian split vocab", edit(marian, func(m map[string]any) { m["share_encoder_decoder_embeddings"] = false }), "share_encoder_decoder_embeddings"},
		{"marian no start", edit(marian, func(m map[string]any) { delete(m, "decoder_start_token_id") }), "decoder_start_token_id"},
		{"marian encoder heads", edit(marian, func(m map[string]any) { m["encoder_attention_heads"] = 5 }), "encoder"},
		{"marian act", edit(marian, func(m map[string]any) { m["activation_function"] = "tanh" }), "activation_function"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.config))
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("err = %v, want ErrInvalidConfig", err)
			}
			if !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("error %q does not mention %q", err, tc.mention)
			}
		})
	}
}
