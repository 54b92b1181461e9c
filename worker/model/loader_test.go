package model_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tessera-llm/tessera/worker/model"
	"github.com/tessera-llm/tessera/worker/model/modelbench"
	"github.com/tessera-llm/tessera/worker/weights"
)

// rewrite copies the golden BLOOM into a temp dir, letting edit change its tensors.
func rewrite(t *testing.T, edit func(ts []weights.WriteTensor) []weights.WriteTensor) string {
	t.Helper()
	src := "../../testdata/golden/bloom"
	ck, err := weights.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	var ts []weights.WriteTensor
	for _, n := range ck.Names() {
		info, _ := ck.Info(n)
		raw, err := ck.Bytes(n)
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, weights.WriteTensor{Name: n, DType: info.DType, Shape: info.Shape, Data: append([]byte(nil), raw...)})
	}
	dir := t.TempDir()
	cfg, _ := os.ReadFile(filepath.Join(src, "config.json"))
	if err := os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := weights.Write(filepath.Join(dir, "model.safetensors"), edit(ts), nil); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestLoadRejectsBadTensors(t *testing.T) {
	const target = "transformer.h.1.mlp.dense_h_to_4h.weight"
	cases := []struct {
		name    string
		edit    func(ts []weights.WriteTensor) []weights.WriteTensor
		mention string
	}{
		{"missing", func(ts []weights.WriteTensor) []weights.WriteTensor {
			out := ts[:0]
			for _, x := range ts {
				if x.Name != target {
					out = append(out, x)
				}
			}
			return out
		}, "missing"},
		{"wrong shape", func(ts []weights.WriteTensor) []weights.WriteTensor {
			for i := range ts {
				if ts[i].Name == target {
					ts[i].Shape = []int{ts[i].Shape[1], ts[i].Shape[0]}
				}
			}
			return ts
		}, "shape"},
		{"integer dtype", func(ts []weights.WriteTensor) []weights.WriteTensor {
			for i := range ts {
				if ts[i].Name == target {
					ts[i].DType = "I32"
				}
			}
			return ts
		}, "I32"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := model.Load(rewrite(t, tc.edit))
			if !errors.Is(err, model.ErrWeights) {
				t.Fatalf("err = %v, want ErrWeights", err)
			}
			if !strings.Contains(err.Error(), target) || !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("error %q should name %s and mention %q", err, target, tc.mention)
			}
		})
	}
}

func TestLoadReportsProgress(t *testing.T) {
	var last model.Progress
	calls := 0
	_, err := model.Load("../../testdata/golden/bloom", model.WithProgress(func(p model.Progress) {
		calls++
		if p.Tensors < last.Tensors || p.Bytes < last.Bytes {
			t.Errorf("progress went backwards: %+v after %+v", p, last)
		}
		last = p
	}))
	if err != nil {
		t.Fatal(err)
	}
	if calls == 0 || last.Tensors != last.TotalTensors || last.Bytes != last.TotalBytes {
		t.Fatalf("%d progress calls, last %+v: want it to end at the totals", calls, last)
	}
}

// TestConfigAgainstCheckpoint: a config.json whose sizes the checkpoint
// contradicts fails before anything is allocated in proportion to them,
// with an error naming the size, fast and in little memory.
func TestConfigAgainstCheckpoint(t *testing.T) {
	cases := []struct {
		name, fixture, field string
		value                float64
		want                 string
	}{
		{"bloom 1e8 layers", "bloom", "n_layer", 1e8, "layer count 100000000"},
		{"bloom 2e9 layers", "bloom", "n_layer", 2e9, "layer count 2000000000"},
		{"llama 1e8 layers", "llama", "num_hidden_layers", 1e8, "layer count 100000000"},
		{"llama one layer too many", "llama", "num_hidden_layers", 4, "checkpoint's tensors hold 3 layers"},
		{"llama one layer too few", "llama", "num_hidden_layers", 2, "checkpoint's tensors hold 3 layers"},
		{"llama 2e9 wide mlp", "llama", "intermediate_size", 2e9, "intermediate size 2000000000"},
		{"llama wider mlp", "llama", "intermediate_size", 192, "config implies"},
		{"bert 1e8 layers", "bert", "num_hidden_layers", 1e8, "layer count 100000000"},
		{"marian 1e8 encoder layers", "transformer-marian", "encoder_layers", 1e8, "encoder_layers 100000000"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := filepath.Join("../../testdata/golden", tc.fixture)
			dir := t.TempDir()
			raw, err := os.ReadFile(filepath.Join(src, "config.json"))
			if err != nil {
				t.Fatal(err)
			}
			var cfg map[string]any
			if err := json.Unmarshal(raw, &cfg); err != nil {
				t.Fatal(err)
			}
			cfg[tc.field] = tc.value
			raw, _ = json.Marshal(cfg)
			if err := os.WriteFile(filepath.Join(dir, "config.json"), raw, 0o644); err != nil {
				t.Fatal(err)
			}
			abs, _ := filepath.Abs(filepath.Join(src, "model.safetensors"))
			if err := os.Symlink(abs, filepath.Join(dir, "model.safetensors")); err != nil {
				t.Fatal(err)
			}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			start := time.Now()
			_, err = model.Load(dir, model.WithCache(64, 16))
			took := time.Since(start)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, model.ErrConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("load: %v, want ErrConfig naming %q", err, tc.want)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 100<<20 {
				t.Errorf("allocated %d MiB before failing", alloc>>20)
			}
			if took > time.Second {
				t.Errorf("took %v to fail", took)
			}
		})
	}
}

// TestLoadCopiesWeightsOnce: loading allocates about the weights' bytes
// once (Upload's copy from the mapped checkpoint), not a staging copy as
// well: garbage the size of the shard would raise the RSS after a load.
func TestLoadCopiesWeightsOnce(t *testing.T) {
	dir := t.TempDir()
	s := modelbench.LlamaShape{Hidden: 256, Layers: 4, Heads: 8, KVHeads: 2, Inter: 512, Vocab: 4096}
	if err := modelbench.WriteRandomLlama(dir, s, weights.BF16, 1); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, weights.SingleFileName))
	if err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	m, err := model.Load(dir, model.WithCache(16, 16))
	if err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(m)
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("%d bytes allocated loading %d bytes of weights", alloc, st.Size())
	if float64(alloc) > 1.3*float64(st.Size()) {
		t.Errorf("loading %d bytes of weights allocated %d bytes: more than one copy", st.Size(), alloc)
	}
}
