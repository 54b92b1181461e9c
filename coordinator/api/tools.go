package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	"github.com/tessera-llm/tessera/coordinator/guide"
)

// toolFields are chat's tool-calling fields.
type toolFields struct {
	// Tools are kept as sent: templates see every field, in order.
	Tools             []json.RawMessage `json:"tools"`
	ToolChoice        json.RawMessage   `json:"tool_choice"`
	ParallelToolCalls *bool             `json:"parallel_tool_calls"`
}

// chatTool is one entry of chat's "tools".
type chatTool struct {
	Type     string       `json:"type"`
	Function *functionDef `json:"function"`
}

// functionDef is a function the model may call.
type functionDef struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters,omitempty"`
	Strict      *bool           `json:"strict,omitempty"`
}

// toolMode is what tool_choice asks of the model.
type toolMode uint8

const (
	// toolsNone: the tools are listed but output is text.
	toolsNone toolMode = iota
	// toolsAuto: output is text or tool calls, parsed from the text.
	toolsAuto
	// toolsRequired: output is one or more calls, generated under a
	// schema of every function's name and parameters.
	toolsRequired
	// toolsNamed: output is the arguments of one named function,
	// generated under its parameters schema.
	toolsNamed
)

// toolUse is a request's validated tools and tool_choice.
type toolUse struct {
	funcs []functionDef
	// template is the tools as the template gets them (nil: built from
	// funcs).
	template json.RawMessage
	mode     toolMode
	named    string
	parallel bool
}

// functionName is OpenAI's rule for function names.
var functionName = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)

// use validates chat's tools and tool_choice; nil when the request
// has no tools.
func (f *toolFields) use() (*toolUse, error) {
	funcs := make([]functionDef, len(f.Tools))
	for i, raw := range f.Tools {
		var t chatTool
		if err := json.Unmarshal(raw, &t); err != nil {
			return nil, badRequest("tools", "tools[%d] is not a tool object: %v", i, err)
		}
		if t.Type != "function" {
			return nil, badRequest("tools", "tools[%d].type %q is not supported (function only)", i, t.Type)
		}
		if t.Function == nil {
			return nil, badRequest("tools", "tools[%d].function is required", i)
		}
		funcs[i] = *t.Function
	}
	u, err := newToolUse(funcs, f.ToolChoice, f.ParallelToolCalls, "tools")
	if u != nil {
		u.template, _ = json.Marshal(f.Tools)
	}
	return u, err
}

// newToolUse checks the functions (named param in errors) and reads
// tool_choice in either API's shape: "none", "auto", "required", or a
// named function as chat ({"type": "function", "function": {"name"}}) or
// responses ({"type": "function", "name"}) spell it.
func newToolUse(funcs []functionDef, choice json.RawMessage, parallel *bool, param string) (*toolUse, error) {
	u := &toolUse{funcs: funcs, mode: toolsAuto, parallel: parallel == nil || *parallel}
	seen := map[string]bool{}
	for i, fn := range funcs {
		if !functionName.MatchString(fn.Name) {
			return nil, badRequest(param, "%s[%d]: function name %q must be 1 to 64 of a-z, A-Z, 0-9, _ and -", param, i, fn.Name)
		}
		if seen[fn.Name] {
			return nil, badRequest(param, "%s[%d]: function %q is defined twice", param, i, fn.Name)
		}
		seen[fn.Name] = true
		if present(fn.Parameters) && !bytes.HasPrefix(bytes.TrimSpace(fn.Parameters), []byte("{")) {
			return nil, badRequest(param, "%s[%d]: parameters of %q must be a JSON Schema object", param, i, fn.Name)
		}
	}
	if present(choice) {
		var s string
		var named struct {
			Type     string `json:"type"`
			Name     string `json:"name"`
			Function *struct {
				Name string `json:"name"`
			} `json:"function"`
		}
		switch {
		case json.Unmarshal(choice, &s) == nil:
			switch s {
			case "none":
				u.mode = toolsNone
			case "auto":
			case "required":
				u.mode = toolsRequired
			default:
				return nil, badRequest("tool_choice", "tool_choice %q is not one of none, auto, required, or a named function", s)
			}
		case json.Unmarshal(choice, &named) == nil:
			if named.Type != "function" {
				return nil, badRequest("tool_choice", "tool_choice of type %q is not supported (function only)", named.Type)
			}
			if named.Function != nil {
				named.Name = named.Function.Name
			}
			if !seen[named.Name] {
				return nil, badRequest("tool_choice", "tool_choice names function %q, which is not in %s", named.Name, param)
			}
			u.mode, u.named = toolsNamed, named.Name
		default:
			return nil, badRequest("tool_choice", "tool_choice must be a string or a function object")
		}
	}
	if len(funcs) == 0 {
		if u.mode == toolsRequired {
			return nil, badRequest("tool_choice", "tool_choice \"required\" needs %s", param)
		}
		return nil, nil
	}
	return u, nil
}

