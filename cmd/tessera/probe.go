package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/tessera-llm/tessera/coordinator/probe"
)

func init() {
	register(command{name: "probe", summary: "Send a running API hostile inputs (bad JSON, huge and slow bodies, wrong methods, bad params) and report each as pass/fail.", run: runProbe})
}

func runProbe(args []string, stdout, stderr io.Writer) error {
	var cfg probe.Config
	fs := newFlagSet("probe", "probe --url URL [--api-key KEY] [--slow-wait 30s]", stderr)
	fs.StringVar(&cfg.URL, "url", "", "the API's base URL, e.g. http://127.0.0.1:8080 (required)")
	fs.StringVar(&cfg.APIKey, "api-key", "", "bearer token, when the API has one")
	fs.DurationVar(&cfg.SlowWait, "slow-wait", 30*time.Second, "how long the server may hold a stalled body before it must cut it")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if cfg.URL == "" {
		return fmt.Errorf("%w: --url is required", errUsage)
	}
	results, err := probe.Run(context.Background(), cfg)
	if err != nil {
		return err
	}
	failed := 0
	for _, r := range results {
		mark := "pass"
		if !r.Pass {
			mark, failed = "FAIL", failed+1
		}
		fmt.Fprintf(stdout, "%s  %-40s %s\n", mark, r.Name, r.Detail)
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d checks failed", failed, len(results))
	}
	fmt.Fprintf(stdout, "all %d checks passed\n", len(results))
	return nil
}
