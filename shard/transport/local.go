package transport

import (
	"context"
	"fmt"
	"sync"
)

// LocalGroup is the all-reduce of the ranks of one stage that live in one
// process (goroutines sharing memory): the fastest path, which the
// in-process Pipeline uses where Group would go through a Transport. Sums
// are taken in rank order, so every rank gets bit-identical results, as
// with Group.
type LocalGroup struct {
	mu    sync.Mutex
	n     int
	round *round
}

// NewLocalGroup makes the group of n ranks.
func NewLocalGroup(n int) *LocalGroup { return &LocalGroup{n: n} }

// Rank is rank r's endpoint; it satisfies model.Comm.
func (g *LocalGroup) Rank(r int) *LocalRank { return &LocalRank{g: g, rank: r} }

// Reset abandons a round some rank left (after a cancelled step), so the
// next step starts clean.
func (g *LocalGroup) Reset() {
	g.mu.Lock()
	g.round = nil
	g.mu.Unlock()
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

// LocalRank is one rank's membership in a LocalGroup.
type LocalRank struct {
	g    *LocalGroup
	rank int
}

// AllReduce replaces buf with the sum of every rank's buf, once all ranks
// of the group have called it; it returns ctx.Err() when ctx ends first.
func (m *LocalRank) AllReduce(ctx context.Context, buf []float32) error {
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
				r.err = fmt.Errorf("%w: rank %d reduces %d values, rank %d %d", ErrInvalid, rank, len(p), m.rank, len(buf))
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
