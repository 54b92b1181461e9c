package console

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"

	tesserav1 "github.com/tessera-llm/tessera/proto/tessera/v1"
)

//go:embed assets
var assets embed.FS

// Config wires the console to its coordinator.
type Config struct {
	// Cluster, Model and ID name the cluster, the served model and this
	// coordinator.
	Cluster, Model, ID string
	Etcd               *clientv3.Client
	// Metrics are the coordinator's (api.Metrics.Registry).
	Metrics prometheus.Gatherer
	// Leader and Ready are the cluster manager's: whether this
	// coordinator leads, and whether a plan serves.
	Leader, Ready func() bool
	// Dial opens a worker's gRPC client, for its Health and Stats.
	Dial func(addr string) (tesserav1.WorkerClient, io.Closer, error)
	// RequireKey guards the console's data as the API is guarded
	// (api.Server.RequireKey); nil leaves it open.
	RequireKey func(http.Handler) http.Handler
	Logger     *slog.Logger
	// Interval is the plots' sample interval (default 1 s), Window how
	// much history they keep (default 15 min), Poll how often workers,
	// leases and the leader are polled (default 2 s).
	Interval, Window, Poll time.Duration
}

// Console serves the page and its live data. Run gathers; ServeHTTP
// serves.
type Console struct {
	cfg  Config
	mux  *http.ServeMux
	ring *ring

	mu       sync.Mutex
	state    []byte // the latest snapshot, JSON
	stateSeq uint64
	changed  chan struct{} // closed and replaced on every update
	stopped  chan struct{} // closed when Run returns
}

// New builds the console; it serves an empty state until Run runs.
func New(cfg Config) *Console {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.Window <= 0 {
		cfg.Window = 15 * time.Minute
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 2 * time.Second
	}
	if cfg.RequireKey == nil {
		cfg.RequireKey = func(h http.Handler) http.Handler { return h }
	}
	if cfg.Leader == nil {
		cfg.Leader = func() bool { return false }
	}
	if cfg.Ready == nil {
		cfg.Ready = func() bool { return false }
	}
	c := &Console{cfg: cfg, mux: http.NewServeMux(), ring: newRing(cfg.Window, cfg.Interval),
		changed: make(chan struct{}), stopped: make(chan struct{}), state: []byte("null")}
	static, _ := fs.Sub(assets, "assets") // a fixed embedded path
	files := http.StripPrefix("/console/", http.FileServerFS(static))
	c.mux.Handle("GET /console/", files)
	c.mux.Handle("GET /console", http.RedirectHandler("/console/", http.StatusMovedPermanently))
	c.mux.Handle("GET /console/api/state", cfg.RequireKey(http.HandlerFunc(c.serveState)))
	c.mux.Handle("GET /console/api/events", cfg.RequireKey(http.HandlerFunc(c.serveEvents)))
	return c
}

// ServeHTTP serves /console/: the page (open: it holds no data) and
// /console/api/ (behind the API key).
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	// The page talks to this origin only; the policy makes the browser
	// enforce it.
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
	c.mux.ServeHTTP(w, r)
}

// publish makes st the state the page sees.
func (c *Console) publish(st []byte) {
	c.mu.Lock()
	c.state = st
	c.stateSeq++
	c.mu.Unlock()
	c.notify()
}

// notify wakes every event stream.
func (c *Console) notify() {
	c.mu.Lock()
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
}

func (c *Console) serveState(w http.ResponseWriter, _ *http.Request) {
	c.mu.Lock()
	st := c.state
	c.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.Write(st)
}

// serveEvents streams SSE: "history" (every sample the ring holds) once,
// then "state" whenever the cluster changes and "sample" every interval.
// One stream per tab; each waits on the same broadcast, so a slow tab
// skips to the latest state instead of queueing.
func (c *Console) serveEvents(w http.ResponseWriter, r *http.Request) {
	flush, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	history, seq := c.ring.since(0)
	send(w, "history", history)
	var sent uint64
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	for {
		c.mu.Lock()
		wake, st, stSeq := c.changed, c.state, c.stateSeq
		c.mu.Unlock()
		if stSeq != sent {
			fmt.Fprintf(w, "event: state\ndata: %s\n\n", st)
			sent = stSeq
		}
		var fresh []Sample
		fresh, seq = c.ring.since(seq)
		for _, s := range fresh {
			send(w, "sample", s)
		}
		flush.Flush()
		select {
		case <-wake:
		case <-keepalive.C:
			io.WriteString(w, ": keepalive\n\n")
		case <-r.Context().Done():
			return
		case <-c.stopped:
			return
		}
	}
}

func send(w io.Writer, event string, v any) {
	b, _ := json.Marshal(v)
	fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, b)
}

// Run samples the metrics and follows the cluster until ctx ends.
func (c *Console) Run(ctx context.Context) {
	defer close(c.stopped)
	st := newClusterState(c.cfg)
	changes := make(chan func(*clusterState, time.Time), 16)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { watchCluster(ctx, c.cfg, changes) })
	wg.Go(func() { pollCluster(ctx, c.cfg, changes) })
	tick := time.NewTicker(c.cfg.Interval)
	defer tick.Stop()
	c.publish(st.encode(time.Now()))
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			r := read(c.cfg.Metrics, now)
			r.busy = st.stageBusy()
			c.ring.add(r)
			c.notify()
		case apply := <-changes:
			now := time.Now()
			apply(st, now)
			c.publish(st.encode(now))
		}
	}
}
