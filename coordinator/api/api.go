// Package api is the coordinator's OpenAI-compatible surface:
//
//   - POST /v1/completions: prompt as text, token ids, or a list of either
//     (a batch); the full OpenAI parameter set plus vLLM's extensions
//     (top_k, min_p, repetition_penalty, min_tokens, ignore_eos,
//     return_token_ids, stop_token_ids) and "self_consistency";
//   - POST /v1/chat/completions: messages rendered with the model's Jinja
//     chat template (DefaultChatTemplate when it has none), with tool
//     calls (tools.go);
//   - POST /v1/responses: OpenAI's Responses API without stored state
//     (responses.go);
//   - POST /v1/embeddings and /v1/fill-mask for encoder models (Encoder);
//   - GET /v1/models, /health, /ready and /metrics (Prometheus).
//
// Streaming is SSE: data: {...} chunks, usage in the last one, then
// data: [DONE]. Errors use OpenAI's body ({"error": {"message", "type",
// "param", "code"}}): 400 invalid values, 401 a missing or wrong API key,
// 404 an unknown model, 405 (with Allow) a wrong method, 408 a body too
// slow, 413 a body too big, 415 a body not declared application/json,
// 429 (with Retry-After) a full queue, 503 not ready. docs/api.md lists
// every field and refusal. The API turns input into requests that pass
// scheduler.Check and sampling.Params.Validate, the one rule each. The
// gRPC Inference service (GRPC) shares all of this.
package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tessera-llm/tessera/coordinator/guide"
	"github.com/tessera-llm/tessera/coordinator/scheduler"
	"github.com/tessera-llm/tessera/coordinator/tokenizer"
)

// Tokenizer turns text into ids and back; nil serves token ids only.
type Tokenizer interface {
	// Encode tokenizes text, adding the model's special tokens (BOS...)
	// when addSpecial; chat prompts come from a template that writes
	// them itself.
	Encode(text string, addSpecial bool) ([]int32, error)
	// Decode detokenizes ids, skipping special tokens.
	Decode(ids []int32) (string, error)
	// NewDecoder starts an incremental detokenizer.
	NewDecoder() TextStream
}

// TextStream detokenizes one id at a time, returning only text later ids
// cannot change (never half a UTF-8 character); Flush returns the rest.
type TextStream interface {
	Add(id int32) (string, error)
	Flush() string
}

// Config wires the API to the rest of the coordinator.
type Config struct {
	Model string
	// Scheduler generates; nil for an encoder model (generation answers
	// 400).
	Scheduler *scheduler.Scheduler
	Tokenizer Tokenizer
	// Chat renders chat messages (nil: DefaultChatTemplate).
	Chat *ChatTemplate
	// Encoder serves /v1/embeddings and /v1/fill-mask (nil: 400).
	Encoder Encoder
	// Ready reports whether requests can be served now (/ready; the
	// model endpoints answer 503 while it is false).
	Ready func() bool
	// APIKey, when set, is required as "Authorization: Bearer <key>" on
	// /v1/ (and as gRPC metadata).
	APIKey  string
	Metrics *Metrics
	Logger  *slog.Logger
	// MaxBody bounds a request body (default 4 MiB).
	MaxBody int64
	// MaxTokenizing bounds how many requests tokenize at once (default
	// GOMAXPROCS); the others wait their turn.
	MaxTokenizing int
	// Limits are the HTTP server's timeouts and per-client cap
	// (HTTPServer, Listener).
	Limits Limits
}

// Server serves the HTTP API.
type Server struct {
	cfg        Config
	mux        *http.ServeMux
	metrics    *Metrics
	keyHash    [32]byte
	tokenizing chan struct{} // a slot per request tokenizing now
	// allow lists the methods each /v1 path serves, for 405's Allow.
	allow  map[string][]string
	guides guides
}

