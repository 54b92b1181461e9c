package api

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tessera-llm/tessera/coordinator/scheduler"
)

func greedy(prompt any, n int) map[string]any {
	return map[string]any{"prompt": prompt, "max_tokens": n, "temperature": 0, "ignore_eos": true}
}

func TestErrors(t *testing.T) {
	ts := newTestServer(t, func(c *Config, _ *scheduler.Config) { c.APIKey = "sekret" })
	auth := []string{"Authorization", "Bearer sekret"}
	long := strings.Repeat("x ", 1100)
	cases := []struct {
		name    string
		path    string
		body    any
		header  []string
		status  int
		mention string
	}{
		{"no key", "/v1/completions", greedy("a", 2), nil, 401, "missing API key"},
		{"wrong key", "/v1/completions", greedy("a", 2), []string{"Authorization", "Bearer sekreT"}, 401, "incorrect API key"},
		{"not bearer", "/v1/completions", greedy("a", 2), []string{"Authorization", "sekret"}, 401, "missing API key"},
		{"negative temperature", "/v1/completions", map[string]any{"prompt": "a", "temperature": -0.5}, auth, 400, "temperature"},
		{"top_p zero", "/v1/completions", map[string]any{"prompt": "a", "top_p": 0}, auth, 400, "top_p must be in (0, 1]"},
		{"top_p above one", "/v1/completions", map[string]any{"prompt": "a", "top_p": 1.5}, auth, 400, "top_p must be in (0, 1]"},
		{"over the context", "/v1/completions", map[string]any{"prompt": long, "max_tokens": 100}, auth, 400, "maximum context length is 1024 tokens"},
		{"max_tokens alone over the context", "/v1/completions", map[string]any{"prompt": "a", "max_tokens": 5000}, auth, 400, "maximum context length is 1024"},
		{"invalid JSON", "/v1/completions", `{"prompt": "a",`, auth, 400, "malformed JSON"},
		{"invalid UTF-8", "/v1/completions", []byte("{\"prompt\": \"a\xff\"}"), auth, 400, "not valid UTF-8"},
		{"unknown model", "/v1/completions", map[string]any{"model": "gpt-9", "prompt": "a"}, auth, 404, `"gpt-9" does not exist`},
		{"unknown model in chat", "/v1/chat/completions", map[string]any{"model": "gpt-9", "messages": []any{}}, auth, 404, "does not exist"},
		{"n zero", "/v1/completions", map[string]any{"prompt": "a", "n": 0}, auth, 400, "n must be"},
		{"best_of below n", "/v1/completions", map[string]any{"prompt": "a", "n": 3, "best_of": 2}, auth, 400, "best_of"},
		{"best_of streaming", "/v1/completions", map[string]any{"prompt": "a", "n": 1, "best_of": 2, "stream": true}, auth, 400, "cannot stream"},
		{"logprobs over 5", "/v1/completions", map[string]any{"prompt": "a", "logprobs": 6}, auth, 400, "logprobs"},
		{"prompt id outside the vocabulary", "/v1/completions", map[string]any{"prompt": []int{5, 99999}}, auth, 400, "outside the vocabulary"},
		{"bad stop", "/v1/completions", map[string]any{"prompt": "a", "stop": map[string]any{}}, auth, 400, "stop must be"},
		{"empty stop string", "/v1/completions", map[string]any{"prompt": "a", "stop": ""}, auth, 400, "must not be empty"},
		{"min_p", "/v1/completions", map[string]any{"prompt": "a", "min_p": 2}, auth, 400, "min_p"},
		{"presence_penalty", "/v1/completions", map[string]any{"prompt": "a", "presence_penalty": 3}, auth, 400, "presence_penalty"},
		{"repetition_penalty", "/v1/completions", map[string]any{"prompt": "a", "repetition_penalty": 0}, auth, 400, "repetition_penalty"},
		{"min_tokens over max", "/v1/completions", map[string]any{"prompt": "a", "max_tokens": 4, "min_tokens": 5}, auth, 400, "min_tokens"},
		{"no prompt", "/v1/completions", map[string]any{"max_tokens": 4}, auth, 400, "prompt is required"},
		{"bad regex", "/v1/completions", map[string]any{"prompt": "a", "self_consistency": map[string]any{"samples": 3, "answer_pattern": "("}}, auth, 400, "answer_pattern"},
		{"chat without messages", "/v1/chat/completions", map[string]any{"messages": []any{}}, auth, 400, "messages must not be empty"},
		{"chat bad role", "/v1/chat/completions", map[string]any{"messages": []any{map[string]any{"role": "wizard", "content": "x"}}}, auth, 400, "role"},
		{"embeddings on a causal model", "/v1/embeddings", map[string]any{"input": "x"}, auth, 400, "not an encoder"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st, body := ts.post(t, tc.path, tc.body, tc.header...)
			if st != tc.status || !strings.Contains(errMessage(body), tc.mention) {
				t.Fatalf("%d %v, want %d mentioning %q", st, body, tc.status, tc.mention)
			}
			e := body["error"].(map[string]any)
			if _, ok := e["type"].(string); !ok {
				t.Errorf("error body without a type: %v", body)
			}
		})
	}
	// 503 while not ready, on the model endpoints only.
	ts.ready = false
	if st, body := ts.post(t, "/v1/completions", greedy("a", 2), auth...); st != 503 || !strings.Contains(errMessage(body), "not ready") {
		t.Fatalf("not ready: %d %v", st, body)
	}
	resp, _ := http.Get(ts.URL + "/ready")
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Fatalf("/ready = %d", resp.StatusCode)
	}
	ts.ready = true
	if st, _ := ts.post(t, "/v1/completions", greedy("a", 2), auth...); st != 200 {
		t.Fatalf("with the key: %d", st)
	}
}

