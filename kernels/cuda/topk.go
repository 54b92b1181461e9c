//go:build cuda

package cuda

import (
	"fmt"
	"math"
	"unsafe"

	"github.com/tessera-llm/tessera/kernels"
	"github.com/tessera-llm/tessera/shard/topk"
	"gorgonia.org/cu"
)

// TopK computes, for each row of logits [rows, len] (a vocabulary slice
// starting at global id offset), what topk.Local computes on the host:
// the k best entries (logit descending, ties to the lower id; all of them
// when the slice is shorter) and the slice's log-sum-exp in float64. Only
// rows·k entries and rows sums cross to the host instead of whole rows.
// Logits must not be NaN.
func (b *Backend) TopK(logits kernels.Tensor, offset, k int) []topk.Partial {
	t := f32("TopK", logits)
	if len(t.shape) == 0 {
		panic(fmt.Sprintf("cuda.TopK: scalar logits %v", t))
	}
	n := lastDim(t)
	rows := 0
	if n > 0 {
		rows = t.n / n
	}
	k = max(0, min(k, n))
	parts := make([]topk.Partial, rows)
	for r := range parts {
		parts[r] = topk.Partial{Offset: offset, Len: n, LSE: math.Inf(-1),
			IDs: make([]int32, k), Logits: make([]float32, k)}
	}
	if rows == 0 || n == 0 {
		return parts
	}
	ids := make([]int32, rows*k)
	vals := make([]float32, rows*k)
	lse := make([]float64, rows)
	idBytes, valBytes := int64(4*rows*k), int64(4*rows*k)
	b.run(func(dv *device) error {
		if err := dv.grow(&dv.topk, idBytes+valBytes+int64(8*rows)); err != nil {
			return err
		}
		pi := dv.topk.ptr
		pv := pi + cu.DevicePtr(idBytes)
		pl := pv + cu.DevicePtr(valBytes)
		if err := dv.launch("ts_topk_lse", rows, 1, 1024, 0, pPtr(t.ptr()), pInt(n), pI64(n), pInt(k),
			pInt(offset), pPtr(pi), pPtr(pv), pPtr(pl)); err != nil {
			return err
		}
		if k > 0 {
			if err := cu.MemcpyDtoH(unsafe.Pointer(&ids[0]), pi, idBytes); err != nil {
				return err
			}
			if err := cu.MemcpyDtoH(unsafe.Pointer(&vals[0]), pv, valBytes); err != nil {
				return err
			}
		}
		return cu.MemcpyDtoH(unsafe.Pointer(&lse[0]), pl, int64(8*rows))
	}, t)
	for r := range parts {
		copy(parts[r].IDs, ids[r*k:])
		copy(parts[r].Logits, vals[r*k:])
		parts[r].LSE = lse[r]
	}
	return parts
}
