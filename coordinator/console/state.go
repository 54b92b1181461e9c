package console

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	tesserav1 "github.com/tessera-llm/tessera/proto/tessera/v1"
	"github.com/tessera-llm/tessera/shard/plan"
	"github.com/tessera-llm/tessera/shard/registry"
)

// How much history the cluster map keeps.
const (
	keepLost   = 10 * time.Minute // a lost worker stays on the map this long
	keepEvents = 200
	keepPlans  = 50
)

// workerView is a worker as the map shows it.
type workerView struct {
	ID          string `json:"id"`
	Address     string `json:"address"`
	Backend     string `json:"backend"`
	Device      string `json:"device"`
	MemoryBytes int64  `json:"memory_bytes"`
	Version     string `json:"version"`
	// State is "up" (registered) or "lost" (its registration left etcd).
	State string `json:"state"`
	// Since is when this console saw it register (or, lost, when it went).
	Since int64 `json:"since"`
	// Health is the worker's own answer to Health: "serving plan v3",
	// "loading", "idle", or why it could not be asked.
	Health   string `json:"health"`
	HealthOK bool   `json:"health_ok"`
	// LeaseTTL and LeaseLeft are the registration lease's granted TTL
	// and the time left, in seconds (etcd's whole seconds).
	LeaseTTL  float64 `json:"lease_ttl_s"`
	LeaseLeft float64 `json:"lease_left_s"`
	// Stage and Rank place it in the current plan (-1: not in it).
	Stage int `json:"stage"`
	Rank  int `json:"rank"`
	// From the worker's Stats: steps run, their rate and the fraction of
	// the last poll interval it spent computing them, and the bytes of
	// its loaded shard.
	Steps       int64   `json:"steps"`
	StepsPerS   float64 `json:"steps_per_s"`
	Busy        float64 `json:"busy"`
	WeightBytes int64   `json:"weight_bytes"`
	busySeconds float64
	polled      time.Time
}

// event is a line of the cluster's history.
type event struct {
	T    int64  `json:"t"`    // unix milliseconds
	Kind string `json:"kind"` // joined, lost, plan, serving, waiting, leader
	Text string `json:"text"`
}

// planChange is one plan version and why it came.
type planChange struct {
	Version uint64   `json:"version"`
	T       int64    `json:"t"`
	Shape   string   `json:"shape"`
	Workers []string `json:"workers"`
	Cause   string   `json:"cause"`
}

// clusterState is the map's model; only Console.Run's goroutine touches
// it.
type clusterState struct {
	cfg           Config
	workers       map[string]*workerView
	plan          *plan.Plan
	planRaw       json.RawMessage
	plans         []planChange
	events        []event
	leader        string
	leading, live bool
	seenWorkers   bool
	polled        bool
}

func newClusterState(cfg Config) *clusterState {
	return &clusterState{cfg: cfg, workers: map[string]*workerView{}}
}

func (s *clusterState) add(now time.Time, kind, format string, a ...any) {
	s.events = append(s.events, event{T: now.UnixMilli(), Kind: kind, Text: fmt.Sprintf(format, a...)})
	if len(s.events) > keepEvents {
		s.events = s.events[len(s.events)-keepEvents:]
	}
}

// setWorkers takes the registered set from the watch: who joined, who
// was lost.
func (s *clusterState) setWorkers(ws []*tesserav1.WorkerInfo, now time.Time) {
	present := map[string]bool{}
	for _, w := range ws {
		present[w.Id] = true
		v, known := s.workers[w.Id]
		if !known || v.State == "lost" {
			v = &workerView{ID: w.Id, State: "up", Since: now.UnixMilli(), Stage: -1, Rank: -1, Health: "not asked yet"}
			s.workers[w.Id] = v
			if s.seenWorkers {
				s.add(now, "joined", "worker %s joined (%s, %.1f GiB)", w.Id, w.Address, float64(w.MemoryBytes)/(1<<30))
			}
		}
		v.Address, v.Backend, v.Device, v.MemoryBytes, v.Version = w.Address, w.Backend, w.Device, w.MemoryBytes, w.Version
	}
	if !s.seenWorkers {
		s.add(now, "joined", "%d worker(s) registered when this console started", len(ws))
	}
	s.seenWorkers = true
	for id, v := range s.workers {
		switch {
		case v.State == "up" && !present[id]:
			v.State, v.Since, v.HealthOK, v.LeaseLeft = "lost", now.UnixMilli(), false, 0
			v.Health = "lost"
			s.add(now, "lost", "worker %s lost: its registration left etcd (lease expired or revoked)", id)
			// The plan that dropped it may have come first (the two
			// watches are separate streams): its cause learns the loss.
			if n := len(s.plans); n > 0 {
				s.plans[n-1].Cause = strings.Replace(s.plans[n-1].Cause, id+" left the plan", id+" lost", 1)
			}
		case v.State == "lost" && now.Sub(time.UnixMilli(v.Since)) > keepLost:
			delete(s.workers, id)
		}
	}
}

