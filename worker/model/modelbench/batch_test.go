package modelbench_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/tessera-llm/tessera/kernels/cpu"
	"github.com/tessera-llm/tessera/worker/model"
	_ "github.com/tessera-llm/tessera/worker/model/llama"
	"github.com/tessera-llm/tessera/worker/model/modelbench"
	"github.com/tessera-llm/tessera/worker/model/modeltest"
)

func TestBatchDecode(t *testing.T) {
	be := cpu.New()
	const batch, prefix, steps = 3, 5, 2
	m, err := model.Load(filepath.Join(modeltest.Root(t), "testdata", "golden", "llama"), model.WithBackend(be),
		model.WithCache(modelbench.CacheTokens(batch, prefix, steps, 4), 4))
	if err != nil {
		t.Fatal(err)
	}
	lm := m.(model.CausalLM)
	free := lm.Cache().FreeBlocks()
	for _, tc := range []struct {
		name                  string
		batch, context, steps int
		ok                    bool
	}{
		{"fits", batch, prefix, steps, true},
		{"one sequence", 1, prefix, steps, true},
		{"no steps", batch, prefix, 0, false},
		{"no batch", 0, prefix, steps, false},
		{"cache too small", batch + 2, prefix, steps, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := modelbench.BatchDecode(context.Background(), lm, be, tc.batch, tc.context, tc.steps)
			if (err == nil) != tc.ok {
				t.Fatalf("BatchDecode(%d, %d, %d) = %v, want ok %v", tc.batch, tc.context, tc.steps, err, tc.ok)
			}
			if tc.ok && (r.Batch != tc.batch || !(r.TokensPerS > 0)) {
				t.Errorf("result %+v, want batch %d and a positive rate", r, tc.batch)
			}
			if got := lm.Cache().FreeBlocks(); got != free {
				t.Errorf("%d free cache blocks after BatchDecode, %d before: sequences not released", got, free)
			}
		})
	}
}
