package bloom_test

import (
	"path/filepath"
	"testing"

	_ "github.com/tessera-llm/tessera/kernels/cpu"
	_ "github.com/tessera-llm/tessera/worker/model/bloom"
	"github.com/tessera-llm/tessera/worker/model/modeltest"
)

func TestGoldenBloom(t *testing.T) {
	modeltest.CheckCausal(t, filepath.Join(modeltest.Root(t), "testdata/golden/bloom"))
}

// docbloom-3m stores bf16 weights; the golden was computed in float32 on them.
func TestGoldenDocBloom(t *testing.T) {
	modeltest.CheckCausal(t, filepath.Join(modeltest.Root(t), "models/docbloom-3m"))
}
