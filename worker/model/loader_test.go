package model_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tessera-llm/tessera/worker/model"
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
