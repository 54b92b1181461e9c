package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/tessera-llm/tessera/kernels"
	"github.com/tessera-llm/tessera/shard/plan"
	"github.com/tessera-llm/tessera/shard/spec"
	"github.com/tessera-llm/tessera/shard/topk"
	"github.com/tessera-llm/tessera/shard/transport"
	"github.com/tessera-llm/tessera/worker/kvcache"
	"github.com/tessera-llm/tessera/worker/model"
)

// Pipeline runs a model sharded by a plan inside one process: every
// (stage, rank) is its own model holding only its slice, the ranks of a
// stage all-reduce through an in-process group, and each stage hands its
// hidden states to the next. It is a model.CausalLM, so the Generator
// drives it like an unsharded model.
//
// Block tables are kept here, as a coordinator keeps them; every rank's
// pools have the same number of blocks and store a sequence's tokens at
// the block numbers of its table.
type Pipeline struct {
	plan   *plan.Plan
	spec   *spec.Spec
	b      kernels.Backend
	stages [][]model.Stage
	groups []*transport.LocalGroup
	loaded [][]int64
	tables *kvcache.Cache

	// Per coordinator sequence, each rank's view of it. A rank's view
	// keeps what the model learned of the sequence (ChatGLM's prefix).
	views map[*kvcache.Seq][][]kvcache.Seq

	hidden [][][]float32    // [stage][rank] hidden states out of the stage
	local  [][]float32      // last stage: [rank] logits of the vocab slice
	device []kernels.Tensor // last stage: [rank] logits tensors, reused
	rows   int
	full   []float32
}

// LoadPipeline loads every shard of p from dir. opts apply to each rank
// (backend, cache size).
func LoadPipeline(dir string, p *plan.Plan, opts ...model.Option) (*Pipeline, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	pl := &Pipeline{plan: p, views: map[*kvcache.Seq][][]kvcache.Seq{}}
	for si, st := range p.Stages {
		g := transport.NewLocalGroup(len(st.Ranks))
		pl.groups = append(pl.groups, g)
		var ranks []model.Stage
		var loaded []int64
		for ri := range st.Ranks {
			var bytes int64
			rankOpts := append(opts[:len(opts):len(opts)],
				model.WithShard(&model.Shard{Plan: p, Stage: si, Rank: ri, Comm: g.Rank(ri)}),
				model.WithProgress(func(pr model.Progress) { bytes = pr.Bytes }))
			m, err := model.Load(dir, rankOpts...)
			if err != nil {
				return nil, fmt.Errorf("stage %d rank %d: %w", si, ri, err)
			}
			s, ok := m.(model.Stage)
			if !ok {
				return nil, fmt.Errorf("%w: %s cannot run as a pipeline stage", model.ErrShard, m.Spec().Arch)
			}
			ranks = append(ranks, s)
			loaded = append(loaded, bytes)
		}
		pl.stages = append(pl.stages, ranks)
		pl.loaded = append(pl.loaded, loaded)
	}
	first := pl.stages[0][0]
	pl.spec, pl.b = first.Spec(), first.Backend()
	bs, blocks := first.Cache().BlockSize, first.Cache().Blocks()
	pl.tables = kvcache.NewTables(bs, blocks)
	return pl, nil
}

// Spec is the whole model's spec.
func (p *Pipeline) Spec() *spec.Spec { return p.spec }

// Backend is the backend of the ranks.
func (p *Pipeline) Backend() kernels.Backend { return p.b }

// Cache holds the block tables; its pools live in the ranks.
func (p *Pipeline) Cache() *kvcache.Cache { return p.tables }

// LoadedBytes is how many weight bytes rank loaded in stage.
func (p *Pipeline) LoadedBytes(stage, rank int) int64 { return p.loaded[stage][rank] }

// Rank is one shard of the pipeline.
func (p *Pipeline) Rank(stage, rank int) model.Stage { return p.stages[stage][rank] }

// Forward runs batch through every stage and gathers the full logits
// rows [batch.LogitRows(), vocab] from the last stage's vocab slices.
func (p *Pipeline) Forward(ctx context.Context, batch *model.Batch, logits kernels.Tensor) error {
	if err := p.run(ctx, batch); err != nil {
		return err
	}
	v := p.spec.Vocab
	if cap(p.full) < p.rows*v {
		p.full = make([]float32, p.rows*v)
	}
	full := p.full[:p.rows*v]
	last := p.plan.Stages[len(p.plan.Stages)-1]
	for ri, r := range last.Ranks {
		w := r.Vocab[1] - r.Vocab[0]
		for row := range p.rows {
			copy(full[row*v+r.Vocab[0]:row*v+r.Vocab[1]], p.local[ri][row*w:(row+1)*w])
		}
	}
	p.b.Write(logits, full)
	return nil
}