// setPlan takes a published plan version.
func (s *clusterState) setPlan(p registry.Plan, now time.Time) {
	pl, err := plan.Parse(p.JSON)
	if err != nil {
		s.add(now, "plan", "plan v%d is unreadable: %v", p.Version, err)
		return
	}
	var ids []string
	for _, st := range pl.Stages {
		for _, r := range st.Ranks {
			ids = append(ids, r.Worker)
		}
	}
	pp, tp := pl.Shape()
	shape := fmt.Sprintf("pp=%d tp=%d", pp, tp)
	cause := s.planCause(ids)
	s.plan, s.planRaw = pl, json.RawMessage(p.JSON)
	s.plans = append(s.plans, planChange{Version: pl.Version, T: now.UnixMilli(), Shape: shape, Workers: ids, Cause: cause})
	if len(s.plans) > keepPlans {
		s.plans = s.plans[len(s.plans)-keepPlans:]
	}
	s.add(now, "plan", "plan v%d published: %s over %s (%s)", pl.Version, shape, strings.Join(ids, ", "), cause)
	s.place()
}

// planCause says why a plan over ids follows the current one, from the
// workers it adds and drops, not from the order in which the membership
// watch and the plan watch happened to deliver: a worker dropped while
// the console still has it up "left the plan" (setWorkers turns that into
// "lost" when its loss arrives).
func (s *clusterState) planCause(ids []string) string {
	if s.plan == nil {
		return "the first plan this console saw"
	}
	var why []string
	for _, id := range ids {
		if _, _, ok := s.plan.Find(id); !ok {
			why = append(why, id+" joined")
		}
	}
	for _, st := range s.plan.Stages {
		for _, r := range st.Ranks {
			if slices.Contains(ids, r.Worker) {
				continue
			}
			if v := s.workers[r.Worker]; v != nil && v.State == "up" {
				why = append(why, r.Worker+" left the plan")
			} else {
				why = append(why, r.Worker+" lost")
			}
		}
	}
	if len(why) == 0 {
		return "re-plan"
	}
	return "re-plan after " + strings.Join(why, ", ")
}

// place marks where each worker sits in the current plan.
func (s *clusterState) place() {
	for _, v := range s.workers {
		v.Stage, v.Rank = -1, -1
		if s.plan != nil {
			if st, r, ok := s.plan.Find(v.ID); ok {
				v.Stage, v.Rank = st, r
			}
		}
	}
}

// poll is one round of questions to etcd and the workers.
type poll struct {
	leader         string
	leading, ready bool
	leases         map[string]registry.Lease
	health         map[string]health
}

type health struct {
	status string
	ok     bool
	stats  *tesserav1.StatsResponse
}

// applyPoll takes a poll's answers.
func (s *clusterState) applyPoll(p poll, now time.Time) {
	if p.leader != s.leader && p.leader != "" {
		s.add(now, "leader", "coordinator %s leads the cluster", p.leader)
	}
	s.leader, s.leading = p.leader, p.leading
	if s.polled && p.ready != s.live {
		v := uint64(0)
		if s.plan != nil {
			v = s.plan.Version
		}
		if p.ready {
			s.add(now, "serving", "plan v%d serving: every shard loaded", v)
		} else if p.leading {
			s.add(now, "waiting", "not serving: steps wait for a plan to load")
		}
	}
	s.live, s.polled = p.ready, true
	for id, v := range s.workers {
		if v.State != "up" {
			continue
		}
		if l, ok := p.leases[id]; ok {
			v.LeaseTTL, v.LeaseLeft = l.TTL.Seconds(), l.Remaining.Seconds()
		}
		h, ok := p.health[id]
		if !ok {
			continue
		}
		v.Health, v.HealthOK = h.status, h.ok
		if st := h.stats; st != nil {
			if dt := now.Sub(v.polled).Seconds(); !v.polled.IsZero() && dt > 0 && st.Steps >= v.Steps {
				v.StepsPerS = float64(st.Steps-v.Steps) / dt
				v.Busy = min(max(st.BusySeconds-v.busySeconds, 0)/dt, 1)
			}
			v.Steps, v.busySeconds, v.WeightBytes, v.polled = st.Steps, st.BusySeconds, st.WeightBytes, now
		}
	}
}

// stageBusy is each stage's busy fraction over the last poll interval,
// its busiest rank's; nil without a plan.
func (s *clusterState) stageBusy() []float64 {
	if s.plan == nil {
		return nil
	}
	out := make([]float64, len(s.plan.Stages))
	for i, st := range s.plan.Stages {
		for _, r := range st.Ranks {
			if v, ok := s.workers[r.Worker]; ok {
				out[i] = max(out[i], v.Busy)
			}
		}
	}
	return out
}

