package plan

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/tessera-llm/tessera/shard/spec"
)

// Worker is a worker as it advertises itself to the planner.
type Worker struct {
	ID string `json:"id"`
	// Memory is the bytes the worker offers for weights (and, less the
	// reserve, everything else). Zero on every worker means "unknown":
	// work is then split evenly and nothing is checked for fit.
	Memory  int64  `json:"memory"`
	Backend string `json:"backend,omitempty"`
	Device  string `json:"device,omitempty"`
}

// Plan is a versioned placement of a model over workers: pipeline stages of
// consecutive layers, each split over tensor-parallel ranks. It is a plain
// value: print it, hash it, store it as JSON.
type Plan struct {
	// Version orders plans of one cluster; Hash ignores it.
	Version uint64 `json:"version"`
	// Model is the architecture (the spec's Arch).
	Model string `json:"model"`
	// Dims are the model dimensions the plan divides.
	Dims Dims `json:"dims"`
	// DTypeBytes is the weight element size used for WeightBytes.
	DTypeBytes int     `json:"dtype_bytes"`
	Stages     []Stage `json:"stages"`
}

// Dims are the model dimensions a plan divides, taken from the spec.
type Dims struct {
	Layers       int  `json:"layers"`
	Hidden       int  `json:"hidden"`
	Heads        int  `json:"heads"`
	KVHeads      int  `json:"kv_heads"`
	HeadDim      int  `json:"head_dim"`
	Intermediate int  `json:"intermediate"`
	Vocab        int  `json:"vocab"`
	Gated        bool `json:"gated,omitempty"`
	Tied         bool `json:"tied,omitempty"`
	ALiBi        bool `json:"alibi,omitempty"`
}

func dimsOf(s *spec.Spec) Dims {
	return Dims{Layers: s.Layers, Hidden: s.Hidden, Heads: s.Heads, KVHeads: s.KVHeads, HeadDim: s.HeadDim,
		Intermediate: s.Intermediate, Vocab: s.Vocab, Gated: s.Gated, Tied: s.TiedEmbeddings,
		ALiBi: s.Positions == spec.ALiBi}
}

// Stage is a pipeline stage: layers [Layers[0], Layers[1]) on its ranks.
type Stage struct {
	Index  int    `json:"index"`
	Layers [2]int `json:"layers"`
	Ranks  []Rank `json:"ranks"`
}

// Rank is one tensor-parallel rank of a stage, held by one worker. All
// ranges are half-open [a,b) in global indices.
type Rank struct {
	Index  int    `json:"index"`
	Worker string `json:"worker"`
	// Heads are the query heads; KVHeads the kv heads they read (kv heads
	// are replicated when ranks outnumber them).
	Heads   [2]int `json:"heads"`
	KVHeads [2]int `json:"kv_heads"`
	// KVMap maps local query head h to local kv head KVMap[h]
	// (kernels.Attention.KVMap).
	KVMap []int32 `json:"kv_map"`
	// MLP are the intermediate columns; Vocab the vocabulary rows of the
	// embeddings and LM head.
	MLP   [2]int `json:"mlp"`
	Vocab [2]int `json:"vocab"`
	// ALiBiSlopes are spec.ALiBiSlopes(global heads)[Heads[0]:Heads[1]]
	// for an ALiBi model, nil otherwise. Never recompute them from the
	// local head count.
	ALiBiSlopes []float32 `json:"alibi_slopes,omitempty"`
	// WeightBytes is the estimated size of the rank's weight slices.
	WeightBytes int64 `json:"weight_bytes"`
}

// IsFirst and IsLast report whether stage i is the first (embeddings) or
// last (final norm, LM head) stage.
func (p *Plan) IsFirst(i int) bool { return i == 0 }

func (p *Plan) IsLast(i int) bool { return i == len(p.Stages)-1 }

// Shape is the plan's pipeline depth and the largest tensor-parallel width.
func (p *Plan) Shape() (pp, tp int) {
	for _, s := range p.Stages {
		tp = max(tp, len(s.Ranks))
	}
	return len(p.Stages), tp
}

// Find returns the stage and rank a worker holds.
func (p *Plan) Find(worker string) (stage, rank int, ok bool) {
	for i, s := range p.Stages {
		for j, r := range s.Ranks {
			if r.Worker == worker {
				return i, j, true
			}
		}
	}
	return 0, 0, false
}

// Workers are the ids of the workers the plan uses, sorted.
func (p *Plan) Workers() []string {
	var ids []string
	for _, s := range p.Stages {
		for _, r := range s.Ranks {
			ids = append(ids, r.Worker)
		}
	}
	slices.Sort(ids)
	return ids
}

// Errors from New; each is wrapped with the numbers that broke the plan.
var (
	// ErrImpossible: the shape cannot divide this model over these workers.
	ErrImpossible = errors.New("impossible shard plan")
	// ErrMemory: a worker cannot hold its share.
	ErrMemory = errors.New("worker memory too small for its share")
)

// Option adjusts New.
type Option func(*options)

