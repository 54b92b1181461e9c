package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	tesserav1 "github.com/tessera-llm/tessera/proto/tessera/v1"
	"github.com/tessera-llm/tessera/shard/plan"
	"github.com/tessera-llm/tessera/shard/registry"
	"github.com/tessera-llm/tessera/shard/transport"
	"github.com/tessera-llm/tessera/worker/devexec"
)

func init() {
	register(command{name: "coordinator", summary: "Run a coordinator: plans the model over registered workers and serves the API.", run: runCoordinator})
	register(command{name: "worker", summary: "Run a worker: registers in etcd and serves its shard of the model.", run: runWorker})
	register(command{name: "local", summary: "Run a whole cluster in this process (embedded etcd and NATS) serving a model.", run: runLocal})
	register(command{name: "status", summary: "Print a cluster's workers, plan and health from etcd.", run: runStatus})
}

// clusterFlags are what every cluster process shares.
type clusterFlags struct {
	cluster, etcd, nats string
	sec                 securityFlags
}

func (c *clusterFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.cluster, "cluster", "default", "cluster name: the etcd prefix and NATS subject token this cluster uses")
	fs.StringVar(&c.etcd, "etcd", "127.0.0.1:2379", "etcd endpoints, comma-separated")
	fs.StringVar(&c.nats, "nats", "nats://127.0.0.1:4222", "NATS server URL(s), comma-separated")
	c.sec.register(fs)
}

// servingFlags configure a coordinator.
type servingFlags struct {
	api                                                            apiFlags
	model, modelName, workerModelDir, listen, grpcListen, plan, id string
	tlsCert, tlsKey                                                string
	cacheTokens, blockSize, maxQueue, maxBatch                     int
	stepTimeout, leaderTTL                                         time.Duration
}

func (s *servingFlags) register(fs *flag.FlagSet, listen string) {
	fs.StringVar(&s.model, "model", defaultModel, "model directory: config.json, model.safetensors, tokenizer.json")
	fs.StringVar(&s.modelName, "model-name", "", "model id in the API (default: the directory's base name)")
	fs.StringVar(&s.listen, "listen", listen, "HTTP address of the API, /health and /ready")
	fs.StringVar(&s.plan, "plan", "", "fix the plan's shape, pp=N,tp=M (default: the planner places layers over all workers)")
	fs.IntVar(&s.cacheTokens, "cache-tokens", 4096, "KV cache capacity per worker, in tokens (all sequences together)")
	fs.IntVar(&s.blockSize, "block-size", 16, "KV cache block size in tokens")
	fs.IntVar(&s.maxQueue, "max-queue", 256, "requests that may wait; more get 429")
	fs.IntVar(&s.maxBatch, "max-batch", 64, "sequences that may run in one step")
	s.api.register(fs)
	fs.DurationVar(&s.stepTimeout, "step-timeout", 5*time.Second, "a step taking longer is retried on a new plan (a lost worker)")
}

func (s *servingFlags) config(cf clusterFlags, log *slog.Logger) (coordinatorConfig, error) {
	var pp, tp int
	if s.plan != "" {
		p, err := parsePlanFlag(s.model, s.plan)
		if err != nil {
			return coordinatorConfig{}, err
		}
		pp, tp = p.Shape()
	}
	name := s.modelName
	if name == "" {
		name = filepath.Base(filepath.Clean(s.model))
	}
	workerDir := s.workerModelDir
	if workerDir == "" {
		workerDir = s.model
	}
	if s.cacheTokens < 1 || s.blockSize < 1 {
		return coordinatorConfig{}, fmt.Errorf("%w: --cache-tokens and --block-size must be positive", errUsage)
	}
	id := s.id
	if id == "" {
		host, _ := os.Hostname()
		id = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	key, err := s.api.resolve()
	if err != nil {
		return coordinatorConfig{}, err
	}
	return coordinatorConfig{apiKey: key, cluster: cf.cluster, id: id, etcd: cf.etcd, nats: cf.nats, sec: cf.sec, tlsCert: s.tlsCert, tlsKey: s.tlsKey,
		model: s.model, modelName: name,
		workerModelDir: workerDir, listen: s.listen, grpcListen: s.grpcListen, pp: pp, tp: tp,
		cacheTokens: s.cacheTokens, blockSz: s.blockSize, maxQueue: s.maxQueue, maxBatch: s.maxBatch, leaderTTL: s.leaderTTL, stepTimeout: s.stepTimeout, log: log}, nil
}

func logger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// untilSignal waits for SIGINT or SIGTERM.
func untilSignal() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
}

