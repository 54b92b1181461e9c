package bert_test

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"

	_ "github.com/tessera-llm/tessera/kernels/cpu"
	"github.com/tessera-llm/tessera/worker/model"
	_ "github.com/tessera-llm/tessera/worker/model/bert"
	"github.com/tessera-llm/tessera/worker/model/modeltest"
	"github.com/tessera-llm/tessera/worker/weights"
)

func load(t *testing.T) (model.MaskedLM, modeltest.EncoderGolden) {
	t.Helper()
	dir := filepath.Join(modeltest.Root(t), "testdata/golden/bert")
	var g modeltest.EncoderGolden
	mlm, ok := modeltest.Load(t, dir, &g).(model.MaskedLM)
	if !ok {
		t.Fatal("bert is not a model.MaskedLM")
	}
	return mlm, g
}

func TestGoldenBert(t *testing.T) {
	m, g := load(t)
	ctx := context.Background()
	for i, c := range g.Cases {
		t.Run(string(rune('a'+i)), func(t *testing.T) {
			in := model.EncoderInput{IDs: c.InputIDs, TypeIDs: c.TokenTypeIDs}
			enc, err := m.Encode(ctx, in)
			if err != nil {
				t.Fatal(err)
			}
			modeltest.CheckRows(t, "last_hidden_state", enc.Hidden, c.LastHiddenState)
			mean := make([]float64, len(c.LastHiddenState[0]))
			for _, row := range c.LastHiddenState {
				for j, v := range row {
					mean[j] += v / float64(len(c.LastHiddenState))
				}
			}
			modeltest.CheckRows(t, "mean", [][]float32{enc.Mean()}, [][]float64{mean})
			if enc.Pooled != nil {
				t.Errorf("BertForMaskedLM has no pooler, got a pooled output")
			}
			logits, err := m.MaskedLogits(ctx, in, nil)
			if err != nil {
				t.Fatal(err)
			}
			modeltest.CheckRows(t, "mlm_logits", logits, c.MLMLogits)
			// Selected positions give the same rows.
			last := len(c.InputIDs) - 1
			some, err := m.MaskedLogits(ctx, in, []int{last, 0})
			if err != nil {
				t.Fatal(err)
			}
			modeltest.CheckRows(t, "mlm_logits at [last 0]", some, [][]float64{c.MLMLogits[last], c.MLMLogits[0]})
		})
	}
}

func TestBadInput(t *testing.T) {
	m, _ := load(t)
	ctx := context.Background()
	for name, in := range map[string]model.EncoderInput{
		"empty":           {},
		"type count":      {IDs: []int32{2, 3}, TypeIDs: []int32{0}},
		"type range":      {IDs: []int32{2, 3}, TypeIDs: []int32{0, 2}},
		"id range":        {IDs: []int32{2, 800}},
		"too long for it": {IDs: make([]int32, 129)},
	} {
		if _, err := m.Encode(ctx, in); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := m.MaskedLogits(ctx, model.EncoderInput{IDs: []int32{2, 3}}, []int{2}); !errors.Is(err, model.ErrBadBatch) {
		t.Errorf("position out of range: err = %v", err)
	}
	// The model still works after errors.
	if _, err := m.Encode(ctx, model.EncoderInput{IDs: []int32{2, 3}}); err != nil {
		t.Fatal(err)
	}
}

// TestPooler adds pooler weights to the golden checkpoint and checks the
// pooled output against tanh(W·h[0] + b) computed from the hidden state.
func TestPooler(t *testing.T) {
	src := filepath.Join(modeltest.Root(t), "testdata/golden/bert")
	dir := t.TempDir()
	cfg, err := os.ReadFile(filepath.Join(src, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	ckpt, err := weights.Open(filepath.Join(src, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer ckpt.Close()
	var tensors []weights.WriteTensor
	for _, name := range ckpt.Names() {
		info, _ := ckpt.Info(name)
		raw, err := ckpt.Bytes(name)
		if err != nil {
			t.Fatal(err)
		}
		tensors = append(tensors, weights.WriteTensor{Name: name, DType: info.DType, Shape: info.Shape, Data: raw})
	}
	const h = 64
	w, bias := make([]float32, h*h), make([]float32, h)
	for i := range w {
		w[i] = float32(math.Sin(float64(i))) * 0.2
	}
	for i := range bias {
		bias[i] = float32(math.Cos(float64(i))) * 0.1
	}
	for _, p := range []struct {
		name  string
		v     []float32
		shape []int
	}{{"bert.pooler.dense.weight", w, []int{h, h}}, {"bert.pooler.dense.bias", bias, []int{h}}} {
		raw, err := weights.EncodeFloat32("F32", p.v)
		if err != nil {
			t.Fatal(err)
		}
		tensors = append(tensors, weights.WriteTensor{Name: p.name, DType: "F32", Shape: p.shape, Data: raw})
	}
	if err := weights.Write(filepath.Join(dir, "model.safetensors"), tensors, nil); err != nil {
		t.Fatal(err)
	}
	m, err := model.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := m.(model.Encoder).Encode(context.Background(), model.EncoderInput{IDs: []int32{2, 100, 4, 200, 3}})
	if err != nil {
		t.Fatal(err)
	}
	want := make([]float64, h)
	for o := range want {
		sum := float64(bias[o])
		for i, v := range enc.Hidden[0] {
			sum += float64(w[o*h+i]) * float64(v)
		}
		want[o] = math.Tanh(sum)
	}
	modeltest.CheckRows(t, "pooled", [][]float32{enc.Pooled}, [][]float64{want})
}