// New builds the handlers.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 4 << 20
	}
	cfg.Limits.defaults()
	if cfg.MaxTokenizing <= 0 {
		cfg.MaxTokenizing = runtime.GOMAXPROCS(0)
	}
	if cfg.Ready == nil {
		cfg.Ready = func() bool { return true }
	}
	if cfg.Chat == nil {
		cfg.Chat, _ = NewChatTemplate(DefaultChatTemplate, "", "")
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics()
	}
	s := &Server{cfg: cfg, mux: http.NewServeMux(), metrics: cfg.Metrics, keyHash: sha256.Sum256([]byte(cfg.APIKey)),
		tokenizing: make(chan struct{}, cfg.MaxTokenizing), allow: map[string][]string{}}
	s.metrics.watch(cfg.Scheduler)
	s.mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	s.mux.HandleFunc("GET /ready", s.ready)
	s.mux.Handle("GET /metrics", s.metrics.Handler())
	s.handle("GET /v1/models", s.models, false)
	s.handle("POST /v1/completions", s.completions, true)
	s.handle("POST /v1/chat/completions", s.chatCompletions, true)
	s.handle("POST /v1/responses", s.responses, true)
	s.handle("POST /v1/embeddings", s.embeddings, true)
	s.handle("POST /v1/fill-mask", s.fillMask, true)
	s.mux.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		if methods, ok := s.allow[r.URL.Path]; ok {
			allow := strings.Join(methods, ", ")
			w.Header().Set("Allow", allow)
			writeError(w, &apiError{status: http.StatusMethodNotAllowed, msg: fmt.Sprintf("%s serves %s, not %s", r.URL.Path, allow, r.Method)})
			return
		}
		writeError(w, &apiError{status: http.StatusNotFound, msg: fmt.Sprintf("no endpoint %s %s", r.Method, r.URL.Path)})
	})
	return s
}

// handle registers an authenticated, counted /v1 endpoint; needReady
// answers 503 while the cluster cannot serve. A POST endpoint takes only
// application/json bodies, and cuts a body that stalls (Limits.BodyIdle).
func (s *Server) handle(pattern string, h http.HandlerFunc, needReady bool) {
	method, endpoint, _ := strings.Cut(pattern, " ")
	s.allow[endpoint] = append(s.allow[endpoint], method)
	if method == http.MethodGet {
		s.allow[endpoint] = append(s.allow[endpoint], http.MethodHead)
	}
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		defer func() { s.metrics.requests.WithLabelValues(endpoint, fmt.Sprint(rec.status)).Inc() }()
		if err := s.authorize(r.Header.Get("Authorization")); err != nil {
			writeError(rec, err)
			return
		}
		if method == http.MethodPost {
			if err := checkJSON(r); err != nil {
				writeError(rec, err)
				return
			}
			l := s.cfg.Limits
			r.Body = &idleBody{ReadCloser: r.Body, rc: http.NewResponseController(w), idle: l.BodyIdle, end: time.Now().Add(l.Body)}
		}
		if needReady && !s.cfg.Ready() {
			writeError(rec, errNotReady)
			return
		}
		h(rec, r)
	})
}

var errNotReady = &apiError{status: http.StatusServiceUnavailable, msg: "not ready: no plan is serving yet (workers are loading or absent)"}

// authorize checks a bearer token against the API key in constant time
// (over hashes, so the key's length does not leak either).
func (s *Server) authorize(header string) error {
	if s.cfg.APIKey == "" {
		return nil
	}
	token, ok := strings.CutPrefix(header, "Bearer ")
	if !ok || token == "" {
		return &apiError{status: http.StatusUnauthorized, msg: "missing API key: send Authorization: Bearer <key>", code: "invalid_api_key"}
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(token)))
	if subtle.ConstantTimeCompare(got[:], s.keyHash[:]) != 1 {
		return &apiError{status: http.StatusUnauthorized, msg: "incorrect API key", code: "invalid_api_key"}
	}
	return nil
}

// ServeHTTP implements http.Handler. A request on a connection past
// Limits.ConnsPerClient gets 429 and the connection is closed.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if overCap(r) {
		w.Header().Set("Connection", "close")
		writeError(w, &apiError{status: http.StatusTooManyRequests,
			msg: fmt.Sprintf("your address holds more than %d connections to this server: reuse or close some", s.cfg.Limits.ConnsPerClient)})
		return
	}
	s.mux.ServeHTTP(w, r)
}

func (s *Server) ready(w http.ResponseWriter, _ *http.Request) {
	if !s.cfg.Ready() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready: no plan is serving yet"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func (s *Server) models(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": []map[string]any{
		{"id": s.cfg.Model, "object": "model", "created": 0, "owned_by": "tessera"}}})
}

// readBody reads a body up to MaxBody (413 beyond).
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, &apiError{status: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf("request body over %d bytes", s.cfg.MaxBody)}
		}
		if isTimeout(err) {
			w.Header().Set("Connection", "close")
			return nil, errBodyTimeout(s.cfg.Limits)
		}
		return nil, badRequest("", "reading the body: %v", err)
	}
	return body, nil
}

// decodeBody reads a JSON body into v: 413 over MaxBody, 400 for invalid
// UTF-8 (which encoding/json would silently replace) or invalid JSON.
func (s *Server) decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := s.readBody(w, r)
	if err != nil {
		return err
	}
	return decodeJSON(body, v)
}

func decodeJSON(body []byte, v any) error {
	if !utf8.Valid(body) {
		return badRequest("", "the body is not valid UTF-8")
	}
	if err := json.Unmarshal(body, v); err != nil {
		return badRequest("", "malformed JSON body: %v", err)
	}
	return nil
}

