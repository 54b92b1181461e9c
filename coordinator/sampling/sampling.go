// Package sampling chooses next tokens from logits: greedy, or seeded
// sampling with temperature, top-k, top-p (nucleus) and min-p filtering.
package sampling

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/tessera-llm/tessera/shard/topk"
)

// ErrParams reports impossible sampling parameters.
var ErrParams = errors.New("invalid sampling parameters")

// Params are the knobs of a sampler. The zero value is greedy.
type Params struct {
	// Temperature 0 means greedy.
	Temperature float64
	// TopK keeps the K most likely tokens (0: all).
	TopK int
	// TopP keeps the smallest set of tokens whose probability reaches P
	// (0 or 1: all).
	TopP float64
	// MinP keeps the tokens whose probability is at least MinP times the
	// most likely token's (0: all).
	MinP float64
	Seed uint64
}

// Validate reports the first impossible parameter.
func (p Params) Validate() error {
	switch {
	case p.Temperature < 0 || math.IsNaN(p.Temperature) || math.IsInf(p.Temperature, 0):
		return fmt.Errorf("%w: temperature %g must be a finite number ≥ 0", ErrParams, p.Temperature)
	case p.TopK < 0:
		return fmt.Errorf("%w: top-k %d must be ≥ 0", ErrParams, p.TopK)
	case p.TopP < 0 || p.TopP > 1 || math.IsNaN(p.TopP):
		return fmt.Errorf("%w: top-p %g must be in [0, 1]", ErrParams, p.TopP)
	case p.MinP < 0 || p.MinP > 1 || math.IsNaN(p.MinP):
		return fmt.Errorf("%w: min-p %g must be in [0, 1]", ErrParams, p.MinP)
	}
	return nil
}

// Sampler is a seeded sampler; it reuses its buffers between calls and is
// not safe for concurrent use.
type Sampler struct {
	p     Params
	rng   *rand.Rand
	cands []cand
}

type cand struct {
	id int32
	p  float64
}

// New returns a sampler for p.
func New(p Params) (*Sampler, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &Sampler{p: p, rng: rand.New(rand.NewPCG(p.Seed, p.Seed^0x9e3779b97f4a7c15))}, nil
}

// Greedy returns the index of the largest logit (the first on ties, as
// torch.argmax does).
func Greedy(logits []float32) int32 { return topk.Argmax(logits) }

// Sample picks a token id.
func (s *Sampler) Sample(logits []float32) int32 {
	if s.p.Temperature == 0 {
		return Greedy(logits)
	}
	s.cands = s.cands[:0]
	for i, v := range logits {
		s.cands = append(s.cands, cand{int32(i), float64(v) / s.p.Temperature})
	}
	slices.SortStableFunc(s.cands, func(a, b cand) int { return cmp.Compare(b.p, a.p) })
	return s.pick()
}

// SampleCandidates picks among candidates ids with their logits, best
// first (as a vocabulary-parallel merge returns them): the top-K a
// cluster's ranks sent instead of whole rows. Greedy and top-k ≤ K are
// exact; top-p renormalises over the K candidates.
func (s *Sampler) SampleCandidates(ids []int32, logits []float32) int32 {
	if s.p.Temperature == 0 || len(ids) == 1 {
		return ids[0]
	}
	s.cands = s.cands[:0]
	for i, id := range ids {
		s.cands = append(s.cands, cand{id, float64(logits[i]) / s.p.Temperature})
	}
	return s.pick()
}

// pick samples from s.cands, sorted best first.
func (s *Sampler) pick() int32 {
	if k := s.p.TopK; k > 0 && k < len(s.cands) {
		s.cands = s.cands[:k]
	}
	top := s.cands[0].p
	var sum float64
	for i := range s.cands {
		s.cands[i].p = math.Exp(s.cands[i].p - top)
		sum += s.cands[i].p
	}
	if mp := s.p.MinP; mp > 0 {
		// Relative to the best token, whose weight is exp(0) = 1.
		sum = 0
		keep := s.cands[:0]
		for _, c := range s.cands {
			if c.p >= mp {
				keep = append(keep, c)
				sum += c.p
			}
		}
		s.cands = keep
	}
	if p := s.p.TopP; p > 0 && p < 1 {
		var acc float64
		for i := range s.cands {
			acc += s.cands[i].p / sum
			if acc >= p {
				s.cands = s.cands[:i+1]
				break
			}
		}
		sum = 0
		for _, c := range s.cands {
			sum += c.p
		}
	}
	r := s.rng.Float64() * sum
	for _, c := range s.cands {
		r -= c.p
		if r <= 0 {
			return c.id
		}
	}
	return s.cands[len(s.cands)-1].id
}
