package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"

	"github.com/tessera-llm/tessera/coordinator/api"
	"github.com/tessera-llm/tessera/coordinator/cluster"
	"github.com/tessera-llm/tessera/coordinator/scheduler"
	"github.com/tessera-llm/tessera/coordinator/tokenizer"
	"github.com/tessera-llm/tessera/kernels"
	tesserav1 "github.com/tessera-llm/tessera/proto/tessera/v1"
	"github.com/tessera-llm/tessera/shard/registry"
	"github.com/tessera-llm/tessera/shard/spec"
	"github.com/tessera-llm/tessera/shard/transport"
	"github.com/tessera-llm/tessera/worker/server"
)

// version is stamped into worker registrations.
const version = "0.1.0"

// proc is a running part of a cluster; stop shuts it down and waits.
type proc struct {
	stop func()
	// addr is the HTTP address of a coordinator, the gRPC address of a
	// worker.
	addr string
}

func (p *proc) Close() { p.stop() }

// dial connects to etcd and NATS, failing fast with errors that name the
// addresses.
func dial(ctx context.Context, etcdURL, natsURL string, sec securityFlags) (*clientv3.Client, *nats.Conn, error) {
	etcdOpts, err := sec.etcdOptions()
	if err != nil {
		return nil, nil, err
	}
	natsOpts, err := sec.natsOptions()
	if err != nil {
		return nil, nil, err
	}
	cli, err := registry.Dial(ctx, etcdURL, etcdOpts...)
	if err != nil {
		return nil, nil, err
	}
	nc, err := transport.Connect(natsURL, natsOpts...)
	if err != nil {
		cli.Close()
		return nil, nil, err
	}
	return cli, nc, nil
}

// conns are a process's connections to etcd and NATS and the transport
// over NATS; Close closes all three.
type conns struct {
	cli *clientv3.Client
	nc  *nats.Conn
	tr  *transport.NATS
}

func connect(ctx context.Context, etcdURL, natsURL string, sec securityFlags) (*conns, error) {
	cli, nc, err := dial(ctx, etcdURL, natsURL, sec)
	if err != nil {
		return nil, err
	}
	tr, err := transport.NewNATS(nc)
	if err != nil {
		nc.Close()
		cli.Close()
		return nil, err
	}
	return &conns{cli: cli, nc: nc, tr: tr}, nil
}

func (c *conns) Close() {
	c.tr.Close()
	c.nc.Close()
	c.cli.Close()
}

type coordinatorConfig struct {
	cluster, id          string
	etcd, nats           string
	model, modelName     string
	workerModelDir       string
	listen, grpcListen   string
	pp, tp               int
	cacheTokens, blockSz int
	maxQueue, maxBatch   int
	stepTimeout          time.Duration
	leaderTTL            time.Duration
	apiKey               string
	sec                  securityFlags
	tlsCert, tlsKey      string // the API's TLS key pair; empty serves plain HTTP
	log                  *slog.Logger
}

