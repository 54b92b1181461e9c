package api

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tessera-llm/tessera/coordinator/scheduler"
	tesserav1 "github.com/tessera-llm/tessera/proto/tessera/v1"
)

// Fields are refused by the name the client used, with the real range.
func TestFieldErrors(t *testing.T) {
	ts := newTestServer(t)
	user := []any{map[string]any{"role": "user", "content": "hi"}}
	cases := []struct {
		name, path     string
		body           map[string]any
		param, mention string
	}{
		{"chat best_of below n", "/v1/chat/completions", map[string]any{"messages": user, "n": 3, "best_of": 2}, "best_of", "best_of must be in [n, 128]"},
		{"chat best_of huge", "/v1/chat/completions", map[string]any{"messages": user, "best_of": 1000000}, "best_of", "best_of must be in"},
		{"chat top_logprobs", "/v1/chat/completions", map[string]any{"messages": user, "logprobs": true, "top_logprobs": 100}, "top_logprobs", "top_logprobs must be in [0, 20]"},
		{"completions logprobs", "/v1/completions", map[string]any{"prompt": "a", "logprobs": 6}, "logprobs", "logprobs must be in [0, 5]"},
		{"stop_token_ids", "/v1/completions", map[string]any{"prompt": "a", "stop_token_ids": []int{99999}}, "stop_token_ids", "stop token id 99999"},
		{"positive logit_bias", "/v1/completions", map[string]any{"prompt": "a", "logit_bias": map[string]any{"7": 5}}, "logit_bias", "positive"},
		{"logit_bias out of range", "/v1/completions", map[string]any{"prompt": "a", "logit_bias": map[string]any{"7": -101}}, "logit_bias", "[-100, 100]"},
		{"logit_bias key", "/v1/completions", map[string]any{"prompt": "a", "logit_bias": map[string]any{"seven": -1}}, "logit_bias", "not a token id"},
		{"logit_bias outside the vocabulary", "/v1/completions", map[string]any{"prompt": "a", "logit_bias": map[string]any{"99999": -1}}, "logit_bias", "outside the vocabulary"},
		{"top_k past the candidates", "/v1/completions", map[string]any{"prompt": "a", "top_k": 2000}, "top_k", "at most 1024"},
		{"prompt over the byte bound", "/v1/completions", map[string]any{"prompt": strings.Repeat("x", 1024*maxBytesPerToken+1)}, "prompt", "bytes cannot fit"},
		{"chat over the byte bound", "/v1/chat/completions", map[string]any{"messages": []any{map[string]any{"role": "user", "content": strings.Repeat("y", 1024*maxBytesPerToken+1)}}}, "messages", "bytes cannot fit"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st, body := ts.post(t, tc.path, tc.body)
			e, _ := body["error"].(map[string]any)
			if st != 400 || e["param"] != tc.param || !strings.Contains(errMessage(body), tc.mention) {
				t.Fatalf("%d %v, want 400 on %s mentioning %q", st, body, tc.param, tc.mention)
			}
		})
	}
	// best_of > n on chat returns the n best of best_of.
	st, body := ts.post(t, "/v1/chat/completions", map[string]any{"messages": user, "n": 1, "best_of": 3, "max_tokens": 3})
	if st != 200 || len(choices(body)) != 1 {
		t.Fatalf("chat n=1 best_of=3: %d %v", st, body)
	}
}

// A negative logit_bias steers greedy decoding away from a token.
func TestLogitBias(t *testing.T) {
	ts := newTestServer(t)
	run := func(bias map[string]any) []int32 {
		st, body := ts.post(t, "/v1/completions", map[string]any{"prompt": "Returns", "max_tokens": 1, "temperature": 0,
			"return_token_ids": true, "logit_bias": bias})
		if st != 200 {
			t.Fatalf("%d %v", st, body)
		}
		return ints(choices(body)[0]["token_ids"])
	}
	first := run(nil)[0]
	if got := run(map[string]any{fmt.Sprint(first): -100})[0]; got == first {
		t.Fatalf("token %d generated again under a logit_bias of -100", first)
	}
}

func rawRequest(method, path, ct string) string {
	return fmt.Sprintf("%s %s HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: 2\r\n\r\n{}", method, path, ct)
}

