package scheduler

import (
	"context"
	"errors"
	"fmt"
	"slices"

	tesserav1 "github.com/tessera-llm/tessera/proto/tessera/v1"
	"github.com/tessera-llm/tessera/shard/topk"
)

// Pipeline is a Stepper whose stages can each work on a different step at
// once: it takes a new step before the earlier ones complete (vLLM's
// virtual engines; GPipe's micro-batches without a backward pass). The
// scheduler finds it by type assertion; a plain Stepper runs one step at a
// time.
type Pipeline interface {
	Stepper
	// InFlight is how many steps may be outstanding at once (at least 1).
	InFlight() int
	// Send publishes st to the workers, in the order of the calls, and
	// returns how to wait for its result.
	Send(ctx context.Context, st *tesserav1.Step) (Await, error)
}

// Await waits for a sent step's result: per logit row, the last stage's
// vocabulary-slice partials, as Stepper.Step returns them.
type Await func(ctx context.Context) ([][]topk.Partial, error)

// flight is one step on its way through the workers. Its sequences are
// busy until it lands: a sequence is in at most one step at a time, and
// neither preemption nor cancellation touches it meanwhile.
type flight struct {
	st      *tesserav1.Step
	rows    []*seq // every span's sequence, in row order
	cancel  context.CancelFunc
	landed  chan landing
	release []uint64 // the ids this step tells the workers to forget
}

type landing struct {
	parts [][]topk.Partial
	err   error
}

// inFlight is how many steps may be outstanding now.
func (s *Scheduler) inFlight() int {
	if p, ok := s.stepper.(Pipeline); ok {
		return max(p.InFlight(), 1)
	}
	return 1
}

// send starts st for rows: through the Pipeline when the stepper is one,
// else by running the step to its end before returning.
func (s *Scheduler) send(ctx context.Context, st *tesserav1.Step, rows []*seq) {
	fctx, cancel := context.WithCancel(ctx)
	f := &flight{st: st, rows: rows, cancel: cancel, landed: make(chan landing, 1), release: st.Release}
	for _, q := range rows {
		q.busy = true
	}
	if len(s.flying) > 0 {
		s.stats.overlapped.Add(1)
	}
	s.flying = append(s.flying, f)
	s.release = nil
	p, ok := s.stepper.(Pipeline)
	if !ok {
		parts, err := s.stepper.Step(fctx, st)
		f.landed <- landing{parts, err}
		return
	}
	await, err := p.Send(fctx, st)
	if err != nil {
		f.landed <- landing{err: err}
		return
	}
	go func() {
		parts, err := await(fctx)
		f.landed <- landing{parts, err}
	}()
}

// land applies the oldest flight's result: its sequences take their new
// tokens, or, when it failed, every sequence restarts (see recover).
func (s *Scheduler) land(ctx context.Context, l landing) error {
	f := s.flying[0]
	parts, err := l.parts, l.err
	if err == nil && len(parts) != len(f.rows) {
		err = fmt.Errorf("step %d: %d result rows for %d spans", f.st.StepId, len(parts), len(f.rows))
	}
	if err != nil {
		s.abandon()
		switch {
		case ctx.Err() != nil:
		case errors.Is(err, ErrPlanChanged):
			s.restartAll() // the next step learns the new version
		default:
			s.cfg.Logger.Warn("step failed; replaying its sequences", "step", f.st.StepId, "err", err)
			s.replayAll(err)
		}
		return err
	}
	s.flying = s.flying[1:]
	f.cancel()
	for _, q := range f.rows {
		q.busy = false
	}
	s.stats.steps.Add(1)
	for i, q := range f.rows {
		n := int(f.st.Spans[i].Tokens)
		if decode := n == 1 && len(q.gen) > 0 && q.fed+1 == len(q.tokens); !decode {
			s.stats.prefill.Add(int64(n))
		}
		q.fed += n
		q.blocks.Len = q.fed
		if s.cfg.PrefixCaching {
			s.alloc.Commit(&q.blocks, q.tokens)
		}
		s.alloc.Slide(&q.blocks, s.cfg.Window)
		if q.fed == len(q.tokens) {
			s.sample(q, parts[i], int(f.st.TopK))
		}
	}
	s.dropFinished()
	return nil
}

// abandon gives up every step in flight: after a failed step or a new
// plan their results can no longer be trusted, and the sequences restart
// anyway. Their release lists go out again with the next step.
func (s *Scheduler) abandon() {
	var release []uint64
	for _, f := range s.flying {
		f.cancel()
		for _, q := range f.rows {
			q.busy = false
		}
		release = append(release, f.release...)
	}
	s.flying = nil
	s.release = append(release, s.release...)
}

// microBatch is how many sequences one step may carry: with several
// steps in flight the running set is split among them, so that every
// stage has a step to work on.
func (s *Scheduler) microBatch() int {
	d := s.inFlight()
	return max((len(s.running)+d-1)/d, 1)
}

// idleRunning reports whether a running sequence is in no flight.
func (s *Scheduler) idleRunning() bool {
	return slices.ContainsFunc(s.running, func(q *seq) bool { return !q.busy })
}
