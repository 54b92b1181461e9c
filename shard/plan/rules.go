package plan

import (
	"errors"
	"fmt"

	"github.com/tessera-llm/tessera/shard/spec"
)

// ErrUnknownArch is returned for an architecture the planner has never
// heard of; ErrNotShardable for one that loads, but only whole (pp = tp = 1).
var (
	ErrUnknownArch  = errors.New("unknown architecture")
	ErrNotShardable = errors.New("architecture is not yet shardable")
)

// Rules returns the slicing rules of an architecture (a spec's Arch),
// from its card.
func Rules(arch string) ([]spec.Rule, error) {
	c, err := spec.CardOf(arch)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnknownArch, err)
	}
	if !c.Shardable() {
		return nil, fmt.Errorf("%w: %s (only a single-worker plan, pp=1 tp=1)", ErrNotShardable, arch)
	}
	return c.Tensors, nil
}

// Shape is the full (unsharded) shape of the tensor a rule names, derived
// from the spec: [rows] for a 1-D tensor, [rows, cols] for a weight.
func Shape(r spec.Rule, s *spec.Spec) []int {
	return shape(r, dimsOf(s))
}

func shape(r spec.Rule, d Dims) []int {
	var n int // the size of the axis
	switch r.Axis {
	case spec.AxisHeads:
		n = d.Heads * d.HeadDim
	case spec.AxisKVHeads:
		n = d.KVHeads * d.HeadDim
	case spec.AxisMLP:
		n = d.Intermediate
	case spec.AxisVocab:
		n = d.Vocab
	}
	if r.Kind == spec.FusedQKVPerHead {
		n *= 3
	}
	if r.Halves && d.Gated {
		n *= 2
	}
	switch {
	case r.Kind == spec.Replicated:
		return []int{d.Hidden}
	case r.Kind == spec.RowParallel && r.Bias:
		return []int{d.Hidden}
	case r.Kind == spec.RowParallel:
		return []int{d.Hidden, n}
	case r.Bias:
		return []int{n}
	}
	return []int{n, d.Hidden}
}

// Slice is what one rank loads of one tensor.
type Slice struct {
	// Shape is the full tensor's shape.
	Shape []int
	// Rows are the row ranges [a,b) of the full tensor to load, in order;
	// empty when the rank loads nothing of it. A 1-D tensor is a column:
	// its elements are its rows.
	Rows [][2]int
	// Cols is the column range [a,b) within each row; [0,1) for a 1-D
	// tensor.
	Cols [2]int
}

// Elements is the number of elements the slice holds.
func (s Slice) Elements() int64 {
	var rows int64
	for _, r := range s.Rows {
		rows += int64(r[1] - r[0])
	}
	return rows * int64(s.Cols[1]-s.Cols[0])
}

// LocalShape is the shape of the loaded slice: the rows concatenated, the
// column range kept.
func (s Slice) LocalShape() []int {
	rows := 0
	for _, r := range s.Rows {
		rows += r[1] - r[0]
	}
	if len(s.Shape) == 1 {
		return []int{rows}
	}
	return []int{rows, s.Cols[1] - s.Cols[0]}
}

// Slice is the part of the tensor a rule names that this rank loads.
func (r Rank) Slice(rule spec.Rule, s *spec.Spec) Slice {
	return r.slice(rule, dimsOf(s))
}

// RowRanges are the row ranges [a,b) of the full tensor this rank loads
// (elements for a 1-D tensor); none when it loads nothing of it.
func (r Rank) RowRanges(rule spec.Rule, s *spec.Spec) [][2]int { return r.Slice(rule, s).Rows }

// ColRange is the column range [a,b) this rank loads of each of its rows:
// the head or MLP columns of a row-parallel weight, all columns otherwise,
// [0,1) for a 1-D tensor.
func (r Rank) ColRange(rule spec.Rule, s *spec.Spec) [2]int { return r.Slice(rule, s).Cols }

func (r Rank) slice(rule spec.Rule, d Dims) Slice {
	shape := shape(rule, d)
	out := Slice{Shape: shape, Cols: [2]int{0, 1}}
	if len(shape) == 2 {
		out.Cols = [2]int{0, shape[1]}
	}
	all := [][2]int{{0, shape[0]}}
	var span [2]int // the rank's range along the axis, in rows of the tensor
	switch rule.Axis {
	case spec.AxisHeads:
		span = scale(r.Heads, d.HeadDim)
	case spec.AxisKVHeads:
		span = scale(r.KVHeads, d.HeadDim)
	case spec.AxisMLP:
		span = r.MLP
	case spec.AxisVocab:
		span = r.Vocab
	}
	switch rule.Kind {
	case spec.Replicated:
		out.Rows = all
	case spec.RowParallel:
		switch {
		case !rule.Bias:
			out.Rows, out.Cols = all, span
		case r.Index == 0:
			out.Rows = all
		}
	case spec.FusedQKVPerHead:
		out.Rows = [][2]int{scale(r.Heads, 3*d.HeadDim)}
	default: // spec.ColumnParallel, spec.VocabParallel
		out.Rows = [][2]int{span}
		if rule.Halves && d.Gated {
			out.Rows = append(out.Rows, [2]int{span[0] + d.Intermediate, span[1] + d.Intermediate})
		}
	}
	return out
}

func scale(r [2]int, by int) [2]int { return [2]int{r[0] * by, r[1] * by} }

// Needs reports whether stage i loads the tensor the rule names for layer
// (ignored unless the rule's Place is spec.EveryLayer).
func (p *Plan) Needs(i int, rule spec.Rule, layer int) bool {
	first, last := i == 0, i == len(p.Stages)-1
	switch rule.Place {
	case spec.EveryLayer:
		l := p.Stages[i].Layers
		return layer >= l[0] && layer < l[1]
	case spec.FirstStage:
		return first
	case spec.LastStage:
		return last
	case spec.Embeddings:
		return first || (last && p.Dims.Tied)
	case spec.LMHead:
		return last && !p.Dims.Tied
	}
	return false
}
