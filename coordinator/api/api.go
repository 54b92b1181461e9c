// Package api is the coordinator's OpenAI-compatible HTTP surface:
// /v1/completions (token ids or text in, text and token ids out, SSE when
// stream is set), /v1/models, and the /health and /ready probes. Errors
// use OpenAI's error body; a full queue answers 429 with Retry-After.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/tessera-llm/tessera/coordinator/sampling"
	"github.com/tessera-llm/tessera/coordinator/scheduler"
)

// Tokenizer turns text into ids and back; nil serves token ids only.
type Tokenizer interface {
	Encode(text string) ([]int32, error)
	Decode(ids []int32) (string, error)
}

// Config wires the API to the rest of the coordinator.
type Config struct {
	Model     string
	Scheduler *scheduler.Scheduler
	Tokenizer Tokenizer
	// Ready reports whether requests can be served now (/ready).
	Ready  func() bool
	Logger *slog.Logger
	// MaxBody bounds a request body (default 4 MiB).
	MaxBody int64
}

// Server serves the HTTP API.
type Server struct {
	cfg Config
	mux *http.ServeMux
}

// New builds the handlers.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 4 << 20
	}
	if cfg.Ready == nil {
		cfg.Ready = func() bool { return true }
	}
	s := &Server{cfg: cfg, mux: http.NewServeMux()}
	s.mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	s.mux.HandleFunc("GET /ready", s.ready)
	s.mux.HandleFunc("GET /v1/models", s.models)
	s.mux.HandleFunc("POST /v1/completions", s.completions)
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

func (s *Server) ready(w http.ResponseWriter, _ *http.Request) {
	if !s.cfg.Ready() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready: no plan is serving yet"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func (s *Server) models(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": []map[string]any{
		{"id": s.cfg.Model, "object": "model", "owned_by": "tessera"}}})
}

// completionRequest is the subset of OpenAI's completion request served
// so far.
type completionRequest struct {
	Model          string          `json:"model"`
	Prompt         json.RawMessage `json:"prompt"`
	MaxTokens      *int            `json:"max_tokens"`
	Temperature    *float64        `json:"temperature"`
	TopP           *float64        `json:"top_p"`
	TopK           *int            `json:"top_k"`
	Seed           *uint64         `json:"seed"`
	Stop           json.RawMessage `json:"stop"`
	Stream         bool            `json:"stream"`
	IgnoreEOS      bool            `json:"ignore_eos"`
	ReturnTokenIDs bool            `json:"return_token_ids"`
}

type apiError struct {
	status int
	msg    string
	param  string
}

func (e *apiError) Error() string { return e.msg }

func badRequest(param, format string, a ...any) error {
	return &apiError{status: http.StatusBadRequest, msg: fmt.Sprintf(format, a...), param: param}
}

// prompt decodes "prompt": a string (needs a tokenizer) or token ids.
func (s *Server) prompt(raw json.RawMessage) ([]int32, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, badRequest("prompt", "prompt is required")
	}
	var text string
	if json.Unmarshal(raw, &text) == nil {
		if s.cfg.Tokenizer == nil {
			return nil, badRequest("prompt", "this model has no tokenizer.json: send the prompt as token ids")
		}
		ids, err := s.cfg.Tokenizer.Encode(text)
		if err != nil {
			return nil, badRequest("prompt", "tokenizing the prompt: %v", err)
		}
		return ids, nil
	}
	var ids []int32
	if err := json.Unmarshal(raw, &ids); err != nil {
		return nil, badRequest("prompt", "prompt must be a string or an array of token ids")
	}
	return ids, nil
}

func (s *Server) decodeRequest(w http.ResponseWriter, r *http.Request) (*completionRequest, scheduler.Request, error) {
	var req completionRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, s.cfg.MaxBody))
	if err := dec.Decode(&req); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, scheduler.Request{}, &apiError{status: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf("request body over %d bytes", s.cfg.MaxBody)}
		}
		return nil, scheduler.Request{}, badRequest("", "malformed JSON body: %v", err)
	}
	if req.Model != "" && req.Model != s.cfg.Model {
		return nil, scheduler.Request{}, &apiError{status: http.StatusNotFound, param: "model",
			msg: fmt.Sprintf("model %q is not served here (this server serves %q)", req.Model, s.cfg.Model)}
	}
	ids, err := s.prompt(req.Prompt)
	if err != nil {
		return nil, scheduler.Request{}, err
	}
	sr := scheduler.Request{Prompt: ids, MaxTokens: 16, IgnoreEOS: req.IgnoreEOS, Sampling: sampling.Params{Temperature: 1}}
	if req.MaxTokens != nil {
		sr.MaxTokens = *req.MaxTokens
	}
	if req.Temperature != nil {
		sr.Sampling.Temperature = *req.Temperature
	}
	if req.TopP != nil {
		sr.Sampling.TopP = *req.TopP
	}
	if req.TopK != nil {
		sr.Sampling.TopK = *req.TopK
	}
	if req.Seed != nil {
		sr.Sampling.Seed = *req.Seed
	}
	if err := sr.Sampling.Validate(); err != nil {
		return nil, scheduler.Request{}, badRequest("", "%v", err)
	}
	if len(req.Stop) > 0 && string(req.Stop) != "null" {
		if err := json.Unmarshal(req.Stop, &sr.StopIDs); err != nil {
			return nil, scheduler.Request{}, badRequest("stop", "stop must be an array of token ids here")
		}
	}
	return &req, sr, nil
}

