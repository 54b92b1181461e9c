package cluster

import (
	"context"
	"fmt"

	"github.com/tessera-llm/tessera/coordinator/scheduler"
	tesserav1 "github.com/tessera-llm/tessera/proto/tessera/v1"
	"github.com/tessera-llm/tessera/shard/plan"
	"github.com/tessera-llm/tessera/shard/topk"
	"github.com/tessera-llm/tessera/shard/transport"
)

type active struct {
	plan   *plan.Plan
	json   []byte
	subj   transport.Subjects
	router *router
	cancel context.CancelFunc
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
	last := p.Stages[len(p.Stages)-1]
	rt := newRouter(results, len(p.Stages), len(last.Ranks), &m.clock)
	go rt.run(rctx)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.active = &active{plan: p, json: raw, subj: subj, router: rt, cancel: cancel}
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
	m.active.router.results.Close()
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
	await, err := m.Send(ctx, st)
	if err != nil {
		return nil, err
	}
	return await(ctx)
}

// InFlight is how many steps the scheduler keeps going at once: the
// configured count, or one per stage of the serving plan, so that every
// stage has a micro-batch to work on.
func (m *Manager) InFlight() int {
	if m.cfg.InFlight > 0 {
		return m.cfg.InFlight
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.active == nil {
		return 1
	}
	return len(m.active.plan.Stages)
}

// Send publishes st on the serving plan (waiting while none serves) and
// returns how to wait for its result; the results of several steps in
// flight are told apart by step id. Workers run a plan's steps in the
// order they were sent, so a step's timeout starts when the step sent
// before it is settled: queueing behind it in the pipeline is not
// slowness.
func (m *Manager) Send(ctx context.Context, st *tesserav1.Step) (scheduler.Await, error) {
	a, err := m.waitActive(ctx)
	if err != nil {
		return nil, err
	}
	if st.PlanVersion != 0 && st.PlanVersion != a.plan.Version {
		return nil, fmt.Errorf("%w: step %d was built for plan v%d, v%d serves", scheduler.ErrPlanChanged, st.StepId, st.PlanVersion, a.plan.Version)
	}
	st.PlanVersion = a.plan.Version
	st.TimeoutMs = uint32(m.cfg.StepTimeout.Milliseconds())
	var w *waiter
	if len(st.Spans) > 0 {
		w = a.router.expect(st.StepId)
		m.clock.sent()
	}
	meta := &tesserav1.Frame{PlanVersion: a.plan.Version, StepId: st.StepId, Kind: tesserav1.FrameKind_FRAME_KIND_STEP}
	sctx, cancel := context.WithTimeout(ctx, m.cfg.StepTimeout)
	err = transport.SendProto(sctx, m.tr, a.subj.Step(), meta, st)
	cancel()
	if err != nil {
		if w != nil {
			a.router.forget(st.StepId, w)
			m.clock.done()
		}
		return nil, err
	}
	if w == nil {
		return func(context.Context) ([][]topk.Partial, error) { return nil, nil }, nil
	}
	return func(ctx context.Context) ([][]topk.Partial, error) {
		defer m.clock.done()
		defer a.router.forget(st.StepId, w)
		if w.prev != nil {
			select {
			case <-w.prev:
			case <-w.done:
			case <-ctx.Done():
				return nil, fmt.Errorf("step %d on plan v%d: %w", st.StepId, a.plan.Version, ctx.Err())
			}
		}
		ctx, cancel := context.WithTimeout(ctx, m.cfg.StepTimeout)
		defer cancel()
		select {
		case <-w.done:
		case <-ctx.Done():
			return nil, fmt.Errorf("step %d on plan v%d: %w", st.StepId, a.plan.Version, ctx.Err())
		}
		if w.err != nil {
			return nil, fmt.Errorf("step %d on plan v%d: %w", st.StepId, a.plan.Version, w.err)
		}
		return a.merge(st.StepId, w.got)
	}, nil
}

// merge joins the last stage's answers into per-row partials.
func (a *active) merge(step uint64, got []*tesserav1.StepResult) ([][]topk.Partial, error) {
	last := a.plan.Stages[len(a.plan.Stages)-1]
	rows := make([][]topk.Partial, len(got[0].Rows))
	for ri, r := range got {
		if len(r.Rows) != len(rows) {
			return nil, fmt.Errorf("step %d: rank %d sent %d rows, rank 0 %d", step, ri, len(r.Rows), len(rows))
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
