package cluster

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	tesserav1 "github.com/tessera-llm/tessera/proto/tessera/v1"
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
	// InFlight is how many steps may be in flight at once, so that every
	// pipeline stage works on a different micro-batch (0: one per stage).
	InFlight int
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
	// planning is the last planning outcome; planFailures counts failed
	// re-plans.
	planning     *tesserav1.PlanningReport
	planFailures atomic.Int64
	clock        stageClock
}

// Re-planning after a failure backs off from minBackoff to maxBackoff; a
// membership change re-plans at once.
const (
	minBackoff = time.Second
	maxBackoff = 30 * time.Second
)

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
	defer m.closeConns(nil)
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
	backoff := minBackoff
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
			m.log.Warn("plan not applied; retrying", "err", err, "in", backoff)
			retry.Reset(backoff)
			backoff = min(2*backoff, maxBackoff)
		} else {
			retry.Stop()
			backoff = minBackoff
		}
	}
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
	if m.Leader() {
		m.mu.Lock()
		resp.Planning = m.planning
		m.mu.Unlock()
	} else if resp.Planning, err = registry.Report(ctx, m.cli, m.cfg.Cluster); err != nil {
		return nil, err
	}
	return resp, nil
}