// encode is the snapshot the page renders, as JSON.
func (s *clusterState) encode(now time.Time) []byte {
	ws := make([]*workerView, 0, len(s.workers))
	for _, v := range s.workers {
		ws = append(ws, v)
	}
	slices.SortFunc(ws, func(a, b *workerView) int { return strings.Compare(a.ID, b.ID) })
	role := "standby"
	if s.leading {
		role = "leader"
	}
	var version uint64
	if s.plan != nil {
		version = s.plan.Version
	}
	b, _ := json.Marshal(map[string]any{
		"now": now.UnixMilli(), "cluster": s.cfg.Cluster, "model": s.cfg.Model, "self": s.cfg.ID,
		"role": role, "leader": s.leader, "ready": s.live, "workers": ws,
		"plan_version": version, "plan": s.planRaw, "plans": s.plans, "events": s.events,
		"interval_ms": s.cfg.Interval.Milliseconds(), "window_ms": s.cfg.Window.Milliseconds(),
	})
	return b
}

// change is a closure Run applies to the state on its goroutine.
type change = func(*clusterState, time.Time)

func emit(ctx context.Context, out chan<- change, f change) bool {
	select {
	case out <- f:
		return true
	case <-ctx.Done():
		return false
	}
}

// watchCluster follows the registered workers and the published plans.
func watchCluster(ctx context.Context, cfg Config, out chan<- change) {
	if cfg.Etcd == nil {
		return
	}
	var workers <-chan []*tesserav1.WorkerInfo
	var plans <-chan registry.Plan
	for workers == nil || plans == nil {
		var err error
		if workers == nil {
			workers, err = registry.Watch(ctx, cfg.Etcd, cfg.Cluster)
		}
		if err == nil && plans == nil {
			plans, err = registry.WatchPlan(ctx, cfg.Etcd, cfg.Cluster)
		}
		if err != nil {
			cfg.Logger.Warn("console: watching the cluster failed; retrying", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
	}
	for {
		select {
		case <-ctx.Done():
			return
		case ws, ok := <-workers:
			if !ok || !emit(ctx, out, func(s *clusterState, now time.Time) { s.setWorkers(ws, now) }) {
				return
			}
		case p, ok := <-plans:
			if !ok || !emit(ctx, out, func(s *clusterState, now time.Time) { s.setPlan(p, now) }) {
				return
			}
		}
	}
}

// pollCluster asks etcd for the leader and the leases, and each worker
// for its Health and Stats, every cfg.Poll.
func pollCluster(ctx context.Context, cfg Config, out chan<- change) {
	conns := map[string]*workerConn{}
	defer func() {
		for _, c := range conns {
			c.closer.Close()
		}
	}()
	tick := time.NewTicker(cfg.Poll)
	defer tick.Stop()
	for {
		p := poll{leading: cfg.Leader(), ready: cfg.Ready()}
		if cfg.Etcd != nil {
			qctx, cancel := context.WithTimeout(ctx, cfg.Poll)
			p.leader, _ = registry.Leader(qctx, cfg.Etcd, cfg.Cluster)
			p.leases, _ = registry.WorkerLeases(qctx, cfg.Etcd, cfg.Cluster)
			if ws, _, err := registry.Workers(qctx, cfg.Etcd, cfg.Cluster); err == nil && cfg.Dial != nil {
				p.health = probe(qctx, cfg.Dial, conns, ws)
			}
			cancel()
		}
		if !emit(ctx, out, func(s *clusterState, now time.Time) { s.applyPoll(p, now) }) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

type workerConn struct {
	client tesserav1.WorkerClient
	closer io.Closer
}

// probe asks every worker for its Health and Stats at once, keeping one
// connection per address (and closing those of workers gone).
func probe(ctx context.Context, dial func(string) (tesserav1.WorkerClient, io.Closer, error), conns map[string]*workerConn, ws []*tesserav1.WorkerInfo) map[string]health {
	live := map[string]bool{}
	for _, w := range ws {
		live[w.Address] = true
		if _, ok := conns[w.Address]; ok {
			continue
		}
		if c, closer, err := dial(w.Address); err == nil {
			conns[w.Address] = &workerConn{client: c, closer: closer}
		}
	}
	for addr, c := range conns {
		if !live[addr] {
			c.closer.Close()
			delete(conns, addr)
		}
	}
	out := make(map[string]health, len(ws))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, w := range ws {
		c, ok := conns[w.Address]
		if !ok {
			out[w.Id] = health{status: "unreachable: cannot dial " + w.Address}
			continue
		}
		wg.Go(func() {
			h := ask(ctx, c.client)
			mu.Lock()
			out[w.Id] = h
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

func ask(ctx context.Context, c tesserav1.WorkerClient) health {
	hr, err := c.Health(ctx, &tesserav1.HealthRequest{})
	if err != nil {
		return health{status: "unreachable"}
	}
	h := health{ok: true}
	switch hr.Status {
	case tesserav1.ServingStatus_SERVING_STATUS_SERVING:
		h.status = fmt.Sprintf("serving plan v%d", hr.PlanVersion)
	case tesserav1.ServingStatus_SERVING_STATUS_LOADING:
		h.status = "loading a shard"
	default:
		h.status = "idle (no shard)"
	}
	if st, err := c.Stats(ctx, &tesserav1.StatsRequest{}); err == nil {
		h.stats = st
	}
	return h
}
