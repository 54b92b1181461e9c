package main

import (
	"context"
	"fmt"
	"io"

	"github.com/tessera-llm/tessera/local"
	"github.com/tessera-llm/tessera/worker/server"
)

func init() {
	register(command{name: "local", summary: "Run a whole cluster in this process (embedded etcd and NATS) serving a model.", run: runLocal})
}

// localOptions turns local's flags into a local cluster's Options.
func localOptions(sf servingFlags, wf workerFlags, workers int, data string, stderr io.Writer) (local.Options, error) {
	log := logger(stderr)
	co, err := sf.options(clusterFlags{}, log)
	if err != nil {
		return local.Options{}, err
	}
	wo, err := wf.options(log)
	if err != nil {
		return local.Options{}, err
	}
	// One --step-timeout: the in-process workers wait as long as the coordinator.
	wo.StepTimeout = max(co.StepTimeout, server.DefaultStepTimeout)
	if _, err := openDevice(wf.device); err != nil {
		return local.Options{}, err
	}
	return local.Options{Coordinator: co, Worker: wo, Workers: workers, DataDir: data}, nil
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
	o, err := localOptions(sf, wf, workers, data, stderr)
	if err != nil {
		return err
	}
	lc, err := local.Start(context.Background(), o)
	if err != nil {
		return err
	}
	defer lc.Close()
	fmt.Fprintf(stdout, "tessera: serving %s with %d workers\n", o.Coordinator.ModelName, workers)
	fmt.Fprintf(stdout, "etcd: %s\nnats: %s\napi: http://%s\n", lc.Etcd, lc.NATS, lc.API)
	fmt.Fprintf(stdout, "join: tessera worker --cluster %s --etcd %s --nats %s --memory 8GiB\n", local.ClusterName, lc.Etcd, lc.NATS)
	fmt.Fprintf(stdout, "try: curl -s http://%s/v1/completions -H 'Content-Type: application/json' -d '{\"prompt\": \"Parameters\\n----------\\n\", \"max_tokens\": 48, \"temperature\": 0}'\n", lc.API)
	untilSignal()
	return nil
}
