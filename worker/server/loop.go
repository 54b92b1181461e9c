package server

import (
	"context"
	"errors"
	"time"

	"google.golang.org/protobuf/proto"

	tesserav1 "github.com/tessera-llm/tessera/proto/tessera/v1"
	"github.com/tessera-llm/tessera/shard/plan"
	"github.com/tessera-llm/tessera/shard/transport"
)

// DefaultStepTimeout is Config.StepTimeout when unset.
const DefaultStepTimeout = 10 * time.Second

// groupComm adapts a stage's transport.Reducer (a NATS Group or a direct
// Mesh) to model.Comm: reductions of one step are numbered in the order
// the layers make them.
type groupComm struct {
	g    transport.Reducer
	step uint64
	seq  int
}

func newGroupComm(ctx context.Context, tr transport.Transport, subj transport.Subjects, stage, rank, ranks int, timeout time.Duration) (*groupComm, error) {
	g, err := transport.NewGroup(ctx, tr, subj, stage, rank, ranks, transport.Timeout(timeout))
	if err != nil {
		return nil, err
	}
	return &groupComm{g: g}, nil
}

func (c *groupComm) begin(step uint64) { c.step, c.seq = step, 0 }

func (c *groupComm) AllReduce(ctx context.Context, buf []float32) error {
	seq := c.seq
	c.seq++
	return c.g.AllReduce(ctx, c.step, seq, buf)
}

func (c *groupComm) dropped() int64 { return c.g.Dropped() }

// start subscribes to the shard's inputs and runs its step loop.
func (s *Server) start(ctx context.Context, sh *shard, subj transport.Subjects, p *plan.Plan) error {
	steps, err := transport.NewReceiver(ctx, s.tr, subj.Step(), transport.Timeout(s.cfg.StepTimeout))
	if err != nil {
		return err
	}
	var acts *transport.Receiver
	if stage := int(sh.req.Stage); stage > 0 {
		if acts, err = transport.NewReceiver(ctx, s.tr, subj.Act(stage-1, 0), transport.Timeout(s.cfg.StepTimeout)); err != nil {
			steps.Close()
			return err
		}
	}
	go func() {
		defer close(sh.done)
		defer sh.comm.g.Close()
		defer steps.Close()
		if acts != nil {
			defer acts.Close()
		}
		s.loop(ctx, sh, subj, p, steps, acts)
	}()
	return nil
}

// loop runs steps in the order they arrive until ctx ends. A step that
// fails is answered with its error; the loop goes on.
func (s *Server) loop(ctx context.Context, sh *shard, subj transport.Subjects, p *plan.Plan, steps, acts *transport.Receiver) {
	stage, rank := int(sh.req.Stage), int(sh.req.Rank)
	for {
		t, err := steps.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			continue // a step that timed out in assembly; the coordinator retries
		}
		var st tesserav1.Step
		if err := proto.Unmarshal(t.Data, &st); err != nil || st.PlanVersion != p.Version {
			s.badSteps.Add(1)
			continue
		}
		timeout := s.cfg.StepTimeout
		if c := time.Duration(st.TimeoutMs) * time.Millisecond; c > 0 {
			timeout = min(timeout, c)
		}
		stepCtx, cancel := context.WithTimeout(ctx, timeout)
		err = s.runStep(stepCtx, sh, subj, p, &st, acts)
		cancel()
		if err != nil && ctx.Err() == nil {
			s.log.Warn("step failed", "plan", p.Version, "step", st.StepId, "stage", stage, "rank", rank, "err", err)
			res := &tesserav1.StepResult{PlanVersion: p.Version, StepId: st.StepId, Rank: int32(rank), Error: err.Error()}
			_ = transport.SendProto(ctx, s.tr, subj.Result(stage, rank), s.meta(&st, sh, tesserav1.FrameKind_FRAME_KIND_RESULT), res)
		}
		if acts != nil {
			acts.Forget(p.Version, st.StepId)
		}
	}
}

func (s *Server) meta(st *tesserav1.Step, sh *shard, kind tesserav1.FrameKind) *tesserav1.Frame {
	return &tesserav1.Frame{PlanVersion: st.PlanVersion, StepId: st.StepId, Stage: sh.req.Stage, Rank: sh.req.Rank, Kind: kind}
}

var errNoActivations = errors.New("no activations from the previous stage")

func (s *Server) runStep(ctx context.Context, sh *shard, subj transport.Subjects, p *plan.Plan, st *tesserav1.Step, acts *transport.Receiver) error {
	stage, rank := int(sh.req.Stage), int(sh.req.Rank)
	work := len(st.Spans) > 0
	var in []float32
	if acts != nil && work {
		a, err := acts.Wait(ctx, transport.Key{Plan: p.Version, Step: st.StepId, Stage: int32(stage - 1), Kind: tesserav1.FrameKind_FRAME_KIND_ACTIVATION})
		if err != nil {
			return errors.Join(errNoActivations, err)
		}
		in = make([]float32, len(a.Data)/4)
		if err := transport.F32(in, a.Data); err != nil {
			return err
		}
	}
	sh.comm.begin(st.StepId)
	start := time.Now()
	res, err := sh.runner.Step(ctx, st, in)
	if err != nil || !work {
		return err
	}
	took := time.Since(start)
	s.stepTime.Observe(took.Seconds())
	s.busy.Add(int64(took))
	s.steps.Add(1)
	s.tokens.Add(int64(len(st.Tokens)))
	meta := s.meta(st, sh, tesserav1.FrameKind_FRAME_KIND_ACTIVATION)
	if !p.IsLast(stage) {
		if rank != 0 {
			return nil // every rank holds the same states; rank 0 sends them
		}
		meta.Dtype = tesserav1.DType_DTYPE_F32
		meta.Shape = []int64{int64(len(st.Tokens)), int64(len(res.Hidden) / max(len(st.Tokens), 1))}
		if err := transport.SendTensor(ctx, s.tr, subj.Act(stage, 0), meta, transport.AppendF32(nil, res.Hidden)); err != nil {
			return err
		}
		// Then, off the critical path, the busy time for the
		// coordinator's per-stage metrics; losing it loses no output.
		busy := &tesserav1.StepResult{PlanVersion: p.Version, StepId: st.StepId, BusyNs: int64(took)}
		_ = transport.SendProto(ctx, s.tr, subj.Result(stage, rank), s.meta(st, sh, tesserav1.FrameKind_FRAME_KIND_RESULT), busy)
		return nil
	}
	meta.Kind = tesserav1.FrameKind_FRAME_KIND_RESULT
	out := &tesserav1.StepResult{PlanVersion: p.Version, StepId: st.StepId, Rank: int32(rank), Rows: res.Rows, BusyNs: int64(took)}
	return transport.SendProto(ctx, s.tr, subj.Result(stage, rank), meta, out)
}
