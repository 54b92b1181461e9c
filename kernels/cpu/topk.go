package cpu

import "github.com/tessera-llm/tessera/kernels"

var _ kernels.TopKer = (*Backend)(nil)

// TopK is kernels.TopKRow over each row of logits [rows, n]; the logits
// already live on the host, so this is the reference itself.
func (b *Backend) TopK(logits kernels.Tensor, offset, k int) []kernels.RowTopK {
	rows, n, k, err := kernels.TopKShape(logits, offset, k)
	if err != nil {
		panic("cpu." + err.Error())
	}
	data := tensor("TopK", logits).F32
	out := make([]kernels.RowTopK, rows)
	for r := range out {
		out[r] = kernels.TopKRow(data[r*n:(r+1)*n], offset, k)
	}
	return out
}
