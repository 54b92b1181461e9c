package transport

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"

	tesserav1 "github.com/tessera-llm/tessera/proto/tessera/v1"
)

// Group is one rank's membership in a stage's tensor-parallel group, for
// AllReduce. It holds a persistent subscription to the partial sums of the
// stage's ranks; create the groups of all ranks before the first
// AllReduce, so that no partial is published before its readers listen.
type Group struct {
	t     Transport
	subj  Subjects
	stage int
	rank  int
	ranks int
	recv  *Receiver
	own   []byte
	parts [][]byte
}

// NewGroup joins rank of ranks in stage of the plan named by s. opts tune
// the group's receiver (Timeout, MaxPending).
func NewGroup(ctx context.Context, t Transport, s Subjects, stage, rank, ranks int, opts ...ReceiverOption) (*Group, error) {
	if ranks < 1 || rank < 0 || rank >= ranks || stage < 0 || stage > math.MaxInt32 || ranks > math.MaxInt32 {
		return nil, fmt.Errorf("%w: rank %d of %d in stage %d", ErrInvalid, rank, ranks, stage)
	}
	g := &Group{t: t, subj: s, stage: stage, rank: rank, ranks: ranks, parts: make([][]byte, ranks)}
	if ranks == 1 {
		return g, nil
	}
	self := int32(rank)
	opts = append(opts, Filter(func(f *tesserav1.Frame) bool { return f.GetRank() != self }))
	r, err := NewReceiver(ctx, t, s.ReduceAll(stage), opts...)
	if err != nil {
		return nil, err
	}
	g.recv = r
	return g, nil
}

// AllReduce replaces buf with the element-wise sum of every rank's buf
// for the reduction (step, seq). Each rank publishes its partial and adds
// all partials in rank order (rank 0's first), so every rank gets
// bit-identical results. It returns ctx.Err() when ctx ends first (e.g.
// context.DeadlineExceeded when a rank is lost); buf is then unchanged.
// One Group runs one AllReduce at a time.
func (g *Group) AllReduce(ctx context.Context, step uint64, seq int, buf []float32) error {
	if g.ranks == 1 {
		return nil
	}
	if seq < 0 || seq > math.MaxInt32 {
		return fmt.Errorf("%w: seq %d", ErrInvalid, seq)
	}
	g.own = AppendF32(g.own[:0], buf)
	meta := &tesserav1.Frame{
		PlanVersion: g.subj.Plan, StepId: step, Stage: int32(g.stage), Rank: int32(g.rank),
		Kind: tesserav1.FrameKind_FRAME_KIND_REDUCE, Seq: int32(seq),
		Dtype: tesserav1.DType_DTYPE_F32, Shape: []int64{int64(len(buf))},
	}
	if err := SendTensor(ctx, g.t, g.subj.Reduce(g.stage, g.rank), meta, g.own); err != nil {
		return err
	}
	k := KeyOf(meta)
	for r := 0; r < g.ranks; r++ {
		if r == g.rank {
			g.parts[r] = g.own
			continue
		}
		k.Rank = int32(r)
		t, err := g.recv.Wait(ctx, k)
		if err != nil {
			return err
		}
		if t.DType != tesserav1.DType_DTYPE_F32 || len(t.Data) != len(g.own) {
			return fmt.Errorf("%w: rank %d sent %d bytes of %v for a %d-float reduction", ErrMalformed, r, len(t.Data), t.DType, len(buf))
		}
		g.parts[r] = t.Data
	}
	sumInRankOrder(buf, g.parts)
	clear(g.parts)
	return nil
}

// sumInRankOrder sets buf to (p0 + p1) + p2 ..., element by element: the
// same order on every rank, whichever path brought the partials, so that
// every rank holds the same bits.
func sumInRankOrder(buf []float32, parts [][]byte) {
	decodeF32(buf, parts[0])
	for _, p := range parts[1:] {
		addF32(buf, p)
	}
}

// Dropped counts the frames the group's receiver dropped.
func (g *Group) Dropped() int64 {
	if g.recv == nil {
		return 0
	}
	return g.recv.Dropped()
}

// Forget drops partial sums held for steps before (plan, step), e.g.
// after an abandoned step.
func (g *Group) Forget(plan, step uint64) {
	if g.recv != nil {
		g.recv.Forget(plan, step)
	}
}

// Close leaves the group.
func (g *Group) Close() error {
	if g.recv == nil {
		return nil
	}
	return g.recv.Close()
}

func decodeF32(dst []float32, b []byte) {
	b = b[:4*len(dst)]
	for i := range dst {
		dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
}

func addF32(dst []float32, b []byte) {
	b = b[:4*len(dst)]
	for i := range dst {
		dst[i] += math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
}
