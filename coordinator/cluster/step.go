package cluster

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/tessera-llm/tessera/coordinator/scheduler"
	tesserav1 "github.com/tessera-llm/tessera/proto/tessera/v1"
	"github.com/tessera-llm/tessera/shard/plan"
	"github.com/tessera-llm/tessera/shard/topk"
	"github.com/tessera-llm/tessera/shard/transport"
)

type active struct {
	plan    *plan.Plan
	json    []byte
	subj    transport.Subjects
	results *transport.Receiver
	cancel  context.CancelFunc
}

// activate makes p the plan steps run on.
func (m *Manager) activate(ctx context.Context, p *plan.Plan, raw []byte) error {
	subj, err := transport.NewSubjects(m.cfg.Cluster, p.Version)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	results, err := transport.NewReceiver(rctx, m.tr, subj.ResultAll(), transport.Timeout(m.cfg.StepTimeout))
	if err != nil {
		cancel()
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.active = &active{plan: p, json: raw, subj: subj, results: results, cancel: cancel}
	close(m.ready)
	m.log.Info("plan serving", "version", p.Version)
	return nil
}

// deactivate stops serving the current plan; steps wait for the next.
func (m *Manager) deactivate() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.active == nil {
		return
	}
	m.active.results.Close()
	m.active.cancel()
	m.active = nil
	m.ready = make(chan struct{})
}

// waitActive blocks until a plan serves.
func (m *Manager) waitActive(ctx context.Context) (*active, error) {
	for {
		m.mu.Lock()
		a, ready := m.active, m.ready
		m.mu.Unlock()
		if a != nil {
			return a, nil
		}
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %w", ErrNotReady, ctx.Err())
		}
	}
}

// Step publishes st on the serving plan and gathers the last stage's
// top-k partials, per logit row. It waits while no plan serves.
func (m *Manager) Step(ctx context.Context, st *tesserav1.Step) ([][]topk.Partial, error) {
	a, err := m.waitActive(ctx)
	if err != nil {
		return nil, err
	}
	if st.PlanVersion != 0 && st.PlanVersion != a.plan.Version {
		return nil, fmt.Errorf("%w: step %d was built for plan v%d, v%d serves", scheduler.ErrPlanChanged, st.StepId, st.PlanVersion, a.plan.Version)
	}
	ctx, cancel := context.WithTimeout(ctx, m.cfg.StepTimeout)
	defer cancel()
	st.PlanVersion = a.plan.Version
	meta := &tesserav1.Frame{PlanVersion: a.plan.Version, StepId: st.StepId, Kind: tesserav1.FrameKind_FRAME_KIND_STEP}
	if err := transport.SendProto(ctx, m.tr, a.subj.Step(), meta, st); err != nil {
		return nil, err
	}
	if len(st.Spans) == 0 {
		return nil, nil
	}
	last := a.plan.Stages[len(a.plan.Stages)-1]
	got := make([]*tesserav1.StepResult, len(last.Ranks))
	for n := 0; n < len(last.Ranks); {
		t, err := a.results.Next(ctx)
		if err != nil {
			return nil, fmt.Errorf("step %d on plan v%d: %w", st.StepId, a.plan.Version, err)
		}
		var r tesserav1.StepResult
		if proto.Unmarshal(t.Data, &r) != nil || r.StepId != st.StepId {
			continue // garbage or a late answer to an abandoned step
		}
		if r.Error != "" {
			return nil, fmt.Errorf("step %d: stage %d rank %d: %s", st.StepId, t.Stage, r.Rank, r.Error)
		}
		if r.Rank < 0 || int(r.Rank) >= len(got) || got[r.Rank] != nil || t.Stage != int32(len(a.plan.Stages)-1) {
			continue
		}
		got[r.Rank] = &r
		n++
	}
	rows := make([][]topk.Partial, len(got[0].Rows))
	for ri, r := range got {
		if len(r.Rows) != len(rows) {
			return nil, fmt.Errorf("step %d: rank %d sent %d rows, rank 0 %d", st.StepId, ri, len(r.Rows), len(rows))
		}
		v := last.Ranks[ri].Vocab
		for i, row := range r.Rows {
			rows[i] = append(rows[i], topk.Partial{Offset: v[0], Len: v[1] - v[0], IDs: row.Ids, Logits: row.Logits, LSE: row.Lse})
		}
	}
	return rows, nil
}

// PlanVersion waits until a plan serves and returns its version.
func (m *Manager) PlanVersion(ctx context.Context) (uint64, error) {
	a, err := m.waitActive(ctx)
	if err != nil {
		return 0, err
	}
	return a.plan.Version, nil
}
