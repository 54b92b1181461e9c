package chatglm_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/tessera-llm/tessera/kernels/cpu"
	"github.com/tessera-llm/tessera/worker/engine"
	"github.com/tessera-llm/tessera/worker/kvcache"
	"github.com/tessera-llm/tessera/worker/model"
	_ "github.com/tessera-llm/tessera/worker/model/chatglm"
	"github.com/tessera-llm/tessera/worker/model/modeltest"
)

func TestGoldenChatGLM(t *testing.T) {
	modeltest.CheckCausal(t, filepath.Join(modeltest.Root(t), "testdata/golden/chatglm"))
}

// Small blocks put the prefix and the generated tokens in different blocks.
func TestGoldenChatGLMSmallBlocks(t *testing.T) {
	modeltest.CheckCausal(t, filepath.Join(modeltest.Root(t), "testdata/golden/chatglm"), model.WithCache(64, 4))
}

func TestPromptNeedsMaskThenBOS(t *testing.T) {
	m, err := model.Load(filepath.Join(modeltest.Root(t), "testdata/golden/chatglm"))
	if err != nil {
		t.Fatal(err)
	}
	gen := engine.New(m.(model.CausalLM))
	for _, tc := range []struct {
		name    string
		prompt  []int32
		mention string
	}{
		{"no bos", []int32{40, 41, 5}, "no <bos>"},
		{"no mask", []int32{40, 41, 1}, "[gMASK]"},
		{"mask not last", []int32{40, 5, 41, 1}, "right before <bos>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := gen.PromptLogits(context.Background(), tc.prompt)
			if !errors.Is(err, model.ErrBadBatch) || !strings.Contains(err.Error(), tc.mention) {
				t.Fatalf("err = %v, want ErrBadBatch mentioning %q", err, tc.mention)
			}
		})
	}
	// The [MASK] token ends a blank-infilling prefix the same way.
	if _, err := gen.PromptLogits(context.Background(), []int32{40, 41, 4, 1}); err != nil {
		t.Fatalf("[MASK] before <bos>: %v", err)
	}
}

func TestDecodeAllocatesNothing(t *testing.T) {
	m, err := model.Load(filepath.Join(modeltest.Root(t), "testdata/golden/chatglm"))
	if err != nil {
		t.Fatal(err)
	}
	modeltest.CheckDecodeAllocs(t, m.(model.CausalLM), &kvcache.Seq{}, []int32{40, 41, 5, 1})
}
