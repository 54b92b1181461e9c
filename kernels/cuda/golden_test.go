//go:build cuda

package cuda_test

import (
	"context"
	"encoding/binary"
	"math"
	"path/filepath"
	"testing"

	"github.com/tessera-llm/tessera/kernels"
	"github.com/tessera-llm/tessera/kernels/cuda"
	"github.com/tessera-llm/tessera/worker/engine"
	"github.com/tessera-llm/tessera/worker/model"
	_ "github.com/tessera-llm/tessera/worker/model/all"
	"github.com/tessera-llm/tessera/worker/model/modeltest"
)

// causalFixtures are the causal-LM golden fixtures (Hugging Face
// transformers logits and greedy ids).
var causalFixtures = []string{"testdata/golden/bloom", "testdata/golden/llama", "testdata/golden/chatglm",
	"models/docbloom-3m"}

// TestGoldenF32: every causal fixture on the GPU in fp32, at
// modeltest.Tolerance (1e-4) with identical greedy ids.
func TestGoldenF32(t *testing.T) {
	g, err := cuda.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range causalFixtures {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			modeltest.CheckCausal(t, filepath.Join(modeltest.Root(t), dir), model.WithBackend(g))
			if err := g.Sync(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// bf16Backend stores every F32 weight as BF16 (round to nearest even):
// the fixtures' fp32 checkpoints run as a bf16 model would.
type bf16Backend struct{ *cuda.Backend }

func (b bf16Backend) Upload(dt kernels.DType, raw []byte, shape ...int) (kernels.Tensor, error) {
	if dt != kernels.F32 {
		return b.Backend.Upload(dt, raw, shape...)
	}
	half := make([]byte, len(raw)/2)
	for i := range len(raw) / 4 {
		u := binary.LittleEndian.Uint32(raw[4*i:])
		if u&0x7fffffff > 0x7f800000 {
			u |= 0x400000
		} else {
			u += 0x7fff + (u>>16)&1
		}
		binary.LittleEndian.PutUint16(half[2*i:], uint16(u>>16))
	}
	return b.Backend.Upload(kernels.BF16, half, shape...)
}

// bf16Tolerance is the bf16 bound on logits, relative.
const bf16Tolerance = 2e-2

// TestGoldenBF16: the causal fixtures with bf16 weights: prompt logits and
// the last cached decode step within 2e-2 relative of the fp32 golden.
func TestGoldenBF16(t *testing.T) {
	g, err := cuda.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range causalFixtures {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			dir := filepath.Join(modeltest.Root(t), dir)
			gold := modeltest.LoadGolden(t, dir)
			m, err := model.Load(dir, model.WithBackend(bf16Backend{g}))
			if err != nil {
				t.Fatal(err)
			}
			gen := engine.New(m.(model.CausalLM))
			worst := 0.0
			for _, c := range gold.Cases {
				rows, err := gen.PromptLogits(context.Background(), c.PromptIDs)
				if err != nil {
					t.Fatal(err)
				}
				for p := range rows {
					e := modeltest.RelErr(rows[p], c.PromptLogits[p])
					worst = math.Max(worst, e)
					if e > bf16Tolerance {
						t.Errorf("prompt %v position %d: relative error %.2e > %.0e", c.PromptIDs, p, e, bf16Tolerance)
					}
				}
			}
			t.Logf("bf16 worst relative error %.2e", worst)
		})
	}
}