// startCoordinator runs a coordinator: election, cluster manager,
// scheduler, HTTP API and gRPC status service.
func startCoordinator(ctx context.Context, c coordinatorConfig) (*proc, error) {
	s, err := spec.Load(c.model)
	if err != nil {
		return nil, err
	}
	dt, err := weightBytes(c.model)
	if err != nil {
		return nil, err
	}
	var tok api.Tokenizer
	if t, err := tokenizer.Load(filepath.Join(c.model, "tokenizer.json")); err == nil {
		tok = api.HF(t)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if (c.tlsCert == "") != (c.tlsKey == "") {
		return nil, fmt.Errorf("%w: %w", errUsage, errNoTLSKey)
	}
	dialWorker, err := c.sec.workerDialer()
	if err != nil {
		return nil, err
	}
	if isEncoder(s) {
		return startEncoderCoordinator(ctx, c, s, tok)
	}
	cn, err := connect(ctx, c.etcd, c.nats, c.sec)
	if err != nil {
		return nil, err
	}
	mgr := cluster.New(cluster.Config{Dial: dialWorker, Cluster: c.cluster, ID: c.id, ModelDir: c.workerModelDir, Spec: s, DTypeBytes: dt,
		PP: c.pp, TP: c.tp, CacheTokens: c.cacheTokens, BlockSize: c.blockSz, StepTimeout: c.stepTimeout,
		LeaderTTL: c.leaderTTL, Logger: c.log}, cn.cli, cn.tr)
	blocks := (c.cacheTokens + c.blockSz - 1) / c.blockSz
	metrics := api.NewMetrics()
	sched := scheduler.New(scheduler.Config{Blocks: blocks, BlockSize: c.blockSz, Vocab: s.Vocab, MaxContext: s.MaxPositions,
		MaxQueue: c.maxQueue, MaxBatch: c.maxBatch, EOS: int32(s.EOS), Logger: c.log,
		// A prefix LM's early keys depend on its whole prefix: no sharing.
		PrefixCaching: s.Positions != spec.RoPE2D}, metrics.TimeSteps(mgr))
	apiSrv, err := apiServer(c, tok, sched, metrics, mgr.Ready)
	if err != nil {
		cn.Close()
		return nil, err
	}
	con := mountConsole(c, apiSrv, metrics, mgr, cn.cli, dialWorker)
	srv, err := listenAPI(c, apiSrv)
	if err != nil {
		cn.Close()
		return nil, err
	}
	if srv.grpc != nil {
		tesserav1.RegisterCoordinatorServer(srv.grpc, mgr)
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = mgr.Run(ctx) })
	wg.Go(func() { sched.Run(ctx) })
	wg.Go(func() { con.Run(ctx) })
	srv.serve(&wg, c)
	stop := func() {
		cancel()
		srv.shutdown()
		wg.Wait()
		cn.Close()
	}
	return &proc{stop: sync.OnceFunc(stop), addr: srv.ln.Addr().String()}, nil
}

// apiServers are a coordinator's HTTP API and, with --grpc-listen, its
// gRPC server (Inference, and Coordinator when the caller registers it).
type apiServers struct {
	http    *http.Server
	ln, gln net.Listener
	grpc    *grpc.Server
}

// listenAPI binds the API's listeners; nothing serves until serve.
func listenAPI(c coordinatorConfig, a *api.Server) (*apiServers, error) {
	s := &apiServers{http: &http.Server{Handler: a, ReadHeaderTimeout: 10 * time.Second}}
	var err error
	if s.ln, err = net.Listen("tcp", c.listen); err != nil {
		return nil, fmt.Errorf("HTTP listen on %s: %w", c.listen, err)
	}
	if c.grpcListen != "" {
		if s.gln, err = net.Listen("tcp", c.grpcListen); err != nil {
			s.ln.Close()
			return nil, fmt.Errorf("gRPC listen on %s: %w", c.grpcListen, err)
		}
		s.grpc = grpcServer(a)
	}
	return s, nil
}

// serve starts the servers on wg; the API is HTTPS when c has a key pair.
func (s *apiServers) serve(wg *sync.WaitGroup, c coordinatorConfig) {
	wg.Go(func() {
		if c.tlsCert != "" {
			_ = s.http.ServeTLS(s.ln, c.tlsCert, c.tlsKey)
			return
		}
		_ = s.http.Serve(s.ln)
	})
	if s.grpc != nil {
		wg.Go(func() { _ = s.grpc.Serve(s.gln) })
	}
}

// shutdown lets HTTP requests finish (5 s at most) and stops gRPC.
func (s *apiServers) shutdown() {
	sctx, done := context.WithTimeout(context.Background(), 5*time.Second)
	defer done()
	_ = s.http.Shutdown(sctx)
	if s.grpc != nil {
		s.grpc.Stop()
	}
}

type workerConfig struct {
	cluster, id       string
	etcd, nats        string
	listen, advertise string
	httpListen        string
	memory            int64
	device            string
	quantize          kernels.DType
	modelRoot         string
	leaseTTL          time.Duration
	sec               securityFlags
	log               *slog.Logger
}

