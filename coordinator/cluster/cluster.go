// Package cluster is the coordinator's view of its workers. The leader
// (etcd election) watches worker registrations, plans the model over them,
// stores the plan in etcd, has every rank load its shard over gRPC, and
// then runs steps on the plan through the transport. When workers join or
// leave it re-plans; steps wait while a plan loads, and the scheduler
// replays whatever a change interrupted.
package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/tessera-llm/tessera/coordinator/scheduler"
	tesserav1 "github.com/tessera-llm/tessera/proto/tessera/v1"
	"github.com/tessera-llm/tessera/shard/merge"
	"github.com/tessera-llm/tessera/shard/plan"
	"github.com/tessera-llm/tessera/shard/registry"
	"github.com/tessera-llm/tessera/shard/spec"
	"github.com/tessera-llm/tessera/shard/transport"
)

// Config describes the model and how to place it.
type Config struct {
	Cluster, ID string
	// ModelDir is the model path sent to workers (relative to their model
	// root, or absolute when they have none).
	ModelDir   string
	Spec       *spec.Spec
	DTypeBytes int
	// PP and TP fix the plan's shape; 0 lets the planner choose. With a
	// fixed shape the first PP·TP workers (by id) serve; others stand by.
	PP, TP                 int
	CacheTokens, BlockSize int
	// StepTimeout bounds one step end to end; a lost worker is noticed by
	// then at the latest.
	StepTimeout time.Duration
	// LeaderTTL is how long a crashed leader keeps the role before a
	// standby takes over (0: the registry's default).
	LeaderTTL time.Duration
	// Dial opens a worker's gRPC client (default: plaintext grpc.NewClient).
	Dial   func(addr string) (tesserav1.WorkerClient, io.Closer, error)
	Logger *slog.Logger
}

// ErrNotReady means no plan is loaded yet (or one is being replaced).
var ErrNotReady = errors.New("cluster not ready")

// Manager owns the cluster state of one coordinator.
type Manager struct {
	tesserav1.UnimplementedCoordinatorServer
	cfg Config
	cli *clientv3.Client
	tr  transport.Transport
	log *slog.Logger

	mu      sync.Mutex
	leader  bool
	workers []*tesserav1.WorkerInfo
	active  *active
	ready   chan struct{} // closed while a plan serves
	conns   map[string]*conn
	version uint64
}

type active struct {
	plan    *plan.Plan
	json    []byte
	subj    transport.Subjects
	results *transport.Receiver
	cancel  context.CancelFunc
}

type conn struct {
	client tesserav1.WorkerClient
	closer io.Closer
}

// New makes a manager; Run campaigns and manages.
func New(cfg Config, cli *clientv3.Client, tr transport.Transport) *Manager {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.StepTimeout <= 0 {
		cfg.StepTimeout = 5 * time.Second
	}
	if cfg.Dial == nil {
		cfg.Dial = dialWorker
	}
	return &Manager{cfg: cfg, cli: cli, tr: tr, log: cfg.Logger.With("coordinator", cfg.ID),
		ready: make(chan struct{}), conns: map[string]*conn{}}
}

func dialWorker(addr string) (tesserav1.WorkerClient, io.Closer, error) {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, nil, err
	}
	return tesserav1.NewWorkerClient(cc), cc, nil
}

// Ready reports whether a plan is loaded and this coordinator leads.
func (m *Manager) Ready() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.active != nil && m.leader
}

// Leader reports whether this coordinator leads.
func (m *Manager) Leader() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.leader
}

// Run campaigns for leadership and manages the cluster while leading,
// until ctx ends.
func (m *Manager) Run(ctx context.Context) error {
	defer m.deactivate()
	defer m.closeConns()
	for ctx.Err() == nil {
		var opts []registry.CampaignOption
		if m.cfg.LeaderTTL > 0 {
			opts = append(opts, registry.SessionTTL(m.cfg.LeaderTTL))
		}
		lead, err := registry.Campaign(ctx, m.cli, m.cfg.Cluster, m.cfg.ID, opts...)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			m.log.Warn("campaign failed; retrying", "err", err)
			sleep(ctx, time.Second)
			continue
		}
		m.log.Info("leading the cluster", "cluster", m.cfg.Cluster)
		m.setLeader(true)
		err = m.lead(ctx, lead)
		m.setLeader(false)
		m.deactivate()
		_ = lead.Resign(context.WithoutCancel(ctx))
		if err != nil && ctx.Err() == nil {
			m.log.Warn("lost leadership", "err", err)
		}
	}
	return nil
}

