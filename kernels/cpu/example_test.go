package cpu_test

import (
	"fmt"

	"github.com/tessera-llm/tessera/kernels/cpu"
)

// MatMul computes x·wᵀ + bias with w in Hugging Face's [out, in] layout.
func Example() {
	b := cpu.New()
	x := b.FromFloat32([]float32{
		1, 2, 3,
		4, 5, 6,
	}, 2, 3)
	w := b.FromFloat32([]float32{
		1, 0, 0, // picks x[:,0]
		0, 1, 1, // x[:,1] + x[:,2]
	}, 2, 3)
	bias := b.FromFloat32([]float32{0.5, -1}, 2)
	dst := b.Alloc(2, 2)
	b.MatMul(dst, x, w, bias)
	fmt.Println(cpu.Data(dst))
	// Output: [1.5 4 4.5 10]
}
