package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/tessera-llm/tessera/coordinator/scheduler"
)

// chatRequest is OpenAI's chat completion request with the same sampling
// extensions as completions.
type chatRequest struct {
	commonRequest
	Messages            []chatMessage `json:"messages"`
	MaxCompletionTokens *int          `json:"max_completion_tokens"`
	Logprobs            bool          `json:"logprobs"`
	TopLogprobs         *int          `json:"top_logprobs"`
	AddGenerationPrompt *bool         `json:"add_generation_prompt"`
}

type chatMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
	Name    string          `json:"name,omitempty"`
}

// content reads a message's content: a string, or a list of parts of
// which the text parts are joined.
func (m chatMessage) content(i int) (string, error) {
	if len(m.Content) == 0 || string(m.Content) == "null" {
		return "", nil
	}
	var s string
	if json.Unmarshal(m.Content, &s) == nil {
		return s, nil
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(m.Content, &parts); err != nil {
		return "", badRequest("messages", "messages[%d].content must be a string or a list of content parts", i)
	}
	var sb strings.Builder
	for _, p := range parts {
		if p.Type != "text" {
			return "", badRequest("messages", "messages[%d]: content parts of type %q are not supported (text only)", i, p.Type)
		}
		sb.WriteString(p.Text)
	}
	return sb.String(), nil
}

// parseChat decodes a chat request, renders its prompt and validates it.
func (s *Server) parseChat(ctx context.Context, body []byte) (*chatRequest, *genRequest, error) {
	var req chatRequest
	if err := decodeJSON(body, &req); err != nil {
		return nil, nil, err
	}
	if err := s.checkModel(req.Model); err != nil {
		return nil, nil, err
	}
	if _, err := s.generator(); err != nil {
		return nil, nil, err
	}
	if s.cfg.Tokenizer == nil {
		return nil, nil, badRequest("messages", "chat needs a tokenizer; this model has no tokenizer.json")
	}
	if len(req.Messages) == 0 {
		return nil, nil, badRequest("messages", "messages must not be empty")
	}
	limit, size := s.promptLimit(), 0
	msgs := make([]map[string]any, len(req.Messages))
	for i, m := range req.Messages {
		switch m.Role {
		case "system", "user", "assistant", "developer", "tool":
		default:
			return nil, nil, badRequest("messages", "messages[%d].role %q is not one of system, user, assistant, developer, tool", i, m.Role)
		}
		c, err := m.content(i)
		if err != nil {
			return nil, nil, err
		}
		size += len(c)
		if err := checkBytes("messages", size, limit); err != nil {
			return nil, nil, err
		}
		msgs[i] = map[string]any{"role": m.Role, "content": c}
		if m.Name != "" {
			msgs[i]["name"] = m.Name
		}
	}
	addGen := req.AddGenerationPrompt == nil || *req.AddGenerationPrompt
	prompt, err := s.cfg.Chat.Render(msgs, addGen)
	if errors.Is(err, ErrTemplate) {
		return nil, nil, badRequest("messages", "%v", err)
	}
	if err != nil {
		return nil, nil, err // ErrTemplateBroken: a 500
	}
	ids, err := s.encodeText(ctx, prompt, false, limit, "messages")
	if err != nil {
		return nil, nil, err
	}
	p, err := req.params()
	if err != nil {
		return nil, nil, err
	}
	if req.MaxCompletionTokens != nil {
		p.MaxTokens = req.MaxCompletionTokens
	}
	if req.TopLogprobs != nil && !req.Logprobs {
		return nil, nil, badRequest("top_logprobs", "top_logprobs needs logprobs: true")
	}
	if req.Logprobs {
		k := 0
		if req.TopLogprobs != nil {
			k = *req.TopLogprobs
		}
		p.Logprobs = &k
	}
	g, err := s.build(p, [][]int32{ids}, 0, maxTopLogprobs, "top_logprobs")
	if err != nil {
		return nil, nil, err
	}
	return &req, g, nil
}

func (s *Server) chatCompletions(w http.ResponseWriter, r *http.Request) {
	body, err := s.readBody(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	req, g, err := s.parseChat(r.Context(), body)
	if err != nil {
		writeError(w, err)
		return
	}
	id := newID("chatcmpl-")
	if g.stream {
		s.streamChat(w, r, req, g, id)
		return
	}
	s.respond(w, r, g, id, "chat.completion", func(i int, q *sequence) map[string]any {
		c := map[string]any{"index": i, "message": map[string]any{"role": "assistant", "content": q.text},
			"finish_reason": q.finish, "logprobs": nil}
		if g.logprobs >= 0 {
			c["logprobs"] = map[string]any{"content": s.chatLogprobs(q.tokens, g.logprobs)}
		}
		if g.returnTokenIDs {
			c["token_ids"] = tokenIDs(q.tokens)
		}
		return c
	})
}

// streamChat sends chat.completion.chunk deltas: the role first, then
// content.
func (s *Server) streamChat(w http.ResponseWriter, r *http.Request, req *chatRequest, g *genRequest, id string) {
	first := func(k int) map[string]any {
		return map[string]any{"index": k, "delta": map[string]any{"role": "assistant", "content": ""}, "logprobs": nil, "finish_reason": nil}
	}
	s.streamSequences(w, r, g, "chat.completion.chunk", id, req.StreamOptions, first, func(d delta) map[string]any {
		c := map[string]any{"index": d.seq, "delta": map[string]any{}, "logprobs": nil, "finish_reason": nil}
		if d.text != "" {
			c["delta"] = map[string]any{"content": d.text}
		}
		if g.logprobs >= 0 {
			c["logprobs"] = map[string]any{"content": s.chatLogprobs(d.tokens, g.logprobs)}
		}
		if g.returnTokenIDs {
			c["token_ids"] = tokenIDs(d.tokens)
		}
		return c
	})
}

// chatLogprobs is the "content" list of chat logprobs.
func (s *Server) chatLogprobs(toks []scheduler.Token, top int) []any {
	out := make([]any, len(toks))
	for i, t := range toks {
		str := s.tokenText(t.ID)
		alts := []any{}
		for j, c := range t.Top {
			if j >= top {
				break
			}
			cs := s.tokenText(c.ID)
			alts = append(alts, map[string]any{"token": cs, "logprob": c.Logprob, "bytes": bytesOf(cs)})
		}
		out[i] = map[string]any{"token": str, "logprob": t.Logprob, "bytes": bytesOf(str), "top_logprobs": alts}
	}
	return out
}

// bytesOf is the token's UTF-8 bytes as a JSON list of integers.
func bytesOf(s string) []int {
	b := make([]int, len(s))
	for i := range len(s) {
		b[i] = int(s[i])
	}
	return b
}
