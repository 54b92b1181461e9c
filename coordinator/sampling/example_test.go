package sampling_test

import (
	"fmt"

	"github.com/tessera-llm/tessera/coordinator/sampling"
)

func Example() {
	logits := []float32{0.1, 2.5, -1, 2.4}
	fmt.Println("greedy:", sampling.Greedy(logits))

	// Top-k 1 leaves only the best token whatever the temperature.
	s, _ := sampling.New(sampling.Params{Temperature: 1.5, TopK: 1, Seed: 7})
	fmt.Println("top-1:", s.Sample(logits))
	// Output:
	// greedy: 1
	// top-1: 1
}
