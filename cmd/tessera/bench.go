package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func init() {
	register(command{name: "bench", summary: "Load-test an OpenAI-compatible endpoint: throughput and TTFT/ITL percentiles.", run: runBench})
}

type benchConfig struct {
	url, model, apiKey, prompt string
	concurrency, requests      int
	promptTokens, outputTokens int
	rate                       float64
	timeout                    time.Duration
	asJSON, progress           bool
}

// benchResult is what one request measured.
type benchResult struct {
	ttft    time.Duration
	itls    []time.Duration
	tokens  int
	latency time.Duration
	err     error
}

// BenchReport is tessera bench's summary (--json prints it).
type BenchReport struct {
	URL          string  `json:"url"`
	Model        string  `json:"model"`
	Concurrency  int     `json:"concurrency"`
	Requests     int     `json:"requests"`
	Failed       int     `json:"failed"`
	Rate         float64 `json:"rate"`
	PromptTokens int     `json:"prompt_tokens"`
	OutputTokens int     `json:"output_tokens"`
	DurationS    float64 `json:"duration_s"`
	RequestsPerS float64 `json:"requests_per_s"`
	OutputTokS   float64 `json:"output_tokens_per_s"`
	TTFTp50ms    float64 `json:"ttft_p50_ms"`
	TTFTp99ms    float64 `json:"ttft_p99_ms"`
	ITLp50ms     float64 `json:"itl_p50_ms"`
	ITLp99ms     float64 `json:"itl_p99_ms"`
	LatencyP50ms float64 `json:"latency_p50_ms"`
	FirstError   string  `json:"first_error,omitempty"`
}

func runBench(args []string, stdout, stderr io.Writer) error {
	var c benchConfig
	fs := newFlagSet("bench", "bench --url http://127.0.0.1:8080 [--concurrency 8] [--requests 64] [--prompt-tokens 32 --output-tokens 64 | --prompt TEXT] [--rate 0] [--json]", stderr)
	fs.StringVar(&c.url, "url", "http://127.0.0.1:8080", "base URL of an OpenAI-compatible server (…/v1/completions is appended)")
	fs.StringVar(&c.model, "model", "", "model name to send (default: the first of /v1/models)")
	fs.StringVar(&c.apiKey, "api-key", "", "bearer token")
	fs.StringVar(&c.prompt, "prompt", "", "prompt text (default: a synthetic prompt of --prompt-tokens token ids)")
	fs.IntVar(&c.concurrency, "concurrency", 8, "requests in flight at once")
	fs.IntVar(&c.requests, "requests", 64, "requests in all")
	fs.IntVar(&c.promptTokens, "prompt-tokens", 32, "prompt length in tokens (synthetic prompt)")
	fs.IntVar(&c.outputTokens, "output-tokens", 64, "tokens to generate per request (ignore_eos is sent)")
	fs.Float64Var(&c.rate, "rate", 0, "request arrival rate per second (0: as fast as the concurrency allows)")
	fs.DurationVar(&c.timeout, "timeout", 5*time.Minute, "per-request timeout")
	fs.BoolVar(&c.asJSON, "json", false, "print the report as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if c.concurrency < 1 || c.requests < 1 || c.outputTokens < 1 || c.promptTokens < 1 || c.rate < 0 {
		return fmt.Errorf("%w: --concurrency, --requests, --prompt-tokens and --output-tokens must be ≥ 1 and --rate ≥ 0", errUsage)
	}
	c.url = strings.TrimRight(c.url, "/")
	c.progress = !c.asJSON && isTerminal(stderr)
	rep, err := bench(context.Background(), c, stderr)
	if err != nil {
		return err
	}
	if c.asJSON {
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

func bench(ctx context.Context, c benchConfig, progress io.Writer) (*BenchReport, error) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: c.concurrency}}
	defer client.CloseIdleConnections()
	if c.model == "" {
		m, err := firstModel(ctx, client, c)
		if err != nil {
			return nil, err
		}
		c.model = m
	}
	var prompt any = c.prompt
	if c.prompt == "" {
		// Distinct synthetic ids per request defeat the prefix cache.
		prompt = nil
	}
	results := make([]benchResult, c.requests)
	var next, done atomic.Int64
	start := time.Now()
	stopBar := make(chan struct{})
	var barWG sync.WaitGroup
	if c.progress {
		barWG.Go(func() { progressBar(progress, &done, c.requests, start, stopBar) })
	}
	var wg sync.WaitGroup
	for range c.concurrency {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= c.requests {
					return
				}
				if c.rate > 0 {
					if wait := time.Until(start.Add(time.Duration(float64(i) / c.rate * float64(time.Second)))); wait > 0 {
						time.Sleep(wait)
					}
				}
				p := prompt
				if p == nil {
					ids := make([]int, c.promptTokens)
					for j := range ids {
						ids[j] = 100 + (i*7919+j*104729)%3000
					}
					p = ids
				}
				results[i] = benchOne(ctx, client, c, p)
				done.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(stopBar)
	barWG.Wait()
	rep := &BenchReport{URL: c.url, Model: c.model, Concurrency: c.concurrency, Requests: c.requests, Rate: c.rate,
		PromptTokens: c.promptTokens, OutputTokens: c.outputTokens, DurationS: elapsed.Seconds()}
	var ttfts, itls, lats []time.Duration
	tokens := 0
	for _, r := range results {
		if r.err != nil {
			rep.Failed++
			if rep.FirstError == "" {
				rep.FirstError = r.err.Error()
			}
			continue
		}
		ttfts = append(ttfts, r.ttft)
		itls = append(itls, r.itls...)
		lats = append(lats, r.latency)
		tokens += r.tokens
	}
	rep.RequestsPerS = float64(c.requests-rep.Failed) / elapsed.Seconds()
	rep.OutputTokS = float64(tokens) / elapsed.Seconds()
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	rep.TTFTp50ms, rep.TTFTp99ms = ms(percentile(ttfts, 50)), ms(percentile(ttfts, 99))
	rep.ITLp50ms, rep.ITLp99ms = ms(percentile(itls, 50)), ms(percentile(itls, 99))
	rep.LatencyP50ms = ms(percentile(lats, 50))
	if rep.Failed == c.requests {
		return rep, fmt.Errorf("every request failed; the first: %s", rep.FirstError)
	}
	return rep, nil
}