// Wrong methods get 405 with Allow; bodies must be JSON.
func TestMethodsAndContentTypes(t *testing.T) {
	ts := newTestServer(t)
	cases := []struct {
		method, path, ct string
		status           int
		allow            string
	}{
		{"GET", "/v1/completions", "application/json", 405, "POST"},
		{"PUT", "/v1/chat/completions", "application/json", 405, "POST"},
		{"OPTIONS", "/v1/embeddings", "application/json", 405, "POST"},
		{"DELETE", "/v1/models", "", 405, "GET, HEAD"},
		{"POST", "/v1/nowhere", "application/json", 404, ""},
		{"POST", "/v1/completions", "text/plain", 415, ""},
		{"POST", "/v1/completions", "", 415, ""},
		{"POST", "/v1/completions", "application/x-www-form-urlencoded", 415, ""},
		{"POST", "/v1/completions", "application/json; charset=utf-8", 400, ""}, // reaches validation: no prompt
	}
	for _, tc := range cases {
		req, _ := http.NewRequest(tc.method, ts.URL+tc.path, strings.NewReader("{}"))
		if tc.ct != "" {
			req.Header.Set("Content-Type", tc.ct)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status || resp.Header.Get("Allow") != tc.allow {
			t.Errorf("%s %s (%s): %d Allow %q, want %d Allow %q", tc.method, tc.path, tc.ct, resp.StatusCode, resp.Header.Get("Allow"), tc.status, tc.allow)
		}
	}
}

// A body that stalls is cut after BodyIdle, one that trickles after
// Body, each with 408, while other clients are served throughout.
func TestSlowBody(t *testing.T) {
	ts := newTestServer(t, func(c *Config, _ *scheduler.Config) {
		c.Limits.BodyIdle, c.Limits.Body = 300*time.Millisecond, 1500*time.Millisecond
	})
	addr := strings.TrimPrefix(ts.URL, "http://")
	slow := func(every time.Duration) (int, time.Duration) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Error(err)
			return 0, 0
		}
		defer c.Close()
		start := time.Now()
		fmt.Fprintf(c, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{")
		stop := make(chan struct{})
		defer close(stop)
		if every > 0 {
			go func() {
				for {
					select {
					case <-stop:
						return
					case <-time.After(every):
						if _, err := c.Write([]byte(" ")); err != nil {
							return
						}
					}
				}
			}()
		}
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Error(err)
			return 0, 0
		}
		resp.Body.Close()
		return resp.StatusCode, time.Since(start)
	}
	var served, failed atomic.Int64
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			select {
			case <-done:
				return
			default:
			}
			resp, err := http.Post(ts.URL+"/v1/completions", "application/json", strings.NewReader(`{"prompt": "a", "max_tokens": 2}`))
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			if err == nil && resp.StatusCode == 200 {
				served.Add(1)
			} else {
				failed.Add(1)
			}
		}
	}()
	type result struct {
		status  int
		elapsed time.Duration
	}
	stalled, trickle := make(chan result, 1), make(chan result, 1)
	go func() { st, d := slow(0); stalled <- result{st, d} }()
	go func() { st, d := slow(100 * time.Millisecond); trickle <- result{st, d} }()
	s, tr := <-stalled, <-trickle
	close(done)
	<-stopped
	if s.status != 408 || s.elapsed < 300*time.Millisecond || s.elapsed > 5*time.Second {
		t.Errorf("stalled body: %d after %v, want 408 after the 300ms idle limit", s.status, s.elapsed)
	}
	if tr.status != 408 || tr.elapsed < 1500*time.Millisecond || tr.elapsed > 8*time.Second {
		t.Errorf("trickling body: %d after %v, want 408 after the 1.5s body limit", tr.status, tr.elapsed)
	}
	if served.Load() == 0 || failed.Load() != 0 {
		t.Errorf("other clients: %d served, %d failed while the slow bodies were held", served.Load(), failed.Load())
	}
}

// One client address holds at most ConnsPerClient connections: a
// request on one more is answered 429 and its connection closed, and a
// closed connection frees its place.
func TestConnsPerClient(t *testing.T) {
	s := New(Config{Model: "m", Limits: Limits{ConnsPerClient: 2}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := s.HTTPServer()
	go srv.Serve(s.Listener(ln))
	t.Cleanup(func() { srv.Close() })
	get := func(c net.Conn) int {
		fmt.Fprintf(c, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	dial := func() net.Conn {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	conns := []net.Conn{dial(), dial()}
	for i, c := range conns {
		if st := get(c); st != 200 {
			t.Fatalf("connection %d of 2: %d", i, st)
		}
	}
	if st := get(dial()); st != http.StatusTooManyRequests {
		t.Fatalf("a third connection from one address: %d, want 429", st)
	}
	conns[0].Close()
	deadline := time.Now().Add(10 * time.Second)
	for get(dial()) != 200 {
		if time.Now().After(deadline) {
			t.Fatal("a closed connection never freed its place")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Over gRPC, max_tokens 0 is refused as over HTTP, and so is a request
// with both prompt and prompt_ids.
func TestGRPCRequestShapes(t *testing.T) {
	ts := newTestServer(t)
	client := startGRPC(t, ts)
	zero := int32(0)
	for name, req := range map[string]*tesserav1.GenerateRequest{
		"max_tokens 0":          {Prompt: "a", MaxTokens: &zero},
		"prompt and prompt_ids": {Prompt: "a", PromptIds: []int32{5, 6}},
	} {
		st, err := client.Generate(context.Background(), req)
		if err == nil {
			_, err = st.Recv()
		}
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v, want InvalidArgument", name, err)
		}
	}
}
