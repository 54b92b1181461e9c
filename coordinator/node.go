package coordinator

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tessera-llm/tessera/coordinator/api"
	"github.com/tessera-llm/tessera/coordinator/cluster"
	"github.com/tessera-llm/tessera/coordinator/scheduler"
	"github.com/tessera-llm/tessera/coordinator/tokenizer"
	tesserav1 "github.com/tessera-llm/tessera/proto/tessera/v1"
	"github.com/tessera-llm/tessera/shard/spec"
	"github.com/tessera-llm/tessera/shard/transport"
)

// EncoderLoader loads the encoder model in dir to serve in this process.
type EncoderLoader func(dir string) (api.Encoder, error)

// Options configure a coordinator node.
type Options struct {
	Cluster, ID string
	// ModelDir is the model as this process reads it (config.json,
	// tokenizer.json, tokenizer_config.json); WorkerModelDir is the path
	// sent to workers (default ModelDir). ModelName is the API's model id.
	ModelDir, WorkerModelDir, ModelName string
	// DTypeBytes is the checkpoint's weight element size, for the
	// planner's memory estimates.
	DTypeBytes int
	// Listen is the HTTP API's address; GRPCListen the gRPC services'
	// (empty: off).
	Listen, GRPCListen string
	// PP and TP fix the plan's shape; 0 lets the planner choose.
	PP, TP                 int
	CacheTokens, BlockSize int
	MaxQueue, MaxBatch     int
	// InFlight is how many steps may be in flight at once, so that
	// pipeline stages overlap (0: one per stage).
	InFlight               int
	StepTimeout, LeaderTTL time.Duration
	APIKey                 string
	// TLS, when set, serves the API over HTTPS.
	TLS *tls.Config
	// WorkerTLS, when set, is the mutual-TLS config of the gRPC clients
	// to workers.
	WorkerTLS *tls.Config
	// Encoders loads an encoder model; nil refuses one.
	Encoders EncoderLoader
	// Limits are the HTTP API's timeouts and per-client connection cap.
	Limits api.Limits
	Logger *slog.Logger
}

// Node is a running coordinator.
type Node struct {
	addr, grpcAddr string
	stop           func()
}

// Addr is the bound HTTP API address.
func (n *Node) Addr() string { return n.addr }

// GRPCAddr is the bound gRPC address ("" when off).
func (n *Node) GRPCAddr() string { return n.grpcAddr }

// Close stops serving (letting HTTP requests finish for 5 s at most) and
// waits. The caller closes the clients it passed to Start.
func (n *Node) Close() { n.stop() }

// isEncoder reports a model served by the in-process encoder engine
// instead of planned over workers: its card says it is an encoder.
func isEncoder(s *spec.Spec) bool { return s.Serving() == spec.Encoder }

// ServesInProcess reports whether the model in dir is served by this
// process alone (an encoder), so that Start needs no etcd or NATS.
func ServesInProcess(dir string) (bool, error) {
	s, err := spec.Load(dir)
	if err != nil {
		return false, err
	}
	return isEncoder(s), nil
}

