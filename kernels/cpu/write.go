package cpu

import (
	"fmt"

	"github.com/tessera-llm/tessera/kernels"
)

// Write copies src into the float32 tensor t.
func (b *Backend) Write(t kernels.Tensor, src []float32) {
	dst := Data(t)
	if len(src) != len(dst) {
		panic(fmt.Sprintf("cpu.Write: src has %d elements, tensor %v has %d", len(src), t, len(dst)))
	}
	copy(dst, src)
}
