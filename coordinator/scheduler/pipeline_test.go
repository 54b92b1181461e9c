package scheduler

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	tesserav1 "github.com/tessera-llm/tessera/proto/tessera/v1"
	"github.com/tessera-llm/tessera/shard/topk"
)

// fakePipeline is a Pipeline over the fake cluster: steps run in the
// order they were sent, one after another, while the scheduler may send
// more, like stages that each take the next micro-batch when free. At
// every send it checks the overlap invariants against the steps still
// outstanding (sent, result not yet taken): no sequence in two of them,
// and no block that the new step writes named by another. A failed step
// loses the KV of every sequence sent so far, as a lost worker does: the
// steps in flight with them fail too.
type fakePipeline struct {
	*fakeCluster
	depth int
	queue chan pipeJob

	mu   sync.Mutex
	out  map[uint64]*tesserav1.Step
	most int // outstanding steps at most
	seen map[uint64]bool
	lost map[uint64]bool
}

type pipeJob struct {
	st  *tesserav1.Step
	res chan landing
}

func newFakePipeline(t *testing.T, depth int) *fakePipeline {
	p := &fakePipeline{fakeCluster: newFake(t), depth: depth, queue: make(chan pipeJob, 64), out: map[uint64]*tesserav1.Step{},
		seen: map[uint64]bool{}, lost: map[uint64]bool{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for j := range p.queue {
			time.Sleep(200 * time.Microsecond) // a stage's compute: the scheduler sends meanwhile
			p.mu.Lock()
			gone := slices.ContainsFunc(j.st.Spans, func(sp *tesserav1.SeqSpan) bool { return p.lost[sp.SeqId] })
			p.mu.Unlock()
			if gone {
				j.res <- landing{err: errors.New("KV lost with the worker")}
				continue
			}
			parts, err := p.fakeCluster.Step(context.Background(), j.st)
			if err != nil {
				p.mu.Lock()
				p.lost = maps.Clone(p.seen)
				p.mu.Unlock()
			}
			j.res <- landing{parts, err}
		}
	}()
	t.Cleanup(func() { close(p.queue); <-done })
	return p
}

func (p *fakePipeline) InFlight() int { return p.depth }

func (p *fakePipeline) Send(_ context.Context, st *tesserav1.Step) (Await, error) {
	p.mu.Lock()
	for _, o := range p.out {
		for _, sp := range st.Spans {
			bs := p.bs
			written := sp.BlockTable[int(sp.Cached)/bs : (int(sp.Cached+sp.Tokens)-1)/bs+1]
			for _, osp := range o.Spans {
				if osp.SeqId == sp.SeqId {
					p.t.Errorf("sequence %d is in steps %d and %d at once", sp.SeqId, o.StepId, st.StepId)
				}
				for _, b := range written {
					if slices.Contains(osp.BlockTable, b) {
						p.t.Errorf("step %d writes block %d, which step %d (in flight) names", st.StepId, b, o.StepId)
					}
				}
			}
		}
	}
	p.out[st.StepId] = st
	for _, sp := range st.Spans {
		p.seen[sp.SeqId] = true
	}
	p.most = max(p.most, len(p.out))
	if len(p.out) > p.depth {
		p.t.Errorf("%d steps in flight, at most %d allowed", len(p.out), p.depth)
	}
	p.mu.Unlock()
	j := pipeJob{st: st, res: make(chan landing, 1)}
	p.queue <- j
	return func(ctx context.Context) ([][]topk.Partial, error) {
		defer func() {
			p.mu.Lock()
			delete(p.out, st.StepId)
			p.mu.Unlock()
		}()
		select {
		case l := <-j.res:
			return l.parts, l.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}, nil
}

// Overlapped steps keep the scheduler's invariants: each request's greedy
// output is what it gets alone, through prefix caching, preemption and
// failed steps, with more than one step outstanding.
func TestOverlappedStepsKeepInvariants(t *testing.T) {
	cases := []struct {
		name    string
		cfg     Config
		failAt  []int
		prompt  func(i int) []int32
		preempt bool
	}{
		{"plain", Config{TokenBudget: 16}, nil, func(i int) []int32 {
			p := make([]int32, 3+i*2)
			for j := range p {
				p[j] = int32((i*7 + j) % vocab)
			}
			return p
		}, false},
		{"shared prefixes", Config{PrefixCaching: true, TokenBudget: 16}, nil, func(i int) []int32 {
			return []int32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, int32(i % 3), int32(i)}
		}, false},
		{"preemption", Config{Blocks: 14, BlockSize: 4}, nil, func(i int) []int32 {
			return []int32{int32(i), 9, 8, 7}
		}, true},
		{"failed steps", Config{PrefixCaching: true}, []int{4, 9, 10}, func(i int) []int32 {
			return []int32{int32(i), 3, 4, 5, 6}
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newFakePipeline(t, 3)
			for _, n := range tc.failAt {
				p.failAt[n] = true
			}
			s := start(t, tc.cfg, p)
			var wg sync.WaitGroup
			for i := range 12 {
				wg.Go(func() {
					prompt := tc.prompt(i)
					h, err := s.Submit(context.Background(), Request{Prompt: prompt, MaxTokens: 8 + i%5})
					if err != nil {
						t.Error(err)
						return
					}
					res := h.Wait()
					if want := expected(prompt, 8+i%5); res.Err != nil || fmt.Sprint(ids(res.Tokens)) != fmt.Sprint(want) {
						t.Errorf("request %d: %v %v, want %v", i, ids(res.Tokens), res.Err, want)
					}
				})
			}
			wg.Wait()
			waitIdle(t, s)
			p.mu.Lock()
			most := p.most
			p.mu.Unlock()
			st := s.Stats()
			if most < 2 || st.Overlapped == 0 {
				t.Errorf("at most %d step in flight (%d counted overlapping): the steps never overlapped", most, st.Overlapped)
			}
			if tc.preempt && st.Preemptions == 0 {
				t.Error("no preemption, though the requests cannot all fit; the case lost its point")
			}
			if len(tc.failAt) > 0 && st.Replays == 0 {
				t.Error("no replay; the case lost its point")
			}
			if st.BlocksUsed != 0 {
				t.Errorf("%d blocks used after all requests", st.BlocksUsed)
			}
		})
	}
}