// templateTools is the tools as chat templates read them: OpenAI's chat
// shape, {"type": "function", "function": {...}}.
func (u *toolUse) templateTools() json.RawMessage {
	if u == nil {
		return nil
	}
	if u.template != nil {
		return u.template
	}
	list := make([]chatTool, len(u.funcs))
	for i := range u.funcs {
		list[i] = chatTool{Type: "function", Function: &u.funcs[i]}
	}
	b, _ := json.Marshal(list)
	return b
}

// constrains reports whether output is generated under a schema.
func (u *toolUse) constrains() bool {
	return u != nil && (u.mode == toolsRequired || u.mode == toolsNamed)
}

// guided is the constraint a required or named tool_choice puts on the
// output: a named function's arguments under its parameters, or (for
// required) a call {"name", "arguments"} of any function, as a list of
// one or more (up to maxParallelCalls) when parallel_tool_calls allows. The parameters' $defs
// (and definitions) move to the root, where their "#/$defs/..." refs
// point.
func (u *toolUse) guided() (*guided, error) {
	field := "tool_choice"
	if u.mode == toolsNamed {
		for _, fn := range u.funcs {
			if fn.Name == u.named {
				return &guided{guide.Spec{Kind: guide.JSONSchema, Schema: parameters(fn)}, field}, nil
			}
		}
	}
	defs := map[string]map[string]json.RawMessage{}
	calls := make([]string, len(u.funcs))
	for i, fn := range u.funcs {
		params, err := hoistDefs(parameters(fn), defs)
		if err != nil {
			return nil, badRequest("tools", "function %q: %v", fn.Name, err)
		}
		name, _ := json.Marshal(fn.Name)
		calls[i] = `{"type":"object","properties":{"name":{"const":` + string(name) + `},"arguments":` + string(params) +
			`},"required":["name","arguments"]}`
	}
	call := calls[0]
	if len(calls) > 1 {
		call = `{"anyOf":[` + strings.Join(calls, ",") + `]}`
	}
	root := call
	if u.parallel {
		root = fmt.Sprintf(`{"type":"array","items":%s,"minItems":1,"maxItems":%d}`, call, maxParallelCalls)
	}
	if len(defs) > 0 {
		b, _ := json.Marshal(defs)
		root = `{"allOf":[` + root + `],` + string(b[1:])
	}
	return &guided{guide.Spec{Kind: guide.JSONSchema, Schema: json.RawMessage(root)}, field}, nil
}

// maxParallelCalls bounds the calls of one required turn: a model that
// writes JSON only because the mask makes it would otherwise go on adding
// calls until max_tokens, and the list would never close.
const maxParallelCalls = 8

// parameters is a function's parameters schema; none takes any object.
func parameters(fn functionDef) json.RawMessage {
	if present(fn.Parameters) {
		return fn.Parameters
	}
	return json.RawMessage(`{"type":"object"}`)
}

// hoistDefs moves the $defs and definitions of schema into defs and
// returns the schema without them; one name defined two ways is an
// error.
func hoistDefs(schema json.RawMessage, defs map[string]map[string]json.RawMessage) (json.RawMessage, error) {
	var top map[string]json.RawMessage
	if json.Unmarshal(schema, &top) != nil {
		return nil, fmt.Errorf("parameters is not a JSON object")
	}
	moved := false
	for _, kw := range []string{"$defs", "definitions"} {
		raw, ok := top[kw]
		if !ok {
			continue
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, fmt.Errorf("parameters.%s is not an object", kw)
		}
		if defs[kw] == nil {
			defs[kw] = map[string]json.RawMessage{}
		}
		for name, d := range m {
			if old, ok := defs[kw][name]; ok && !bytes.Equal(old, d) {
				return nil, fmt.Errorf("parameters.%s.%s is defined differently by another function", kw, name)
			}
			defs[kw][name] = d
		}
		delete(top, kw)
		moved = true
	}
	if !moved {
		return schema, nil
	}
	// The remaining keywords keep their values as written (property
	// order is the generation order); only the top level is re-encoded.
	b, _ := json.Marshal(top)
	return b, nil
}

