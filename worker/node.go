package worker

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/tessera-llm/tessera/kernels"
	tesserav1 "github.com/tessera-llm/tessera/proto/tessera/v1"
	"github.com/tessera-llm/tessera/shard/registry"
	"github.com/tessera-llm/tessera/shard/transport"
	"github.com/tessera-llm/tessera/worker/server"
)

// DefaultListen is the gRPC address a worker binds when Options.Listen is
// empty: an ephemeral loopback port, so workers on one host never collide.
const DefaultListen = "127.0.0.1:0"

// Options configure a worker node.
type Options struct {
	Cluster string
	// ID is the registered worker id; empty means DefaultID of the host,
	// device and bound port.
	ID string
	// Listen is the gRPC address (DefaultListen when empty); Advertise is
	// the address registered instead of the bound one (behind NAT).
	Listen, Advertise string
	// HTTPListen serves /health, /ready and /metrics; empty: off.
	HTTPListen string
	// Backend runs the kernels (nil: kernels.Open(Device)); Device names
	// it in the registration and the default id.
	Backend kernels.Backend
	Device  string
	// Memory is what the worker offers the planner for weights.
	Memory   int64
	Quantize kernels.DType
	// ModelRoot resolves the coordinator's model paths.
	ModelRoot string
	LeaseTTL  time.Duration
	// StepTimeout bounds one step on this worker (server.Config.StepTimeout).
	StepTimeout time.Duration
	// TLS, when set, makes the gRPC server demand client certificates
	// (mutual TLS with the coordinator).
	TLS *tls.Config
	// TPReduce is how the ranks of a stage all-reduce: ReduceDirect (the
	// default) over a mesh of direct connections between the workers,
	// secured with TLS like gRPC; ReduceNATS through the NATS server.
	TPReduce string
	// ReduceListen is the mesh's address (empty: the gRPC listen host and
	// any free port); its port is advertised with Advertise's host.
	ReduceListen string
	// ReduceAdvertise, when set, is the mesh address registered in etcd,
	// for ranks that reach this one through a forwarded port or a relay.
	ReduceAdvertise string
	// Version is stamped into the registration.
	Version string
	Logger  *slog.Logger
}

// All-reduce paths between the ranks of a stage (Options.TPReduce).
const (
	ReduceDirect = "direct"
	ReduceNATS   = "nats"
)

// Node is a running worker.
type Node struct {
	id, addr, httpAddr string
	stop               func()
}

// DefaultID is a worker id unique per process on a host: the host name,
// the device and the bound port, e.g. "gpu-box-cuda1-40517".
func DefaultID(device, addr string) string {
	host, _ := os.Hostname()
	if host == "" {
		host = "worker"
	}
	_, port, _ := net.SplitHostPort(addr)
	dev := strings.NewReplacer(":", "", "/", "-", " ", "-").Replace(device)
	return strings.Join([]string{host, dev, port}, "-")
}