func runCoordinator(args []string, _, stderr io.Writer) error {
	var cf clusterFlags
	var sf servingFlags
	fs := newFlagSet("coordinator", "coordinator --etcd URL --nats URL --model DIR [--listen ADDR] [--plan pp=N,tp=M]", stderr)
	cf.register(fs)
	sf.register(fs, "127.0.0.1:8080")
	fs.StringVar(&sf.grpcListen, "grpc-listen", "127.0.0.1:9090", "gRPC address of the Coordinator service (empty: off)")
	fs.StringVar(&sf.workerModelDir, "worker-model-dir", "", "model path as the workers see it (default: --model)")
	fs.StringVar(&sf.id, "id", "", "coordinator id in the election (default: host-pid)")
	fs.DurationVar(&sf.leaderTTL, "leader-ttl", 5*time.Second, "how long a crashed leader keeps the role before a standby takes over")
	fs.StringVar(&sf.tlsCert, "tls-cert", "", "serve the API over HTTPS with this certificate")
	fs.StringVar(&sf.tlsKey, "tls-key", "", "the API certificate's key")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := logger(stderr)
	cfg, err := sf.config(cf, log)
	if err != nil {
		return err
	}
	p, err := startCoordinator(context.Background(), cfg)
	if err != nil {
		return err
	}
	log.Info("coordinator up", "api", "http://"+p.addr, "model", cfg.modelName)
	untilSignal()
	p.Close()
	return nil
}

// workerFlags configure a worker.
type workerFlags struct {
	listen, advertise, memory, device, id, modelRoot, httpListen string
	quantize                                                     string
	leaseTTL                                                     time.Duration
}

func (w *workerFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&w.device, "device", "cpu", "compute device: cpu, or cuda:N in a build made with 'make cuda'")
	fs.StringVar(&w.quantize, "quantize", "", quantizeUsage)
	fs.StringVar(&w.memory, "memory", "8GiB", "memory this worker offers for weights; the planner places work in proportion")
	fs.DurationVar(&w.leaseTTL, "lease-ttl", 5*time.Second, "etcd lease TTL: how soon a dead worker is noticed")
}

func (w *workerFlags) config(cf clusterFlags, log *slog.Logger) (workerConfig, error) {
	mem, err := parseBytes(w.memory)
	if err != nil {
		return workerConfig{}, err
	}
	quant, err := parseQuantize(w.quantize)
	if err != nil {
		return workerConfig{}, err
	}
	id := w.id
	if id == "" {
		id, _ = os.Hostname()
	}
	return workerConfig{cluster: cf.cluster, id: id, etcd: cf.etcd, nats: cf.nats, sec: cf.sec, listen: w.listen, advertise: w.advertise, httpListen: w.httpListen,
		memory: mem, device: w.device, quantize: quant, modelRoot: w.modelRoot, leaseTTL: w.leaseTTL, log: log}, nil
}

