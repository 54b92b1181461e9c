package probe

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Config says where the API is and how long to wait.
type Config struct {
	// URL is the API's base, e.g. http://127.0.0.1:8080.
	URL string
	// APIKey is sent as a bearer token when set.
	APIKey string
	// SlowWait is how long the stalled body may be held before the server
	// must have cut it (default 30 s; the server's default cut is 10 s).
	SlowWait time.Duration
	// PromptBytes is the size of the huge prompt, which must fit the
	// server's body limit (default 3.9 MB).
	PromptBytes int
}

// Result is one check's outcome.
type Result struct {
	Name   string
	Pass   bool
	Detail string
}

// reply is what a request got: a status, the Allow header and the
// error's param, or the error that kept it from an answer.
type reply struct {
	status int
	allow  string
	param  string
	msg    string
	err    error
}

func (r reply) String() string {
	if r.err != nil {
		return r.err.Error()
	}
	s := fmt.Sprintf("%d", r.status)
	if r.param != "" {
		s += " param=" + r.param
	}
	if r.allow != "" {
		s += " Allow=" + r.allow
	}
	if r.msg != "" {
		s += ": " + r.msg
	}
	return s
}

type prober struct {
	cfg    Config
	client *http.Client
}

// Run sends every check to cfg.URL and returns their results in order.
func Run(ctx context.Context, cfg Config) ([]Result, error) {
	if _, err := url.Parse(cfg.URL); err != nil || cfg.URL == "" {
		return nil, fmt.Errorf("probe: a URL such as http://127.0.0.1:8080 is required, got %q", cfg.URL)
	}
	cfg.URL = strings.TrimRight(cfg.URL, "/")
	if cfg.SlowWait <= 0 {
		cfg.SlowWait = 30 * time.Second
	}
	if cfg.PromptBytes <= 0 {
		cfg.PromptBytes = 3_900_000
	}
	p := &prober{cfg: cfg, client: &http.Client{Timeout: cfg.SlowWait + 30*time.Second}}
	if r := p.send(ctx, "GET", "/health", "", nil); r.err != nil || r.status != 200 {
		return nil, fmt.Errorf("probe: %s/health: %v", cfg.URL, r)
	}
	var out []Result
	for _, c := range checks(cfg) {
		out = append(out, c.run(ctx, p))
	}
	out = append(out, p.slowBody(ctx))
	healthy := p.send(ctx, "POST", "/v1/completions", "application/json", []byte(`{"prompt": [5, 6, 7], "max_tokens": 2}`))
	out = append(out, Result{Name: "still serving after all of the above", Pass: healthy.status == 200, Detail: healthy.String()})
	return out, nil
}

// check is a request and a judgement of its reply.
type check struct {
	name             string
	method, path, ct string
	body             []byte
	status           int
	param, allow     string
	orClosed         bool // the server may also close the connection (a body it refuses mid-upload)
}

func (c check) run(ctx context.Context, p *prober) Result {
	r := p.send(ctx, c.method, c.path, c.ct, c.body)
	res := Result{Name: c.name, Detail: r.String()}
	switch {
	case r.err != nil:
		res.Pass = c.orClosed
	default:
		res.Pass = r.status == c.status && (c.param == "" || r.param == c.param) && (c.allow == "" || r.allow == c.allow)
	}
	if !res.Pass {
		res.Detail = fmt.Sprintf("got %s, want %d", r, c.status)
		if c.param != "" {
			res.Detail += " param=" + c.param
		}
	}
	return res
}