// toolCall is a parsed or generated function call.
type toolCall struct {
	id, name, arguments string
}

func (c toolCall) chatJSON(index int, withIndex bool) map[string]any {
	m := map[string]any{"id": c.id, "type": "function", "function": map[string]any{"name": c.name, "arguments": c.arguments}}
	if withIndex {
		m["index"] = index
	}
	return m
}

// Markers of the tool-call formats parsed in auto mode.
const (
	hermesOpen  = "<tool_call>"
	hermesClose = "</tool_call>"
	mistralMark = "[TOOL_CALLS]"
	pythonTag   = "<|python_tag|>"
)

var toolMarkers = []string{hermesOpen, mistralMark, pythonTag}

// extract reads the tool calls in a sequence's text. at is where they
// begin (the text before is content); no calls: at is len(text). In
// named mode the whole text is the arguments; otherwise the formats are
// Hermes/Qwen (<tool_call>{...}</tool_call>, repeated), Mistral
// ([TOOL_CALLS][{...}, ...]) and Llama 3.x (the whole output a JSON call
// object, or a list of them, optionally after <|python_tag|>), where a
// call is {"name", "arguments" or "parameters"} naming a known function.
// Without parallel_tool_calls only the first call is kept.
func (u *toolUse) extract(text string) (int, []toolCall) {
	none := len(text)
	switch u.mode {
	case toolsNone:
		return none, nil
	case toolsNamed:
		args, ok := compactObject(json.RawMessage(text))
		if !ok {
			return none, nil
		}
		return 0, []toolCall{{id: newID("call_"), name: u.named, arguments: args}}
	}
	var at int
	var bodies []string
	switch {
	case strings.Contains(text, hermesOpen):
		at = strings.Index(text, hermesOpen)
		for rest := text[at:]; ; {
			body, ok := strings.CutPrefix(strings.TrimSpace(rest), hermesOpen)
			if !ok {
				if strings.TrimSpace(rest) != "" {
					return none, nil
				}
				break
			}
			body, rest, _ = strings.Cut(body, hermesClose)
			bodies = append(bodies, body)
		}
	case strings.Contains(text, mistralMark):
		at = strings.Index(text, mistralMark)
		bodies = []string{text[at+len(mistralMark):]}
	default:
		t := strings.TrimSpace(text)
		t = strings.TrimSpace(strings.TrimPrefix(t, pythonTag))
		if !strings.HasPrefix(t, "{") && !strings.HasPrefix(t, "[") {
			return none, nil
		}
		bodies = []string{t}
	}
	var calls []toolCall
	for _, b := range bodies {
		cs, ok := u.decodeCalls(b)
		if !ok {
			return none, nil
		}
		calls = append(calls, cs...)
	}
	if len(calls) == 0 {
		return none, nil
	}
	if !u.parallel {
		calls = calls[:1]
	}
	return at, calls
}

// decodeCalls reads a call object or a list of them.
func (u *toolUse) decodeCalls(body string) ([]toolCall, bool) {
	body = strings.TrimSpace(body)
	var raws []json.RawMessage
	if strings.HasPrefix(body, "[") {
		if json.Unmarshal([]byte(body), &raws) != nil {
			return nil, false
		}
	} else {
		raws = []json.RawMessage{json.RawMessage(body)}
	}
	calls := make([]toolCall, 0, len(raws))
	for _, r := range raws {
		var c struct {
			Name       string          `json:"name"`
			Arguments  json.RawMessage `json:"arguments"`
			Parameters json.RawMessage `json:"parameters"`
		}
		if json.Unmarshal(r, &c) != nil || !u.known(c.Name) {
			return nil, false
		}
		raw := c.Arguments
		if !present(raw) {
			raw = c.Parameters
		}
		var s string
		if json.Unmarshal(raw, &s) == nil {
			raw = json.RawMessage(s) // arguments written as a JSON string
		}
		args, ok := compactObject(raw)
		if !present(c.Arguments) && !present(c.Parameters) {
			args, ok = "{}", true
		}
		if !ok {
			return nil, false
		}
		calls = append(calls, toolCall{id: newID("call_"), name: c.Name, arguments: args})
	}
	return calls, true
}

func (u *toolUse) known(name string) bool {
	for _, fn := range u.funcs {
		if fn.Name == name {
			return true
		}
	}
	return false
}

// compactObject is raw as compact JSON if it is one JSON object.
func compactObject(raw json.RawMessage) (string, bool) {
	raw = bytes.TrimSpace(raw)
	if !bytes.HasPrefix(raw, []byte("{")) {
		return "", false
	}
	var buf bytes.Buffer
	if json.Compact(&buf, raw) != nil {
		return "", false
	}
	return buf.String(), true
}