// percentile is the nearest-rank percentile (0 for no samples).
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s))*p/100+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}

func firstModel(ctx context.Context, client *http.Client, c benchConfig) (string, error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", c.url+"/v1/models", nil)
	if c.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.apiKey)
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("listing models at %s: %w", c.url, err)
	}
	defer resp.Body.Close()
	var list struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil || len(list.Data) == 0 {
		return "", fmt.Errorf("%s/v1/models: status %d, no model listed; pass --model", c.url, resp.StatusCode)
	}
	return list.Data[0].ID, nil
}

// benchOne streams one completion, timing the first token and the gaps
// between tokens (a chunk carrying several tokens counts one gap).
func benchOne(ctx context.Context, client *http.Client, c benchConfig, prompt any) benchResult {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	body, _ := json.Marshal(map[string]any{"model": c.model, "prompt": prompt, "max_tokens": c.outputTokens, "stream": true,
		"ignore_eos": true, "temperature": 0, "stream_options": map[string]any{"include_usage": true}})
	req, _ := http.NewRequestWithContext(ctx, "POST", c.url+"/v1/completions", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if c.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.apiKey)
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return benchResult{err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return benchResult{err: fmt.Errorf("status %d: %s", resp.StatusCode, bytes.TrimSpace(msg))}
	}
	var r benchResult
	last := time.Time{}
	usageTokens := -1
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok || data == "[DONE]" {
			continue
		}
		var chunk struct {
			Choices []struct {
				Text string `json:"text"`
			} `json:"choices"`
			Usage *struct {
				CompletionTokens int `json:"completion_tokens"`
			} `json:"usage"`
			Error *struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if json.Unmarshal([]byte(data), &chunk) != nil {
			continue
		}
		if chunk.Error != nil {
			return benchResult{err: errors.New(chunk.Error.Message)}
		}
		if chunk.Usage != nil {
			usageTokens = chunk.Usage.CompletionTokens
		}
		if len(chunk.Choices) == 0 || chunk.Choices[0].Text == "" {
			continue
		}
		now := time.Now()
		if last.IsZero() {
			r.ttft = now.Sub(start)
		} else {
			r.itls = append(r.itls, now.Sub(last))
		}
		last = now
		r.tokens++
	}
	if err := sc.Err(); err != nil {
		return benchResult{err: err}
	}
	if usageTokens >= 0 {
		r.tokens = usageTokens
	}
	r.latency = time.Since(start)
	if last.IsZero() {
		r.err = errors.New("no tokens streamed")
	}
	return r
}

// progressBar redraws "[#####.....] done/total  req/s" until stop.
func progressBar(w io.Writer, done *atomic.Int64, total int, start time.Time, stop <-chan struct{}) {
	draw := func() {
		n := int(done.Load())
		const width = 30
		fill := n * width / total
		fmt.Fprintf(w, "\r[%s%s] %d/%d  %.1f req/s ", strings.Repeat("#", fill), strings.Repeat(".", width-fill), n, total,
			float64(n)/time.Since(start).Seconds())
	}
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-stop:
			draw()
			fmt.Fprintln(w)
			return
		case <-t.C:
			draw()
		}
	}
}
