package model_test

import (
	"fmt"

	_ "github.com/tessera-llm/tessera/kernels/cpu"
	"github.com/tessera-llm/tessera/worker/model"
	_ "github.com/tessera-llm/tessera/worker/model/all"
)

func ExampleLoad() {
	m, err := model.Load("../../testdata/golden/llama", model.WithCache(256, 16))
	if err != nil {
		fmt.Println(err)
		return
	}
	s := m.Spec()
	fmt.Printf("%s: %d layers, %d heads / %d kv heads, vocab %d\n", s.Arch, s.Layers, s.Heads, s.KVHeads, s.Vocab)
	// Output:
	// llama: 3 layers, 8 heads / 2 kv heads, vocab 774
}
