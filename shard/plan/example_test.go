package plan_test

import (
	"fmt"

	"github.com/tessera-llm/tessera/shard/plan"
	"github.com/tessera-llm/tessera/shard/spec"
)

func Example() {
	s, err := spec.Parse([]byte(`{"model_type":"bloom","hidden_size":96,"n_layer":3,"n_head":12,"vocab_size":512}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	const MiB = 1 << 20
	workers := []plan.Worker{{ID: "a", Memory: 8 * MiB}, {ID: "b", Memory: 8 * MiB}, {ID: "c", Memory: 16 * MiB}, {ID: "d", Memory: 16 * MiB}}
	p, err := plan.New(s, workers, plan.WithShape(2, 2), plan.WithDTypeBytes(4))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Print(p)
	r := p.Stages[1].Ranks[0]
	fmt.Printf("stage 1 rank 0 slopes %.4f\n", r.ALiBiSlopes)
	rules, _ := plan.Rules(s.Arch)
	qkv, _, _ := spec.Lookup(rules, "transformer.h.2.self_attention.query_key_value.weight")
	fmt.Println("qkv rows", r.RowRanges(qkv, s), "cols", r.ColRange(qkv, s))
	// Output:
	// plan v1 bloom: 3 layers, 12 heads (12 kv) × 8, mlp 384, vocab 512; pp=2 tp=2, 4-byte weights
	// stage  layers  rank  worker  heads   kv      mlp        vocab      weights
	// 0      [0,1)   0     a       [0,6)   [0,6)   [0,192)    [0,256)    316.3 KiB
	// 0      [0,1)   1     b       [6,12)  [6,12)  [192,384)  [256,512)  315.6 KiB
	// 1      [1,3)   0     c       [0,6)   [0,6)   [0,192)    [0,256)    535.9 KiB
	// 1      [1,3)   1     d       [6,12)  [6,12)  [192,384)  [256,512)  534.4 KiB
	// stage 1 rank 0 slopes [0.5000 0.2500 0.1250 0.0625 0.0312 0.0156]
	// qkv rows [[0 144]] cols [0 96]
}
