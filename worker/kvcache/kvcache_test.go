package kvcache

import (
	"testing"

	"github.com/tessera-llm/tessera/kernels"
	_ "github.com/tessera-llm/tessera/kernels/cpu"
)

func TestInvalidGeometry(t *testing.T) {
	b, _ := kernels.Open("cpu")
	if _, err := New(b, 1, 1, 4, 0, 8); err == nil {
		t.Fatal("block size 0 accepted")
	}
}