type options struct {
	pp, tp  int
	dtype   int
	version uint64
	reserve float64
}

// WithShape asks for pp pipeline stages of tp tensor-parallel ranks each;
// pp·tp must equal the number of workers. Workers fill the stages in order:
// stage i holds workers[i·tp : (i+1)·tp], so list co-located workers
// together to keep each stage's all-reduce local.
func WithShape(pp, tp int) Option { return func(o *options) { o.pp, o.tp = pp, tp } }

// WithDTypeBytes sets the weight element size for memory estimates
// (default 2: bf16/fp16; 4 for float32).
func WithDTypeBytes(n int) Option { return func(o *options) { o.dtype = n } }

// WithVersion sets the plan's version (default 1).
func WithVersion(v uint64) Option { return func(o *options) { o.version = v } }

// WithReserve keeps a fraction of each worker's memory out of the weight
// budget, for the KV cache and activations (default 0).
func WithReserve(fraction float64) Option { return func(o *options) { o.reserve = fraction } }

// New plans s over workers.
//
// Without WithShape the plan is pipeline-only (tp = 1, one stage per
// worker), the cheapest on the network; when there are more workers than
// layers, pp is the largest divisor of the worker count not above the
// layer count and tp the rest.
//
// Layers are split over stages in proportion to each stage's summed worker
// memory; heads, MLP columns and vocabulary rows over a stage's ranks in
// proportion to each rank's memory, by largest remainder, with at least
// one of each per stage or rank. Each rank's weight estimate must fit its
// worker's memory (less the reserve).
func New(s *spec.Spec, workers []Worker, opts ...Option) (*Plan, error) {
	o := options{dtype: 2, version: 1}
	for _, f := range opts {
		f(&o)
	}
	if s == nil {
		return nil, fmt.Errorf("%w: no model spec", ErrImpossible)
	}
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrImpossible, err)
	}
	if _, err := spec.CardOf(s.Arch); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnknownArch, err)
	}
	n := len(workers)
	if n == 0 {
		return nil, fmt.Errorf("%w: no workers", ErrImpossible)
	}
	if o.dtype <= 0 {
		return nil, fmt.Errorf("%w: weight dtype size %d bytes must be positive", ErrImpossible, o.dtype)
	}
	if o.reserve < 0 || o.reserve >= 1 || o.reserve != o.reserve {
		return nil, fmt.Errorf("%w: memory reserve %g must be in [0, 1)", ErrImpossible, o.reserve)
	}
	if o.pp == 0 && o.tp == 0 {
		o.pp, o.tp = defaultShape(n, s.Layers)
	}
	if err := checkShape(s, n, o.pp, o.tp); err != nil {
		return nil, err
	}
	weights, err := memoryWeights(workers)
	if err != nil {
		return nil, err
	}

	p := &Plan{Version: o.version, Model: s.Arch, Dims: dimsOf(s), DTypeBytes: o.dtype}
	stageW := make([]int64, o.pp)
	for i := range stageW {
		for _, w := range weights[i*o.tp : (i+1)*o.tp] {
			stageW[i] += w
		}
	}
	var slopes []float32
	if p.Dims.ALiBi {
		slopes = spec.ALiBiSlopes(s.Heads)
	}
	layer := 0
	for i, nl := range apportion(s.Layers, stageW) {
		st := Stage{Index: i, Layers: [2]int{layer, layer + nl}}
		layer += nl
		ws := workers[i*o.tp : (i+1)*o.tp]
		rw := weights[i*o.tp : (i+1)*o.tp]
		heads := ranges(apportion(s.Heads, rw))
		mlp := ranges(apportion(s.Intermediate, rw))
		vocab := ranges(apportion(s.Vocab, rw))
		for j, w := range ws {
			r := Rank{Index: j, Worker: w.ID, Heads: heads[j], MLP: mlp[j], Vocab: vocab[j]}
			r.KVHeads, r.KVMap = kvFor(r.Heads, s.Heads/s.KVHeads)
			if slopes != nil {
				r.ALiBiSlopes = append([]float32(nil), slopes[r.Heads[0]:r.Heads[1]]...)
			}
			st.Ranks = append(st.Ranks, r)
		}
		p.Stages = append(p.Stages, st)
	}
	p.estimate()
	if err := p.checkFit(workers, o.reserve); err != nil {
		return nil, err
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("plan: internal error: %w", err)
	}
	return p, nil
}

func defaultShape(n, layers int) (pp, tp int) {
	for pp = min(n, layers); pp > 1 && n%pp != 0; pp-- {
	}
	return pp, n / pp
}

