package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	tesserav1 "github.com/tessera-llm/tessera/proto/tessera/v1"
	"github.com/tessera-llm/tessera/shard/plan"
	"github.com/tessera-llm/tessera/shard/registry"
)

// serving picks the workers a plan should use, in id order.
func (m *Manager) serving() []*tesserav1.WorkerInfo {
	m.mu.Lock()
	ws := slices.Clone(m.workers)
	m.mu.Unlock()
	slices.SortFunc(ws, func(a, b *tesserav1.WorkerInfo) int { return strings.Compare(a.Id, b.Id) })
	if n := m.cfg.PP * m.cfg.TP; n > 0 && len(ws) > n {
		ws = ws[:n]
	}
	return ws
}

// reconcile makes the loaded plan cover the serving workers.
func (m *Manager) reconcile(ctx context.Context, lead *registry.Leadership) error {
	ws := m.serving()
	m.mu.Lock()
	cur := m.active
	m.mu.Unlock()
	if cur != nil && sameWorkers(cur.plan, ws) {
		return nil
	}
	if n := m.cfg.PP * m.cfg.TP; n > 0 && len(ws) < n {
		m.deactivate()
		return fmt.Errorf("%w: plan pp=%d tp=%d needs %d workers, %d registered", ErrNotReady, m.cfg.PP, m.cfg.TP, n, len(ws))
	}
	if len(ws) == 0 {
		m.deactivate()
		return nil // nothing to do until a worker registers
	}
	m.deactivate() // steps wait from here until the new plan serves
	p, raw, err := m.publish(ctx, lead, ws)
	if err != nil {
		return err
	}
	m.log.Info("loading plan", "version", p.Version, "workers", len(ws), "plan", "\n"+p.String())
	if err := m.load(ctx, p, raw, ws); err != nil {
		return err
	}
	return m.activate(ctx, p, raw)
}

// publish plans the model over ws under the next version and stores the
// plan in etcd (only the leader's write succeeds).
func (m *Manager) publish(ctx context.Context, lead *registry.Leadership, ws []*tesserav1.WorkerInfo) (*plan.Plan, []byte, error) {
	pws := make([]plan.Worker, len(ws))
	for i, w := range ws {
		pws[i] = plan.Worker{ID: w.Id, Memory: w.MemoryBytes, Backend: w.Backend, Device: w.Device}
	}
	m.version++
	opts := []plan.Option{plan.WithVersion(m.version), plan.WithDTypeBytes(max(m.cfg.DTypeBytes, 1))}
	if m.cfg.PP > 0 {
		opts = append(opts, plan.WithShape(m.cfg.PP, m.cfg.TP))
	}
	p, err := plan.New(m.cfg.Spec, pws, opts...)
	if err != nil {
		return nil, nil, err
	}
	raw, err := json.Marshal(p)
	if err != nil {
		return nil, nil, err
	}
	return p, raw, lead.PutPlan(ctx, p.Version, raw)
}

func sameWorkers(p *plan.Plan, ws []*tesserav1.WorkerInfo) bool {
	var have []string
	for _, st := range p.Stages {
		for _, r := range st.Ranks {
			have = append(have, r.Worker)
		}
	}
	var want []string
	for _, w := range ws {
		want = append(want, w.Id)
	}
	slices.Sort(have)
	return slices.Equal(have, want)
}
