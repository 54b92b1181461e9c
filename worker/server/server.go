// Package server is a worker's serving side: it answers the coordinator's
// gRPC calls (LoadShard, Health, Stats, Drop) and runs the steps of its
// loaded shard as they arrive over the transport: step metadata from the
// coordinator, hidden states from the previous stage, and partial sums
// from its stage's other ranks (over the direct mesh when the worker has
// a transport.Hub, see joinReduce). The Runner turns one step into the rank's
// output: hidden states for the next stage or, on the last stage, its
// top-k for the coordinator. Registration in etcd is the caller's (see
// shard/registry); the server only serves.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tessera-llm/tessera/kernels"
	tesserav1 "github.com/tessera-llm/tessera/proto/tessera/v1"
	"github.com/tessera-llm/tessera/shard/plan"
	"github.com/tessera-llm/tessera/shard/transport"
	"github.com/tessera-llm/tessera/worker/model"
)

// Config describes a worker.
type Config struct {
	Cluster string
	ID      string
	// ModelRoot is where relative model directories are resolved.
	ModelRoot string
	Backend   kernels.Backend
	// Quantize converts every shard's matrices at load (0: keep the
	// checkpoint's dtype).
	Quantize kernels.DType
	// StepTimeout bounds one step on this worker: waiting for the previous
	// stage's activations, the all-reduces and the compute together
	// (DefaultStepTimeout when 0). A CPU stage of a large model needs more.
	StepTimeout time.Duration
	// Hub, when set, carries the stage's all-reduce directly between the
	// ranks' workers instead of over the transport (see joinReduce).
	Hub    *transport.Hub
	Logger *slog.Logger
}

// Server is one worker's state. Its gRPC methods may run concurrently; a
// mutex guards the loaded shard, whose step loop is its own goroutine.
type Server struct {
	tesserav1.UnimplementedWorkerServer
	cfg Config
	tr  transport.Transport
	log *slog.Logger

	mu      sync.Mutex
	shard   *shard
	loading atomic.Bool

	steps, tokens, badSteps atomic.Int64
	busy                    atomic.Int64 // nanoseconds in runner.Step
	stepTime                prometheus.Histogram
	metrics                 *prometheus.Registry
}

// New makes a worker that exchanges activations over tr.
func New(cfg Config, tr transport.Transport) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.StepTimeout <= 0 {
		cfg.StepTimeout = DefaultStepTimeout
	}
	s := &Server{cfg: cfg, tr: tr, log: cfg.Logger.With("worker", cfg.ID), metrics: prometheus.NewRegistry()}
	s.stepTime = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tessera_worker_step_seconds",
		Help:    "Time this worker spends in one step: its layers, including the stage's all-reduces.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)})
	counter := func(name, help string, v *atomic.Int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v.Load()) })
	}
	s.metrics.MustRegister(s.stepTime,
		counter("tessera_worker_steps_total", "Steps this worker ran.", &s.steps),
		counter("tessera_worker_tokens_total", "Tokens in the steps this worker ran.", &s.tokens),
		counter("tessera_worker_bad_steps_total", "Step frames that did not decode or named another plan.", &s.badSteps),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return s
}

// MetricsHandler serves the worker's Prometheus metrics: its step time
// (per worker, as each worker is scraped on its own), steps, tokens and
// bad frames, and the Go and process collectors.
func (s *Server) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(s.metrics, promhttp.HandlerOpts{})
}

// shard is a loaded slice of a model and the loop that runs its steps.
type shard struct {
	req    *tesserav1.Shard
	runner *Runner
	comm   *groupComm
	bytes  int64
	cancel context.CancelFunc
	done   chan struct{}
}

// Close stops the step loop and waits for it.
func (s *Server) Close() {
	s.mu.Lock()
	sh := s.shard
	s.shard = nil
	s.mu.Unlock()
	if sh != nil {
		sh.stop()
	}
}

func (sh *shard) stop() {
	sh.cancel()
	<-sh.done
}

// Ready reports whether a shard is loaded and serving.
func (s *Server) Ready() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.shard != nil
}

