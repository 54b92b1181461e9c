package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/tessera-llm/tessera/kernels"
	tesserav1 "github.com/tessera-llm/tessera/proto/tessera/v1"
	"github.com/tessera-llm/tessera/shard/topk"
	"github.com/tessera-llm/tessera/worker/kvcache"
	"github.com/tessera-llm/tessera/worker/model"
)

// ErrBadStep reports a step from the network that this rank cannot run:
// it is answered with an error, never a crash.
var ErrBadStep = errors.New("invalid step")

// Runner runs the steps a coordinator sends to one rank of one pipeline
// stage. The coordinator owns the block tables; the runner keeps, per
// sequence id, the rank's view of each sequence (what the model learned of
// it, such as ChatGLM's prefix), and the physical blocks of its layers.
type Runner struct {
	stage  model.Stage
	geo    model.Geometry
	hidden int
	views  map[uint64]*kvcache.Seq
	batch  model.Batch
	logits kernels.Tensor
	host   []float32
	out    []float32
	// inUse marks the blocks the held sequences' tables name; used is
	// their count, read by Stats while steps run.
	inUse []bool
	used  atomic.Int32
}

// NewRunner wraps a loaded stage.
func NewRunner(s model.Stage) *Runner {
	return &Runner{stage: s, geo: s.Geometry(), hidden: s.Spec().Hidden, views: map[uint64]*kvcache.Seq{}}
}

// Geometry is the part of the model the runner holds.
func (r *Runner) Geometry() model.Geometry { return r.geo }

// Sequences is how many sequences the rank currently holds views of.
func (r *Runner) Sequences() int { return len(r.views) }

// KVBlocks is how many blocks of the rank's pool the tables of the
// sequences it holds name, as of the last step, and the pool's size. It
// may be called while a step runs.
func (r *Runner) KVBlocks() (used, total int) {
	return int(r.used.Load()), r.stage.Cache().Blocks()
}

// count recomputes used from the held sequences' tables.
func (r *Runner) count() {
	if r.inUse == nil {
		r.inUse = make([]bool, r.stage.Cache().Blocks())
	}
	clear(r.inUse)
	n := 0
	for _, v := range r.views {
		for _, b := range v.Table {
			if !r.inUse[b] {
				r.inUse[b] = true
				n++
			}
		}
	}
	r.used.Store(int32(n))
}

// Result is a step's output on this rank: the hidden states for the next
// stage, or on the last stage each logit row's top-k over the rank's
// vocabulary slice.
type Result struct {
	Hidden []float32
	Rows   []*tesserav1.RowTopK
}

// Step runs st. in holds the previous stage's hidden states (nil on the
// first stage). The returned hidden slice is reused by the next Step.
func (r *Runner) Step(ctx context.Context, st *tesserav1.Step, in []float32) (Result, error) {
	for _, id := range st.GetRelease() {
		delete(r.views, id)
	}
	defer r.count()
	if len(st.GetSpans()) == 0 {
		return Result{}, nil // a release-only step
	}
	if err := r.prepare(st); err != nil {
		return Result{}, err
	}
	if !r.geo.Last {
		n := len(st.Tokens) * r.hidden
		if cap(r.out) < n {
			r.out = make([]float32, n)
		}
		r.out = r.out[:n]
		err := r.stage.ForwardStage(ctx, &r.batch, in, r.out, nil)
		return Result{Hidden: r.out}, err
	}
	b := r.stage.Backend()
	rows, width := r.batch.LogitRows(), r.geo.Vocab[1]-r.geo.Vocab[0]
	if r.logits == nil || r.logits.Shape()[0] < rows {
		r.logits = b.Alloc(rows, width)
	}
	logits := b.Rows(r.logits, 0, rows)
	if err := r.stage.ForwardStage(ctx, &r.batch, in, nil, logits); err != nil {
		return Result{}, err
	}
	out := make([]*tesserav1.RowTopK, rows)
	for i, p := range r.topK(b, logits, int(max(st.TopK, 1)), st) {
		out[i] = &tesserav1.RowTopK{Ids: p.IDs, Logits: p.Logits, Lse: p.LSE}
	}
	return Result{Rows: out}, nil
}

