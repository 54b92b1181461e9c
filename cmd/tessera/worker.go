package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/tessera-llm/tessera/kernels"
	"github.com/tessera-llm/tessera/worker"
	"github.com/tessera-llm/tessera/worker/devexec"
	"github.com/tessera-llm/tessera/worker/server"
)

func init() {
	register(command{name: "worker", summary: "Run a worker: registers in etcd and serves its shard of the model.", run: runWorker})
}

// workerFlags configure a worker.
type workerFlags struct {
	listen, advertise, memory, device, id, modelRoot, httpListen string
	quantize, tpReduce, tpListen, tpAdvertise                    string
	leaseTTL, stepTimeout                                        time.Duration
}

func (w *workerFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&w.device, "device", "cpu", "compute device: cpu, or cuda:N in a build made with 'make cuda'")
	fs.StringVar(&w.quantize, "quantize", "", quantizeUsage)
	fs.StringVar(&w.memory, "memory", "8GiB", "memory this worker offers for weights; the planner places work in proportion")
	fs.DurationVar(&w.leaseTTL, "lease-ttl", 5*time.Second, "etcd lease TTL: how soon a dead worker is noticed")
	fs.StringVar(&w.tpReduce, "tp-reduce", worker.ReduceDirect, "all-reduce between a stage's tensor-parallel ranks: direct (TCP between the workers, mutual TLS with --grpc-ca) or nats")
	fs.StringVar(&w.tpListen, "tp-listen", "", "address of the direct all-reduce (default: the gRPC host, a free port)")
	fs.StringVar(&w.tpAdvertise, "tp-advertise", "", "all-reduce address registered in etcd, when peers reach --tp-listen through a forwarded port (default: --advertise's host, --tp-listen's port)")
}

// options turns the flags into a worker's Options; the backend is left
// for the caller to open.
func (w *workerFlags) options(log *slog.Logger) (worker.Options, error) {
	mem, err := parseBytes(w.memory)
	if err != nil {
		return worker.Options{}, err
	}
	quant, err := parseQuantize(w.quantize)
	if err != nil {
		return worker.Options{}, err
	}
	if w.tpReduce != worker.ReduceDirect && w.tpReduce != worker.ReduceNATS {
		return worker.Options{}, fmt.Errorf("%w: --tp-reduce %q: want %s or %s", errUsage, w.tpReduce, worker.ReduceDirect, worker.ReduceNATS)
	}
	return worker.Options{ID: w.id, Listen: w.listen, Advertise: w.advertise, HTTPListen: w.httpListen, Device: w.device,
		Memory: mem, Quantize: quant, ModelRoot: w.modelRoot, LeaseTTL: w.leaseTTL, StepTimeout: w.stepTimeout,
		TPReduce: w.tpReduce, ReduceListen: w.tpListen, ReduceAdvertise: w.tpAdvertise,
		Version: version, Logger: log}, nil
}

func runWorker(args []string, _, stderr io.Writer) error {
	var cf clusterFlags
	var wf workerFlags
	fs := newFlagSet("worker", "worker --etcd URL --nats URL --device cpu --memory 8GiB [--listen ADDR]", stderr)
	cf.register(fs)
	wf.register(fs)
	fs.StringVar(&wf.listen, "listen", worker.DefaultListen, "gRPC address of the Worker service (default: a free loopback port)")
	fs.StringVar(&wf.advertise, "advertise", "", "address registered in etcd (default: the address bound)")
	fs.StringVar(&wf.id, "id", "", "worker id (default: host name, device and bound port, unique per process)")
	fs.StringVar(&wf.modelRoot, "model-root", "", "resolve the coordinator's model paths under this directory")
	fs.StringVar(&wf.httpListen, "http-listen", "", "HTTP address of /health, /ready and /metrics, e.g. 127.0.0.1:0 (empty: off)")
	fs.DurationVar(&wf.stepTimeout, "step-timeout", server.DefaultStepTimeout, "longest one step may take on this worker, waiting for activations included (a CPU stage of a large model needs more)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := devexec.Handoff(wf.device, append([]string{"worker"}, args...)); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	log := logger(stderr)
	o, err := wf.options(log)
	if err != nil {
		return err
	}
	o.Cluster = cf.cluster
	if o.TLS, err = cf.sec.grpcMutual(); err != nil {
		return err
	}
	if o.Backend, err = openDevice(wf.device); err != nil {
		return err
	}
	ctx := context.Background()
	cn, err := cf.dial(ctx)
	if err != nil {
		return err
	}
	defer cn.Close()
	n, err := worker.Start(ctx, cn.etcd, cn.nats, o)
	if err != nil {
		return err
	}
	log.Info("worker up", "id", n.ID(), "grpc", n.Addr(), "http", n.HTTPAddr(), "memory", wf.memory)
	untilSignal()
	n.Close()
	return nil
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
