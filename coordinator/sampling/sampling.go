// Package sampling chooses next tokens from logits: greedy, or seeded
// sampling with temperature, top-k, top-p (nucleus) and min-p filtering,
// after a logit bias and presence, frequency and repetition penalties.
// Params.Validate is the one rule for these knobs' ranges.
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

// ParamError names the parameter an impossible value was given for, by
// its OpenAI/vLLM request name, so the API can report it as is.
type ParamError struct {
	Param string
	Msg   string
}

func (e *ParamError) Error() string { return e.Msg }

// Unwrap makes every ParamError an ErrParams.
func (e *ParamError) Unwrap() error { return ErrParams }

func paramError(param, format string, a ...any) error {
	return &ParamError{Param: param, Msg: fmt.Sprintf(format, a...)}
}

// MaxLogitBias bounds a logit_bias value, as OpenAI does.
const MaxLogitBias = 100

// Params are the knobs of a sampler. The zero value is greedy, and a zero
// knob is off.
type Params struct {
	// Temperature 0 means greedy.
	Temperature float64
	// TopK keeps the K most likely tokens (0: all).
	TopK int
	// TopP keeps the smallest set of tokens whose probability reaches P,
	// in (0, 1] (0, the zero value, and 1: all).
	TopP float64
	// MinP keeps the tokens whose probability is at least MinP times the
	// most likely token's (0: all).
	MinP float64
	Seed uint64
	// PresencePenalty and FrequencyPenalty (OpenAI's) lower the logit of
	// each generated token once, and once per occurrence. Any finite value
	// works; OpenAI's API narrows them to [-2, 2], and so does ours.
	PresencePenalty, FrequencyPenalty float64
	// RepetitionPenalty (Hugging Face's, > 0) divides the positive logits
	// and multiplies the negative ones of every token in the prompt or
	// generated so far (0, the zero value, and 1: none).
	RepetitionPenalty float64
	// LogitBias is added to the logits of its token ids before sampling
	// (OpenAI's logit_bias), in [-MaxLogitBias, 0]. Positive values are
	// refused: the cluster samples from the workers' merged top-k, which
	// cannot show a token a positive bias would raise from outside it.
	// Lowering a candidate is exact when the candidates are widened by
	// len(LogitBias) (see Adjust).
	LogitBias map[int32]float64
}

// Validate reports the first impossible parameter as a *ParamError: the
// one rule for sampling ranges, which the API and the scheduler share.
func (p Params) Validate() error {
	switch {
	case p.Temperature < 0 || math.IsNaN(p.Temperature) || math.IsInf(p.Temperature, 0):
		return paramError("temperature", "temperature must be a finite number ≥ 0, got %v", p.Temperature)
	case p.TopK < 0:
		return paramError("top_k", "top_k must be ≥ 1, or 0 or -1 for no limit; got %d", p.TopK)
	case !(p.TopP >= 0 && p.TopP <= 1):
		return paramError("top_p", "top_p must be in (0, 1], got %v", p.TopP)
	case !(p.MinP >= 0 && p.MinP <= 1):
		return paramError("min_p", "min_p must be in [0, 1], got %v", p.MinP)
	case math.IsNaN(p.PresencePenalty) || math.IsInf(p.PresencePenalty, 0):
		return paramError("presence_penalty", "presence_penalty must be a finite number, got %v", p.PresencePenalty)
	case math.IsNaN(p.FrequencyPenalty) || math.IsInf(p.FrequencyPenalty, 0):
		return paramError("frequency_penalty", "frequency_penalty must be a finite number, got %v", p.FrequencyPenalty)
	case !(p.RepetitionPenalty >= 0) || math.IsInf(p.RepetitionPenalty, 0):
		return paramError("repetition_penalty", "repetition_penalty must be a finite number > 0 (1 is none), got %v", p.RepetitionPenalty)
	}
	for id, b := range p.LogitBias {
		switch {
		case id < 0:
			return paramError("logit_bias", "logit_bias token id %d is negative", id)
		case b > 0 && b <= MaxLogitBias:
			return paramError("logit_bias", "logit_bias %v for token %d is positive: only biases in [-%d, 0] are served, since "+
				"tokens are sampled from the workers' merged top-k candidates and a raised token may lie outside them", b, id, MaxLogitBias)
		case !(b >= -MaxLogitBias && b <= MaxLogitBias):
			return paramError("logit_bias", "logit_bias for token %d must be in [-%d, %d], got %v", id, MaxLogitBias, MaxLogitBias, b)
		}
	}
	return nil
}

