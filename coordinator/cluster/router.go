package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	tesserav1 "github.com/tessera-llm/tessera/proto/tessera/v1"
	"github.com/tessera-llm/tessera/shard/transport"
)

// errPlanGone answers the steps in flight when their plan stops serving.
var errPlanGone = errors.New("the plan stopped serving")

// router hands the results arriving for a plan to the steps in flight,
// by step id, and books every stage's reported busy time.
type router struct {
	results *transport.Receiver
	last    int32 // the last stage, whose ranks answer with rows
	ranks   int
	clock   *stageClock

	mu      sync.Mutex
	waiting map[uint64]*waiter
	err     error         // set once the results stop
	tail    chan struct{} // the newest step's settled
}

// waiter gathers one step's answers; done closes when every last-stage
// rank answered, or err is set. settled closes when nobody waits for the
// step any more; prev is the settled of the step sent before it.
type waiter struct {
	got           []*tesserav1.StepResult
	n             int
	err           error
	done          chan struct{}
	prev, settled chan struct{}
	settle        func()
}

func newRouter(results *transport.Receiver, stages, ranks int, clock *stageClock) *router {
	return &router{results: results, last: int32(stages - 1), ranks: ranks, clock: clock, waiting: map[uint64]*waiter{}}
}

// expect registers a step before it is sent, so that no answer is missed.
func (r *router) expect(step uint64) *waiter {
	w := &waiter{got: make([]*tesserav1.StepResult, r.ranks), done: make(chan struct{}), settled: make(chan struct{})}
	w.settle = sync.OnceFunc(func() { close(w.settled) })
	r.mu.Lock()
	defer r.mu.Unlock()
	w.prev, r.tail = r.tail, w.settled
	if r.err != nil {
		w.err = r.err
		close(w.done)
		return w
	}
	r.waiting[step] = w
	return w
}

// forget drops a step nobody waits for any more; its late answers are
// ignored.
func (r *router) forget(step uint64, w *waiter) {
	r.mu.Lock()
	delete(r.waiting, step)
	r.mu.Unlock()
	w.settle()
}

// run routes results until they stop (the plan is deactivated), then
// fails the steps still waiting.
func (r *router) run(ctx context.Context) {
	for {
		t, err := r.results.Next(ctx)
		if err != nil {
			r.mu.Lock()
			r.err = fmt.Errorf("%w: %w", errPlanGone, err)
			for id, w := range r.waiting {
				w.err = r.err
				close(w.done)
				delete(r.waiting, id)
			}
			r.mu.Unlock()
			return
		}
		r.route(t)
	}
}

func (r *router) route(t *transport.Tensor) {
	var res tesserav1.StepResult
	if proto.Unmarshal(t.Data, &res) != nil || t.Stage < 0 || t.Stage > r.last {
		return // garbage
	}
	if res.Rank == 0 && res.BusyNs > 0 {
		r.clock.busy(int(t.Stage), time.Duration(res.BusyNs))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	w := r.waiting[res.StepId]
	if w == nil {
		return // a late answer to an abandoned step
	}
	if res.Error != "" {
		w.err = fmt.Errorf("stage %d rank %d: %s", t.Stage, res.Rank, res.Error)
		close(w.done)
		delete(r.waiting, res.StepId)
		return
	}
	if t.Stage != r.last || res.Rank < 0 || int(res.Rank) >= len(w.got) || w.got[res.Rank] != nil {
		return // a busy report of an earlier stage, or a stray answer
	}
	w.got[res.Rank] = &res
	if w.n++; w.n == len(w.got) {
		close(w.done)
		delete(r.waiting, res.StepId)
	}
}
