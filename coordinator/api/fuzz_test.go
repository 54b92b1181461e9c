package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tessera-llm/tessera/coordinator/scheduler"
	"github.com/tessera-llm/tessera/coordinator/tokenizer"
)

// FuzzCompletionRequest: any request body decodes into a valid request or
// an error, never a panic; a request that validates stays within the
// limits the scheduler needs.
func FuzzCompletionRequest(f *testing.F) {
	for _, s := range []string{
		`{"prompt": "Parameters\n", "max_tokens": 8, "temperature": 0}`,
		`{"prompt": [1, 2, 3], "n": 2, "best_of": 3, "seed": -5, "logprobs": 2, "echo": true}`,
		`{"prompt": [[1, 2], [3]], "stop": [5, 6], "stop_token_ids": [7]}`,
		`{"prompt": ["a", "b"], "stop": ["\n", "x"], "top_p": 0.5, "top_k": -1, "min_p": 0.1}`,
		`{"prompt": "a", "self_consistency": {"samples": 3, "answer_pattern": "(\\d+)"}}`,
		`{"prompt": "a", "max_tokens": 99999999999}`,
		`{"prompt": "a", "temperature": 1e309}`,
		`{"prompt": "a", "logit_bias": {"50": -100, "7": -1.5}, "top_k": 4000}`,
		`{"messages": [{"role": "user", "content": "hi"}], "logprobs": true, "top_logprobs": 3}`,
		`{"prompt": "\xff"}`, `[]`, `null`, `{"prompt": {}}`,
	} {
		f.Add([]byte(s))
	}
	tk, err := tokenizer.Load("../../models/docbloom-3m/tokenizer.json")
	if err != nil {
		f.Fatal(err)
	}
	sched := scheduler.New(scheduler.Config{Blocks: 256, BlockSize: 4, Vocab: testVocab, MaxContext: 1024, EOS: 2}, &fakeModel{})
	s := New(Config{Model: "m", Scheduler: sched, Tokenizer: HF(tk)})
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, body []byte) {
		if _, g, _, err := s.parseCompletion(ctx, body); err == nil {
			for p := range g.prompts {
				for j := range g.bestOf {
					if err := sched.Check(g.seqRequest(p, j)); err != nil {
						t.Fatalf("validated a request the scheduler refuses: %v", err)
					}
				}
			}
		}
		_, _, _ = s.parseChat(ctx, body)
	})
}

// FuzzHTTPRequest sends hostile requests through the whole handler:
// any method, path, Content-Type and body. Whatever arrives, the answer
// is never a server fault, every error is OpenAI's JSON error body, and a
// wrong method gets 405 with Allow. The request's context is already
// cancelled, so what validates ends at once (499) instead of generating.
func FuzzHTTPRequest(f *testing.F) {
	deep := strings.Repeat("[", 20000) + strings.Repeat("]", 20000)
	for _, s := range []struct {
		method, path uint8
		ct, body     string
	}{
		{1, 0, "application/json", `{"prompt": "a", "max_tokens": 4}`},
		{1, 0, "application/json", `{"prompt": "a",`},
		{1, 0, "application/json", `{"prompt": 7, "max_tokens": "x", "n": [1]}`},
		{1, 0, "application/json", `{"prompt": ` + deep + `}`},
		{1, 0, "text/plain", `{"prompt": "a"}`},
		{1, 0, "", `{"prompt": "a"}`},
		{1, 0, "application/json; charset=utf-8", `{"prompt": [1, 2], "logit_bias": {"9": 5}}`},
		{1, 0, "application/json", `{"prompt": "a", "stop_token_ids": [99999], "top_k": -7}`},
		{1, 0, "application/json", `{"prompt": "a", "top_p": 0, "repetition_penalty": 0, "stream": true}`},
		{1, 1, "application/json", `{"messages": [{"role": "user", "content": "x"}], "n": 3, "best_of": 2}`},
		{1, 1, "application/json", `{"messages": [{"role": "user", "content": "x"}], "logprobs": true, "top_logprobs": 100}`},
		{1, 1, "application/json", `{"messages": [{"role": "user", "content": [{"type": "image_url"}]}], "best_of": 1000000}`},
		{1, 2, "application/json", `{"input": "x"}`},
		{0, 0, "", ""}, {2, 1, "", ""}, {3, 4, "", ""}, {4, 3, "application/json", "{}"},
	} {
		f.Add(s.method, s.path, s.ct, []byte(s.body))
	}
	ts := newTestServer(f)
	methods := []string{"GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"}
	paths := []string{"/v1/completions", "/v1/chat/completions", "/v1/embeddings", "/v1/fill-mask", "/v1/models", "/v1/nothing", "/health"}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	f.Fuzz(func(t *testing.T, method, path uint8, ct string, body []byte) {
		m, p := methods[int(method)%len(methods)], paths[int(path)%len(paths)]
		req := httptest.NewRequestWithContext(ctx, m, p, strings.NewReader(string(body)))
		req.Header.Set("Content-Type", ct)
		rec := httptest.NewRecorder()
		ts.api.ServeHTTP(rec, req)
		st := rec.Code
		if st >= 500 && st != http.StatusServiceUnavailable {
			t.Fatalf("%s %s (%q) %q: %d %s", m, p, ct, body, st, rec.Body.Bytes())
		}
		if st == http.StatusMethodNotAllowed && rec.Header().Get("Allow") == "" {
			t.Fatalf("%s %s: 405 without Allow", m, p)
		}
		if st >= 400 && st != 499 && m != "HEAD" && p != "/health" {
			var e struct {
				Error struct {
					Message, Type string
				}
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error.Message == "" || e.Error.Type == "" {
				t.Fatalf("%s %s: %d without an error body: %q", m, p, st, rec.Body.Bytes())
			}
		}
	})
}