// Sampler is a seeded sampler; it reuses its buffers between calls and is
// not safe for concurrent use. It keeps the history its penalties need:
// the prompt (SetPrompt) and each accepted token (Accept).
type Sampler struct {
	p      Params
	rng    *rand.Rand
	cands  []cand
	prompt []int32
	gen    []int32
	// counts of generated tokens (presence and frequency penalties) and
	// seen, every token of prompt and generation (repetition penalty):
	// made on first use.
	counts map[int32]int
	seen   map[int32]bool
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

// SetPrompt gives the prompt the repetition penalty covers; call it
// before the first Adjust.
func (s *Sampler) SetPrompt(prompt []int32) { s.prompt = prompt }

// Accept records a generated token for the penalties.
func (s *Sampler) Accept(id int32) {
	s.gen = append(s.gen, id)
	if s.counts != nil {
		s.counts[id]++
	}
	if s.seen != nil {
		s.seen[id] = true
	}
}

// Widen is how many more candidates than it samples from a row needs for
// Adjust to be exact: one per biased token, which a bias may push below
// the others.
func (p Params) Widen() int { return len(p.LogitBias) }

// Adjust applies the logit bias and the penalties to candidates ids (best
// first, as a merge returns them) and their logits, in place, and reports
// whether it changed any. Tokens outside the candidates are not
// reconsidered: with biases only ≤ 0 and Widen extra candidates, the best
// len(ids)-Widen after Adjust and SortCandidates are exactly the best of
// the whole row, since at most Widen candidates were lowered.
func (s *Sampler) Adjust(ids []int32, logits []float32) bool {
	p := s.p
	changed := false
	for i, id := range ids {
		if b, ok := p.LogitBias[id]; ok && b != 0 {
			logits[i] += float32(b)
			changed = true
		}
	}
	if p.PresencePenalty != 0 || p.FrequencyPenalty != 0 {
		changed = true
		if s.counts == nil {
			s.counts = map[int32]int{}
			for _, t := range s.gen {
				s.counts[t]++
			}
		}
		for i, id := range ids {
			if c := s.counts[id]; c > 0 {
				logits[i] -= float32(p.PresencePenalty + p.FrequencyPenalty*float64(c))
			}
		}
	}
	if p.RepetitionPenalty > 0 && p.RepetitionPenalty != 1 {
		changed = true
		if s.seen == nil {
			s.seen = make(map[int32]bool, len(s.prompt)+len(s.gen))
			for _, t := range s.prompt {
				s.seen[t] = true
			}
			for _, t := range s.gen {
				s.seen[t] = true
			}
		}
		for i, id := range ids {
			if !s.seen[id] {
				continue
			}
			if logits[i] > 0 {
				logits[i] /= float32(p.RepetitionPenalty)
			} else {
				logits[i] *= float32(p.RepetitionPenalty)
			}
		}
	}
	return changed
}

// SortCandidates orders (ids, logits) by logit, best first, ties by id:
// the order SampleCandidates wants after Adjust reordered them.
func SortCandidates(ids []int32, logits []float32) {
	idx := make([]int, len(ids))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		if logits[a] != logits[b] {
			return cmp.Compare(logits[b], logits[a])
		}
		return cmp.Compare(ids[a], ids[b])
	})
	si, sl := slices.Clone(ids), slices.Clone(logits)
	for i, j := range idx {
		ids[i], logits[i] = si[j], sl[j]
	}
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