// A full queue answers 429 with Retry-After.
func TestQueueFull(t *testing.T) {
	ts := newTestServer(t, func(_ *Config, s *scheduler.Config) { s.MaxQueue, s.MaxBatch = 1, 1 })
	// n=8 sequences cannot all be queued: the request is refused whole.
	raw := `{"prompt": "a", "n": 8, "max_tokens": 2}`
	resp, err := http.Post(ts.URL+"/v1/completions", "application/json", strings.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("%d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}

func text0(body map[string]any) string {
	c := choices(body)
	if len(c) == 0 {
		return ""
	}
	s, _ := c[0]["text"].(string)
	return s
}

func TestCompletionParameters(t *testing.T) {
	ts := newTestServer(t)
	prompt := "Parameters\n----------\n"
	st, base := ts.post(t, "/v1/completions", map[string]any{"prompt": prompt, "max_tokens": 24, "temperature": 0, "ignore_eos": true, "return_token_ids": true})
	if st != 200 {
		t.Fatal(base)
	}
	want := text0(base)
	ids := ints(choices(base)[0]["token_ids"])
	if len(ids) != 24 || want == "" {
		t.Fatalf("greedy: %v", base)
	}
	u := base["usage"].(map[string]any)
	if u["completion_tokens"].(float64) != 24 || u["prompt_tokens"].(float64) < 1 {
		t.Fatalf("usage %v", u)
	}

	t.Run("token id prompt and batch", func(t *testing.T) {
		pids := ints(choices(base)[0]["prompt_token_ids"])
		_, b := ts.post(t, "/v1/completions", greedy(pids, 24))
		if text0(b) != want {
			t.Fatalf("ids prompt: %q, want %q", text0(b), want)
		}
		_, b = ts.post(t, "/v1/completions", map[string]any{"prompt": []any{pids, []int{5, 6, 7}}, "max_tokens": 24, "temperature": 0, "ignore_eos": true})
		if c := choices(b); len(c) != 2 || c[0]["text"] != want || c[1]["index"].(float64) != 1 {
			t.Fatalf("batch: %v", b)
		}
		_, b = ts.post(t, "/v1/completions", map[string]any{"prompt": []string{prompt, "x"}, "max_tokens": 24, "temperature": 0, "ignore_eos": true})
		if c := choices(b); len(c) != 2 || c[0]["text"] != want {
			t.Fatalf("text batch: %v", b)
		}
	})

	t.Run("stop string trimmed", func(t *testing.T) {
		stop := want[len(want)/2 : len(want)/2+3]
		cut := strings.Index(want, stop)
		_, b := ts.post(t, "/v1/completions", map[string]any{"prompt": prompt, "max_tokens": 24, "temperature": 0, "stop": []string{"NEVER", stop}})
		if text0(b) != want[:cut] || choices(b)[0]["finish_reason"] != "stop" {
			t.Fatalf("stop %q: %q (%v), want %q", stop, text0(b), choices(b)[0]["finish_reason"], want[:cut])
		}
		// The same through the stream.
		chunks := ts.stream(t, "/v1/completions", map[string]any{"prompt": prompt, "max_tokens": 24, "temperature": 0, "stop": stop})
		if got, fin := joinText(chunks); got != want[:cut] || fin != "stop" {
			t.Fatalf("streamed stop: %q %q", got, fin)
		}
	})

	t.Run("stop ids", func(t *testing.T) {
		_, b := ts.post(t, "/v1/completions", map[string]any{"prompt": prompt, "max_tokens": 24, "temperature": 0, "stop": []int32{ids[5]}, "return_token_ids": true})
		got := ints(choices(b)[0]["token_ids"])
		if fmt.Sprint(got) != fmt.Sprint(ids[:6]) || choices(b)[0]["finish_reason"] != "stop" {
			t.Fatalf("stop id %d: %v", ids[5], got)
		}
	})

	t.Run("stream equals non-stream", func(t *testing.T) {
		chunks := ts.stream(t, "/v1/completions", map[string]any{"prompt": prompt, "max_tokens": 24, "temperature": 0, "ignore_eos": true, "return_token_ids": true})
		got, fin := joinText(chunks)
		var sids []int32
		for _, c := range chunks {
			for _, ch := range choices(c) {
				sids = append(sids, ints(ch["token_ids"])...)
			}
		}
		if got != want || fin != "length" || fmt.Sprint(sids) != fmt.Sprint(ids) {
			t.Fatalf("stream %q %q %v", got, fin, sids)
		}
		last := chunks[len(chunks)-1]
		if u, ok := last["usage"].(map[string]any); !ok || u["completion_tokens"].(float64) != 24 {
			t.Fatalf("last chunk has no usage: %v", last)
		}
	})

	t.Run("seed and n", func(t *testing.T) {
		body := map[string]any{"prompt": prompt, "max_tokens": 16, "temperature": 1, "seed": 42, "ignore_eos": true}
		_, a := ts.post(t, "/v1/completions", body)
		_, b := ts.post(t, "/v1/completions", body)
		if text0(a) != text0(b) {
			t.Fatalf("same seed, different output: %q vs %q", text0(a), text0(b))
		}
		body["n"] = 4
		_, n4 := ts.post(t, "/v1/completions", body)
		c := choices(n4)
		if len(c) != 4 || c[0]["text"] != text0(a) {
			t.Fatalf("n=4: first choice %q, n=1 gave %q", c[0]["text"], text0(a))
		}
		distinct := map[any]bool{}
		for _, x := range c {
			distinct[x["text"]] = true
		}
		if len(distinct) < 2 {
			t.Fatalf("n=4 choices all equal: per-choice seeds are not derived")
		}
		_, again := ts.post(t, "/v1/completions", body)
		for i := range c {
			if choices(again)[i]["text"] != c[i]["text"] {
				t.Fatalf("n=4 with a seed is not reproducible at choice %d", i)
			}
		}
	})

	t.Run("best_of picks by cumulative logprob", func(t *testing.T) {
		_, b := ts.post(t, "/v1/completions", map[string]any{"prompt": prompt, "max_tokens": 8, "temperature": 1.5, "seed": 7, "n": 2, "best_of": 6, "logprobs": 0, "ignore_eos": true})
		c := choices(b)
		if len(c) != 2 {
			t.Fatal(b)
		}
		sum := func(ch map[string]any) float64 {
			s := 0.0
			for _, v := range ch["logprobs"].(map[string]any)["token_logprobs"].([]any) {
				s += v.(float64)
			}
			return s
		}
		if sum(c[0]) < sum(c[1]) {
			t.Fatalf("best_of order: %v < %v", sum(c[0]), sum(c[1]))
		}
		if u := b["usage"].(map[string]any); u["completion_tokens"].(float64) != 48 {
			t.Fatalf("best_of=6 usage counts every sequence: %v", u)
		}
	})

	t.Run("echo and logprobs", func(t *testing.T) {
		_, b := ts.post(t, "/v1/completions", map[string]any{"prompt": prompt, "max_tokens": 4, "temperature": 0, "echo": true, "logprobs": 3, "ignore_eos": true})
		c := choices(b)[0]
		if !strings.HasPrefix(c["text"].(string), prompt) || c["text"] != prompt+want[:len(c["text"].(string))-len(prompt)] {
			t.Fatalf("echo: %q", c["text"])
		}
		lp := c["logprobs"].(map[string]any)
		toks, lps, tops := lp["tokens"].([]any), lp["token_logprobs"].([]any), lp["top_logprobs"].([]any)
		if len(toks) != len(lps) || len(toks) != len(tops) || len(lp["text_offset"].([]any)) != len(toks) {
			t.Fatalf("logprobs lists differ in length: %v", lp)
		}
		if lps[0] != nil || lps[len(lps)-1] == nil {
			t.Fatalf("echoed prompt tokens have null logprobs, generated ones numbers: %v", lps)
		}
		if v := lps[len(lps)-1].(float64); v > 0 {
			t.Fatalf("logprob %v > 0", v)
		}
	})

	t.Run("min_p and top_k and penalties accepted", func(t *testing.T) {
		st, b := ts.post(t, "/v1/completions", map[string]any{"prompt": prompt, "max_tokens": 4, "temperature": 0.8, "top_k": 5, "top_p": 0.9, "min_p": 0.1,
			"presence_penalty": 0.5, "frequency_penalty": 0.5, "repetition_penalty": 1.1, "min_tokens": 2, "seed": 1})
		if st != 200 || len(choices(b)) != 1 {
			t.Fatal(st, b)
		}
	})
}

// joinText concatenates a completion stream's text and returns its
// finish reason.
func joinText(chunks []map[string]any) (string, string) {
	var sb strings.Builder
	fin := ""
	for _, c := range chunks {
		for _, ch := range choices(c) {
			if s, ok := ch["text"].(string); ok {
				sb.WriteString(s)
			}
			if d, ok := ch["delta"].(map[string]any); ok {
				if s, ok := d["content"].(string); ok {
					sb.WriteString(s)
				}
			}
			if f, ok := ch["finish_reason"].(string); ok {
				fin = f
			}
		}
	}
	return sb.String(), fin
}

func TestChatCompletions(t *testing.T) {
	ts := newTestServer(t)
	msgs := []any{map[string]any{"role": "system", "content": "Be brief."}, map[string]any{"role": "user", "content": []any{map[string]any{"type": "text", "text": "Document add(a, b)."}}}}
	st, b := ts.post(t, "/v1/chat/completions", map[string]any{"messages": msgs, "max_tokens": 12, "temperature": 0, "ignore_eos": true, "logprobs": true, "top_logprobs": 2})
	if st != 200 || b["object"] != "chat.completion" {
		t.Fatal(st, b)
	}
	c := choices(b)[0]
	msg := c["message"].(map[string]any)
	if msg["role"] != "assistant" || msg["content"] == "" {
		t.Fatalf("message %v", msg)
	}
	content := c["logprobs"].(map[string]any)["content"].([]any)
	if len(content) != 12 || len(content[0].(map[string]any)["top_logprobs"].([]any)) != 2 {
		t.Fatalf("chat logprobs %v", content)
	}
	// The prompt is the default template's rendering, without BOS.
	rendered, _ := ts.api.cfg.Chat.Render([]map[string]any{{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Document add(a, b)."}}, true)
	ids, _ := ts.api.cfg.Tokenizer.Encode(rendered, false)
	if u := b["usage"].(map[string]any); int(u["prompt_tokens"].(float64)) != len(ids) {
		t.Fatalf("prompt tokens %v, the rendered template has %d", u, len(ids))
	}
	chunks := ts.stream(t, "/v1/chat/completions", map[string]any{"messages": msgs, "max_tokens": 12, "temperature": 0, "ignore_eos": true})
	if chunks[0]["object"] != "chat.completion.chunk" || choices(chunks[0])[0]["delta"].(map[string]any)["role"] != "assistant" {
		t.Fatalf("first chunk %v", chunks[0])
	}
	if got, fin := joinText(chunks); got != msg["content"] || fin != "length" {
		t.Fatalf("streamed chat %q (%s), want %q", got, fin, msg["content"])
	}
}

func TestSelfConsistency(t *testing.T) {
	ts := newTestServer(t)
	// Each chain's answer is its first word character: a real vote.
	st, b := ts.post(t, "/v1/completions", map[string]any{"prompt": "Q: 2+2?\nA:", "max_tokens": 6, "temperature": 1, "seed": 3, "ignore_eos": true,
		"self_consistency": map[string]any{"samples": 7, "answer_pattern": `(\w)`}})
	if st != 200 {
		t.Fatal(b)
	}
	sc := b["self_consistency"].(map[string]any)
	votes := sc["votes"].(map[string]any)
	chains := sc["chains"].([]any)
	if len(chains) != 7 || len(choices(b)) != 7 {
		t.Fatalf("want 7 chains: %v", sc)
	}
	total, best := 0.0, 0.0
	for _, v := range votes {
		total += v.(float64)
		best = max(best, v.(float64))
	}
	if total == 0 || votes[sc["answer"].(string)].(float64) != best {
		t.Fatalf("answer %v is not the majority of %v", sc["answer"], votes)
	}
	for _, ch := range chains {
		c := ch.(map[string]any)
		if a, ok := c["answer"].(string); ok && !strings.Contains(c["text"].(string), a) {
			t.Fatalf("chain answer %q not in its text %q", a, c["text"])
		}
	}
}

func TestMetrics(t *testing.T) {
	ts := newTestServer(t)
	ts.post(t, "/v1/completions", greedy("a", 3))
	ts.post(t, "/v1/completions", map[string]any{"prompt": "a", "temperature": -1})
	resp, err := http.Get(ts.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sb strings.Builder
	buf := make([]byte, 1<<16)
	for {
		n, err := resp.Body.Read(buf)
		sb.Write(buf[:n])
		if err != nil {
			break
		}
	}
	out := sb.String()
	for _, want := range []string{
		`tessera_requests_total{endpoint="/v1/completions",status="200"} 1`,
		`tessera_requests_total{endpoint="/v1/completions",status="400"} 1`,
		"tessera_time_to_first_token_seconds_count 1",
		"tessera_inter_token_latency_seconds_count 2",
		"tessera_generated_tokens_total 3",
		"tessera_requests_in_flight 0",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// 64 concurrent streams of mixed lengths: each equals the same request
// run alone, and nothing leaks.
func TestConcurrentStreamsMatchAlone(t *testing.T) {
	// Registered first, so it runs after the server and scheduler stop.
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		http.DefaultClient.CloseIdleConnections()
		goleak.VerifyNone(t, opt)
	})
	ts := newTestServer(t)
	const n = 64
	bodies := make([]map[string]any, n)
	want := make([]string, n)
	for i := range bodies {
		bodies[i] = map[string]any{"prompt": []int{10 + i, 20 + i%7, 30}, "max_tokens": 4 + (i*7)%40, "temperature": 0, "ignore_eos": true}
		_, b := ts.post(t, "/v1/completions", bodies[i])
		want[i] = text0(b)
	}
	got := make([]string, n)
	var wg sync.WaitGroup
	for i := range bodies {
		wg.Go(func() {
			body := map[string]any{}
			for k, v := range bodies[i] {
				body[k] = v
			}
			got[i], _ = joinText(ts.stream(t, "/v1/completions", body))
		})
	}
	wg.Wait()
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("request %d batched: %q, alone %q", i, got[i], want[i])
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for ts.sched.Queued() != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if q := ts.sched.Queued(); q != 0 {
		t.Fatalf("%d requests still queued", q)
	}
}
