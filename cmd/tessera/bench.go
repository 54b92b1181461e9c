package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/tessera-llm/tessera/coordinator/bench"
)

func init() {
	register(command{name: "bench", summary: "Load-test an OpenAI-compatible endpoint: throughput and TTFT/ITL percentiles.", run: runBench})
}

func runBench(args []string, stdout, stderr io.Writer) error {
	var c bench.Config
	var asJSON bool
	fs := newFlagSet("bench", "bench --url http://127.0.0.1:8080 [--concurrency 8] [--requests 64] [--prompt-tokens 32 --output-tokens 64 | --prompt TEXT] [--rate 0] [--json]", stderr)
	fs.StringVar(&c.URL, "url", "http://127.0.0.1:8080", "base URL of an OpenAI-compatible server (…/v1/completions is appended)")
	fs.StringVar(&c.Model, "model", "", "model name to send (default: the first of /v1/models)")
	fs.StringVar(&c.APIKey, "api-key", "", "bearer token")
	fs.StringVar(&c.Prompt, "prompt", "", "prompt text (default: a synthetic prompt of --prompt-tokens token ids)")
	fs.IntVar(&c.Concurrency, "concurrency", 8, "requests in flight at once")
	fs.IntVar(&c.Requests, "requests", 64, "requests in all")
	fs.IntVar(&c.PromptTokens, "prompt-tokens", 32, "prompt length in tokens (synthetic prompt)")
	fs.IntVar(&c.OutputTokens, "output-tokens", 64, "tokens to generate per request (ignore_eos is sent)")
	fs.Float64Var(&c.Rate, "rate", 0, "request arrival rate per second (0: as fast as the concurrency allows)")
	fs.DurationVar(&c.Timeout, "timeout", 5*time.Minute, "per-request timeout")
	fs.BoolVar(&asJSON, "json", false, "print the report as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if c.Concurrency < 1 || c.Requests < 1 || c.OutputTokens < 1 || c.PromptTokens < 1 || c.Rate < 0 {
		return fmt.Errorf("%w: --concurrency, --requests, --prompt-tokens and --output-tokens must be ≥ 1 and --rate ≥ 0", errUsage)
	}
	c.URL = strings.TrimRight(c.URL, "/")
	var progress io.Writer
	if !asJSON && isTerminal(stderr) {
		progress = stderr
	}
	rep, err := bench.Run(context.Background(), c, progress)
	if err != nil {
		return err
	}
	if asJSON {
		return json.NewEncoder(stdout).Encode(rep)
	}
	fmt.Fprintf(stdout, "%d requests (%d failed) at concurrency %d in %.2fs: %.2f req/s, %.1f output tokens/s\n",
		rep.Requests, rep.Failed, rep.Concurrency, rep.DurationS, rep.RequestsPerS, rep.OutputTokS)
	fmt.Fprintf(stdout, "TTFT p50 %.1f ms  p99 %.1f ms\nITL  p50 %.2f ms  p99 %.2f ms\nlatency p50 %.1f ms\n",
		rep.TTFTp50ms, rep.TTFTp99ms, rep.ITLp50ms, rep.ITLp99ms, rep.LatencyP50ms)
	if rep.FirstError != "" {
		fmt.Fprintf(stdout, "first error: %s\n", rep.FirstError)
	}
	return nil
}