func (m *Manager) setLeader(v bool) {
	m.mu.Lock()
	m.leader = v
	m.mu.Unlock()
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// lead watches workers and keeps a plan over them loaded.
func (m *Manager) lead(ctx context.Context, lead *registry.Leadership) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	watch, err := registry.Watch(ctx, m.cli, m.cfg.Cluster)
	if err != nil {
		return err
	}
	if v, _, err := registry.CurrentPlan(ctx, m.cli, m.cfg.Cluster); err == nil {
		m.version = max(m.version, v)
	}
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	for {
		select {
		case ws, ok := <-watch:
			if !ok {
				return errors.New("worker watch ended")
			}
			m.mu.Lock()
			m.workers = ws
			m.mu.Unlock()
		case <-retry.C:
		case <-lead.Done():
			return errors.New("leadership lost")
		case <-ctx.Done():
			return nil
		}
		if err := m.reconcile(ctx, lead); err != nil {
			m.log.Warn("plan not applied; retrying", "err", err)
			retry.Reset(time.Second)
		}
	}
}

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

// load has every rank load its shard, concurrently.
func (m *Manager) load(ctx context.Context, p *plan.Plan, raw []byte, ws []*tesserav1.WorkerInfo) error {
	addr := map[string]string{}
	for _, w := range ws {
		addr[w.Id] = w.Address
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for si, st := range p.Stages {
		for ri, r := range st.Ranks {
			sh := &tesserav1.Shard{
				PlanVersion: p.Version, Cluster: m.cfg.Cluster, ModelDir: m.cfg.ModelDir, Stage: int32(si), Rank: int32(ri),
				Stages: int32(len(p.Stages)), Ranks: int32(len(st.Ranks)),
				Layers: rng(st.Layers), Heads: rng(r.Heads), KvHeads: rng(r.KVHeads), Mlp: rng(r.MLP), Vocab: rng(r.Vocab),
				AlibiSlopes: r.ALiBiSlopes, KvMap: r.KVMap, CacheTokens: int32(m.cfg.CacheTokens), BlockSize: int32(m.cfg.BlockSize),
				PlanJson: string(raw),
			}
			wg.Go(func() {
				if err := m.loadShard(ctx, addr[r.Worker], sh); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("worker %s (stage %d rank %d): %w", r.Worker, si, ri, err))
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	return errors.Join(errs...)
}

func rng(r [2]int) *tesserav1.Range { return &tesserav1.Range{Start: int32(r[0]), End: int32(r[1])} }

func (m *Manager) loadShard(ctx context.Context, addr string, sh *tesserav1.Shard) error {
	c, err := m.client(addr)
	if err != nil {
		return err
	}
	stream, err := c.LoadShard(ctx, &tesserav1.LoadShardRequest{Shard: sh})
	if err != nil {
		return err
	}
	for {
		pr, err := stream.Recv()
		if err != nil {
			return err
		}
		if pr.Done {
			return nil
		}
	}
}

func (m *Manager) client(addr string) (tesserav1.WorkerClient, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c, ok := m.conns[addr]; ok {
		return c.client, nil
	}
	c, closer, err := m.cfg.Dial(addr)
	if err != nil {
		return nil, err
	}
	m.conns[addr] = &conn{client: c, closer: closer}
	return c, nil
}

func (m *Manager) closeConns() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for a, c := range m.conns {
		c.closer.Close()
		delete(m.conns, a)
	}
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
func (m *Manager) Step(ctx context.Context, st *tesserav1.Step) ([][]merge.Partial, error) {
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
	rows := make([][]merge.Partial, len(got[0].Rows))
	for ri, r := range got {
		if len(r.Rows) != len(rows) {
			return nil, fmt.Errorf("step %d: rank %d sent %d rows, rank 0 %d", st.StepId, ri, len(r.Rows), len(rows))
		}
		v := last.Ranks[ri].Vocab
		for i, row := range r.Rows {
			rows[i] = append(rows[i], merge.Partial{Offset: v[0], Len: v[1] - v[0], IDs: row.Ids, Logits: row.Logits, LSE: row.Lse})
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

// ClusterStatus answers operators (and standbys answer too).
func (m *Manager) ClusterStatus(ctx context.Context, _ *tesserav1.ClusterStatusRequest) (*tesserav1.ClusterStatusResponse, error) {
	resp := &tesserav1.ClusterStatusResponse{Cluster: m.cfg.Cluster}
	resp.Leader, _ = registry.Leader(ctx, m.cli, m.cfg.Cluster)
	ws, _, err := registry.Workers(ctx, m.cli, m.cfg.Cluster)
	if err != nil {
		return nil, err
	}
	resp.Workers = ws
	if v, raw, err := registry.CurrentPlan(ctx, m.cli, m.cfg.Cluster); err == nil {
		resp.PlanVersion, resp.PlanJson = v, string(raw)
	}
	resp.Ready = m.Ready()
	return resp, nil
}
