package server

import (
	"context"
	"errors"
	"fmt"

	"github.com/tessera-llm/tessera/kernels"
	tesserav1 "github.com/tessera-llm/tessera/proto/tessera/v1"
	"github.com/tessera-llm/tessera/shard/topk"
	"github.com/tessera-llm/tessera/worker/kvcache"
	"github.com/tessera-llm/tessera/worker/model"
)

// ErrBadStep reports a step from the network that this rank cannot run:
// it is answered with an error, never a crash.
var ErrBadStep = errors.New("invalid step")

// maxTopK bounds the candidates a step may ask each rank for.
const maxTopK = 1024

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
}

// NewRunner wraps a loaded stage.
func NewRunner(s model.Stage) *Runner {
	return &Runner{stage: s, geo: s.Geometry(), hidden: s.Spec().Hidden, views: map[uint64]*kvcache.Seq{}}
}

// Geometry is the part of the model the runner holds.
func (r *Runner) Geometry() model.Geometry { return r.geo }

// Sequences is how many sequences the rank currently holds views of.
func (r *Runner) Sequences() int { return len(r.views) }

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
	rows, width := r.batch.LogitRows(), r.geo.Vocab[1]-r.geo.Vocab[0]
	if r.logits == nil || r.logits.Shape()[0] < rows {
		r.logits = r.stage.Backend().Alloc(rows, width)
		r.host = make([]float32, rows*width)
	}
	logits := r.stage.Backend().Rows(r.logits, 0, rows)
	if err := r.stage.ForwardStage(ctx, &r.batch, in, nil, logits); err != nil {
		return Result{}, err
	}
	host := r.host[:rows*width]
	r.stage.Backend().Read(logits, host)
	k := int(max(st.TopK, 1))
	out := make([]*tesserav1.RowTopK, rows)
	for i := range out {
		p := topk.Local(host[i*width:(i+1)*width], r.geo.Vocab[0], k)
		out[i] = &tesserav1.RowTopK{Ids: p.IDs, Logits: p.Logits, Lse: p.LSE}
	}
	return Result{Rows: out}, nil
}

// prepare checks st against this rank and builds the batch, with each
// sequence's view taking the coordinator's table and length.
func (r *Runner) prepare(st *tesserav1.Step) error {
	cache := r.stage.Cache()
	bs, blocks := cache.BlockSize, cache.Blocks()
	total := 0
	r.batch.Tokens = st.Tokens
	r.batch.Spans = r.batch.Spans[:0]
	if st.TopK < 0 || st.TopK > maxTopK {
		return fmt.Errorf("%w: top_k %d outside [0, %d]", ErrBadStep, st.TopK, maxTopK)
	}
	for i, sp := range st.Spans {
		n, cached := int(sp.Tokens), int(sp.Cached)
		if n <= 0 || cached < 0 {
			return fmt.Errorf("%w: span %d has %d tokens after %d cached", ErrBadStep, i, n, cached)
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