func checkShape(s *spec.Spec, n, pp, tp int) error {
	switch {
	case pp < 1 || tp < 1:
		return fmt.Errorf("%w: shape pp=%d tp=%d must be at least 1×1", ErrImpossible, pp, tp)
	case pp*tp != n:
		return fmt.Errorf("%w: shape pp=%d × tp=%d needs %d workers, have %d", ErrImpossible, pp, tp, pp*tp, n)
	case pp > s.Layers:
		return fmt.Errorf("%w: %d pipeline stages for %d layers: every stage needs at least one layer",
			ErrImpossible, pp, s.Layers)
	case tp > s.Heads:
		return fmt.Errorf("%w: %d tensor-parallel ranks for %d heads: every rank needs at least one head",
			ErrImpossible, tp, s.Heads)
	case tp > s.Intermediate || tp > s.Vocab:
		return fmt.Errorf("%w: %d tensor-parallel ranks for %d MLP columns and %d vocabulary rows",
			ErrImpossible, tp, s.Intermediate, s.Vocab)
	}
	if pp*tp > 1 {
		if _, err := Rules(s.Arch); err != nil {
			return err
		}
	}
	return nil
}

// memoryWeights are the placement weights: the advertised memory, or 1 each
// when no worker advertises any.
func memoryWeights(workers []Worker) ([]int64, error) {
	out := make([]int64, len(workers))
	seen := map[string]bool{}
	zero := 0
	for i, w := range workers {
		if w.ID == "" {
			return nil, fmt.Errorf("%w: worker %d has no id", ErrImpossible, i)
		}
		if seen[w.ID] {
			return nil, fmt.Errorf("%w: worker %q listed twice", ErrImpossible, w.ID)
		}
		seen[w.ID] = true
		switch {
		case w.Memory < 0:
			return nil, fmt.Errorf("%w: worker %q advertises negative memory %d", ErrImpossible, w.ID, w.Memory)
		case w.Memory == 0:
			zero++
		}
		out[i] = w.Memory
	}
	if zero == len(workers) {
		for i := range out {
			out[i] = 1
		}
	} else if zero > 0 {
		for _, w := range workers {
			if w.Memory == 0 {
				return nil, fmt.Errorf("%w: worker %q advertises no memory while others do", ErrImpossible, w.ID)
			}
		}
	}
	return out, nil
}

func ranges(counts []int) [][2]int {
	out := make([][2]int, len(counts))
	a := 0
	for i, c := range counts {
		out[i] = [2]int{a, a + c}
		a += c
	}
	return out
}

// kvFor returns the kv heads query heads [a,b) read, with group query heads
// per kv head, and the local query → local kv map.
func kvFor(heads [2]int, group int) ([2]int, []int32) {
	kv := [2]int{heads[0] / group, (heads[1]-1)/group + 1}
	m := make([]int32, heads[1]-heads[0])
	for h := range m {
		m[h] = int32((heads[0]+h)/group - kv[0])
	}
	return kv, m
}

// estimate fills in each rank's WeightBytes from the slicing rules (a
// generic layout when the architecture has none: a whole-model plan).
func (p *Plan) estimate() {
	rules, err := Rules(p.Model)
	if err != nil {
		rules = genericRules
	}
	for i := range p.Stages {
		st := &p.Stages[i]
		for j := range st.Ranks {
			r := &st.Ranks[j]
			var elems int64
			for _, rule := range rules {
				if rule.Place == spec.EveryLayer {
					elems += int64(st.Layers[1]-st.Layers[0]) * r.slice(rule, p.Dims).Elements()
				} else if p.Needs(i, rule, 0) {
					elems += r.slice(rule, p.Dims).Elements()
				}
			}
			r.WeightBytes = elems * int64(p.DTypeBytes)
		}
	}
}

// genericRules approximate a decoder layer for estimates of architectures
// without slicing rules: LLaMA's layout without the gate.
var genericRules = slices.DeleteFunc(slices.Clone(spec.LlamaTensors), func(r spec.Rule) bool {
	return strings.HasSuffix(r.Pattern, ".gate_proj.weight")
})

func (p *Plan) checkFit(workers []Worker, reserve float64) error {
	mem := map[string]int64{}
	for _, w := range workers {
		mem[w.ID] = w.Memory
	}
	for _, st := range p.Stages {
		for _, r := range st.Ranks {
			m := mem[r.Worker]
			if m == 0 {
				continue // memory unknown: an even split, unchecked
			}
			usable := int64(float64(m) * (1 - reserve))
			if r.WeightBytes > usable {
				return fmt.Errorf("%w: worker %q (stage %d, rank %d: layers [%d,%d), heads [%d,%d), mlp [%d,%d), vocab [%d,%d)) needs %s for weights, has %s usable of %s",
					ErrMemory, r.Worker, st.Index, r.Index, st.Layers[0], st.Layers[1], r.Heads[0], r.Heads[1],
					r.MLP[0], r.MLP[1], r.Vocab[0], r.Vocab[1], exactBytes(r.WeightBytes), exactBytes(usable), exactBytes(m))
			}
		}
	}
	return nil
}

func bytesString(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	f, i := float64(n), -1
	for f >= unit && i < 4 {
		f /= unit
		i++
	}
	return fmt.Sprintf("%.1f %ciB", f, "KMGTP"[i])
}

func exactBytes(n int64) string {
	if n < 1024 {
		return bytesString(n)
	}
	return fmt.Sprintf("%s (%d bytes)", bytesString(n), n)
}
