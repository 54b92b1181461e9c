package llama_test

import (
	"path/filepath"
	"testing"

	_ "github.com/tessera-llm/tessera/kernels/cpu"
	_ "github.com/tessera-llm/tessera/worker/model/llama"
	"github.com/tessera-llm/tessera/worker/model/modeltest"
)

func TestGoldenLlama(t *testing.T) {
	modeltest.CheckCausal(t, filepath.Join(modeltest.Root(t), "testdata/golden/llama"))
}
