package bench

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

// Config is one load test.
type Config struct {
	// URL is the server's base URL (…/v1/completions is appended); Model
	// the model to ask for ("" : the first of /v1/models).
	URL, Model, APIKey string
	// Prompt is the prompt text; "" sends a synthetic prompt of
	// PromptTokens token ids, distinct per request.
	Prompt                     string
	Concurrency, Requests      int
	PromptTokens, OutputTokens int
	// Rate is the arrival rate per second (0: as fast as Concurrency
	// allows).
	Rate    float64
	Timeout time.Duration
}

// result is what one request measured.
type result struct {
	ttft    time.Duration
	itls    []time.Duration
	tokens  int
	latency time.Duration
	err     error
}

// Report is a load test's summary.
type Report struct {
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

// Run sends c.Requests streaming completions, c.Concurrency at a time,
// and measures them. With progress non-nil it draws a progress bar there.
func Run(ctx context.Context, c Config, progress io.Writer) (*Report, error) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: c.Concurrency}}
	defer client.CloseIdleConnections()
	if c.Model == "" {
		m, err := firstModel(ctx, client, c)
		if err != nil {
			return nil, err
		}
		c.Model = m
	}
	var prompt any = c.Prompt
	if c.Prompt == "" {
		// Distinct synthetic ids per request defeat the prefix cache.
		prompt = nil
	}
	results := make([]result, c.Requests)
	var next, done atomic.Int64
	start := time.Now()
	stopBar := make(chan struct{})
	var barWG sync.WaitGroup
	if progress != nil {
		barWG.Go(func() { progressBar(progress, &done, c.Requests, start, stopBar) })
	}
	var wg sync.WaitGroup
	for range c.Concurrency {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= c.Requests {
					return
				}
				if c.Rate > 0 {
					if wait := time.Until(start.Add(time.Duration(float64(i) / c.Rate * float64(time.Second)))); wait > 0 {
						time.Sleep(wait)
					}
				}
				p := prompt
				if p == nil {
					ids := make([]int, c.PromptTokens)
					for j := range ids {
						ids[j] = 100 + (i*7919+j*104729)%3000
					}
					p = ids
				}
				results[i] = one(ctx, client, c, p)
				done.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(stopBar)
	barWG.Wait()
	rep := &Report{URL: c.URL, Model: c.Model, Concurrency: c.Concurrency, Requests: c.Requests, Rate: c.Rate,
		PromptTokens: c.PromptTokens, OutputTokens: c.OutputTokens, DurationS: elapsed.Seconds()}
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
	rep.RequestsPerS = float64(c.Requests-rep.Failed) / elapsed.Seconds()
	rep.OutputTokS = float64(tokens) / elapsed.Seconds()
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	rep.TTFTp50ms, rep.TTFTp99ms = ms(percentile(ttfts, 50)), ms(percentile(ttfts, 99))
	rep.ITLp50ms, rep.ITLp99ms = ms(percentile(itls, 50)), ms(percentile(itls, 99))
	rep.LatencyP50ms = ms(percentile(lats, 50))
	if rep.Failed == c.Requests {
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

func firstModel(ctx context.Context, client *http.Client, c Config) (string, error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", c.URL+"/v1/models", nil)
	if c.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.APIKey)
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("listing models at %s: %w", c.URL, err)
	}
	defer resp.Body.Close()
	var list struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil || len(list.Data) == 0 {
		return "", fmt.Errorf("%s/v1/models: status %d, no model listed; pass --model", c.URL, resp.StatusCode)
	}
	return list.Data[0].ID, nil
}

// one streams one completion, timing the first token and the gaps
// between tokens (a chunk carrying several tokens counts one gap). Tokens
// are counted by the usage the server reports, else by the token ids the
// chunks carry, else by the chunks with text: a model without a tokenizer
// streams token ids with empty text.
func one(ctx context.Context, client *http.Client, c Config, prompt any) result {
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	body, _ := json.Marshal(map[string]any{"model": c.Model, "prompt": prompt, "max_tokens": c.OutputTokens, "stream": true,
		"ignore_eos": true, "temperature": 0, "return_token_ids": true, "stream_options": map[string]any{"include_usage": true}})
	req, _ := http.NewRequestWithContext(ctx, "POST", c.URL+"/v1/completions", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if c.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.APIKey)
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return result{err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return result{err: fmt.Errorf("status %d: %s", resp.StatusCode, bytes.TrimSpace(msg))}
	}
	var r result
	last := time.Time{}
	usageTokens, idTokens, textChunks := -1, 0, 0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok || data == "[DONE]" {
			continue
		}
		var chunk struct {
			Choices []struct {
				Text     string  `json:"text"`
				TokenIDs []int32 `json:"token_ids"`
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
			return result{err: errors.New(chunk.Error.Message)}
		}
		if chunk.Usage != nil {
			usageTokens = chunk.Usage.CompletionTokens
		}
		if len(chunk.Choices) == 0 || chunk.Choices[0].Text == "" && len(chunk.Choices[0].TokenIDs) == 0 {
			continue
		}
		now := time.Now()
		if last.IsZero() {
			r.ttft = now.Sub(start)
		} else {
			r.itls = append(r.itls, now.Sub(last))
		}
		last = now
		idTokens += len(chunk.Choices[0].TokenIDs)
		if chunk.Choices[0].Text != "" {
			textChunks++
		}
	}
	if err := sc.Err(); err != nil {
		return result{err: err}
	}
	switch {
	case usageTokens >= 0:
		r.tokens = usageTokens
	case idTokens > 0:
		r.tokens = idTokens
	default:
		r.tokens = textChunks
	}
	r.latency = time.Since(start)
	if last.IsZero() && r.tokens == 0 {
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
