package nn

import (
	"context"
	"fmt"
	"slices"

	"github.com/tessera-llm/tessera/kernels"
	"github.com/tessera-llm/tessera/worker/kvcache"
	"github.com/tessera-llm/tessera/worker/model"
)

// Dims are the widths a workspace needs.
type Dims struct {
	Hidden  int
	QWidth  int // heads × head dim
	KVWidth int // kv heads × head dim
	FFN     int // MLP inner width
	Streams int // position streams (1 for most models)
}

// Workspace is the scratch memory of one forward pass. Its tensors are
// views of buffers that only grow, rebuilt when the batch layout changes,
// so a steady decode loop allocates nothing.
type Workspace struct {
	b    kernels.Backend
	dims Dims
	cap  int
	full struct{ x, h, a, q, k, v, ctx, up, gate, sel kernels.Tensor }

	// Views for the current batch, [n, width].
	X, H, A, Q, K, V, Ctx, Up, Gate kernels.Tensor
	// Sel holds the rows that need logits, [rows, hidden].
	Sel kernels.Tensor
	// Pos holds each position stream, one entry per batch token.
	Pos [][]int32
	// Memory is the encoder output cross-attention reads; encoder-decoder
	// models set it before each run.
	Memory Memory

	spans   []spanView
	selRows []int32
	// proj holds project's operands for the duration of one call.
	proj struct {
		dst, w, b [maxProjections]kernels.Tensor
	}
	layout []layoutKey
	n      int

	// A tensor-parallel rank all-reduces its partial sums through comm;
	// the first failure is kept in err and later reductions are skipped.
	comm model.Comm
	ctx  context.Context
	err  error
	host []float32
}

type spanView struct {
	seq          *kvcache.Seq
	n            int
	q, k, v, ctx kernels.Tensor
	att          kernels.Attention
}

type layoutKey struct {
	n   int
	all bool
}

// NewWorkspace makes an empty workspace; Prepare sizes it.
func NewWorkspace(b kernels.Backend, d Dims) *Workspace {
	d.Streams = max(d.Streams, 1)
	return &Workspace{b: b, dims: d, Pos: make([][]int32, d.Streams)}
}

// Prepare reserves cache blocks for the batch and lays out the views.
// Stream 0 of Pos is filled with each token's position in its sequence;
// architectures with other streams fill them after Prepare.
func (ws *Workspace) Prepare(batch *model.Batch, cache *kvcache.Cache, maxPositions int) error {
	n := len(batch.Tokens)
	for i, sp := range batch.Spans {
		for _, other := range batch.Spans[:i] {
			if other.Seq == sp.Seq {
				return fmt.Errorf("%w: a sequence appears twice in one batch", model.ErrBadBatch)
			}
		}
		if maxPositions > 0 && sp.Seq.Len+sp.N > maxPositions {
			return fmt.Errorf("%w: %d tokens, the model supports %d", model.ErrContextFull, sp.Seq.Len+sp.N, maxPositions)
		}
		if err := cache.Reserve(sp.Seq, sp.N); err != nil {
			return fmt.Errorf("%w: %w", model.ErrContextFull, err)
		}
	}
	if n > ws.cap {
		ws.grow(n)
	}
	if !ws.sameLayout(batch) {
		ws.relayout(batch)
	}
	// Sequences differ per step even when the layout does not.
	off := 0
	for i, sp := range batch.Spans {
		ws.spans[i].seq = sp.Seq
		for j := range sp.N {
			ws.Pos[0][off+j] = int32(sp.Seq.Len + j)
		}
		off += sp.N
	}
	return nil
}

// begin starts a forward pass whose reductions go through comm.
func (ws *Workspace) begin(ctx context.Context, comm model.Comm) {
	ws.ctx, ws.comm, ws.err = ctx, comm, nil
}

