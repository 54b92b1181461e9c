package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tessera-llm/tessera/coordinator"
	"github.com/tessera-llm/tessera/coordinator/api"
	"github.com/tessera-llm/tessera/worker"
	"github.com/tessera-llm/tessera/worker/weights"
)

func init() {
	register(command{name: "coordinator", summary: "Run a coordinator: plans the model over registered workers and serves the API.", run: runCoordinator})
}

// apiFlags are the API's own flags on coordinator and local.
type apiFlags struct {
	key, keyFile string
}

func (a *apiFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&a.key, "api-key", "", "require \"Authorization: Bearer KEY\" on /v1/ and the gRPC Inference service (prefer --api-key-file)")
	fs.StringVar(&a.keyFile, "api-key-file", "", "read the API key from this file (surrounding whitespace trimmed)")
}

// resolve returns the API key ("" for none).
func (a *apiFlags) resolve() (string, error) {
	if a.key != "" && a.keyFile != "" {
		return "", fmt.Errorf("%w: give --api-key or --api-key-file, not both", errUsage)
	}
	if a.keyFile == "" {
		return a.key, nil
	}
	raw, err := os.ReadFile(a.keyFile)
	if err != nil {
		return "", fmt.Errorf("--api-key-file: %w", err)
	}
	key := strings.TrimSpace(string(raw))
	if key == "" {
		return "", fmt.Errorf("%w: --api-key-file %s is empty", errUsage, a.keyFile)
	}
	return key, nil
}

// servingFlags configure a coordinator.
type servingFlags struct {
	api                                                            apiFlags
	model, modelName, workerModelDir, listen, grpcListen, plan, id string
	tlsCert, tlsKey                                                string
	cacheTokens, blockSize, maxQueue, maxBatch, inFlight           int
	stepTimeout, leaderTTL                                         time.Duration
	limits                                                         api.Limits
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
	fs.IntVar(&s.inFlight, "in-flight", 0, "steps (micro-batches) in flight at once, so pipeline stages overlap (0: one per stage)")
	s.api.register(fs)
	fs.DurationVar(&s.stepTimeout, "step-timeout", 5*time.Second, "a step taking longer is retried on a new plan (a lost worker)")
	fs.DurationVar(&s.limits.ReadHeader, "http-header-timeout", 10*time.Second, "longest an API client may take to send a request's headers")
	fs.DurationVar(&s.limits.BodyIdle, "http-body-idle-timeout", 10*time.Second, "longest a request body may go without a byte (then 408)")
	fs.DurationVar(&s.limits.Body, "http-body-timeout", 60*time.Second, "longest a whole request body may take (then 408)")
	fs.DurationVar(&s.limits.Idle, "http-idle-timeout", 60*time.Second, "longest a keep-alive API connection may wait for its next request")
	fs.IntVar(&s.limits.ConnsPerClient, "http-max-conns", 256, "open API connections one client address may hold (more get 429; raise it behind a proxy)")
}

// options turns the flags into a coordinator's Options. This is where an
// encoder model gets its engine: worker.LoadEncoder, run in the
// coordinator's process.
func (s *servingFlags) options(cf clusterFlags, log *slog.Logger) (coordinator.Options, error) {
	var o coordinator.Options
	if s.plan != "" {
		p, err := parsePlanFlag(s.model, s.plan)
		if err != nil {
			return o, err
		}
		o.PP, o.TP = p.Shape()
	}
	if s.cacheTokens < 1 || s.blockSize < 1 {
		return o, fmt.Errorf("%w: --cache-tokens and --block-size must be positive", errUsage)
	}
	if s.inFlight < 0 {
		return o, fmt.Errorf("%w: --in-flight must be ≥ 0 (0: one per pipeline stage)", errUsage)
	}
	if (s.tlsCert == "") != (s.tlsKey == "") {
		return o, fmt.Errorf("%w: --tls-cert and --tls-key go together", errUsage)
	}
	if s.tlsCert != "" {
		kp, err := tls.LoadX509KeyPair(s.tlsCert, s.tlsKey)
		if err != nil {
			return o, fmt.Errorf("--tls-cert: %w", err)
		}
		o.TLS = &tls.Config{Certificates: []tls.Certificate{kp}, MinVersion: tls.VersionTLS12}
	}
	var err error
	if o.APIKey, err = s.api.resolve(); err != nil {
		return o, err
	}
	if o.WorkerTLS, err = cf.sec.grpcMutual(); err != nil {
		return o, err
	}
	if o.DTypeBytes, err = weights.ElementSize(s.model); err != nil {
		return o, err
	}
	o.ModelName = s.modelName
	if o.ModelName == "" {
		o.ModelName = filepath.Base(filepath.Clean(s.model))
	}
	o.ID = s.id
	if o.ID == "" {
		host, _ := os.Hostname()
		o.ID = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	o.Cluster, o.ModelDir, o.WorkerModelDir, o.Listen, o.GRPCListen = cf.cluster, s.model, s.workerModelDir, s.listen, s.grpcListen
	o.CacheTokens, o.BlockSize, o.MaxQueue, o.MaxBatch, o.InFlight = s.cacheTokens, s.blockSize, s.maxQueue, s.maxBatch, s.inFlight
	o.StepTimeout, o.LeaderTTL, o.Logger, o.Limits = s.stepTimeout, s.leaderTTL, log, s.limits
	o.Encoders = func(dir string) (api.Encoder, error) {
		e, err := worker.LoadEncoder(dir)
		if err != nil {
			return nil, err
		}
		return e, nil
	}
	return o, nil
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
	o, err := sf.options(cf, log)
	if err != nil {
		return err
	}
	ctx := context.Background()
	var cn clients
	if alone, err := coordinator.ServesInProcess(o.ModelDir); err != nil {
		return err
	} else if !alone {
		if cn, err = cf.dial(ctx); err != nil {
			return err
		}
		defer cn.Close()
	}
	n, err := coordinator.Start(ctx, cn.etcd, cn.nats, o)
	if err != nil {
		return err
	}
	log.Info("coordinator up", "api", "http://"+n.Addr(), "model", o.ModelName)
	untilSignal()
	n.Close()
	return nil
}