func runWorker(args []string, _, stderr io.Writer) error {
	var cf clusterFlags
	var wf workerFlags
	fs := newFlagSet("worker", "worker --etcd URL --nats URL --device cpu --memory 8GiB [--listen ADDR]", stderr)
	cf.register(fs)
	wf.register(fs)
	fs.StringVar(&wf.listen, "listen", "127.0.0.1:7070", "gRPC address of the Worker service")
	fs.StringVar(&wf.advertise, "advertise", "", "address registered in etcd (default: the listen address)")
	fs.StringVar(&wf.id, "id", "", "worker id (default: the host name)")
	fs.StringVar(&wf.modelRoot, "model-root", "", "resolve the coordinator's model paths under this directory")
	fs.StringVar(&wf.httpListen, "http-listen", "", "HTTP address of /health and /ready probes (empty: off)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := devexec.Handoff(wf.device, append([]string{"worker"}, args...)); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	log := logger(stderr)
	cfg, err := wf.config(cf, log)
	if err != nil {
		return err
	}
	p, err := startWorker(context.Background(), cfg)
	if err != nil {
		return err
	}
	log.Info("worker up", "id", cfg.id, "grpc", p.addr, "memory", wf.memory)
	untilSignal()
	p.Close()
	return nil
}

func runLocal(args []string, stdout, stderr io.Writer) error {
	var sf servingFlags
	var wf workerFlags
	var workers int
	var data string
	fs := newFlagSet("local", "local --model DIR --workers 3 [--plan pp=N,tp=M] [--listen 127.0.0.1:8080]", stderr)
	sf.register(fs, "127.0.0.1:8080")
	wf.register(fs)
	fs.IntVar(&workers, "workers", 3, "worker count (0 starts none: external workers can join)")
	fs.StringVar(&data, "data", "", "etcd data directory (default: a temporary one, removed on exit)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if workers < 0 {
		return fmt.Errorf("%w: --workers must be ≥ 0", errUsage)
	}
	log := logger(stderr)
	lc, err := startLocal(context.Background(), sf, wf, workers, data, log)
	if err != nil {
		return err
	}
	defer lc.Close()
	fmt.Fprintf(stdout, "tessera: serving %s with %d workers\n", lc.model, workers)
	fmt.Fprintf(stdout, "etcd: %s\nnats: %s\napi: http://%s\n", lc.etcd, lc.nats, lc.api)
	fmt.Fprintf(stdout, "join: tessera worker --cluster %s --etcd %s --nats %s --memory 8GiB\n", localCluster, lc.etcd, lc.nats)
	fmt.Fprintf(stdout, "try: curl -s http://%s/v1/completions -H 'Content-Type: application/json' -d '{\"prompt\": \"Parameters\\n----------\\n\", \"max_tokens\": 48, \"temperature\": 0}'\n", lc.api)
	untilSignal()
	return nil
}

// localCluster is the cluster name `tessera local` uses.
const localCluster = "local"

// local is `tessera local`: etcd, NATS, workers and a coordinator in one
// process, all on loopback.
type local struct {
	api, etcd, nats, model string
	closers                []func()
}

func (l *local) Close() {
	for i := len(l.closers) - 1; i >= 0; i-- {
		l.closers[i]()
	}
}

func startLocal(ctx context.Context, sf servingFlags, wf workerFlags, workers int, data string, log *slog.Logger) (_ *local, err error) {
	lc := &local{}
	defer func() {
		if err != nil {
			lc.Close()
		}
	}()
	if data == "" {
		if data, err = os.MkdirTemp("", "tessera-etcd-"); err != nil {
			return nil, err
		}
		dir := data
		lc.closers = append(lc.closers, func() { os.RemoveAll(dir) })
	}
	_, etcdURL, stopEtcd, err := registry.Embedded(data)
	if err != nil {
		return nil, err
	}
	lc.closers = append(lc.closers, stopEtcd)
	ns, natsURL, err := transport.EmbeddedNATS(&server.Options{})
	if err != nil {
		return nil, err
	}
	lc.closers = append(lc.closers, func() { ns.Shutdown(); ns.WaitForShutdown() })
	lc.etcd, lc.nats = etcdURL, natsURL
	cf := clusterFlags{cluster: localCluster, etcd: etcdURL, nats: natsURL}
	for i := range workers {
		wf.listen, wf.id = "127.0.0.1:0", fmt.Sprintf("worker-%d", i)
		wc, err := wf.config(cf, log)
		if err != nil {
			return nil, err
		}
		w, err := startWorker(ctx, wc)
		if err != nil {
			return nil, err
		}
		lc.closers = append(lc.closers, w.Close)
	}
	sf.id = "local-coordinator"
	cc, err := sf.config(cf, log)
	if err != nil {
		return nil, err
	}
	c, err := startCoordinator(ctx, cc)
	if err != nil {
		return nil, err
	}
	lc.closers = append(lc.closers, c.Close)
	lc.api, lc.model = c.addr, cc.modelName
	return lc, nil
}

func runStatus(args []string, stdout, stderr io.Writer) error {
	var cf clusterFlags
	var asJSON bool
	fs := newFlagSet("status", "status --etcd URL [--cluster NAME] [--json]", stderr)
	cf.register(fs)
	fs.BoolVar(&asJSON, "json", false, "print the status as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	etcdOpts, err := cf.sec.etcdOptions()
	if err != nil {
		return err
	}
	dialWorker, err := cf.sec.workerDialer()
	if err != nil {
		return err
	}
	cli, err := registry.Dial(ctx, cf.etcd, etcdOpts...)
	if err != nil {
		return err
	}
	defer cli.Close()
	leader, _ := registry.Leader(ctx, cli, cf.cluster)
	ws, _, err := registry.Workers(ctx, cli, cf.cluster)
	if err != nil {
		return err
	}
	health := map[string]string{}
	for _, w := range ws {
		health[w.Id] = workerHealth(ctx, dialWorker, w.Address)
	}
	version, raw, planErr := registry.CurrentPlan(ctx, cli, cf.cluster)
	if asJSON {
		return json.NewEncoder(stdout).Encode(map[string]any{"cluster": cf.cluster, "leader": leader, "workers": ws,
			"health": health, "plan_version": version, "plan": json.RawMessage(orNull(raw))})
	}
	fmt.Fprintf(stdout, "cluster %s, leader %q\n\n", cf.cluster, leader)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "worker\taddress\tbackend\tdevice\tmemory\thealth")
	for _, w := range ws {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.1f GiB\t%s\n", w.Id, w.Address, w.Backend, w.Device, float64(w.MemoryBytes)/(1<<30), health[w.Id])
	}
	tw.Flush()
	if planErr != nil {
		fmt.Fprintf(stdout, "\nno plan yet (%v)\n", planErr)
		return nil
	}
	p, err := plan.Parse(raw)
	if err != nil {
		return fmt.Errorf("plan v%d in etcd: %w", version, err)
	}
	fmt.Fprintf(stdout, "\n%s", p)
	for _, st := range p.Stages {
		for _, r := range st.Ranks {
			if len(r.ALiBiSlopes) > 0 {
				fmt.Fprintf(stdout, "stage %d rank %d ALiBi slopes %v\n", st.Index, r.Index, r.ALiBiSlopes)
			}
		}
	}
	return nil
}

func orNull(b []byte) []byte {
	if len(b) == 0 {
		return []byte("null")
	}
	return b
}

// workerHealth asks a worker's Health RPC, briefly.
func workerHealth(ctx context.Context, dial func(string) (tesserav1.WorkerClient, io.Closer, error), addr string) string {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c, closer, err := dial(addr)
	if err != nil {
		return "unreachable: " + err.Error()
	}
	defer closer.Close()
	h, err := c.Health(ctx, &tesserav1.HealthRequest{})
	if err != nil {
		return "unreachable"
	}
	if h.PlanVersion > 0 {
		return fmt.Sprintf("%s (plan v%d)", h.Status, h.PlanVersion)
	}
	return h.Status.String()
}
