package engine_test

import (
	"context"
	"fmt"

	_ "github.com/tessera-llm/tessera/kernels/cpu"
	"github.com/tessera-llm/tessera/shard/topk"
	"github.com/tessera-llm/tessera/worker/engine"
	"github.com/tessera-llm/tessera/worker/model"
	_ "github.com/tessera-llm/tessera/worker/model/all"
)

func Example() {
	m, err := model.Load("../../models/docbloom-3m")
	if err != nil {
		fmt.Println(err)
		return
	}
	gen := engine.New(m.(model.CausalLM))
	// "Parameters\n----------\n" in docbloom's tokenizer.
	ids, _ := gen.Generate(context.Background(), []int32{694, 202, 675, 202}, 6,
		engine.SamplerFunc(topk.Argmax), nil, nil)
	fmt.Println(len(ids), "tokens")
	// Output:
	// 6 tokens
}