// message is the assistant message of a finished sequence: content
// and tool calls, and the finish reason ("tool_calls" when it called).
func (u *toolUse) message(text, finish string) (map[string]any, string) {
	content, calls := u.split(text)
	msg := map[string]any{"role": "assistant", "content": content}
	if len(calls) == 0 {
		return msg, finish
	}
	list := make([]any, len(calls))
	for i, c := range calls {
		list[i] = c.chatJSON(i, false)
	}
	msg["tool_calls"] = list
	if content == "" {
		msg["content"] = nil
	}
	return msg, "tool_calls"
}

// split parts a finished sequence's text into the content before its
// tool calls (trimmed) and the calls; text is all content when it calls
// nothing.
func (u *toolUse) split(text string) (string, []toolCall) {
	if u == nil {
		return text, nil
	}
	at, calls := u.extract(text)
	if len(calls) == 0 {
		return text, nil
	}
	return strings.TrimSpace(text[:at]), calls
}

// toolStream turns one streamed sequence's text into chat deltas (for
// every tool_choice but none, which streams plain content).
// Content passes through until it may begin a tool call; from there the
// text is held to the end and sent as whole calls. A named function's
// arguments stream as they are generated.
type toolStream struct {
	u    *toolUse
	text strings.Builder
	sent int // bytes of text sent as content (or arguments)
	hold bool
	id   string
}

// add takes the next text of the sequence (final on its last delta) and
// returns the delta to send and, on the last, the finish reason to give
// ("" to keep the sequence's own).
func (ts *toolStream) add(piece string, final bool) (map[string]any, string) {
	ts.text.WriteString(piece)
	full := ts.text.String()
	if ts.u.mode == toolsNamed {
		d := map[string]any{}
		if piece != "" || ts.id == "" {
			call := map[string]any{"index": 0, "function": map[string]any{"arguments": piece}}
			if ts.id == "" {
				ts.id = newID("call_")
				call["id"], call["type"] = ts.id, "function"
				call["function"] = map[string]any{"name": ts.u.named, "arguments": piece}
			}
			d["tool_calls"] = []any{call}
		}
		if final {
			if _, ok := compactObject(json.RawMessage(full)); ok {
				return d, "tool_calls"
			}
		}
		return d, ""
	}
	if final {
		d := map[string]any{}
		at, calls := ts.u.extract(full)
		if rest := full[ts.sent:max(at, ts.sent)]; rest != "" {
			d["content"] = rest
		}
		if len(calls) == 0 {
			return d, ""
		}
		list := make([]any, len(calls))
		for i, c := range calls {
			list[i] = c.chatJSON(i, true)
		}
		d["tool_calls"] = list
		return d, "tool_calls"
	}
	if ts.u.mode == toolsRequired || ts.hold {
		return map[string]any{}, ""
	}
	// auto: a Llama-style JSON call is the whole output, so text that
	// starts like JSON is held (and leading space, until the first
	// character decides); other text goes until a marker may begin.
	if t := strings.TrimLeft(full, " \t\r\n"); t == "" || strings.HasPrefix(t, "{") || strings.HasPrefix(t, "[") {
		ts.hold = t != ""
		return map[string]any{}, ""
	}
	for _, m := range toolMarkers {
		if i := strings.Index(full[ts.sent:], m); i >= 0 {
			ts.hold = true
			return ts.content(full[:ts.sent+i]), ""
		}
	}
	return ts.content(full[:len(full)-heldSuffix(full, toolMarkers)]), ""
}

// content sends upto[ts.sent:] as content.
func (ts *toolStream) content(upto string) map[string]any {
	if len(upto) <= ts.sent {
		return map[string]any{}
	}
	d := map[string]any{"content": upto[ts.sent:]}
	ts.sent = len(upto)
	return d
}

// constrain puts a required or named tool_choice's constraint on p; it
// cannot combine with another one.
func (u *toolUse) constrain(p *params) error {
	if !u.constrains() {
		return nil
	}
	if p.Guided != nil {
		return badRequest("tool_choice", "tool_choice %s constrains the output and cannot combine with %s", u.choiceName(), p.Guided.field)
	}
	g, err := u.guided()
	if err != nil {
		return err
	}
	p.Guided = g
	return nil
}

func (u *toolUse) choiceName() string {
	if u.mode == toolsNamed {
		return fmt.Sprintf("function %q", u.named)
	}
	return `"required"`
}
