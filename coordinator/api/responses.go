package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/tessera-llm/tessera/coordinator/guide"
	"github.com/tessera-llm/tessera/coordinator/scheduler"
)

// responsesRequest is OpenAI's Responses request, the fields Tessera
// serves (as vLLM does), plus guided_regex, guided_choice and guided_json.
type responsesRequest struct {
	Model           string          `json:"model"`
	Input           json.RawMessage `json:"input"`
	Instructions    *string         `json:"instructions"`
	MaxOutputTokens *int            `json:"max_output_tokens"`
	samplingFields
	Stream            bool              `json:"stream"`
	Text              *responsesText    `json:"text"`
	Tools             []responsesTool   `json:"tools"`
	ToolChoice        json.RawMessage   `json:"tool_choice"`
	ParallelToolCalls *bool             `json:"parallel_tool_calls"`
	Metadata          map[string]string `json:"metadata"`
	guidedFields
}

type responsesText struct {
	Format *struct {
		Type   string          `json:"type"`
		Name   string          `json:"name"`
		Schema json.RawMessage `json:"schema"`
		Strict *bool           `json:"strict"`
	} `json:"format"`
}

// responsesTool is a function tool as Responses spells it: flat.
type responsesTool struct {
	Type string `json:"type"`
	functionDef
}

// responsesFields are the request's top-level fields: those served, and
// those accepted only with the value that asks for nothing Tessera lacks
// (nil: any value). Every other field is refused by name.
var responsesFields = map[string]func(json.RawMessage) bool{
	"model": nil, "input": nil, "instructions": nil, "max_output_tokens": nil, "temperature": nil, "top_p": nil,
	"top_k": nil, "min_p": nil, "repetition_penalty": nil, "seed": nil, "stream": nil, "text": nil, "tools": nil,
	"tool_choice": nil, "parallel_tool_calls": nil, "metadata": nil, "user": nil, "safety_identifier": nil,
	"guided_regex": nil, "guided_choice": nil, "guided_json": nil, "stream_options": nil,
	// No state is kept between responses.
	"store":      isJSON("false"),
	"background": isJSON("false"),
	"truncation": isJSON(`"disabled"`),
	"include":    isJSON("[]"),
	// The scheduler has one tier.
	"service_tier": isJSON(`"auto"`, `"default"`),
}

// isJSON accepts null or one of the given (compact) JSON values.
func isJSON(values ...string) func(json.RawMessage) bool {
	return func(raw json.RawMessage) bool {
		var buf bytes.Buffer
		return !present(raw) || json.Compact(&buf, raw) == nil && slices.Contains(values, buf.String())
	}
}