func (s *Server) completions(w http.ResponseWriter, r *http.Request) {
	req, sr, err := s.decodeRequest(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	h, err := s.cfg.Scheduler.Submit(r.Context(), sr)
	if err != nil {
		writeError(w, err)
		return
	}
	id := fmt.Sprintf("cmpl-%d", time.Now().UnixNano())
	if req.Stream {
		s.stream(w, h, req, id, len(sr.Prompt))
		return
	}
	res := h.Wait()
	if res.Err != nil {
		writeError(w, res.Err)
		return
	}
	ids := tokenIDs(res.Tokens)
	choice := map[string]any{"index": 0, "text": s.text(ids), "finish_reason": res.Finish, "logprobs": nil}
	if req.ReturnTokenIDs {
		choice["token_ids"] = ids
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"id": id, "object": "text_completion", "created": time.Now().Unix(), "model": s.cfg.Model,
		"choices": []any{choice},
		"usage":   usage(len(sr.Prompt), len(ids)),
	})
}

// stream sends one SSE chunk per token, then the finish, usage and [DONE].
func (s *Server) stream(w http.ResponseWriter, h *scheduler.Handle, req *completionRequest, id string, promptLen int) {
	flusher, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	send := func(v any) {
		b, _ := json.Marshal(v)
		fmt.Fprintf(w, "data: %s\n\n", b)
		if flusher != nil {
			flusher.Flush()
		}
	}
	chunk := func(choice map[string]any) map[string]any {
		return map[string]any{"id": id, "object": "text_completion", "created": time.Now().Unix(), "model": s.cfg.Model, "choices": []any{choice}}
	}
	var all []int32
	emitted := ""
	for tok := range h.Tokens() {
		all = append(all, tok.ID)
		// Emit only whole characters: the text so far minus what was sent.
		text := s.text(all)
		if strings.HasSuffix(text, "\uFFFD") {
			continue
		}
		delta := strings.TrimPrefix(text, emitted)
		emitted = text
		c := map[string]any{"index": 0, "text": delta, "finish_reason": nil}
		if req.ReturnTokenIDs {
			c["token_ids"] = []int32{tok.ID}
		}
		send(chunk(c))
	}
	res := h.Wait()
	if res.Err != nil {
		send(map[string]any{"error": errorBody(res.Err)})
	} else {
		last := chunk(map[string]any{"index": 0, "text": strings.TrimPrefix(s.text(all), emitted), "finish_reason": res.Finish})
		last["usage"] = usage(promptLen, len(all))
		send(last)
	}
	io.WriteString(w, "data: [DONE]\n\n")
	if flusher != nil {
		flusher.Flush()
	}
}

func (s *Server) text(ids []int32) string {
	if s.cfg.Tokenizer == nil {
		return ""
	}
	t, err := s.cfg.Tokenizer.Decode(ids)
	if err != nil {
		return ""
	}
	return t
}

func tokenIDs(toks []scheduler.Token) []int32 {
	ids := make([]int32, len(toks))
	for i, t := range toks {
		ids[i] = t.ID
	}
	return ids
}

func usage(prompt, completion int) map[string]int {
	return map[string]int{"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// statusOf maps errors onto HTTP statuses in one table.
func statusOf(err error) int {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		return ae.status
	case errors.Is(err, scheduler.ErrQueueFull):
		return http.StatusTooManyRequests
	case errors.Is(err, scheduler.ErrInvalid), errors.Is(err, scheduler.ErrTooLong):
		return http.StatusBadRequest
	case errors.Is(err, scheduler.ErrStopped):
		return http.StatusServiceUnavailable
	case errors.Is(err, context.Canceled):
		return 499
	}
	return http.StatusInternalServerError
}

func errorBody(err error) map[string]any {
	kind := "server_error"
	if st := statusOf(err); st >= 400 && st < 500 {
		kind = "invalid_request_error"
	}
	body := map[string]any{"message": err.Error(), "type": kind, "code": nil, "param": nil}
	var ae *apiError
	if errors.As(err, &ae) && ae.param != "" {
		body["param"] = ae.param
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