// startWorker runs a worker: its gRPC service, registration (renewed if
// the lease is lost) and its shard's step loop.
func startWorker(ctx context.Context, c workerConfig) (_ *proc, err error) {
	b, err := openDevice(c.device)
	if err != nil {
		return nil, err
	}
	grpcOpts, err := c.sec.grpcServerOptions()
	if err != nil {
		return nil, err
	}
	cn, err := connect(ctx, c.etcd, c.nats, c.sec)
	if err != nil {
		return nil, err
	}
	// Undo in reverse on failure; registration comes last, so a worker
	// that cannot listen never appears in etcd.
	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()
	undo = append(undo, cn.Close)
	ln, err := net.Listen("tcp", c.listen)
	if err != nil {
		return nil, fmt.Errorf("gRPC listen on %s: %w", c.listen, err)
	}
	undo = append(undo, func() { ln.Close() })
	var hln net.Listener
	if c.httpListen != "" {
		if hln, err = net.Listen("tcp", c.httpListen); err != nil {
			return nil, fmt.Errorf("HTTP listen on %s: %w", c.httpListen, err)
		}
		undo = append(undo, func() { hln.Close() })
	}
	addr := c.advertise
	if addr == "" {
		addr = ln.Addr().String()
	}
	w := server.New(server.Config{Cluster: c.cluster, ID: c.id, ModelRoot: c.modelRoot, Backend: b, Quantize: c.quantize, Logger: c.log}, cn.tr)
	info := &tesserav1.WorkerInfo{Id: c.id, Address: addr, Backend: b.Name(), Device: c.device, MemoryBytes: c.memory, Version: version}
	ctx, cancel := context.WithCancel(ctx)
	undo = append(undo, cancel)
	reg, err := registry.Register(ctx, cn.cli, c.cluster, info, c.leaseTTL)
	if err != nil {
		return nil, err
	}
	g := grpc.NewServer(grpcOpts...)
	tesserav1.RegisterWorkerServer(g, w)
	var registered atomic.Bool
	registered.Store(true)
	var httpSrv *http.Server
	var wg sync.WaitGroup
	if hln != nil {
		httpSrv = &http.Server{Handler: workerProbes(w, &registered), ReadHeaderTimeout: 10 * time.Second}
		wg.Go(func() { _ = httpSrv.Serve(hln) })
	}
	wg.Go(func() { _ = g.Serve(ln) })
	wg.Go(func() { keepRegistered(ctx, cn.cli, c, info, reg, &registered) })
	stop := func() {
		cancel()
		if httpSrv != nil {
			_ = httpSrv.Close()
		}
		g.Stop()
		w.Close()
		wg.Wait()
		cn.Close()
	}
	return &proc{stop: sync.OnceFunc(stop), addr: addr}, nil
}

// keepRegistered registers again whenever the lease is lost (etcd was
// unreachable for longer than the TTL), until ctx ends.
func keepRegistered(ctx context.Context, cli *clientv3.Client, c workerConfig, info *tesserav1.WorkerInfo, reg *registry.Registration, registered *atomic.Bool) {
	defer func() { _ = reg.Close() }()
	for {
		select {
		case <-ctx.Done():
			return
		case <-reg.Done():
		}
		registered.Store(false)
		c.log.Warn("registration lost; registering again", "err", reg.Err())
		for {
			r, err := registry.Register(ctx, cli, c.cluster, info, c.leaseTTL)
			if err == nil {
				reg = r
				registered.Store(true)
				break
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(500 * time.Millisecond):
			}
		}
	}
}

// workerProbes serves a worker's /health (the process is up), /ready
// (registered in etcd, so the coordinator can assign it a shard) and
// /metrics.
func workerProbes(w *server.Server, registered *atomic.Bool) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(rw http.ResponseWriter, _ *http.Request) {
		rw.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(rw, `{"status":"ok","shard_loaded":%t}`+"\n", w.Ready())
	})
	mux.Handle("GET /metrics", w.MetricsHandler())
	mux.HandleFunc("GET /ready", func(rw http.ResponseWriter, _ *http.Request) {
		rw.Header().Set("Content-Type", "application/json")
		if !registered.Load() {
			rw.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(rw, `{"status":"not registered in etcd"}`)
			return
		}
		fmt.Fprintln(rw, `{"status":"ready"}`)
	})
	return mux
}

// openDevice opens the backend named by --device: cpu, or cuda:N in a
// build with -tags cuda. An unknown name is a usage error listing what
// this build has.
func openDevice(name string) (kernels.Backend, error) {
	b, err := kernels.Open(name)
	if errors.Is(err, kernels.ErrUnknownBackend) {
		return nil, fmt.Errorf("%w: --device %q is not available in this build (have: %s; 'make cuda' builds cuda:N)", errUsage, name, strings.Join(kernels.Names(), ", "))
	}
	return b, err
}