// mask applies each constrained span's allowed set to its last row, the
// one the coordinator samples.
func (r *Runner) mask(st *tesserav1.Step, host []float32, width int) {
	row := 0
	for _, sp := range st.Spans {
		row++
		if sp.AllLogits {
			row += int(sp.Tokens) - 1
		}
		if len(sp.Allow) > 0 {
			topk.Mask(host[(row-1)*width:row*width], r.geo.Vocab[0], sp.Allow)
		}
	}
}

// topK reduces the rank's logit rows to their top k where they live when
// the backend can (kernels.TopKer: a GPU then copies rows·k entries, not
// whole vocabulary rows), and on the host otherwise. A step with token
// masks (constrained decoding) takes the host path, where the masks apply.
func (r *Runner) topK(b kernels.Backend, logits kernels.Tensor, k int, st *tesserav1.Step) []kernels.RowTopK {
	masked := slices.ContainsFunc(st.Spans, func(sp *tesserav1.SeqSpan) bool { return len(sp.Allow) > 0 })
	if tk, ok := b.(kernels.TopKer); ok && !masked {
		return tk.TopK(logits, r.geo.Vocab[0], k)
	}
	rows, width := logits.Shape()[0], logits.Shape()[1]
	if len(r.host) < rows*width {
		r.host = make([]float32, rows*width)
	}
	b.Read(logits, r.host)
	if masked {
		r.mask(st, r.host[:rows*width], width)
	}
	out := make([]kernels.RowTopK, rows)
	for i := range out {
		out[i] = kernels.TopKRow(r.host[i*width:(i+1)*width], r.geo.Vocab[0], k)
	}
	return out
}

// prepare checks st against this rank and builds the batch, with each
// sequence's view taking the coordinator's table and length.
func (r *Runner) prepare(st *tesserav1.Step) error {
	cache := r.stage.Cache()
	bs, blocks := cache.BlockSize, cache.Blocks()
	total := 0
	r.batch.Tokens = st.Tokens
	r.batch.Spans = r.batch.Spans[:0]
	if st.TopK < 0 || st.TopK > topk.MaxTopK {
		return fmt.Errorf("%w: top_k %d outside [0, %d]", ErrBadStep, st.TopK, topk.MaxTopK)
	}
	for i, sp := range st.Spans {
		n, cached := int(sp.Tokens), int(sp.Cached)
		if n <= 0 || cached < 0 {
			return fmt.Errorf("%w: span %d has %d tokens after %d cached", ErrBadStep, i, n, cached)
		}
		if maxAllow := (r.stage.Spec().Vocab + 7) / 8; len(sp.Allow) > maxAllow {
			return fmt.Errorf("%w: span %d: a %d-byte token mask for a vocabulary of %d", ErrBadStep, i, len(sp.Allow), r.stage.Spec().Vocab)
		}
		if len(sp.BlockTable)*bs < cached+n {
			return fmt.Errorf("%w: span %d: %d blocks of %d cannot hold %d tokens", ErrBadStep, i, len(sp.BlockTable), bs, cached+n)
		}
		for _, b := range sp.BlockTable {
			if b < 0 || int(b) >= blocks {
				return fmt.Errorf("%w: span %d names block %d of a %d-block pool", ErrBadStep, i, b, blocks)
			}
		}
		v, ok := r.views[sp.SeqId]
		switch {
		case !ok || cached == 0:
			// A new sequence may start with cached tokens: blocks of the
			// coordinator's prefix cache, which other sequences filled.
			v = &kvcache.Seq{Len: cached}
			r.views[sp.SeqId] = v
		case v.Len != cached:
			return fmt.Errorf("%w: sequence %d: this rank holds %d tokens, the step says %d", ErrBadStep, sp.SeqId, v.Len, cached)
		}
		v.Table = sp.BlockTable
		total += n
		r.batch.Spans = append(r.batch.Spans, model.Span{Seq: v, N: n, AllLogits: sp.AllLogits})
	}
	if total != len(st.Tokens) {
		return fmt.Errorf("%w: spans cover %d tokens, the step has %d", ErrBadStep, total, len(st.Tokens))
	}
	return nil
}