// checkModel answers 404 for a model other than the one served ("" is
// the served one).
func (s *Server) checkModel(name string) error {
	if name != "" && name != s.cfg.Model {
		return &apiError{status: http.StatusNotFound, param: "model", code: "model_not_found",
			msg: fmt.Sprintf("the model %q does not exist here (this server serves %q)", name, s.cfg.Model)}
	}
	return nil
}

func newID(prefix string) string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

func usage(prompt, completion int) map[string]int {
	return map[string]int{"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

type apiError struct {
	status int
	msg    string
	param  string
	code   string
}

func (e *apiError) Error() string { return e.msg }

func badRequest(param, format string, a ...any) error {
	return &apiError{status: http.StatusBadRequest, msg: fmt.Sprintf(format, a...), param: param}
}

// statusOf maps errors onto HTTP statuses in one table.
func statusOf(err error) int {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		return ae.status
	case errors.Is(err, scheduler.ErrQueueFull):
		return http.StatusTooManyRequests
	case errors.Is(err, scheduler.ErrInvalid), errors.Is(err, scheduler.ErrTooLong), errors.Is(err, ErrTemplate):
		return http.StatusBadRequest
	case errors.Is(err, guide.ErrUnsatisfiable), errors.Is(err, guide.ErrTooLarge):
		// A constraint that fails only while generating: the vocabulary
		// cannot finish it, or it reached more automaton states than
		// one may build.
		return http.StatusBadRequest
	case errors.Is(err, scheduler.ErrStopped):
		return http.StatusServiceUnavailable
	case errors.Is(err, context.Canceled):
		return 499
	}
	return http.StatusInternalServerError
}

func errorBody(err error) map[string]any {
	st := statusOf(err)
	kind := "server_error"
	switch {
	case st == http.StatusUnauthorized:
		kind = "authentication_error"
	case st == http.StatusNotFound:
		kind = "not_found_error"
	case st == http.StatusTooManyRequests:
		kind = "rate_limit_error"
	case st >= 400 && st < 500:
		kind = "invalid_request_error"
	}
	body := map[string]any{"message": err.Error(), "type": kind, "code": nil, "param": nil}
	var re *scheduler.RequestError
	if errors.As(err, &re) {
		body["param"] = re.Field
	}
	var ae *apiError
	if errors.As(err, &ae) {
		if ae.param != "" {
			body["param"] = ae.param
		}
		if ae.code != "" {
			body["code"] = ae.code
		}
	}
	return body
}

func writeError(w http.ResponseWriter, err error) {
	st := statusOf(err)
	if st == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, st, map[string]any{"error": errorBody(err)})
}

// statusRecorder keeps the status for the request counter; it passes
// Flush through for SSE.
type statusRecorder struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (r *statusRecorder) WriteHeader(code int) {
	if !r.wrote {
		r.status, r.wrote = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	r.wrote = true
	return r.ResponseWriter.Write(b)
}

func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// sse writes Server-Sent Events.
type sse struct {
	w http.ResponseWriter
}

func startSSE(w http.ResponseWriter) *sse {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	return &sse{w: w}
}

func (e *sse) send(v any) {
	b, _ := json.Marshal(v)
	fmt.Fprintf(e.w, "data: %s\n\n", b)
	e.flush()
}

func (e *sse) done() {
	io.WriteString(e.w, "data: [DONE]\n\n")
	e.flush()
}

func (e *sse) flush() {
	if f, ok := e.w.(http.Flusher); ok {
		f.Flush()
	}
}

func unixNow() int64 { return time.Now().Unix() }

// HF adapts a Hugging Face tokenizer: prompts get the model's special
// tokens when asked, outputs drop them, streams never split a character.
func HF(t *tokenizer.Tokenizer) Tokenizer { return hfTokenizer{t} }

type hfTokenizer struct{ t *tokenizer.Tokenizer }

func (a hfTokenizer) Encode(text string, addSpecial bool) ([]int32, error) {
	e, err := a.t.Encode(text, addSpecial)
	if err != nil {
		return nil, err
	}
	return e.IDs, nil
}

func (a hfTokenizer) EncodeLimit(text string, addSpecial bool, limit int) ([]int32, error) {
	e, err := a.t.EncodeLimit(text, addSpecial, limit)
	if err != nil {
		return nil, err
	}
	return e.IDs, nil
}

func (a hfTokenizer) Decode(ids []int32) (string, error) { return a.t.Decode(ids, true) }

func (a hfTokenizer) NewDecoder() TextStream { return a.t.NewDecoder(true) }
