package spec

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadGoldenConfigs(t *testing.T) {
	cases := []struct {
		name string
		dir  string
		want Spec
	}{
		{"bloom", "../../testdata/golden/bloom", Spec{Arch: "bloom", Hidden: 96, Layers: 3, Heads: 12, KVHeads: 12, HeadDim: 8,
			Intermediate: 384, Vocab: 512, Positions: ALiBi, Norm: LayerNorm, TiedEmbeddings: true}},
		{"llama", "../../testdata/golden/llama", Spec{Arch: "llama", Hidden: 64, Layers: 3, Heads: 8, KVHeads: 2, HeadDim: 8,
			Intermediate: 160, Vocab: 774, Positions: RoPE, Norm: RMSNorm, Gated: true, RopeTheta: 10000}},
		{"docbloom", "../../models/docbloom-3m", Spec{Arch: "bloom", Hidden: 192, Layers: 6, Heads: 6, KVHeads: 6, HeadDim: 32,
			Intermediate: 768, Vocab: 4096, Positions: ALiBi, Norm: LayerNorm, TiedEmbeddings: true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Load(tc.dir)
			if err != nil {
				t.Fatal(err)
			}
			w := tc.want
			if s.Arch != w.Arch || s.Hidden != w.Hidden || s.Layers != w.Layers || s.Heads != w.Heads ||
				s.KVHeads != w.KVHeads || s.HeadDim != w.HeadDim || s.Intermediate != w.Intermediate ||
				s.Vocab != w.Vocab || s.Positions != w.Positions || s.Norm != w.Norm || s.Gated != w.Gated ||
				s.TiedEmbeddings != w.TiedEmbeddings || s.RopeTheta != w.RopeTheta {
				t.Errorf("got %+v\nwant %+v", *s, w)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	llama := func(edit func(m map[string]any)) string {
		m := map[string]any{"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2,
			"num_attention_heads": 8, "num_key_value_heads": 2, "intermediate_size": 128, "vocab_size": 100}
		edit(m)
		b, _ := json.Marshal(m)
		return string(b)
	}
	cases := []struct {
		name    string
		config  string
		wantErr error
		mention string
	}{
		{"not json", `{"model_type":`, ErrInvalidConfig, "JSON"},
		{"no model_type", `{"hidden_size": 4}`, ErrInvalidConfig, "model_type"},
		{"unknown arch", `{"model_type": "mamba"}`, ErrUnsupportedArch, "bloom"},
		{"missing field", llama(func(m map[string]any) { delete(m, "vocab_size") }), ErrInvalidConfig, "vocab_size"},
		{"fractional", llama(func(m map[string]any) { m["hidden_size"] = 64.5 }), ErrInvalidConfig, "hidden_size"},
		{"wrong type", llama(func(m map[string]any) { m["num_hidden_layers"] = "two" }), ErrInvalidConfig, "num_hidden_layers"},
		{"negative", llama(func(m map[string]any) { m["num_hidden_layers"] = -1 }), ErrInvalidConfig, "layer count"},
		{"gqa mismatch", llama(func(m map[string]any) { m["num_key_value_heads"] = 3 }), ErrInvalidConfig, "multiple"},
		{"rope scaling", llama(func(m map[string]any) { m["rope_scaling"] = map[string]any{"type": "linear"} }), ErrInvalidConfig, "rope_scaling"},
		{"bias", llama(func(m map[string]any) { m["attention_bias"] = true }), ErrInvalidConfig, "attention_bias"},
		{"bloom post-ln", `{"model_type":"bloom","hidden_size":8,"n_layer":1,"n_head":2,"vocab_size":4,"apply_residual_connection_post_layernorm":true}`, ErrInvalidConfig, "post_layernorm"},
		{"bloom heads", `{"model_type":"bloom","hidden_size":10,"n_layer":1,"n_head":3,"vocab_size":4}`, ErrInvalidConfig, "multiple"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.config))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("error %q does not mention %q", err, tc.mention)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v, want not-exist", err)
	}
}

func TestALiBiSlopesMatchHF(t *testing.T) {
	raw, err := os.ReadFile("../../testdata/golden/bloom/golden.json")
	if err != nil {
		t.Fatal(err)
	}
	var g struct {
		Slopes []float64 `json:"alibi_slopes"`
	}
	if err := json.Unmarshal(raw, &g); err != nil {
		t.Fatal(err)
	}
	got := ALiBiSlopes(len(g.Slopes))
	if len(got) != 12 || len(g.Slopes) != 12 {
		t.Fatalf("got %d slopes, golden %d", len(got), len(g.Slopes))
	}
	for i := range got {
		if rel := math.Abs(float64(got[i])-g.Slopes[i]) / g.Slopes[i]; rel > 1e-6 {
			t.Errorf("slope %d = %v, HF %v", i, got[i], g.Slopes[i])
		}
	}
}

func TestALiBiSlopesFormula(t *testing.T) {
	cases := []struct {
		name string
		n    int
		want []float64
	}{
		{"power of two", 4, []float64{0.25, 0.0625, 0.015625, 0.00390625}},
		{"one", 1, []float64{math.Exp2(-8)}},
		// c=4: four slopes 2^-2i, then every other of the 8-head list 2^-i: i=1,3.
		{"six", 6, []float64{0.25, 0.0625, 0.015625, 0.00390625, 0.5, 0.125}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := ALiBiSlopes(tc.n)
			if len(got) != len(tc.want) {
				t.Fatalf("len %d, want %d", len(got), len(tc.want))
			}
			for i := range got {
				if float64(got[i]) != float64(float32(tc.want[i])) {
					t.Errorf("slope %d = %v, want %v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestSliceIsNotRecomputed(t *testing.T) {
	// A rank holding heads [8,12) of 12 must not get ALiBiSlopes(4).
	global := ALiBiSlopes(12)[8:12]
	local := ALiBiSlopes(4)
	if global[0] == local[0] {
		t.Fatalf("global slice %v equals local recomputation %v; the test lost its point", global, local)
	}
}
