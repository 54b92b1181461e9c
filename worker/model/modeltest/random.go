package modeltest

import (
	"testing"

	"github.com/tessera-llm/tessera/worker/model/modelbench"
	"github.com/tessera-llm/tessera/worker/weights"
)

// LlamaShape is a LLaMA geometry for random checkpoints.
type LlamaShape = modelbench.LlamaShape

// WriteRandomLlama writes config.json and a random model.safetensors in
// dt to dir: weights for benchmarks, of any size, made on the spot.
func WriteRandomLlama(tb testing.TB, dir string, s LlamaShape, dt weights.DType) {
	tb.Helper()
	if err := modelbench.WriteRandomLlama(dir, s, dt, 1); err != nil {
		tb.Fatal(err)
	}
}
