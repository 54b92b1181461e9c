package scheduler

import (
	"fmt"
	"time"
)

// replayAll restarts every running sequence from token 0 under a new id:
// the workers' KV of the failed step cannot be trusted, nor the prefix
// cache.
func (s *Scheduler) replayAll(cause error) {
	s.stats.replays.Add(1)
	defer s.alloc.Forget()
	keep := s.running[:0]
	for _, q := range s.running {
		s.retire(q)
		q.replays++
		if q.replays > s.cfg.MaxReplays {
			s.finish(q, "", fmt.Errorf("gave up after %d replays: %w", q.replays-1, cause))
			continue
		}
		q.id, q.fed = s.nextID.Add(1), 0
		keep = append(keep, q)
	}
	s.running = keep
	time.Sleep(50 * time.Millisecond) // let a re-plan land before retrying
}

// restartAll moves every running sequence to fresh KV under new ids after
// a plan change: nothing failed, so no replay is counted.
func (s *Scheduler) restartAll() {
	for _, q := range s.running {
		s.retire(q)
		q.id, q.fed = s.nextID.Add(1), 0
	}
	s.release = nil // the new plan's workers never saw the old ids
	s.alloc.Forget()
}

// retire frees q's blocks and tells the workers to forget it.
func (s *Scheduler) retire(q *seq) {
	if len(q.blocks.Table) > 0 || q.fed > 0 {
		s.release = append(s.release, q.id)
	}
	s.alloc.Release(&q.blocks)
}

func (s *Scheduler) finish(q *seq, reason string, err error) {
	if q.h.res.Finish != "" || q.h.res.Err != nil {
		return
	}
	q.h.res = Result{Tokens: q.gen, Finish: reason, Err: err}
	close(q.h.tokens)
	close(q.h.done)
	s.queued.Add(-1)
}