// TopK is what the last stage's ranks return to a coordinator for the
// most recent Forward: per logit row, each rank's best k candidates and
// the log-sum-exp of its vocabulary slice. Merging them is exact.
func (p *Pipeline) TopK(k int) [][]topk.Partial {
	last := p.plan.Stages[len(p.plan.Stages)-1]
	out := make([][]topk.Partial, p.rows)
	for row := range p.rows {
		for ri, r := range last.Ranks {
			w := r.Vocab[1] - r.Vocab[0]
			out[row] = append(out[row], topk.Local(p.local[ri][row*w:(row+1)*w], r.Vocab[0], k))
		}
	}
	return out
}

// run executes the stages in order; ranks of a stage run concurrently.
func (p *Pipeline) run(ctx context.Context, batch *model.Batch) error {
	if err := batch.Validate(p.spec.Vocab); err != nil {
		return err
	}
	for _, sp := range batch.Spans {
		if err := p.tables.Reserve(sp.Seq, sp.N); err != nil {
			return fmt.Errorf("%w: %w", model.ErrContextFull, err)
		}
		if _, ok := p.views[sp.Seq]; !ok || sp.Seq.Len == 0 {
			views := make([][]kvcache.Seq, len(p.stages))
			for s := range views {
				views[s] = make([]kvcache.Seq, len(p.stages[s]))
			}
			p.views[sp.Seq] = views
		}
	}
	p.rows = batch.LogitRows()
	width := len(batch.Tokens) * p.spec.Hidden
	var in []float32
	for si, ranks := range p.stages {
		batches := p.rankBatches(batch, si)
		if err := p.runStage(ctx, si, ranks, batches, in, width); err != nil {
			p.groups[si].Reset()
			return fmt.Errorf("stage %d: %w", si, err)
		}
		if si < len(p.stages)-1 {
			in = p.hidden[si][0][:width]
		}
	}
	for _, sp := range batch.Spans {
		sp.Seq.Len += sp.N
	}
	return nil
}

func (p *Pipeline) runStage(ctx context.Context, si int, ranks []model.Stage, batches []model.Batch, in []float32, width int) error {
	last := si == len(p.stages)-1
	for len(p.hidden) <= si {
		p.hidden = append(p.hidden, make([][]float32, len(ranks)))
	}
	if last && p.local == nil {
		p.local = make([][]float32, len(ranks))
		p.device = make([]kernels.Tensor, len(ranks))
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, len(ranks))
	var wg sync.WaitGroup
	for ri, r := range ranks {
		var out []float32
		var logits kernels.Tensor
		if last {
			v := r.Geometry().Vocab
			rows := max(p.rows, 1)
			if p.device[ri] == nil || p.device[ri].Shape()[0] < rows {
				p.device[ri] = p.b.Alloc(rows, v[1]-v[0])
				p.local[ri] = make([]float32, rows*(v[1]-v[0]))
			}
			logits = p.b.Rows(p.device[ri], 0, rows)
		} else {
			if cap(p.hidden[si][ri]) < width {
				p.hidden[si][ri] = make([]float32, width)
			}
			out = p.hidden[si][ri][:width]
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if errs[ri] = r.ForwardStage(ctx, &batches[ri], in, out, logits); errs[ri] != nil {
				cancel() // the others would wait in an all-reduce forever
				return
			}
			if last {
				p.b.Read(logits, p.local[ri])
			}
		}()
	}
	wg.Wait()
	return firstError(errs)
}

// firstError prefers a rank's own failure over the cancellations it caused.
func firstError(errs []error) error {
	var cancelled error
	for _, err := range errs {
		switch {
		case err == nil:
		case errors.Is(err, context.Canceled):
			cancelled = err
		default:
			return err
		}
	}
	return cancelled
}

// rankBatches gives every rank of stage si the batch with its own view of
// each sequence: the coordinator's block table and length, and whatever
// the rank keeps of it.
func (p *Pipeline) rankBatches(batch *model.Batch, si int) []model.Batch {
	out := make([]model.Batch, len(p.stages[si]))
	for ri := range out {
		out[ri].Tokens = batch.Tokens
		for _, sp := range batch.Spans {
			v := &p.views[sp.Seq][si][ri]
			v.Table, v.Len = sp.Seq.Table, sp.Seq.Len
			out[ri].Spans = append(out[ri].Spans, model.Span{Seq: v, N: sp.N, AllLogits: sp.AllLogits})
		}
	}
	return out
}

// Forget drops the ranks' views of a released sequence.
func (p *Pipeline) Forget(seq *kvcache.Seq) { delete(p.views, seq) }
