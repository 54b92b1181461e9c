package weights

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// bloomShapes lists every tensor of a BLOOM checkpoint with its shape, from
// the config.
func bloomShapes(hidden, layers, vocab int) map[string][]int {
	h := hidden
	m := map[string][]int{
		"transformer.word_embeddings.weight":           {vocab, h},
		"transformer.word_embeddings_layernorm.weight": {h},
		"transformer.word_embeddings_layernorm.bias":   {h},
		"transformer.ln_f.weight":                      {h},
		"transformer.ln_f.bias":                        {h},
	}
	for i := range layers {
		p := fmt.Sprintf("transformer.h.%d.", i)
		for name, shape := range map[string][]int{
			"input_layernorm.weight":                {h},
			"input_layernorm.bias":                  {h},
			"self_attention.query_key_value.weight": {3 * h, h},
			"self_attention.query_key_value.bias":   {3 * h},
			"self_attention.dense.weight":           {h, h},
			"self_attention.dense.bias":             {h},
			"post_attention_layernorm.weight":       {h},
			"post_attention_layernorm.bias":         {h},
			"mlp.dense_h_to_4h.weight":              {4 * h, h},
			"mlp.dense_h_to_4h.bias":                {4 * h},
			"mlp.dense_4h_to_h.weight":              {h, 4 * h},
			"mlp.dense_4h_to_h.bias":                {h},
		} {
			m[p+name] = shape
		}
	}
	return m
}

func TestBloomFixtures(t *testing.T) {
	for _, tc := range []struct {
		name string
		dir  string
	}{
		{"golden bloom", "../../testdata/golden/bloom"},
		{"docbloom-3m", "../../models/docbloom-3m"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join(tc.dir, "config.json"))
			if err != nil {
				t.Fatal(err)
			}
			var cfg struct {
				Hidden int    `json:"hidden_size"`
				Layers int    `json:"n_layer"`
				Vocab  int    `json:"vocab_size"`
				DType  string `json:"dtype"`
			}
			if err := json.Unmarshal(raw, &cfg); err != nil {
				t.Fatal(err)
			}
			wantDType := map[string]DType{"float32": F32, "bfloat16": BF16, "float16": F16}[cfg.DType]
			c := open(t, tc.dir)
			want := bloomShapes(cfg.Hidden, cfg.Layers, cfg.Vocab)
			if got := c.Names(); len(got) != len(want) {
				t.Errorf("%d tensors, config implies %d", len(got), len(want))
			}
			for name, shape := range want {
				info, ok := c.Info(name)
				if !ok {
					t.Errorf("missing %s", name)
					continue
				}
				if !slices.Equal(info.Shape, shape) || info.DType != wantDType {
					t.Errorf("%s: %s%v, want %s%v", name, info.DType, info.Shape, wantDType, shape)
				}
			}
			// Row slices agree with the whole decoded tensor.
			const emb = "transformer.word_embeddings.weight"
			all, err := c.Float32(emb)
			if err != nil {
				t.Fatal(err)
			}
			var nonzero int
			for _, v := range all {
				if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
					t.Fatalf("%s holds %v", emb, v)
				}
				if v != 0 {
					nonzero++
				}
			}
			if nonzero < len(all)/2 {
				t.Errorf("%s: only %d of %d values nonzero", emb, nonzero, len(all))
			}
			row, _ := c.Rows(emb, 7, 8)
			r, _ := DecodeFloat32(wantDType, row)
			if !slices.Equal(r, all[7*cfg.Hidden:8*cfg.Hidden]) {
				t.Error("Rows(7,8) disagrees with Float32")
			}
			if md := c.Metadata(); md["format"] != "pt" {
				t.Errorf("Metadata() = %v", md)
			}
		})
	}
	t.Run("docbloom word_embeddings", func(t *testing.T) {
		info, ok := open(t, "../../models/docbloom-3m/model.safetensors").Info("transformer.word_embeddings.weight")
		if !ok || info.DType != BF16 || !slices.Equal(info.Shape, []int{4096, 192}) {
			t.Errorf("got %+v", info)
		}
	})
}

// TestGoldenFixtures opens every checkpoint under testdata/golden and reads
// every tensor: the files are contiguous and every byte is accounted for.
func TestGoldenFixtures(t *testing.T) {
	paths, _ := filepath.Glob("../../testdata/golden/*/model.safetensors")
	paths = append(paths, "../../models/docbloom-3m/model.safetensors")
	if len(paths) < 2 {
		t.Fatalf("fixtures not found: %v", paths)
	}
	for _, p := range paths {
		t.Run(filepath.Base(filepath.Dir(p)), func(t *testing.T) {
			c := open(t, p)
			st, _ := os.Stat(p)
			var total, minOff int64 = 0, st.Size()
			for _, n := range c.Names() {
				info, _ := c.Info(n)
				b, err := c.Bytes(n)
				if err != nil || int64(len(b)) != info.Size {
					t.Fatalf("%s: %d bytes, %v", n, len(b), err)
				}
				if _, err := c.Float32(n); err != nil {
					t.Fatal(err)
				}
				total += info.Size
				minOff = min(minOff, info.Offset)
			}
			if minOff+total != st.Size() {
				t.Errorf("tensors cover %d bytes from %d; file is %d", total, minOff, st.Size())
			}
		})
	}
}
