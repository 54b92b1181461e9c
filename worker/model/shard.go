package model

import (
	"context"
	"errors"
	"fmt"

	"github.com/tessera-llm/tessera/kernels"
	"github.com/tessera-llm/tessera/shard/plan"
	"github.com/tessera-llm/tessera/shard/spec"
)

// Comm sums buffers across the tensor-parallel ranks of one pipeline stage.
type Comm interface {
	// AllReduce replaces buf with the element-wise sum of every rank's
	// buf. Every rank ends with bit-identical values.
	AllReduce(ctx context.Context, buf []float32) error
}

// Shard is the part of a model that one tensor-parallel rank of one
// pipeline stage runs.
type Shard struct {
	Plan        *plan.Plan
	Stage, Rank int
	// Comm all-reduces within the stage; nil is allowed when the stage has
	// a single rank.
	Comm Comm
}

// WithShard loads only sh's slice of the model.
func WithShard(sh *Shard) Option { return func(o *Options) { o.Shard = sh } }

// ErrShard reports a shard that does not fit the model or its plan.
var ErrShard = errors.New("invalid shard")

func (sh *Shard) check(s *spec.Spec) error {
	if sh.Plan == nil {
		return fmt.Errorf("%w: no plan", ErrShard)
	}
	if err := sh.Plan.Matches(s); err != nil {
		return fmt.Errorf("%w: %w", ErrShard, err)
	}
	if sh.Stage < 0 || sh.Stage >= len(sh.Plan.Stages) || sh.Rank < 0 || sh.Rank >= len(sh.Plan.Stages[sh.Stage].Ranks) {
		return fmt.Errorf("%w: stage %d rank %d is not in plan v%d", ErrShard, sh.Stage, sh.Rank, sh.Plan.Version)
	}
	if sh.Comm == nil && len(sh.Plan.Stages[sh.Stage].Ranks) > 1 {
		return fmt.Errorf("%w: stage %d has %d ranks but no all-reduce", ErrShard, sh.Stage, len(sh.Plan.Stages[sh.Stage].Ranks))
	}
	return nil
}

func (sh *Shard) rank() *plan.Rank { return &sh.Plan.Stages[sh.Stage].Ranks[sh.Rank] }

// Geometry is what one rank holds, in the model's terms. Unsharded, it is
// the whole model.
type Geometry struct {
	// Layers is the global layer range of the rank's stage.
	Layers [2]int
	// Heads and KVHeads are the rank's local head counts; KVMap maps a
	// local query head to its local kv head (nil: the grouped default).
	Heads, KVHeads int
	KVMap          []int32
	// Slopes are the ALiBi slopes of the rank's heads: a slice of the
	// global list, never recomputed from the local count.
	Slopes []float32
	// MLP is the rank's share of the intermediate width.
	MLP int
	// Vocab is the rank's slice of the vocabulary.
	Vocab [2]int
	// First and Last say whether the stage embeds tokens and whether it
	// produces logits.
	First, Last bool
	Comm        Comm
}

// LayerCount is the number of layers the rank runs.
func (g Geometry) LayerCount() int { return g.Layers[1] - g.Layers[0] }

// Geometry is the part of s these options load.
func (o *Options) Geometry(s *spec.Spec) Geometry {
	g := Geometry{Layers: [2]int{0, s.Layers}, Heads: s.Heads, KVHeads: s.KVHeads, MLP: s.Intermediate,
		Vocab: [2]int{0, s.Vocab}, First: true, Last: true}
	if s.Positions == spec.ALiBi {
		g.Slopes = spec.ALiBiSlopes(s.Heads)
	}
	sh := o.Shard
	if sh == nil {
		return g
	}
	r := sh.rank()
	g.Layers = sh.Plan.Stages[sh.Stage].Layers
	g.Heads, g.KVHeads = r.Heads[1]-r.Heads[0], r.KVHeads[1]-r.KVHeads[0]
	g.KVMap, g.MLP, g.Vocab = r.KVMap, r.MLP[1]-r.MLP[0], r.Vocab
	if g.Slopes != nil {
		g.Slopes = r.ALiBiSlopes
	}
	g.First, g.Last = sh.Plan.IsFirst(sh.Stage), sh.Plan.IsLast(sh.Stage)
	g.Comm = sh.Comm
	return g
}

// Stage is one rank of a pipeline stage of a causal LM.
type Stage interface {
	CausalLM
	Geometry() Geometry
	// ForwardStage runs the stage's layers on batch. The first stage embeds
	// the tokens; the others read the previous stage's hidden states from
	// in [tokens·hidden]. A non-last stage writes its hidden states to out;
	// the last writes the logits of its vocabulary slice into logits
	// [batch.LogitRows(), Vocab[1]-Vocab[0]].
	ForwardStage(ctx context.Context, batch *Batch, in, out []float32, logits kernels.Tensor) error
}
