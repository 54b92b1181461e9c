package engine

import (
	"context"
	"fmt"
	"sync"

	"github.com/tessera-llm/tessera/worker/model"
)

// NewGroup returns the all-reduce endpoints of n ranks that live in one
// process (goroutines sharing memory): the fastest path DESIGN.md asks the
// transport to prefer. Sums are taken in rank order, so every rank gets
// bit-identical results.
func NewGroup(n int) []model.Comm {
	return newGroup(n).members()
}

func newGroup(n int) *group { return &group{n: n} }

func (g *group) members() []model.Comm {
	out := make([]model.Comm, g.n)
	for r := range out {
		out[r] = &member{g: g, rank: r}
	}
	return out
}

// reset abandons a round some rank left (after a cancelled step), so the
// next step starts clean.
func (g *group) reset() {
	g.mu.Lock()
	g.round = nil
	g.mu.Unlock()
}

type group struct {
	mu    sync.Mutex
	n     int
	round *round
}

// round is one all-reduce: the last rank to arrive sums everyone's buffer
// while the others wait, then all copy the sum.
type round struct {
	parts   [][]float32
	arrived int
	sum     []float32
	err     error
	done    chan struct{}
}

type member struct {
	g    *group
	rank int
}

func (m *member) AllReduce(ctx context.Context, buf []float32) error {
	g := m.g
	g.mu.Lock()
	r := g.round
	if r == nil {
		r = &round{parts: make([][]float32, g.n), done: make(chan struct{})}
		g.round = r
	}
	r.parts[m.rank] = buf
	r.arrived++
	if r.arrived == g.n {
		g.round = nil
		r.sum = make([]float32, len(buf))
		for rank, p := range r.parts {
			if len(p) != len(buf) {
				r.err = fmt.Errorf("rank %d reduces %d values, rank %d %d", rank, len(p), m.rank, len(buf))
				break
			}
			for i, v := range p {
				r.sum[i] += v
			}
		}
		close(r.done)
	}
	g.mu.Unlock()
	select {
	case <-r.done:
		if r.err != nil {
			return r.err
		}
		copy(buf, r.sum)
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
