package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	tesserav1 "github.com/tessera-llm/tessera/proto/tessera/v1"
	"github.com/tessera-llm/tessera/shard/plan"
	"github.com/tessera-llm/tessera/shard/registry"
)

// candidates are the registered workers, in id order.
func (m *Manager) candidates() []*tesserav1.WorkerInfo {
	m.mu.Lock()
	ws := slices.Clone(m.workers)
	m.mu.Unlock()
	slices.SortFunc(ws, func(a, b *tesserav1.WorkerInfo) int { return strings.Compare(a.Id, b.Id) })
	return ws
}

// reconcile makes the loaded plan cover the workers that can serve. A plan
// that cannot be placed never stops one that serves: the serving plan is
// replaced only by a plan that was placed, and it stops serving before
// that only when one of its own workers has left.
func (m *Manager) reconcile(ctx context.Context, lead *registry.Leadership) error {
	ws := m.candidates()
	m.closeConns(ws)
	p, left, err := m.place(ws)
	m.report(ctx, lead, left, err)
	m.mu.Lock()
	cur := m.active
	m.mu.Unlock()
	if cur != nil && !registered(cur.plan, ws) {
		m.deactivate() // its steps would wait for a worker that is gone
		cur = nil
	}
	if err != nil {
		return err
	}
	if p == nil {
		return nil // nothing to do until a worker registers
	}
	if cur != nil && slices.Equal(cur.plan.Workers(), p.Workers()) {
		return nil
	}
	m.deactivate() // steps wait from here until the new plan serves
	raw, err := m.store(ctx, lead, p)
	if err != nil {
		return err
	}
	m.log.Info("loading plan", "version", p.Version, "workers", len(p.Workers()), "plan", "\n"+p.String())
	if err := m.load(ctx, p, raw, ws); err != nil {
		return err
	}
	return m.activate(ctx, p, raw)
}

// place plans the model over the workers that can hold a share of it.
// While a plan fails because some worker's memory is too small for its
// share, the smallest worker is left out (and reported) and the others
// are planned again. With a fixed shape the first PP·TP workers (by id)
// serve. When no subset can be placed, the error is the one of the whole
// set and nobody is reported as left out: the cluster is too small, not
// one worker. p is nil, with no error, when no worker is registered.
func (m *Manager) place(ws []*tesserav1.WorkerInfo) (p *plan.Plan, left []*tesserav1.LeftOut, err error) {
	var first error
	pool := slices.Clone(ws)
	for {
		use := pool
		if n := m.cfg.PP * m.cfg.TP; n > 0 {
			if len(use) < n {
				err := fmt.Errorf("%w: plan pp=%d tp=%d needs %d workers, %d registered", ErrNotReady, m.cfg.PP, m.cfg.TP, n, len(ws))
				if first == nil {
					return nil, nil, err
				}
				return nil, nil, first
			}
			use = use[:n]
		}
		if len(use) == 0 {
			return nil, nil, first
		}
		p, err := m.plan(use)
		if err == nil {
			return p, left, nil
		}
		if first == nil {
			first = err
		}
		if !errors.Is(err, plan.ErrMemory) {
			return nil, nil, first
		}
		i := smallest(use)
		left = append(left, &tesserav1.LeftOut{WorkerId: use[i].Id, Reason: fmt.Sprintf(
			"its %d bytes of memory cannot hold a share of the model (planning all %d workers: %v)",
			use[i].MemoryBytes, len(ws), first)})
		pool = slices.DeleteFunc(pool, func(w *tesserav1.WorkerInfo) bool { return w.Id == use[i].Id })
	}
}

// smallest is the index of the worker with the least memory (the last
// such by id, which a fixed shape would reach last).
func smallest(ws []*tesserav1.WorkerInfo) int {
	i := 0
	for j, w := range ws {
		if w.MemoryBytes <= ws[i].MemoryBytes {
			i = j
		}
	}
	return i
}

// report records the outcome of a planning for ClusterStatus and the
// metrics, and stores it in etcd for `tessera status`.
func (m *Manager) report(ctx context.Context, lead *registry.Leadership, left []*tesserav1.LeftOut, err error) {
	r := &tesserav1.PlanningReport{LeftOut: left}
	if err != nil {
		r.Error = err.Error()
		m.planFailures.Add(1)
	}
	for _, l := range left {
		m.log.Warn("worker left out of planning", "worker", l.WorkerId, "reason", l.Reason)
	}
	m.mu.Lock()
	m.planning = r
	m.mu.Unlock()
	if err := lead.PutReport(ctx, r); err != nil {
		m.log.Warn("planning report not stored", "err", err)
	}
}

// publish plans the model over ws under the next version and stores the
// plan in etcd (only the leader's write succeeds).
func (m *Manager) publish(ctx context.Context, lead *registry.Leadership, ws []*tesserav1.WorkerInfo) (*plan.Plan, []byte, error) {
	p, err := m.plan(ws)
	if err != nil {
		return nil, nil, err
	}
	raw, err := m.store(ctx, lead, p)
	return p, raw, err
}

// plan plans the model over exactly ws.
func (m *Manager) plan(ws []*tesserav1.WorkerInfo) (*plan.Plan, error) {
	pws := make([]plan.Worker, len(ws))
	for i, w := range ws {
		pws[i] = plan.Worker{ID: w.Id, Memory: w.MemoryBytes, Backend: w.Backend, Device: w.Device}
	}
	opts := []plan.Option{plan.WithDTypeBytes(max(m.cfg.DTypeBytes, 1))}
	if m.cfg.PP > 0 {
		opts = append(opts, plan.WithShape(m.cfg.PP, m.cfg.TP))
	}
	return plan.New(m.cfg.Spec, pws, opts...)
}

// store gives p the next version and publishes it in etcd.
func (m *Manager) store(ctx context.Context, lead *registry.Leadership, p *plan.Plan) ([]byte, error) {
	m.version++
	p.Version = m.version
	raw, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	return raw, lead.PutPlan(ctx, p.Version, raw)
}

// registered reports whether every worker of p is among ws.
func registered(p *plan.Plan, ws []*tesserav1.WorkerInfo) bool {
	for _, id := range p.Workers() {
		if !slices.ContainsFunc(ws, func(w *tesserav1.WorkerInfo) bool { return w.Id == id }) {
			return false
		}
	}
	return true
}