// Start runs a coordinator on the given etcd and NATS clients. An encoder
// model needs neither (they may be nil): it is served in this process.
func Start(ctx context.Context, cli *clientv3.Client, nc *nats.Conn, o Options) (*Node, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s, err := spec.Load(o.ModelDir)
	if err != nil {
		return nil, err
	}
	var tok api.Tokenizer
	if t, err := tokenizer.Load(filepath.Join(o.ModelDir, "tokenizer.json")); err == nil {
		tok = api.HF(t)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if isEncoder(s) {
		return startEncoder(o, s, tok)
	}
	if o.WorkerModelDir == "" {
		o.WorkerModelDir = o.ModelDir
	}
	if o.CacheTokens < 1 || o.BlockSize < 1 {
		return nil, fmt.Errorf("cache tokens (%d) and block size (%d) must be positive", o.CacheTokens, o.BlockSize)
	}
	tr, err := transport.NewNATS(nc)
	if err != nil {
		return nil, err
	}
	mgr := cluster.New(cluster.Config{Dial: WorkerDialer(o.WorkerTLS), Cluster: o.Cluster, ID: o.ID, ModelDir: o.WorkerModelDir, Spec: s,
		DTypeBytes: o.DTypeBytes, PP: o.PP, TP: o.TP, CacheTokens: o.CacheTokens, BlockSize: o.BlockSize, StepTimeout: o.StepTimeout,
		InFlight: o.InFlight, LeaderTTL: o.LeaderTTL, Logger: o.Logger}, cli, tr)
	metrics := api.NewMetrics()
	metrics.Registry().MustRegister(mgr.Collector())
	sched := scheduler.New(scheduler.Config{Blocks: (o.CacheTokens + o.BlockSize - 1) / o.BlockSize, BlockSize: o.BlockSize,
		Vocab: s.Vocab, MaxContext: s.MaxPositions, MaxQueue: o.MaxQueue, MaxBatch: o.MaxBatch, EOS: int32(s.EOS), Logger: o.Logger,
		// A prefix LM's early keys depend on its whole prefix: no sharing.
		PrefixCaching: s.Positions != spec.RoPE2D, Window: s.SlidingWindow}, metrics.TimeSteps(mgr))
	chat, err := api.LoadChatTemplate(filepath.Join(o.ModelDir, "tokenizer_config.json"))
	if err != nil {
		tr.Close()
		return nil, err
	}
	a := api.New(api.Config{Model: o.ModelName, Scheduler: sched, Tokenizer: tok, Chat: chat, Ready: mgr.Ready,
		APIKey: o.APIKey, Metrics: metrics, Logger: o.Logger, Limits: o.Limits})
	con := mountConsole(o, a, metrics, mgr, cli)
	srv, err := listen(o, a)
	if err != nil {
		tr.Close()
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
	srv.serve(&wg)
	return srv.node(func() {
		cancel()
		srv.shutdown()
		wg.Wait()
		tr.Close()
	}), nil
}

// startEncoder serves an encoder model from this process: /v1/embeddings,
// /v1/fill-mask and the gRPC Embed/Tokenize. No cluster is involved.
func startEncoder(o Options, s *spec.Spec, tok api.Tokenizer) (*Node, error) {
	if o.Encoders == nil {
		return nil, fmt.Errorf("%s is an encoder model and this coordinator has no encoder engine", s.Arch)
	}
	enc, err := o.Encoders(o.ModelDir)
	if err != nil {
		return nil, err
	}
	a := api.New(api.Config{Model: o.ModelName, Tokenizer: tok, Encoder: enc, APIKey: o.APIKey, Logger: o.Logger, Limits: o.Limits})
	srv, err := listen(o, a)
	if err != nil {
		return nil, err
	}
	var wg sync.WaitGroup
	srv.serve(&wg)
	o.Logger.Info("serving an encoder model in the coordinator (embeddings, fill-mask)", "arch", s.Arch)
	return srv.node(func() {
		srv.shutdown()
		wg.Wait()
	}), nil
}

// servers are a coordinator's HTTP API and, with a gRPC address, its
// gRPC server (Inference, and Coordinator when the caller registers it).
type servers struct {
	http    *http.Server
	ln, gln net.Listener
	grpc    *grpc.Server
}

// listen binds the API's listeners; nothing serves until serve.
func listen(o Options, a *api.Server) (*servers, error) {
	s := &servers{http: a.HTTPServer()}
	s.http.TLSConfig = o.TLS
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return nil, fmt.Errorf("HTTP listen on %s: %w", o.Listen, err)
	}
	s.ln = a.Listener(ln)
	if o.GRPCListen != "" {
		if s.gln, err = net.Listen("tcp", o.GRPCListen); err != nil {
			s.ln.Close()
			return nil, fmt.Errorf("gRPC listen on %s: %w", o.GRPCListen, err)
		}
		s.grpc = grpc.NewServer(a.GRPCServerOptions()...)
		tesserav1.RegisterInferenceServer(s.grpc, a.GRPC())
	}
	return s, nil
}

// serve starts the servers on wg; the API is HTTPS when it has a TLS
// config.
func (s *servers) serve(wg *sync.WaitGroup) {
	wg.Go(func() {
		if s.http.TLSConfig != nil {
			_ = s.http.ServeTLS(s.ln, "", "")
			return
		}
		_ = s.http.Serve(s.ln)
	})
	if s.grpc != nil {
		wg.Go(func() { _ = s.grpc.Serve(s.gln) })
	}
}

// shutdown lets HTTP requests finish (5 s at most) and stops gRPC.
func (s *servers) shutdown() {
	sctx, done := context.WithTimeout(context.Background(), 5*time.Second)
	defer done()
	_ = s.http.Shutdown(sctx)
	if s.grpc != nil {
		s.grpc.Stop()
	}
}

func (s *servers) node(stop func()) *Node {
	n := &Node{addr: s.ln.Addr().String(), stop: sync.OnceFunc(stop)}
	if s.gln != nil {
		n.grpcAddr = s.gln.Addr().String()
	}
	return n
}

// WorkerDialer opens gRPC clients to workers, with mutual TLS when tc is
// set.
func WorkerDialer(tc *tls.Config) func(addr string) (tesserav1.WorkerClient, io.Closer, error) {
	creds := insecure.NewCredentials()
	if tc != nil {
		creds = credentials.NewTLS(tc)
	}
	return func(addr string) (tesserav1.WorkerClient, io.Closer, error) {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
		if err != nil {
			return nil, nil, err
		}
		return tesserav1.NewWorkerClient(cc), cc, nil
	}
}
