package scheduler

import (
	"slices"
)

func (s *Scheduler) drain() {
	for {
		select {
		case q := <-s.in:
			s.waiting = append(s.waiting, q)
		default:
			return
		}
	}
}

func (s *Scheduler) dropCancelled() {
	keep := s.running[:0]
	for _, q := range s.running {
		if err := q.ctx.Err(); err != nil && !q.busy { // a busy one goes when its step lands
			s.retire(q)
			s.finish(q, "", err)
			continue
		}
		keep = append(keep, q)
	}
	s.running = keep
	w := s.waiting[:0]
	for _, q := range s.waiting {
		if err := q.ctx.Err(); err != nil {
			s.finish(q, "", err)
			continue
		}
		w = append(w, q)
	}
	s.waiting = w
}

// admit starts waiting requests in order while their uncomputed tokens
// fit the free blocks. A request first takes the cached blocks of its
// longest cached prefix, always leaving one token to compute for logits.
func (s *Scheduler) admit() {
	for len(s.waiting) > 0 && len(s.running) < s.cfg.MaxBatch {
		q := s.waiting[0]
		if s.cfg.PrefixCaching && len(q.blocks.Table) == 0 {
			q.fed = s.alloc.Match(&q.blocks, q.tokens, len(q.tokens)-1)
		}
		if s.alloc.Need(&q.blocks, len(q.tokens)-q.fed+1) > s.alloc.FreeBlocks() {
			s.alloc.Release(&q.blocks)
			q.fed = 0
			return
		}
		s.stats.prefixHit.Add(int64(q.fed))
		s.waiting = s.waiting[1:]
		s.running = append(s.running, q)
	}
}

// preempt stops q to free its blocks: it waits again at the front and
// recomputes its tokens (from the prefix cache where it can) later.
func (s *Scheduler) preempt(q *seq) {
	s.retire(q)
	q.id, q.fed = s.nextID.Add(1), 0
	s.running = slices.DeleteFunc(s.running, func(o *seq) bool { return o == q })
	s.waiting = append([]*seq{q}, s.waiting...)
	s.stats.preempted.Add(1)
}

// victim is the newest running sequence neither in the step being built
// nor in flight.
func (s *Scheduler) victim(inStep []*seq, keep *seq) *seq {
	for i := len(s.running) - 1; i >= 0; i-- {
		if q := s.running[i]; q != keep && !q.busy && !slices.Contains(inStep, q) {
			return q
		}
	}
	return nil
}
