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
	toolFields
	// tools is the validated toolFields, nil without tools.
	tools *toolUse
}

type chatMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
	Name    string          `json:"name,omitempty"`
	// ToolCalls (assistant) and ToolCallID (tool) pass to the template.
	ToolCalls  []messageToolCall `json:"tool_calls,omitempty"`
	ToolCallID string            `json:"tool_call_id,omitempty"`
}

// messageToolCall is a call in an assistant message of the history.
type messageToolCall struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

// templateMessage is m as templates read it. Arguments, a JSON string in
// OpenAI's shape, become the object they encode: templates print them
// with tojson or iterate them (as transformers gets them).
func (m chatMessage) templateMessage(content string) map[string]any {
	out := map[string]any{"role": m.Role, "content": content}
	if m.Name != "" {
		out["name"] = m.Name
	}
	if m.ToolCallID != "" {
		out["tool_call_id"] = m.ToolCallID
	}
	if len(m.ToolCalls) > 0 {
		// A struct keeps OpenAI's key order, which templates print.
		type function struct {
			Name      string `json:"name"`
			Arguments any    `json:"arguments"`
		}
		type call struct {
			ID       string   `json:"id"`
			Type     string   `json:"type"`
			Function function `json:"function"`
		}
		calls := make([]call, len(m.ToolCalls))
		for i, c := range m.ToolCalls {
			var args any = c.Function.Arguments
			if a, ok := compactObject(json.RawMessage(c.Function.Arguments)); ok {
				args = json.RawMessage(a)
			}
			calls[i] = call{c.ID, "function", function{c.Function.Name, args}}
		}
		out["tool_calls"] = calls
	}
	return out
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
	var err error
	if req.tools, err = req.toolFields.use(); err != nil {
		return nil, nil, err
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
		msgs[i] = m.templateMessage(c)
	}
	addGen := req.AddGenerationPrompt == nil || *req.AddGenerationPrompt
	ids, err := s.chatPrompt(ctx, msgs, req.tools, addGen, limit)
	if err != nil {
		return nil, nil, err
	}
	p, err := req.params()
	if err != nil {
		return nil, nil, err
	}
	if err := req.tools.constrain(p); err != nil {
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

// chatPrompt renders messages (and the tools, if any) with the chat
// template and tokenizes the prompt, at most limit tokens.
func (s *Server) chatPrompt(ctx context.Context, msgs []map[string]any, u *toolUse, addGen bool, limit int) ([]int32, error) {
	raw, err := json.Marshal(msgs)
	if err != nil {
		return nil, err
	}
	prompt, err := s.cfg.Chat.RenderChat(ChatInput{Messages: raw, Tools: u.templateTools(), AddGenerationPrompt: addGen})
	if errors.Is(err, ErrTemplate) {
		return nil, badRequest("messages", "%v", err)
	}
	if err != nil {
		return nil, err // ErrTemplateBroken: a 500
	}
	return s.encodeText(ctx, prompt, false, limit, "messages")
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
		msg, finish := req.tools.message(q.text, q.finish)
		c := map[string]any{"index": i, "message": msg, "finish_reason": finish, "logprobs": nil}
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
	var streams map[int]*toolStream
	if req.tools != nil && req.tools.mode != toolsNone {
		streams = map[int]*toolStream{}
	}
	s.streamSequences(w, r, g, "chat.completion.chunk", id, req.StreamOptions, first, func(d delta) map[string]any {
		c := map[string]any{"index": d.seq, "delta": map[string]any{}, "logprobs": nil, "finish_reason": nil}
		switch {
		case streams != nil:
			ts := streams[d.seq]
			if ts == nil {
				ts = &toolStream{u: req.tools}
				streams[d.seq] = ts
			}
			var finish string
			if c["delta"], finish = ts.add(d.text, d.finish != ""); finish != "" {
				c["finish_reason"] = finish
			}
		case d.text != "":
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