// LoadShard loads the requested slice, streaming progress, then starts
// serving its steps. A shard of another plan version is dropped first.
func (s *Server) LoadShard(req *tesserav1.LoadShardRequest, stream tesserav1.Worker_LoadShardServer) error {
	sh := req.GetShard()
	if sh == nil {
		return status.Error(codes.InvalidArgument, "LoadShard needs a shard")
	}
	p, err := plan.Parse([]byte(sh.PlanJson))
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "shard plan: %v", err)
	}
	if p.Version != sh.PlanVersion {
		return status.Errorf(codes.InvalidArgument, "shard names plan v%d, its plan is v%d", sh.PlanVersion, p.Version)
	}
	dir, err := s.modelDir(sh.ModelDir)
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	if !s.loading.CompareAndSwap(false, true) {
		return status.Error(codes.Unavailable, "a shard is already loading; retry when it is done")
	}
	defer s.loading.Store(false)
	s.mu.Lock()
	if cur := s.shard; cur != nil && cur.req.PlanVersion == sh.PlanVersion && cur.req.Stage == sh.Stage && cur.req.Rank == sh.Rank {
		s.mu.Unlock()
		return stream.Send(&tesserav1.LoadProgress{Bytes: cur.bytes, TotalBytes: cur.bytes, Done: true})
	}
	old := s.shard
	s.shard = nil
	s.mu.Unlock()
	if old != nil {
		old.stop()
	}

	ctx := stream.Context()
	subj, err := transport.NewSubjects(s.cfg.Cluster, p.Version)
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	stage, rank := int(sh.Stage), int(sh.Rank)
	if stage < 0 || stage >= len(p.Stages) || rank < 0 || rank >= len(p.Stages[stage].Ranks) {
		return status.Errorf(codes.InvalidArgument, "stage %d rank %d is not in plan v%d", stage, rank, p.Version)
	}
	// The loop's context outlives this RPC; cancel frees it on failure.
	loopCtx, cancel := context.WithCancel(context.Background())
	comm, err := s.joinReduce(loopCtx, subj, sh, len(p.Stages[stage].Ranks))
	if err != nil {
		cancel()
		return status.Errorf(codes.Unavailable, "joining stage %d's all-reduce: %v", stage, err)
	}
	var last model.Progress
	opts := []model.Option{
		model.WithShard(&model.Shard{Plan: p, Stage: stage, Rank: rank, Comm: comm}),
		model.WithCache(int(sh.CacheTokens), int(sh.BlockSize)),
		model.WithQuantize(s.cfg.Quantize),
		model.WithProgress(func(pr model.Progress) {
			last = pr
			_ = stream.Send(&tesserav1.LoadProgress{Bytes: pr.Bytes, TotalBytes: pr.TotalBytes,
				Tensors: int32(pr.Tensors), TotalTensors: int32(pr.TotalTensors)})
		}),
	}
	if s.cfg.Backend != nil {
		opts = append(opts, model.WithBackend(s.cfg.Backend))
	}
	m, err := model.Load(dir, opts...)
	if err == nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	if err != nil {
		cancel()
		return status.Errorf(loadCode(err), "loading %s stage %d rank %d: %v", dir, stage, rank, err)
	}
	st, ok := m.(model.Stage)
	if !ok {
		cancel()
		return status.Errorf(codes.FailedPrecondition, "%s cannot run as a pipeline stage", m.Spec().Arch)
	}
	loaded := &shard{req: sh, runner: NewRunner(st), comm: comm, bytes: last.Bytes, cancel: cancel, done: make(chan struct{})}
	if err := s.start(loopCtx, loaded, subj, p); err != nil {
		cancel()
		return status.Errorf(codes.Unavailable, "subscribing to plan v%d: %v", p.Version, err)
	}
	s.mu.Lock()
	s.shard = loaded
	s.mu.Unlock()
	s.log.Info("shard loaded", "plan", p.Version, "stage", stage, "rank", rank, "bytes", last.Bytes, "reduce", comm.path())
	return stream.Send(&tesserav1.LoadProgress{Bytes: last.Bytes, TotalBytes: last.TotalBytes,
		Tensors: int32(last.Tensors), TotalTensors: int32(last.TotalTensors), Done: true})
}

func loadCode(err error) codes.Code {
	switch {
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	case errors.Is(err, model.ErrShard), errors.Is(err, model.ErrUnsupportedArch):
		return codes.InvalidArgument
	}
	return codes.FailedPrecondition
}

// modelDir resolves the coordinator's model path under ModelRoot; with a
// root, the path may not escape it.
func (s *Server) modelDir(dir string) (string, error) {
	if dir == "" {
		return "", errors.New("shard has no model directory")
	}
	if s.cfg.ModelRoot == "" {
		return dir, nil
	}
	rel := filepath.Clean(dir)
	if filepath.IsAbs(rel) || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("model directory %q must be relative to the worker's model root", dir)
	}
	return filepath.Join(s.cfg.ModelRoot, rel), nil
}

// Health reports whether a shard is loaded.
func (s *Server) Health(context.Context, *tesserav1.HealthRequest) (*tesserav1.HealthResponse, error) {
	resp := &tesserav1.HealthResponse{WorkerId: s.cfg.ID, Status: tesserav1.ServingStatus_SERVING_STATUS_IDLE}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.shard != nil:
		resp.Status, resp.PlanVersion = tesserav1.ServingStatus_SERVING_STATUS_SERVING, s.shard.req.PlanVersion
	case s.loading.Load():
		resp.Status = tesserav1.ServingStatus_SERVING_STATUS_LOADING
	}
	return resp, nil
}

// Stats reports counters.
func (s *Server) Stats(context.Context, *tesserav1.StatsRequest) (*tesserav1.StatsResponse, error) {
	resp := &tesserav1.StatsResponse{Steps: s.steps.Load(), Tokens: s.tokens.Load(), BadFrames: s.badSteps.Load(),
		BusySeconds: time.Duration(s.busy.Load()).Seconds()}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shard != nil {
		resp.WeightBytes = s.shard.bytes
		resp.BadFrames += s.shard.comm.dropped()
		used, total := s.shard.runner.KVBlocks()
		resp.KvBlocksUsed, resp.KvBlocksTotal = int32(used), int32(total)
	}
	return resp, nil
}

// Drop unloads the shard of a plan version (any when 0).
func (s *Server) Drop(_ context.Context, req *tesserav1.DropRequest) (*tesserav1.DropResponse, error) {
	s.mu.Lock()
	sh := s.shard
	if sh != nil && (req.PlanVersion == 0 || req.PlanVersion == sh.req.PlanVersion) {
		s.shard = nil
	} else {
		sh = nil
	}
	s.mu.Unlock()
	if sh != nil {
		sh.stop()
		s.log.Info("shard dropped", "plan", sh.req.PlanVersion)
	}
	return &tesserav1.DropResponse{}, nil
}