// Start runs a worker on the given etcd and NATS clients, which the
// caller keeps and closes after Close. The worker registers last, so one
// that cannot listen never appears in etcd.
func Start(ctx context.Context, cli *clientv3.Client, nc *nats.Conn, o Options) (_ *Node, err error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Listen == "" {
		o.Listen = DefaultListen
	}
	if o.Backend == nil {
		if o.Backend, err = kernels.Open(o.Device); err != nil {
			return nil, err
		}
	}
	// Undo in reverse on failure.
	var undo []func()
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()
	tr, err := transport.NewNATS(nc)
	if err != nil {
		return nil, err
	}
	undo = append(undo, func() { tr.Close() })
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return nil, fmt.Errorf("gRPC listen on %s: %w", o.Listen, err)
	}
	undo = append(undo, func() { ln.Close() })
	var hln net.Listener
	if o.HTTPListen != "" {
		if hln, err = net.Listen("tcp", o.HTTPListen); err != nil {
			return nil, fmt.Errorf("HTTP listen on %s: %w", o.HTTPListen, err)
		}
		undo = append(undo, func() { hln.Close() })
	}
	n := &Node{id: o.ID, addr: o.Advertise}
	if n.addr == "" {
		n.addr = ln.Addr().String()
	}
	if n.id == "" {
		n.id = DefaultID(o.Device, ln.Addr().String())
	}
	hub, reduceAddr, err := listenReduce(o, n.addr)
	if err != nil {
		return nil, err
	}
	if hub != nil {
		undo = append(undo, func() { hub.Close() })
	}
	w := server.New(server.Config{Cluster: o.Cluster, ID: n.id, ModelRoot: o.ModelRoot, Backend: o.Backend, Quantize: o.Quantize,
		StepTimeout: o.StepTimeout, Hub: hub, Logger: o.Logger}, tr)
	undo = append(undo, w.Close)
	info := &tesserav1.WorkerInfo{Id: n.id, Address: n.addr, Backend: o.Backend.Name(), Device: o.Device, MemoryBytes: o.Memory,
		Version: o.Version, ReduceAddress: reduceAddr}
	member, err := registry.Join(ctx, cli, o.Cluster, info, o.LeaseTTL, o.Logger)
	if err != nil {
		return nil, err
	}
	var gopts []grpc.ServerOption
	if o.TLS != nil {
		gopts = append(gopts, grpc.Creds(credentials.NewTLS(o.TLS)))
	}
	g := grpc.NewServer(gopts...)
	tesserav1.RegisterWorkerServer(g, w)
	var httpSrv *http.Server
	var wg sync.WaitGroup
	if hln != nil {
		n.httpAddr = hln.Addr().String()
		httpSrv = &http.Server{Handler: probes(w, member), ReadHeaderTimeout: 10 * time.Second}
		wg.Go(func() { _ = httpSrv.Serve(hln) })
	}
	wg.Go(func() { _ = g.Serve(ln) })
	n.stop = sync.OnceFunc(func() {
		member.Close()
		if httpSrv != nil {
			_ = httpSrv.Close()
		}
		g.Stop()
		w.Close()
		if hub != nil {
			hub.Close()
		}
		wg.Wait()
		tr.Close()
	})
	return n, nil
}

// listenReduce starts the direct all-reduce Hub unless o.TPReduce is
// ReduceNATS, and returns the address to advertise for it: advertised's
// host (the address the coordinator reaches) with the bound port.
func listenReduce(o Options, advertised string) (*transport.Hub, string, error) {
	switch o.TPReduce {
	case ReduceNATS:
		return nil, "", nil
	case "", ReduceDirect:
	default:
		return nil, "", fmt.Errorf("%w: tensor-parallel reduce %q (want %s or %s)", transport.ErrInvalid, o.TPReduce, ReduceDirect, ReduceNATS)
	}
	addr := o.ReduceListen
	if addr == "" {
		host, _, err := net.SplitHostPort(o.Listen)
		if err != nil {
			return nil, "", fmt.Errorf("gRPC listen address %q: %w", o.Listen, err)
		}
		addr = net.JoinHostPort(host, "0")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", fmt.Errorf("all-reduce listen on %s: %w", addr, err)
	}
	hub := transport.NewHub(ln, o.Cluster, o.TLS)
	if o.ReduceAdvertise != "" {
		if _, _, err := net.SplitHostPort(o.ReduceAdvertise); err != nil {
			hub.Close()
			return nil, "", fmt.Errorf("all-reduce advertised address %q: %w", o.ReduceAdvertise, err)
		}
		return hub, o.ReduceAdvertise, nil
	}
	host, _, err := net.SplitHostPort(advertised)
	if err != nil {
		hub.Close()
		return nil, "", fmt.Errorf("advertised address %q: %w", advertised, err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return hub, net.JoinHostPort(host, port), nil
}

// ID is the registered worker id.
func (n *Node) ID() string { return n.id }

// Addr is the registered gRPC address.
func (n *Node) Addr() string { return n.addr }

// HTTPAddr is the bound probe address ("" when off).
func (n *Node) HTTPAddr() string { return n.httpAddr }

// Close deregisters the worker, stops serving and waits.
func (n *Node) Close() { n.stop() }

// probes serves a worker's /health (the process is up), /ready
// (registered in etcd, so the coordinator can assign it a shard) and
// /metrics.
func probes(w *server.Server, m *registry.Member) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(rw http.ResponseWriter, _ *http.Request) {
		rw.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(rw, `{"status":"ok","shard_loaded":%t}`+"\n", w.Ready())
	})
	mux.Handle("GET /metrics", w.MetricsHandler())
	mux.HandleFunc("GET /ready", func(rw http.ResponseWriter, _ *http.Request) {
		rw.Header().Set("Content-Type", "application/json")
		if !m.Registered() {
			rw.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(rw, `{"status":"not registered in etcd"}`)
			return
		}
		fmt.Fprintln(rw, `{"status":"ready"}`)
	})
	return mux
}
