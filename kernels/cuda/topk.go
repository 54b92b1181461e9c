package cuda

import (
	"math"
	"unsafe"

	"github.com/tessera-llm/tessera/kernels"
)

var _ kernels.TopKer = (*Backend)(nil)

// topkThreads is the block size of ts_topk_lse (kernels/topk.cu).
const topkThreads = 1024

// TopK computes kernels.TopKRow for each row of logits [rows, n] on the
// device, one block per row; only rows·k entries and rows sums cross to the
// host instead of whole rows.
func (b *Backend) TopK(logits kernels.Tensor, offset, k int) []kernels.RowTopK {
	rows, n, k, err := kernels.TopKShape(logits, offset, k)
	if err != nil {
		panic("cuda." + err.Error())
	}
	t := f32("TopK", logits)
	out := make([]kernels.RowTopK, rows)
	if rows == 0 {
		return out
	}
	if n == 0 {
		for r := range out {
			out[r] = kernels.RowTopK{LSE: math.Inf(-1)}
		}
		return out
	}
	ids := make([]int32, rows*k)
	vals := make([]float32, rows*k)
	lse := make([]float64, rows)
	idBytes := int64(4 * rows * k)
	b.run(func(dv *device) error {
		if err := dv.grow(&dv.topk, 2*idBytes+int64(8*rows)); err != nil {
			return err
		}
		pi := dv.topk.ptr
		pv := pi + devPtr(idBytes)
		pl := pv + devPtr(idBytes)
		if err := dv.launch("ts_topk_lse", rows, 1, topkThreads, 0, pPtr(t.ptr()), pInt(n), pI64(n), pInt(k),
			pInt(offset), pPtr(pi), pPtr(pv), pPtr(pl)); err != nil {
			return err
		}
		if k > 0 {
			if err := dv.drv.dtoh(unsafe.Pointer(&ids[0]), pi, idBytes); err != nil {
				return err
			}
			if err := dv.drv.dtoh(unsafe.Pointer(&vals[0]), pv, idBytes); err != nil {
				return err
			}
		}
		return dv.drv.dtoh(unsafe.Pointer(&lse[0]), pl, int64(8*rows))
	}, t)
	for r := range out {
		out[r] = kernels.RowTopK{IDs: ids[r*k : (r+1)*k : (r+1)*k], Logits: vals[r*k : (r+1)*k : (r+1)*k], LSE: lse[r]}
	}
	return out
}