// refusedFields names the fields of body this server does not serve
// (previous_response_id, store: true, reasoning, ...), sorted.
func refusedFields(body []byte) ([]string, error) {
	var top map[string]json.RawMessage
	if err := decodeJSON(body, &top); err != nil {
		return nil, err
	}
	var out []string
	for k, v := range top {
		ok, known := responsesFields[k]
		if !known || ok != nil && !ok(v) {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out, nil
}

// parseResponses reads, decodes and validates a Responses request.
func (s *Server) parseResponses(w http.ResponseWriter, r *http.Request) (*responsesRequest, *toolUse, *genRequest, error) {
	body, err := s.readBody(w, r)
	if err != nil {
		return nil, nil, nil, err
	}
	ctx := r.Context()
	refused, err := refusedFields(body)
	if err != nil {
		return nil, nil, nil, err
	}
	if len(refused) > 0 {
		return nil, nil, nil, badRequest(refused[0], "/v1/responses does not support %s (no stored state, reasoning, background runs or built-in tools; docs/api.md lists what is served)",
			strings.Join(refused, ", "))
	}
	var req responsesRequest
	if err := decodeJSON(body, &req); err != nil {
		return nil, nil, nil, err
	}
	if err := s.checkModel(req.Model); err != nil {
		return nil, nil, nil, err
	}
	if _, err := s.generator(); err != nil {
		return nil, nil, nil, err
	}
	if s.cfg.Tokenizer == nil {
		return nil, nil, nil, badRequest("input", "responses need a tokenizer; this model has no tokenizer.json")
	}
	funcs := make([]functionDef, len(req.Tools))
	for i, t := range req.Tools {
		if t.Type != "function" {
			return nil, nil, nil, badRequest("tools", "tools[%d].type %q is not supported (function only)", i, t.Type)
		}
		funcs[i] = t.functionDef
	}
	u, err := newToolUse(funcs, req.ToolChoice, req.ParallelToolCalls, "tools")
	if err != nil {
		return nil, nil, nil, err
	}
	msgs, err := responsesInput(req.Input, req.Instructions)
	if err != nil {
		return nil, nil, nil, err
	}
	limit, size := s.promptLimit(), 0
	for _, m := range msgs {
		c, _ := m["content"].(string)
		size += len(c)
		if err := checkBytes("input", size, limit); err != nil {
			return nil, nil, nil, err
		}
	}
	ids, err := s.chatPrompt(ctx, msgs, u, true, limit)
	if err != nil {
		return nil, nil, nil, err
	}
	gd, err := req.guided()
	if err != nil {
		return nil, nil, nil, err
	}
	tg, err := req.textFormat()
	if err != nil {
		return nil, nil, nil, err
	}
	if tg != nil {
		if gd != nil {
			return nil, nil, nil, badRequest(gd.field, "at most one of text.format (json) and %s", gd.field)
		}
		gd = tg
	}
	p := &params{MaxTokens: req.MaxOutputTokens, Temperature: req.Temperature, TopP: req.TopP, TopK: req.TopK, MinP: req.MinP,
		RepetitionPenalty: req.RepetitionPenalty, Seed: req.Seed, Stream: req.Stream, Guided: gd}
	if err := u.constrain(p); err != nil {
		return nil, nil, nil, err
	}
	g, err := s.build(p, [][]int32{ids}, 0, 0, "top_logprobs")
	var re *scheduler.RequestError
	if errors.As(err, &re) && re.Field == "max_tokens" {
		// The scheduler's words for what this API calls max_output_tokens.
		err = &scheduler.RequestError{Field: "max_output_tokens", Err: re.Err, Msg: strings.ReplaceAll(re.Msg, "max_tokens", "max_output_tokens")}
	}
	if err != nil {
		return nil, nil, nil, err
	}
	return &req, u, g, nil
}

// textFormat is the constraint text.format states, nil for text.
func (req *responsesRequest) textFormat() (*guided, error) {
	if req.Text == nil || req.Text.Format == nil {
		return nil, nil
	}
	switch f := req.Text.Format; f.Type {
	case "text":
		return nil, nil
	case "json_object":
		return &guided{guide.Spec{Kind: guide.JSONObject}, "text.format"}, nil
	case "json_schema":
		if !present(f.Schema) {
			return nil, badRequest("text.format", "text.format json_schema needs schema")
		}
		return &guided{guide.Spec{Kind: guide.JSONSchema, Schema: f.Schema}, "text.format"}, nil
	default:
		return nil, badRequest("text.format", "text.format.type %q is not one of text, json_object, json_schema", f.Type)
	}
}

// inputItem is one item of a Responses input list: a message, or a
// function call and its output from an earlier turn.
type inputItem struct {
	Type      string          `json:"type"`
	Role      string          `json:"role"`
	Content   json.RawMessage `json:"content"`
	CallID    string          `json:"call_id"`
	Name      string          `json:"name"`
	Arguments string          `json:"arguments"`
	Output    json.RawMessage `json:"output"`
}

// responsesInput turns instructions and input (a string or a list of
// items) into chat messages for the template: instructions first as the
// system message, function_call items as the tool_calls of the assistant
// message before them (or of a new one), function_call_output items as
// tool messages.
func responsesInput(raw json.RawMessage, instructions *string) ([]map[string]any, error) {
	var msgs []map[string]any
	if instructions != nil && *instructions != "" {
		msgs = append(msgs, map[string]any{"role": "system", "content": *instructions})
	}
	var text string
	if json.Unmarshal(raw, &text) == nil {
		return append(msgs, map[string]any{"role": "user", "content": text}), nil
	}
	var items []inputItem
	if err := json.Unmarshal(raw, &items); err != nil || len(items) == 0 {
		return nil, badRequest("input", "input must be a string or a non-empty list of input items")
	}
	// last is the assistant message at the end of msgs, which the
	// function_call items that follow it join; nil when the end is
	// another role.
	type assistant struct {
		content string
		calls   []messageToolCall
	}
	var last *assistant
	for i, it := range items {
		if last != nil && it.Type != "function_call" {
			last = nil
		}
		switch it.Type {
		case "", "message":
			switch it.Role {
			case "system", "developer", "user", "assistant":
			default:
				return nil, badRequest("input", "input[%d].role %q is not one of system, developer, user, assistant", i, it.Role)
			}
			c, err := itemText(it.Content, i)
			if err != nil {
				return nil, err
			}
			msgs = append(msgs, map[string]any{"role": it.Role, "content": c})
			if it.Role == "assistant" {
				last = &assistant{content: c}
			}
		case "function_call":
			c := messageToolCall{ID: it.CallID, Type: "function"}
			c.Function.Name, c.Function.Arguments = it.Name, it.Arguments
			if last == nil {
				last, msgs = &assistant{}, append(msgs, nil)
			}
			last.calls = append(last.calls, c)
			msgs[len(msgs)-1] = chatMessage{Role: "assistant", ToolCalls: last.calls}.templateMessage(last.content)
		case "function_call_output":
			out, err := itemText(it.Output, i)
			if err != nil {
				return nil, err
			}
			msgs = append(msgs, chatMessage{Role: "tool", ToolCallID: it.CallID}.templateMessage(out))
		default:
			return nil, badRequest("input", "input[%d]: items of type %q are not supported (message, function_call, function_call_output)", i, it.Type)
		}
	}
	return msgs, nil
}

// itemText reads an item's content or output: a string, or a list of
// text parts (input_text, output_text) that are joined.
func itemText(raw json.RawMessage, i int) (string, error) {
	if !present(raw) {
		return "", nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", badRequest("input", "input[%d].content must be a string or a list of content parts", i)
	}
	var sb strings.Builder
	for _, p := range parts {
		switch p.Type {
		case "input_text", "output_text", "text":
			sb.WriteString(p.Text)
		default:
			return "", badRequest("input", "input[%d]: content parts of type %q are not supported (input_text and output_text only)", i, p.Type)
		}
	}
	return sb.String(), nil
}

func (s *Server) responses(w http.ResponseWriter, r *http.Request) {
	req, u, g, err := s.parseResponses(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	rs := &response{req: req, id: newID("resp_"), created: unixNow(), model: s.cfg.Model, prompt: len(g.prompts[0])}
	if g.stream {
		s.streamResponse(w, r, rs, u, g)
		return
	}
	seqs, err := s.generateAll(r.Context(), g)
	if err != nil {
		writeError(w, err)
		return
	}
	q := seqs[0]
	text, calls := u.split(q.text)
	if text != "" || len(calls) == 0 {
		rs.output = append(rs.output, messageItem(newID("msg_"), text, "completed"))
	}
	for _, c := range calls {
		rs.output = append(rs.output, callItem(newID("fc_"), c, "completed"))
	}
	rs.generated, rs.finish = len(q.tokens), q.finish
	writeJSON(w, http.StatusOK, rs.object("completed"))
}

// response is one Responses call's state, for the object it answers
// with (and each streamed event's copy).
type response struct {
	req       *responsesRequest
	id, model string
	created   int64
	prompt    int
	generated int
	finish    string
	output    []any
}

// object is the Response object; status is "in_progress" while
// streaming, else it follows from the finish: "incomplete" when
// max_output_tokens cut it short.
func (rs *response) object(status string) map[string]any {
	req := rs.req
	var incomplete any
	if status == "completed" && rs.finish == "length" {
		status, incomplete = "incomplete", map[string]any{"reason": "max_output_tokens"}
	}
	choice := any("auto")
	if present(req.ToolChoice) {
		choice = req.ToolChoice
	}
	format := any(map[string]any{"type": "text"})
	if req.Text != nil && req.Text.Format != nil {
		format = req.Text.Format
	}
	tools := make([]any, len(req.Tools))
	for i, t := range req.Tools {
		tools[i] = map[string]any{"type": "function", "name": t.Name, "description": t.Description, "parameters": parameters(t.functionDef),
			"strict": t.Strict != nil && *t.Strict}
	}
	metadata := req.Metadata
	if metadata == nil {
		metadata = map[string]string{}
	}
	output := rs.output
	if output == nil {
		output = []any{}
	}
	o := map[string]any{"id": rs.id, "object": "response", "created_at": rs.created, "status": status, "model": rs.model,
		"output": output, "error": nil, "incomplete_details": incomplete, "instructions": req.Instructions,
		"max_output_tokens": req.MaxOutputTokens, "temperature": orDefault(req.Temperature, 1), "top_p": orDefault(req.TopP, 1),
		"tools": tools, "tool_choice": choice, "parallel_tool_calls": req.ParallelToolCalls == nil || *req.ParallelToolCalls,
		"text": map[string]any{"format": format}, "metadata": metadata, "store": false, "background": false,
		"truncation": "disabled", "previous_response_id": nil, "reasoning": nil, "usage": nil}
	if status != "in_progress" {
		o["usage"] = map[string]any{"input_tokens": rs.prompt, "output_tokens": rs.generated, "total_tokens": rs.prompt + rs.generated,
			"input_tokens_details": map[string]int{"cached_tokens": 0}, "output_tokens_details": map[string]int{"reasoning_tokens": 0}}
	}
	return o
}

func orDefault(v *float64, def float64) float64 {
	if v == nil {
		return def
	}
	return *v
}

func messageItem(id, text, status string) map[string]any {
	content := []any{}
	if status == "completed" {
		content = []any{outputText(text)}
	}
	return map[string]any{"type": "message", "id": id, "status": status, "role": "assistant", "content": content}
}

func outputText(text string) map[string]any {
	return map[string]any{"type": "output_text", "text": text, "annotations": []any{}, "logprobs": []any{}}
}

func callItem(id string, c toolCall, status string) map[string]any {
	return map[string]any{"type": "function_call", "id": id, "call_id": c.id, "name": c.name, "arguments": c.arguments, "status": status}
}

// streamResponse sends the Responses event sequence. Text and calls come
// from the chat stream's deltas (toolStream), so tool calls are held and
// named-function arguments stream the same way as on chat.
func (s *Server) streamResponse(w http.ResponseWriter, r *http.Request, rs *response, u *toolUse, g *genRequest) {
	hs, cancels, err := s.submitAll(r.Context(), g)
	if err != nil {
		writeError(w, err)
		return
	}
	defer cancels[0]()
	ev := &responseEvents{sse: startSSE(w), rs: rs}
	ev.send("response.created", map[string]any{"response": rs.object("in_progress")})
	ev.send("response.in_progress", map[string]any{"response": rs.object("in_progress")})
	var ts *toolStream
	if u != nil && u.mode != toolsNone {
		ts = &toolStream{u: u}
	}
	var mu sync.Mutex
	failed := false
	q := s.follow(0, g, hs[0], cancels[0], func(d delta) {
		mu.Lock()
		defer mu.Unlock()
		if d.err != nil {
			failed = true
			ev.send("error", map[string]any{"error": errorBody(d.err), "message": d.err.Error()})
			return
		}
		cd := map[string]any{"content": d.text}
		if ts != nil {
			var finish string
			if cd, finish = ts.add(d.text, d.finish != ""); finish != "" {
				rs.finish = finish
			}
		}
		if c, _ := cd["content"].(string); c != "" {
			ev.text(c)
		}
		calls, _ := cd["tool_calls"].([]any)
		for _, c := range calls {
			ev.call(c.(map[string]any))
		}
	})
	if failed {
		return
	}
	ev.finish()
	rs.generated = len(q.tokens)
	if rs.finish == "" || q.finish == "length" {
		rs.finish = q.finish
	}
	done := rs.object("completed")
	kind := "response.completed"
	if done["status"] == "incomplete" {
		kind = "response.incomplete"
	}
	ev.send(kind, map[string]any{"response": done})
}

// responseEvents writes Responses events: "event: <type>" and the data,
// each with the next sequence_number, and opens and closes the output
// items as text and calls arrive.
type responseEvents struct {
	sse *sse
	rs  *response
	seq int
	// cur is the item open now, nil when none.
	cur *openItem
}

// openItem is an output item being streamed: a message's text or a
// call's arguments so far.
type openItem struct {
	index int // in rs.output
	id    string
	call  *toolCall // nil for a message
	buf   strings.Builder
}

func (e *responseEvents) send(kind string, fields map[string]any) {
	fields["type"] = kind
	fields["sequence_number"] = e.seq
	e.seq++
	b, _ := json.Marshal(fields)
	fmt.Fprintf(e.sse.w, "event: %s\ndata: %s\n\n", kind, b)
	e.sse.flush()
}

// open starts an output item, closing the one before.
func (e *responseEvents) open(call *toolCall) *openItem {
	e.closeItem()
	it := &openItem{index: len(e.rs.output), call: call}
	var item map[string]any
	if call == nil {
		it.id = newID("msg_")
		item = messageItem(it.id, "", "in_progress")
	} else {
		it.id = newID("fc_")
		item = callItem(it.id, *call, "in_progress")
	}
	e.rs.output = append(e.rs.output, item)
	e.cur = it
	e.send("response.output_item.added", map[string]any{"output_index": it.index, "item": item})
	if call == nil {
		e.send("response.content_part.added", map[string]any{"item_id": it.id, "output_index": it.index, "content_index": 0, "part": outputText("")})
	}
	return it
}

// text streams message text.
func (e *responseEvents) text(delta string) {
	it := e.cur
	if it == nil || it.call != nil {
		it = e.open(nil)
	}
	it.buf.WriteString(delta)
	e.send("response.output_text.delta", map[string]any{"item_id": it.id, "output_index": it.index, "content_index": 0,
		"delta": delta, "logprobs": []any{}})
}

// call takes one entry of a chat delta's tool_calls: a new call when it
// has an id, else more arguments of the open one.
func (e *responseEvents) call(c map[string]any) {
	fn, _ := c["function"].(map[string]any)
	args, _ := fn["arguments"].(string)
	it := e.cur
	if id, ok := c["id"].(string); ok || it == nil || it.call == nil {
		name, _ := fn["name"].(string)
		it = e.open(&toolCall{id: id, name: name})
	}
	if args == "" {
		return
	}
	it.buf.WriteString(args)
	e.send("response.function_call_arguments.delta", map[string]any{"item_id": it.id, "output_index": it.index, "delta": args})
}

// closeItem ends the open item with its done events.
func (e *responseEvents) closeItem() {
	it := e.cur
	if it == nil {
		return
	}
	e.cur = nil
	var item map[string]any
	if it.call == nil {
		text := it.buf.String()
		e.send("response.output_text.done", map[string]any{"item_id": it.id, "output_index": it.index, "content_index": 0, "text": text, "logprobs": []any{}})
		e.send("response.content_part.done", map[string]any{"item_id": it.id, "output_index": it.index, "content_index": 0, "part": outputText(text)})
		item = messageItem(it.id, text, "completed")
	} else {
		c := *it.call
		c.arguments = it.buf.String()
		e.send("response.function_call_arguments.done", map[string]any{"item_id": it.id, "output_index": it.index, "name": c.name, "arguments": c.arguments})
		item = callItem(it.id, c, "completed")
	}
	e.rs.output[it.index] = item
	e.send("response.output_item.done", map[string]any{"output_index": it.index, "item": item})
}

// finish closes the last item; an output with nothing in it still has
// its (empty) message.
func (e *responseEvents) finish() {
	if len(e.rs.output) == 0 {
		e.open(nil)
	}
	e.closeItem()
}
