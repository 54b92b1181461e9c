package spec_test

import (
	"fmt"

	"github.com/tessera-llm/tessera/shard/spec"
)

func ExampleParse() {
	s, err := spec.Parse([]byte(`{"model_type":"bloom","hidden_size":96,"n_layer":3,"n_head":12,"vocab_size":512}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(s.Arch, s.Layers, "layers,", s.Heads, "heads of", s.HeadDim, "dims,", s.Positions)
	fmt.Printf("%.4f\n", spec.ALiBiSlopes(s.Heads)[8:])
	// Output:
	// bloom 3 layers, 12 heads of 8 dims, alibi
	// [0.7071 0.3536 0.1768 0.0884]
}
