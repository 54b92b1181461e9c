// Package topk combines vocabulary-parallel logits without moving them.
//
// With the LM head split by vocabulary rows, each last-stage rank holds the
// logits of a slice of the vocabulary. Instead of gathering full rows (a
// BLOOM row is 250k floats), each rank sends a Partial: its local top-k and
// the log-sum-exp over its slice. Merge turns the partials into the global
// top-k with exact log-probabilities: a token in the global top-k is in its
// own slice's top-k, and the global log-sum-exp is the log-sum-exp of the
// slices' log-sum-exps. Greedy decoding, top-k sampling and logprobs are
// therefore exact.
//
// Ordering is by logit, highest first, ties to the lower id: the first-max
// rule of Argmax (and torch.argmax).
package topk

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/tessera-llm/tessera/kernels"
)

// MaxTopK bounds the candidates a step may ask each rank for: the
// coordinator's scheduler never asks for more, and workers refuse more.
const MaxTopK = 1024

// Partial is one rank's contribution: the top entries of its vocabulary
// slice [Offset, Offset+Len), best first, and the slice's log-sum-exp.
type Partial struct {
	// Offset is the global id of the slice's first token; Len the slice's
	// length.
	Offset int
	Len    int
	// IDs are global token ids, Logits their logits, best first.
	IDs    []int32
	Logits []float32
	// LSE is log Σ exp(logit) over the whole slice, in float64.
	LSE float64
}

// Local computes a rank's Partial from the logits of its vocabulary slice,
// which starts at global id offset: the k best entries (all of them when
// the slice is shorter) and the log-sum-exp. Logits must not be NaN; -Inf
// (a masked token) is fine. The arithmetic is kernels.TopKRow's, the host
// reference of the backends' TopK, so a partial computed on the host and
// one computed where the logits live are identical.
func Local(logits []float32, offset, k int) Partial {
	r := kernels.TopKRow(logits, offset, k)
	return Partial{Offset: offset, Len: len(logits), IDs: r.IDs, Logits: r.Logits, LSE: r.LSE}
}

// Merge returns the global top k (fewer when the partials hold fewer) ids,
// best first, their log-probabilities logit − lse, and the global
// log-sum-exp lse. It is exact when every partial holds its slice's best
// min(k, Len) entries, which Check verifies.
func Merge(parts []Partial, k int) (ids []int32, logprobs []float64, lse float64) {
	lses := make([]float64, len(parts))
	n := 0
	for i, p := range parts {
		lses[i] = p.LSE
		n += len(p.IDs)
	}
	lse = LogSumExp(lses)
	type cand struct {
		id    int32
		logit float32
	}
	cands := make([]cand, 0, n)
	for _, p := range parts {
		for i, id := range p.IDs {
			cands = append(cands, cand{id, p.Logits[i]})
		}
	}
	slices.SortFunc(cands, func(a, b cand) int {
		if c := cmp.Compare(b.logit, a.logit); c != 0 {
			return c
		}
		return cmp.Compare(a.id, b.id)
	})
	cands = cands[:max(0, min(k, len(cands)))]
	ids = make([]int32, len(cands))
	logprobs = make([]float64, len(cands))
	for i, c := range cands {
		ids[i] = c.id
		logprobs[i] = float64(c.logit) - lse
	}
	return ids, logprobs, lse
}

// LogSumExp is log Σ exp(x), computed stably; -Inf for no terms or all -Inf.
func LogSumExp(xs []float64) float64 {
	m := math.Inf(-1)
	for _, x := range xs {
		m = max(m, x)
	}
	if math.IsInf(m, 0) {
		return m
	}
	var s float64
	for _, x := range xs {
		s += math.Exp(x - m)
	}
	return m + math.Log(s)
}

// ErrPartial reports partials that cannot be merged exactly.
var ErrPartial = errors.New("invalid vocabulary partial")

// Check verifies partials from the network before Merge: matching lengths,
// ids inside their own slice, best-first order, disjoint slices, and at
// least min(k, Len) entries each so that the merge is exact.
func Check(parts []Partial, k int) error {
	type span struct{ a, b, part int }
	spans := make([]span, 0, len(parts))
	for i, p := range parts {
		bad := func(format string, args ...any) error {
			return fmt.Errorf("%w: part %d (vocab [%d,%d)): %s", ErrPartial, i, p.Offset, p.Offset+p.Len,
				fmt.Sprintf(format, args...))
		}
		switch {
		case p.Offset < 0 || p.Len < 0:
			return bad("negative offset or length")
		case len(p.IDs) != len(p.Logits):
			return bad("%d ids but %d logits", len(p.IDs), len(p.Logits))
		case len(p.IDs) < min(k, p.Len):
			return bad("%d entries, the merge needs %d", len(p.IDs), min(k, p.Len))
		case len(p.IDs) > p.Len:
			return bad("%d entries for a slice of %d", len(p.IDs), p.Len)
		case math.IsNaN(p.LSE) || math.IsInf(p.LSE, 1):
			return bad("log-sum-exp %g", p.LSE)
		}
		for j, id := range p.IDs {
			switch {
			case int(id) < p.Offset || int(id) >= p.Offset+p.Len:
				return bad("id %d outside the slice", id)
			case math.IsNaN(float64(p.Logits[j])):
				return bad("NaN logit for id %d", id)
			case j > 0 && (p.Logits[j] > p.Logits[j-1] || (p.Logits[j] == p.Logits[j-1] && id <= p.IDs[j-1])):
				return bad("entries not best first at %d", j)
			}
		}
		spans = append(spans, span{p.Offset, p.Offset + p.Len, i})
	}
	slices.SortFunc(spans, func(x, y span) int { return cmp.Compare(x.a, y.a) })
	for i := 1; i < len(spans); i++ {
		if spans[i].a < spans[i-1].b {
			return fmt.Errorf("%w: parts %d and %d overlap", ErrPartial, spans[i-1].part, spans[i].part)
		}
	}
	return nil
}

// Argmax returns the index of the largest logit, the first on ties, as
// torch.argmax does; it is greedy decoding.
func Argmax(logits []float32) int32 {
	best := 0
	for i, v := range logits {
		if v > logits[best] {
			best = i
		}
	}
	return int32(best)
}

// Mask sets to -Inf the logits of a vocabulary slice starting at global id
// offset whose tokens a constraint does not allow. allow is a bitset over
// global ids (bit i of byte i/8); ids past its end are not allowed. A
// masked row's top-k and log-sum-exp then cover the allowed tokens only,
// so the merge of masked partials is the constrained distribution.
func Mask(logits []float32, offset int, allow []byte) {
	inf := float32(math.Inf(-1))
	for j := range logits {
		id := offset + j
		if id>>3 >= len(allow) || allow[id>>3]&(1<<(id&7)) == 0 {
			logits[j] = inf
		}
	}
}