// AllReduce sums t across the stage's ranks in place; unsharded it does
// nothing. A failure is kept for the decoder to report after the layer.
func (ws *Workspace) AllReduce(t kernels.Tensor) {
	if ws.comm == nil || ws.err != nil {
		return
	}
	n := t.Len()
	if cap(ws.host) < n {
		ws.host = make([]float32, n)
	}
	buf := ws.host[:n]
	ws.b.Read(t, buf)
	if err := ws.comm.AllReduce(ws.ctx, buf); err != nil {
		ws.err = fmt.Errorf("all-reduce: %w", err)
		return
	}
	ws.b.Write(t, buf)
}

// Commit advances every span's sequence past the tokens just run.
func (ws *Workspace) Commit() {
	for i := range ws.spans {
		ws.spans[i].seq.Len += ws.spans[i].n
	}
}

// Spans lets an architecture read each span's sequence and token range.
func (ws *Workspace) Spans(f func(seq *kvcache.Seq, first, n int)) {
	off := 0
	for _, sp := range ws.spans {
		f(sp.seq, off, sp.n)
		off += sp.n
	}
}

func (ws *Workspace) grow(n int) {
	n = max(n, 2*ws.cap)
	d, b := ws.dims, ws.b
	ws.cap = n
	ws.full.x = b.Alloc(n, d.Hidden)
	ws.full.h = b.Alloc(n, d.Hidden)
	ws.full.a = b.Alloc(n, d.Hidden)
	ws.full.q = b.Alloc(n, d.QWidth)
	ws.full.k = b.Alloc(n, d.KVWidth)
	ws.full.v = b.Alloc(n, d.KVWidth)
	ws.full.ctx = b.Alloc(n, d.QWidth)
	ws.full.up = b.Alloc(n, d.FFN)
	ws.full.gate = b.Alloc(n, d.FFN)
	ws.full.sel = b.Alloc(n, d.Hidden)
	for i := range ws.Pos {
		ws.Pos[i] = make([]int32, n)
	}
	ws.layout = nil
}

func (ws *Workspace) sameLayout(batch *model.Batch) bool {
	if len(ws.layout) != len(batch.Spans) {
		return false
	}
	for i, sp := range batch.Spans {
		if ws.layout[i] != (layoutKey{sp.N, sp.AllLogits}) {
			return false
		}
	}
	return true
}

func (ws *Workspace) relayout(batch *model.Batch) {
	b, f := ws.b, &ws.full
	n := len(batch.Tokens)
	ws.n = n
	ws.X, ws.H, ws.A = b.Rows(f.x, 0, n), b.Rows(f.h, 0, n), b.Rows(f.a, 0, n)
	ws.Q, ws.K, ws.V = b.Rows(f.q, 0, n), b.Rows(f.k, 0, n), b.Rows(f.v, 0, n)
	ws.Ctx, ws.Up, ws.Gate = b.Rows(f.ctx, 0, n), b.Rows(f.up, 0, n), b.Rows(f.gate, 0, n)
	for i := range ws.Pos {
		ws.Pos[i] = ws.Pos[i][:cap(ws.Pos[i])][:n]
	}
	ws.layout = ws.layout[:0]
	ws.spans = ws.spans[:0]
	ws.selRows = ws.selRows[:0]
	off := 0
	for _, sp := range batch.Spans {
		ws.layout = append(ws.layout, layoutKey{sp.N, sp.AllLogits})
		ws.spans = append(ws.spans, spanView{
			n: sp.N,
			q: b.Rows(ws.Q, off, off+sp.N), k: b.Rows(ws.K, off, off+sp.N),
			v: b.Rows(ws.V, off, off+sp.N), ctx: b.Rows(ws.Ctx, off, off+sp.N),
		})
		first := off + sp.N - 1
		if sp.AllLogits {
			first = off
		}
		for r := first; r < off+sp.N; r++ {
			ws.selRows = append(ws.selRows, int32(r))
		}
		off += sp.N
	}
	ws.selRows = slices.Clip(ws.selRows)
	ws.Sel = b.Rows(f.sel, 0, len(ws.selRows))
}