func checks(cfg Config) []check {
	const js = "application/json"
	post := func(name, path, body string, status int, param string) check {
		return check{name: name, method: "POST", path: path, ct: js, body: []byte(body), status: status, param: param}
	}
	deep := strings.Repeat(`{"a":`, 100000) + "1" + strings.Repeat("}", 100000)
	huge := append(append([]byte(`{"prompt": "`), bytes.Repeat([]byte("a "), cfg.PromptBytes/2)...), `"}`...)
	tooBig := append(append([]byte(`{"prompt": "`), bytes.Repeat([]byte("b"), 100<<20)...), `"}`...)
	chat := func(extra string) string {
		return `{"messages": [{"role": "user", "content": "hi"}]` + extra + `}`
	}
	cs := []check{
		post("malformed JSON", "/v1/completions", `{"prompt": "a",`, 400, ""),
		post("JSON that is not an object", "/v1/completions", `[1, 2, 3]`, 400, ""),
		post("invalid UTF-8", "/v1/completions", "{\"prompt\": \"a\xff\"}", 400, ""),
		post("wrong type: prompt", "/v1/completions", `{"prompt": {"x": 1}}`, 400, "prompt"),
		post("wrong type: max_tokens", "/v1/completions", `{"prompt": "a", "max_tokens": "many"}`, 400, ""),
		post("wrong type: messages", "/v1/chat/completions", `{"messages": "hi"}`, 400, ""),
		post("deep nesting", "/v1/completions", deep, 400, ""),
		{name: "100 MB body", method: "POST", path: "/v1/completions", ct: js, body: tooBig, status: 413, orClosed: true},
		{name: "3.9 MB prompt", method: "POST", path: "/v1/completions", ct: js, body: huge, status: 400, param: "prompt"},
		post("temperature < 0", "/v1/completions", `{"prompt": "a", "temperature": -1}`, 400, "temperature"),
		post("top_p 0", "/v1/completions", `{"prompt": "a", "top_p": 0}`, 400, "top_p"),
		post("top_k -2", "/v1/completions", `{"prompt": "a", "top_k": -2}`, 400, "top_k"),
		post("min_p 2", "/v1/completions", `{"prompt": "a", "min_p": 2}`, 400, "min_p"),
		post("n 0", "/v1/completions", `{"prompt": "a", "n": 0}`, 400, "n"),
		post("best_of < n", "/v1/completions", `{"prompt": "a", "n": 3, "best_of": 2}`, 400, "best_of"),
		post("chat best_of < n", "/v1/chat/completions", chat(`, "n": 3, "best_of": 2`), 400, "best_of"),
		post("chat best_of 1000000", "/v1/chat/completions", chat(`, "best_of": 1000000`), 400, "best_of"),
		post("max_tokens 0", "/v1/completions", `{"prompt": "a", "max_tokens": 0}`, 400, "max_tokens"),
		post("max_tokens past the context", "/v1/completions", `{"prompt": "a", "max_tokens": 100000000}`, 400, "max_tokens"),
		post("logprobs 6", "/v1/completions", `{"prompt": "a", "logprobs": 6}`, 400, "logprobs"),
		post("top_logprobs 100", "/v1/chat/completions", chat(`, "logprobs": true, "top_logprobs": 100`), 400, "top_logprobs"),
		post("stop_token_ids -1", "/v1/completions", `{"prompt": "a", "stop_token_ids": [-1]}`, 400, "stop_token_ids"),
		post("positive logit_bias", "/v1/completions", `{"prompt": "a", "logit_bias": {"5": 10}}`, 400, "logit_bias"),
		post("presence_penalty 3", "/v1/completions", `{"prompt": "a", "presence_penalty": 3}`, 400, "presence_penalty"),
		post("prompt token outside the vocabulary", "/v1/completions", `{"prompt": [2147483647]}`, 400, "prompt"),
		post("bad regex", "/v1/completions", `{"prompt": "a", "self_consistency": {"samples": 2, "answer_pattern": "("}}`, 400, "self_consistency.answer_pattern"),
		post("unknown model", "/v1/completions", `{"model": "gpt-9", "prompt": "a"}`, 404, "model"),
		post("tool_choice names no tool", "/v1/chat/completions", chat(`, "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": {"type": "function", "function": {"name": "g"}}`), 400, "tool_choice"),
		post("tool_choice unknown", "/v1/chat/completions", chat(`, "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "always"`), 400, "tool_choice"),
		post("responses previous_response_id", "/v1/responses", `{"input": "a", "previous_response_id": "resp_1"}`, 400, "previous_response_id"),
		post("responses store", "/v1/responses", `{"input": "a", "store": true}`, 400, "store"),
	}
	for _, m := range []string{"GET", "PUT", "DELETE", "PATCH", "OPTIONS"} {
		cs = append(cs, check{name: m + " on a POST endpoint", method: m, path: "/v1/completions", status: 405, allow: "POST"})
	}
	cs = append(cs, check{name: "DELETE on a GET endpoint", method: "DELETE", path: "/v1/models", status: 405, allow: "GET, HEAD"})
	for _, ct := range []string{"text/plain", "", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"} {
		name := "Content-Type " + ct
		if ct == "" {
			name = "no Content-Type"
		}
		cs = append(cs, check{name: name, method: "POST", path: "/v1/completions", ct: ct, body: []byte(`{"prompt": "a"}`), status: 415})
	}
	return cs
}

func (p *prober) send(ctx context.Context, method, path, ct string, body []byte) reply {
	req, err := http.NewRequestWithContext(ctx, method, p.cfg.URL+path, bytes.NewReader(body))
	if err != nil {
		return reply{err: err}
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	if p.cfg.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+p.cfg.APIKey)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return reply{err: err}
	}
	defer resp.Body.Close()
	return decode(resp)
}

func decode(resp *http.Response) reply {
	r := reply{status: resp.StatusCode, allow: resp.Header.Get("Allow")}
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var e struct {
		Error struct {
			Message string `json:"message"`
			Param   string `json:"param"`
		} `json:"error"`
	}
	if json.Unmarshal(data, &e) == nil {
		r.param, r.msg = e.Error.Param, e.Error.Message
	}
	return r
}

// slowBody holds a body that stalls after its first byte and checks that
// the server cuts it (408) within SlowWait while /health keeps answering.
func (p *prober) slowBody(ctx context.Context) Result {
	res := Result{Name: "stalled body"}
	u, _ := url.Parse(p.cfg.URL)
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		res.Detail = err.Error()
		return res
	}
	defer c.Close()
	auth := ""
	if p.cfg.APIKey != "" {
		auth = "Authorization: Bearer " + p.cfg.APIKey + "\r\n"
	}
	start := time.Now()
	fmt.Fprintf(c, "POST /v1/completions HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n%sContent-Length: 100000\r\n\r\n{", u.Host, auth)
	cut := make(chan reply, 1)
	go func() {
		_ = c.SetReadDeadline(start.Add(p.cfg.SlowWait))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			cut <- reply{err: err}
			return
		}
		defer resp.Body.Close()
		cut <- decode(resp)
	}()
	served := 0
	for {
		select {
		case r := <-cut:
			res.Pass = r.err == nil && r.status == http.StatusRequestTimeout && served > 0
			res.Detail = fmt.Sprintf("%s after %v; /health answered %d times meanwhile", r, time.Since(start).Round(time.Millisecond), served)
			return res
		case <-time.After(200 * time.Millisecond):
			if h := p.send(ctx, "GET", "/health", "", nil); h.status == 200 {
				served++
			}
		}
	}
}
