package all_test

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/tessera-llm/tessera/kernels"
	_ "github.com/tessera-llm/tessera/kernels/cpu"
	"github.com/tessera-llm/tessera/worker/model"
	_ "github.com/tessera-llm/tessera/worker/model/all"
	"github.com/tessera-llm/tessera/worker/model/modeltest"
)

// TestQ8Golden holds every causal fixture, loaded with --quantize q8, to
// the documented Q8_0 bound on the HF logits (modeltest.CheckQuantized).
func TestQ8Golden(t *testing.T) {
	for _, tc := range []struct{ name, dir string }{
		{"llama", "testdata/golden/llama"},
		{"bloom", "testdata/golden/bloom"},
		{"chatglm", "testdata/golden/chatglm"},
		{"docbloom-3m", "models/docbloom-3m"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, top1, rows := modeltest.CheckQuantized(t, filepath.Join(modeltest.Root(t), tc.dir), model.WithQuantize(kernels.Q8_0))
			t.Logf("%s q8: max relative logit error %.4f, top-1 agrees on %d of %d positions", tc.name, e, top1, rows)
		})
	}
}

// A backend without kernels.Quantizer refuses --quantize before reading
// anything, naming the backend.
func TestQuantizeNeedsQuantizer(t *testing.T) {
	dir := filepath.Join(modeltest.Root(t), "testdata/golden/llama")
	_, err := model.Load(dir, model.WithBackend(plainBackend{}), model.WithQuantize(kernels.Q8_0))
	if !errors.Is(err, kernels.ErrQuantize) {
		t.Fatalf("Load with a backend that cannot quantize: %v, want ErrQuantize", err)
	}
}

// plainBackend is a backend with no optional capabilities; Load must
// refuse before calling any of its ops.
type plainBackend struct{ kernels.Backend }

func (plainBackend) Name() string { return "plain" }
