package scheduler

import (
	"context"
	"fmt"
	"math"
	"slices"

	"github.com/tessera-llm/tessera/coordinator/guide"
	"github.com/tessera-llm/tessera/coordinator/sampling"
	tesserav1 "github.com/tessera-llm/tessera/proto/tessera/v1"
	"github.com/tessera-llm/tessera/shard/topk"
)

// launch builds one step from the running sequences that are in no
// flight and sends it. It reports whether it sent one.
func (s *Scheduler) launch(ctx context.Context) (bool, error) {
	v, err := s.stepper.PlanVersion(ctx)
	if err != nil {
		return false, err
	}
	if v != s.plan {
		if s.plan != 0 {
			s.abandon()
			s.restartAll()
		}
		s.plan = v
	}
	s.stepID++
	st := &tesserav1.Step{StepId: s.stepID, PlanVersion: s.plan, Release: s.release}
	budget, topK, seqs := s.cfg.TokenBudget, s.cfg.TopK, s.microBatch()
	var rows []*seq // every span's sequence, in row order
	// Decodes first (one token each), then prompt chunks with what is left.
	order := make([]*seq, 0, len(s.running))
	for _, q := range s.running {
		if len(q.tokens)-q.fed == 1 && !q.busy {
			order = append(order, q)
		}
	}
	for _, q := range s.running {
		if len(q.tokens)-q.fed > 1 && !q.busy {
			order = append(order, q)
		}
	}
	for _, q := range order {
		if !slices.Contains(s.running, q) {
			continue // preempted for an earlier sequence of this step
		}
		n := min(len(q.tokens)-q.fed, budget)
		if n <= 0 || len(rows) == seqs {
			break
		}
		fits := true
		for s.alloc.Reserve(&q.blocks, n) != nil {
			v := s.victim(rows, q)
			if v == nil {
				fits = false
				break
			}
			s.preempt(v)
		}
		if !fits {
			continue
		}
		var allow []byte
		if q.req.Guide != nil && q.fed+n == len(q.tokens) {
			m, err := q.req.Guide.Allowed(q.at)
			if err == nil && m.N == 0 {
				err = fmt.Errorf("%w: no token of the vocabulary continues the constraint", guide.ErrUnsatisfiable)
			}
			if err != nil {
				s.retire(q)
				s.finish(q, "", err)
				continue
			}
			allow = m.Bits
		}
		budget -= n
		st.Tokens = append(st.Tokens, q.tokens[q.fed:q.fed+n]...)
		st.Spans = append(st.Spans, &tesserav1.SeqSpan{SeqId: q.id, Tokens: int32(n), Cached: int32(q.fed),
			BlockTable: slices.Clone(q.blocks.Table), Allow: allow})
		rows = append(rows, q)
		topK = max(topK, s.width(q.req))
	}
	if len(rows) == 0 {
		s.dropFinished()
		return false, nil
	}
	st.TopK = int32(topK) // Check keeps every width within topk.MaxTopK
	s.send(ctx, st, rows)
	return true, nil
}

// sample picks q's next token from the merged candidates of its row,
// after the logit bias, the penalties and the min_tokens rule. k is the
// step's candidate count, at least width(q.req).
func (s *Scheduler) sample(q *seq, parts []topk.Partial, k int) {
	if err := topk.Check(parts, k); err != nil {
		s.retire(q)
		s.finish(q, "", err)
		return
	}
	ids, logprobs, lse := topk.Merge(parts, k)
	// Tokens a constraint masked come last, at -Inf: never candidates.
	for len(ids) > 1 && math.IsInf(logprobs[len(ids)-1], -1) {
		ids, logprobs = ids[:len(ids)-1], logprobs[:len(logprobs)-1]
	}
	cands := slices.Clone(ids)
	logits := make([]float32, len(ids))
	for i := range ids {
		logits[i] = float32(logprobs[i] + lse) // the raw logit, for HF's repetition penalty
	}
	changed := q.sampler.Adjust(cands, logits)
	if s.banEnds(q, cands, logits) {
		changed = true
	}
	if changed {
		// Adjustments reorder candidates; samplers want them best first.
		sampling.SortCandidates(cands, logits)
	}
	// A biased candidate may have sunk below tokens the merge left out:
	// only the first len-Widen are surely the row's best.
	n := len(cands)
	if n < s.cfg.Vocab {
		n = max(n-q.req.Sampling.Widen(), 1)
	}
	id := q.sampler.SampleCandidates(cands[:n], logits[:n])
	tok := Token{ID: id, Logprob: logprobs[slices.Index(ids, id)]}
	for i := range min(q.req.TopLogprobs, len(ids)) {
		tok.Top = append(tok.Top, Candidate{ID: ids[i], Logprob: logprobs[i]})
	}
	final := false
	if g := q.req.Guide; g != nil {
		var err error
		if q.at, err = g.Advance(q.at, id); err == nil {
			final, err = g.Final(q.at)
		}
		if err != nil {
			s.retire(q)
			s.finish(q, "", err)
			return
		}
	}
	q.gen = append(q.gen, tok)
	q.tokens = append(q.tokens, id)
	q.sampler.Accept(id)
	s.stats.generated.Add(1)
	q.h.tokens <- tok // buffered for MaxTokens: never blocks
	switch {
	case final || len(q.gen) >= q.req.MinTokens && s.ends(q, id):
		s.retire(q)
		s.finish(q, "stop", nil)
	case len(q.gen) >= q.req.MaxTokens:
		s.retire(q)
		s.finish(q, "length", nil)
	}
}

// ends reports whether id ends q: a stop id, or EOS unless ignored.
func (s *Scheduler) ends(q *seq, id int32) bool {
	return slices.Contains(q.req.StopIDs, id) || (!q.req.IgnoreEOS && s.cfg.EOS >= 0 && id == s.cfg.EOS)
}

// banEnds removes the candidates that would end q while it has fewer
// than MinTokens tokens, unless nothing else is left (the model
// insists), and reports whether it removed any.
func (s *Scheduler) banEnds(q *seq, ids []int32, logits []float32) bool {
	if len(q.gen) >= q.req.MinTokens {
		return false
	}
	var banned []int
	for i, id := range ids {
		if s.ends(q, id) {
			banned = append(banned, i)
		}
	}
	if len(banned) == 0 || len(banned) == len(ids) {
		return false
	}
	for _, i := range banned {
		logits[i] = float32(math.Inf(-1))
	}
	return true
}

// dropFinished removes the sequences that finished (or failed) from the
// running set.
func (s *Scheduler) dropFinished() {
	s.running = slices.DeleteFunc(s.running, func(q *seq) bool { return q.h.res.Finish != "" || q.h.res.Err != nil })
}
