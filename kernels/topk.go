package kernels

import (
	"container/heap"
	"fmt"
	"math"
)

// RowTopK is one logit row's contribution to a vocabulary-parallel sample:
// the k best entries of the row's vocabulary slice, best first, and the
// slice's log-sum-exp.
type RowTopK struct {
	// IDs are global token ids (the slice's offset added), Logits theirs.
	IDs    []int32
	Logits []float32
	// LSE is log Σ exp(logit) over the whole slice, in float64.
	LSE float64
}

// TopKer is a backend that reduces logits to their top k where they live,
// found by type assertion. A step's last stage then moves rows·k entries
// to the host instead of whole vocabulary rows (a BLOOM row is 250k
// floats). The result equals TopKRow over each row of the tensor.
type TopKer interface {
	// TopK returns, for each row of logits [rows, n], the row's k best
	// entries (ids offset by offset) and its log-sum-exp. Logits must not
	// be NaN; -Inf (a masked token) is fine.
	TopK(logits Tensor, offset, k int) []RowTopK
}

// TopKShape checks TopK's arguments and returns the rows and row length of
// logits and k clamped to the row length. Every backend's TopK starts here.
func TopKShape(logits Tensor, offset, k int) (rows, n, kk int, err error) {
	shape := logits.Shape()
	if logits.DType() != F32 || len(shape) == 0 {
		return 0, 0, 0, fmt.Errorf("TopK wants F32 logits [rows, n], got %v%v", logits.DType(), shape)
	}
	if offset < 0 || k < 0 {
		return 0, 0, 0, fmt.Errorf("TopK: offset %d and k %d must be ≥ 0", offset, k)
	}
	rows = 1
	for _, d := range shape[:len(shape)-1] {
		rows *= d
	}
	n = shape[len(shape)-1]
	return rows, n, min(k, n), nil
}

// TopKRow is TopK for one row on the host, the reference every backend's
// TopK matches exactly: the k best entries of logits (all of them when the
// row is shorter), ordered by logit descending with ties to the lower id
// (torch.argmax's first-max rule), and the log-sum-exp in float64, -Inf
// when every logit is -Inf.
func TopKRow(logits []float32, offset, k int) RowTopK {
	k = max(0, min(k, len(logits)))
	r := RowTopK{LSE: math.Inf(-1)}
	if len(logits) == 0 {
		return r
	}
	// One pass for the maximum and the top k (a min-heap of the k best
	// indices, its root the worst), one for the sum of exponentials.
	h := topHeap{logits: logits, idx: make([]int32, 0, k)}
	mx := logits[0]
	for i := range k {
		mx = max(mx, logits[i])
		heap.Push(&h, int32(i))
	}
	// worst is the root's logit; scanning in id order, an equal logit never
	// beats the root, which has the lower id.
	worst := float32(math.Inf(1))
	if k > 0 {
		worst = logits[h.idx[0]]
	}
	for i := k; i < len(logits); i++ {
		v := logits[i]
		mx = max(mx, v)
		if v > worst {
			h.idx[0] = int32(i)
			heap.Fix(&h, 0)
			worst = logits[h.idx[0]]
		}
	}
	r.IDs = make([]int32, len(h.idx))
	r.Logits = make([]float32, len(h.idx))
	for n := len(h.idx) - 1; n >= 0; n-- {
		i := heap.Pop(&h).(int32)
		r.IDs[n] = int32(offset) + i
		r.Logits[n] = logits[i]
	}
	if math.IsInf(float64(mx), -1) {
		return r // every token masked
	}
	m := float64(mx)
	// Four accumulators break the dependency chain of the sum.
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(logits); i += 4 {
		s0 += math.Exp(float64(logits[i]) - m)
		s1 += math.Exp(float64(logits[i+1]) - m)
		s2 += math.Exp(float64(logits[i+2]) - m)
		s3 += math.Exp(float64(logits[i+3]) - m)
	}
	for ; i < len(logits); i++ {
		s0 += math.Exp(float64(logits[i]) - m)
	}
	r.LSE = m + math.Log((s0+s1)+(s2+s3))
	return r
}

// topHeap is a min-heap of slice indices under the "worse" order: a lower
// logit, or an equal logit and a higher index.
type topHeap struct {
	logits []float32
	idx    []int32
}

func (h *topHeap) Len() int { return len(h.idx) }
func (h *topHeap) Less(a, b int) bool {
	x, y := h.logits[h.idx[a]], h.logits[h.idx[b]]
	return x < y || (x == y && h.idx[a] > h.idx[b])
}
func (h *topHeap) Swap(a, b int) { h.idx[a], h.idx[b] = h.idx[b], h.idx[a] }
func (h *topHeap) Push(x any)    { h.idx = append(h.idx, x.(int32)) }
func (h *topHeap) Pop() any {
	x := h.idx[len(h.idx)-1]
	h.idx = h.idx[:len(h.idx)-1]
	return x
}
