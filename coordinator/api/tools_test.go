package api

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/tessera-llm/tessera/coordinator/scheduler"
)

const weatherParams = `{"type":"object","properties":{"city":{"type":"string","maxLength":8},"unit":{"enum":["c","f"]}},"required":["city","unit"]}`

var weatherTools = []map[string]any{
	{"type": "function", "function": map[string]any{"name": "get_weather", "description": "Weather in a city.", "parameters": json.RawMessage(weatherParams)}},
	{"type": "function", "function": map[string]any{"name": "get_time", "parameters": json.RawMessage(`{"type":"object","properties":{"zone":{"enum":["utc","cet"]}},"required":["zone"]}`)}},
}

// compileSchema is a JSON Schema validator for doc.
func compileSchema(t *testing.T, doc string) *jsonschema.Schema {
	t.Helper()
	inst, err := jsonschema.UnmarshalJSON(strings.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("schema.json", inst); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("schema.json")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// refused posts body and expects a 400 on param whose message says says.
func (ts *testServer) refused(t *testing.T, path string, body map[string]any, param, says string) {
	t.Helper()
	st, b := ts.post(t, path, body)
	e, _ := b["error"].(map[string]any)
	if st != 400 || e["param"] != param || !strings.Contains(errMessage(b), says) {
		t.Fatalf("%d %v, want 400 on %s saying %q", st, b, param, says)
	}
}

// validJSON says why text is not a JSON instance of schema.
func validJSON(schema *jsonschema.Schema, text string) error {
	inst, err := jsonschema.UnmarshalJSON(strings.NewReader(text))
	if err != nil {
		return fmt.Errorf("%q: %w", text, err)
	}
	if err := schema.Validate(inst); err != nil {
		return fmt.Errorf("%q: %w", text, err)
	}
	return nil
}

// The formats auto mode reads calls from, and text that must stay text.
func TestExtractToolCalls(t *testing.T) {
	funcs := []functionDef{{Name: "get_weather"}, {Name: "get_time"}}
	type call struct{ name, args string }
	cases := []struct {
		name     string
		text     string
		parallel bool
		content  string
		calls    []call
	}{
		{"plain text", "It is sunny.", true, "It is sunny.", nil},
		{"hermes", `<tool_call>
{"name": "get_weather", "arguments": {"city": "Oslo", "unit": "c"}}
</tool_call>`, true, "", []call{{"get_weather", `{"city":"Oslo","unit":"c"}`}}},
		{"hermes after text, two calls", `Let me look. <tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>
<tool_call>{"name": "get_time", "arguments": {"zone": "cet"}}</tool_call>`, true, "Let me look. ",
			[]call{{"get_weather", `{"city":"Oslo"}`}, {"get_time", `{"zone":"cet"}`}}},
		{"hermes, parallel off keeps the first", `<tool_call>{"name": "get_weather", "arguments": {}}</tool_call><tool_call>{"name": "get_time", "arguments": {}}</tool_call>`,
			false, "", []call{{"get_weather", `{}`}}},
		{"hermes unclosed at the end", `<tool_call>{"name": "get_time", "arguments": {"zone": "utc"}}`, true, "", []call{{"get_time", `{"zone":"utc"}`}}},
		{"hermes with text after", `<tool_call>{"name": "get_time", "arguments": {}}</tool_call> and more`, true, `<tool_call>{"name": "get_time", "arguments": {}}</tool_call> and more`, nil},
		{"mistral", `[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Rome", "unit": "f"}}, {"name": "get_time", "arguments": {"zone": "cet"}}]`, true, "",
			[]call{{"get_weather", `{"city":"Rome","unit":"f"}`}, {"get_time", `{"zone":"cet"}`}}},
		{"llama json", ` {"name": "get_weather", "parameters": {"city": "Lima", "unit": "c"}}`, true, "", []call{{"get_weather", `{"city":"Lima","unit":"c"}`}}},
		{"llama python_tag", `<|python_tag|>{"name": "get_time", "parameters": {"zone": "utc"}}`, true, "", []call{{"get_time", `{"zone":"utc"}`}}},
		{"llama list", `[{"name": "get_time", "parameters": {"zone": "utc"}}]`, true, "", []call{{"get_time", `{"zone":"utc"}`}}},
		{"arguments as a JSON string", `{"name": "get_time", "arguments": "{\"zone\": \"utc\"}"}`, true, "", []call{{"get_time", `{"zone":"utc"}`}}},
		{"unknown function", `{"name": "rm_rf", "arguments": {}}`, true, `{"name": "rm_rf", "arguments": {}}`, nil},
		{"arguments not an object", `{"name": "get_time", "arguments": [1]}`, true, `{"name": "get_time", "arguments": [1]}`, nil},
		{"json that is no call", `{"answer": 42}`, true, `{"answer": 42}`, nil},
		{"broken json", `<tool_call>{"name": "get_time", "arguments": {</tool_call>`, true, `<tool_call>{"name": "get_time", "arguments": {</tool_call>`, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u := &toolUse{funcs: funcs, mode: toolsAuto, parallel: tc.parallel}
			at, calls := u.extract(tc.text)
			if got := tc.text[:at]; got != tc.content {
				t.Errorf("content %q, want %q", got, tc.content)
			}
			if len(calls) != len(tc.calls) {
				t.Fatalf("calls %+v, want %+v", calls, tc.calls)
			}
			for i, c := range calls {
				if c.name != tc.calls[i].name || c.arguments != tc.calls[i].args || !strings.HasPrefix(c.id, "call_") {
					t.Errorf("call %d: %+v, want %+v", i, c, tc.calls[i])
				}
			}
		})
	}
}

func TestToolRefusals(t *testing.T) {
	ts := newTestServer(t)
	msgs := []map[string]any{{"role": "user", "content": "Weather?"}}
	cases := []struct {
		name   string
		fields map[string]any
		param  string
		says   string
	}{
		{"unknown tool_choice", map[string]any{"tools": weatherTools, "tool_choice": "always"}, "tool_choice", `"always"`},
		{"named function not in tools", map[string]any{"tools": weatherTools, "tool_choice": map[string]any{"type": "function", "function": map[string]any{"name": "get_moon"}}}, "tool_choice", "get_moon"},
		{"tool_choice of another type", map[string]any{"tools": weatherTools, "tool_choice": map[string]any{"type": "file_search"}}, "tool_choice", "file_search"},
		{"required without tools", map[string]any{"tool_choice": "required"}, "tool_choice", "needs tools"},
		{"tool of another type", map[string]any{"tools": []map[string]any{{"type": "retrieval"}}}, "tools", "retrieval"},
		{"bad function name", map[string]any{"tools": []map[string]any{{"type": "function", "function": map[string]any{"name": "get weather"}}}}, "tools", "get weather"},
		{"duplicate function", map[string]any{"tools": []any{weatherTools[0], weatherTools[0]}}, "tools", "twice"},
		{"parameters not an object", map[string]any{"tools": []map[string]any{{"type": "function", "function": map[string]any{"name": "f", "parameters": []int{1}}}}}, "tools", "JSON Schema object"},
		{"required and response_format", map[string]any{"tools": weatherTools, "tool_choice": "required", "response_format": map[string]any{"type": "json_object"}}, "tool_choice", "response_format"},
		{"unsatisfiable parameters", map[string]any{"tools": []map[string]any{{"type": "function", "function": map[string]any{"name": "f",
			"parameters": json.RawMessage(`{"type":"object","properties":{"a":{"type":"string","minLength":5,"maxLength":2}},"required":["a"]}`)}}}, "tool_choice": "required"}, "tool_choice", "satisfied"},
		{"$defs defined two ways", map[string]any{"tools": []map[string]any{
			{"type": "function", "function": map[string]any{"name": "f", "parameters": json.RawMessage(`{"$defs":{"x":{"type":"string"}},"type":"object"}`)}},
			{"type": "function", "function": map[string]any{"name": "g", "parameters": json.RawMessage(`{"$defs":{"x":{"type":"integer"}},"type":"object"}`)}}},
			"tool_choice": "required"}, "tools", "defined differently"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := map[string]any{"messages": msgs, "max_tokens": 4}
			for k, v := range tc.fields {
				body[k] = v
			}
			ts.refused(t, "/v1/chat/completions", body, tc.param, tc.says)
		})
	}
}

// required and named tool_choice generate calls whose arguments hold
// under the function's schema, although the fake model favours docstring
// pieces; streamed deltas add up to the same calls.
func TestForcedToolCalls(t *testing.T) {
	ts := newTestServer(t)
	weather := compileSchema(t, weatherParams)
	msgs := []map[string]any{{"role": "user", "content": "Weather in Oslo?"}}
	named := map[string]any{"type": "function", "function": map[string]any{"name": "get_weather"}}
	cases := []struct {
		name     string
		choice   any
		parallel bool
	}{
		{"named", named, true},
		{"required", "required", true},
		{"required, not parallel", "required", false},
	}
	for _, tc := range cases {
		for _, sampling := range []map[string]any{{"temperature": 0}, {"temperature": 1, "seed": 7}} {
			t.Run(tc.name, func(t *testing.T) {
				body := map[string]any{"messages": msgs, "max_tokens": 512, "tools": weatherTools, "tool_choice": tc.choice, "parallel_tool_calls": tc.parallel}
				for k, v := range sampling {
					body[k] = v
				}
				st, b := ts.post(t, "/v1/chat/completions", body)
				if st != 200 {
					t.Fatalf("%d %v", st, b)
				}
				ch := choices(b)[0]
				msg := ch["message"].(map[string]any)
				calls, _ := msg["tool_calls"].([]any)
				if ch["finish_reason"] != "tool_calls" || len(calls) == 0 || msg["content"] != nil {
					t.Fatalf("choice %v", ch)
				}
				if !tc.parallel && len(calls) != 1 {
					t.Errorf("parallel_tool_calls false gave %d calls", len(calls))
				}
				for _, c := range calls {
					fn := c.(map[string]any)["function"].(map[string]any)
					args := fn["arguments"].(string)
					switch fn["name"] {
					case "get_weather":
						if err := validJSON(weather, args); err != nil {
							t.Error(err)
						}
					case "get_time":
						if tc.choice == "required" {
							var a struct{ Zone string }
							if json.Unmarshal([]byte(args), &a) != nil || (a.Zone != "utc" && a.Zone != "cet") {
								t.Errorf("get_time arguments %q", args)
							}
							continue
						}
						fallthrough
					default:
						t.Errorf("called %v", fn["name"])
					}
				}

				// The stream: the same calls, as OpenAI's deltas.
				chunks := ts.stream(t, "/v1/chat/completions", body)
				type acc struct{ id, name, args string }
				var got []acc
				finish := ""
				for _, c := range chunks {
					for _, x := range choices(c) {
						if f, ok := x["finish_reason"].(string); ok {
							finish = f
						}
						d, _ := x["delta"].(map[string]any)
						if s, ok := d["content"].(string); ok && s != "" {
							t.Errorf("content delta %q in a forced call", s)
						}
						tcs, _ := d["tool_calls"].([]any)
						for _, y := range tcs {
							m := y.(map[string]any)
							i := int(m["index"].(float64))
							if i == len(got) {
								got = append(got, acc{})
							}
							if id, ok := m["id"].(string); ok {
								got[i].id = id
							}
							fn := m["function"].(map[string]any)
							if n, ok := fn["name"].(string); ok {
								got[i].name = n
							}
							got[i].args += fn["arguments"].(string)
						}
					}
				}
				if finish != "tool_calls" || len(got) != len(calls) {
					t.Fatalf("stream: finish %q, calls %+v; want %d calls", finish, got, len(calls))
				}
				for i, g := range got {
					fn := calls[i].(map[string]any)["function"].(map[string]any)
					var a, b any
					_ = json.Unmarshal([]byte(g.args), &a)
					_ = json.Unmarshal([]byte(fn["arguments"].(string)), &b)
					if g.name != fn["name"] || !strings.HasPrefix(g.id, "call_") || !jsonEqual(a, b) {
						t.Errorf("streamed call %d %+v, want %v", i, g, fn)
					}
				}
			})
		}
	}
}

// Parameters that use $defs keep working inside the required-call schema,
// where their $defs move to the root.
func TestRequiredToolCallDefs(t *testing.T) {
	ts := newTestServer(t)
	params := `{"$defs":{"unit":{"enum":["c","f"]}},"type":"object","properties":{"unit":{"$ref":"#/$defs/unit"}},"required":["unit"]}`
	tools := []map[string]any{{"type": "function", "function": map[string]any{"name": "temp", "parameters": json.RawMessage(params)}},
		{"type": "function", "function": map[string]any{"name": "other", "parameters": json.RawMessage(`{"definitions":{"u":{"const":1}},"$defs":{"unit":{"enum":["c","f"]}},"type":"object","properties":{"n":{"$ref":"#/definitions/u"}},"required":["n"]}`)}}}
	st, b := ts.post(t, "/v1/chat/completions", map[string]any{"messages": []map[string]any{{"role": "user", "content": "Temp?"}},
		"max_tokens": 300, "temperature": 0, "tools": tools, "tool_choice": "required", "parallel_tool_calls": false})
	if st != 200 {
		t.Fatalf("%d %v", st, b)
	}
	ch := choices(b)[0]
	calls, _ := ch["message"].(map[string]any)["tool_calls"].([]any)
	if ch["finish_reason"] != "tool_calls" || len(calls) != 1 {
		t.Fatalf("choice %v", ch)
	}
	fn := calls[0].(map[string]any)["function"].(map[string]any)
	want := map[string]string{"temp": `^\{"unit":"[cf]"\}$`, "other": `^\{"n":1\}$`}[fn["name"].(string)]
	if want == "" || !regexp.MustCompile(want).MatchString(fn["arguments"].(string)) {
		t.Errorf("call %v", fn)
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return a != nil && string(x) == string(y)
}

// In auto mode a stream sends content until a call may begin, holds the
// call, and sends it whole at the end with finish_reason tool_calls.
func TestToolStreamAuto(t *testing.T) {
	funcs := []functionDef{{Name: "get_time"}}
	cases := []struct {
		name    string
		pieces  []string
		content string
		call    string
	}{
		{"text", []string{"It is ", "noon <tool", " no."}, "It is noon <tool no.", ""},
		{"hermes after text", []string{"Checking", ". <tool_", `call>{"name": "get_time", "arguments": {"zone":`, ` "utc"}}</tool_call>`},
			"Checking. ", `{"zone":"utc"}`},
		{"llama json", []string{" ", `{"name": "get_time",`, ` "parameters": {}}`}, "", `{}`},
		{"json that is no call", []string{`{"a":`, ` 1}`}, `{"a": 1}`, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ts := &toolStream{u: &toolUse{funcs: funcs, mode: toolsAuto, parallel: true}}
			var content strings.Builder
			var args, finish string
			for i, p := range tc.pieces {
				d, f := ts.add(p, i == len(tc.pieces)-1)
				if s, ok := d["content"].(string); ok {
					if strings.Contains(s, "<tool") && tc.call != "" {
						t.Errorf("content delta %q shows the call's marker", s)
					}
					content.WriteString(s)
				}
				if calls, ok := d["tool_calls"].([]any); ok {
					args = calls[0].(map[string]any)["function"].(map[string]any)["arguments"].(string)
				}
				finish = f
			}
			if content.String() != tc.content || args != tc.call {
				t.Errorf("content %q call %q, want %q and %q", content.String(), args, tc.content, tc.call)
			}
			if (tc.call != "") != (finish == "tool_calls") {
				t.Errorf("finish %q", finish)
			}
		})
	}
}

// The history's tool calls and tool results reach the template, and the
// default template lists the tools.
func TestToolMessagesReachTemplate(t *testing.T) {
	tpl, err := NewChatTemplate(DefaultChatTemplate, "", "")
	if err != nil {
		t.Fatal(err)
	}
	var req chatRequest
	if err := json.Unmarshal([]byte(`{"messages": [{"role": "user", "content": "Time?"},
		{"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_time", "arguments": "{\"zone\": \"utc\", \"a\": 1}"}}]},
		{"role": "tool", "tool_call_id": "call_1", "content": "12:00"}],
		"tools": [{"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}]}`), &req); err != nil {
		t.Fatal(err)
	}
	u, err := req.toolFields.use()
	if err != nil {
		t.Fatal(err)
	}
	msgs := make([]map[string]any, len(req.Messages))
	for i, m := range req.Messages {
		c, _ := m.content(i)
		msgs[i] = m.templateMessage(c)
	}
	raw, _ := json.Marshal(msgs)
	got, err := tpl.RenderChat(ChatInput{Messages: raw, Tools: u.templateTools(), AddGenerationPrompt: true})
	if err != nil {
		t.Fatal(err)
	}
	want := "tools:\n{\"name\": \"get_time\", \"parameters\": {\"type\": \"object\"}}\n\nuser: Time?\n\nassistant: \n" +
		"<tool_call>{\"name\": \"get_time\", \"arguments\": {\"zone\": \"utc\", \"a\": 1}}</tool_call>\n\ntool: 12:00\n\nassistant:"
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

// A chat request in OpenAI's wire shape (arguments as JSON strings,
// content null beside tool calls) reaches published templates as
// transformers passes it: the prompt is the reference render's.
func TestChatToolsThroughPublishedTemplates(t *testing.T) {
	fx := loadTemplateFixtures(t)
	checked := 0
	for _, c := range fx.spec.Conversations {
		var msgs []map[string]any
		if err := json.Unmarshal(c.Messages, &msgs); err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(msgs, func(m map[string]any) bool { return m["tool_calls"] != nil }) {
			continue
		}
		// The wire shape: arguments are JSON text, absent content is null.
		for _, m := range msgs {
			calls, _ := m["tool_calls"].([]any)
			for _, x := range calls {
				fn := x.(map[string]any)["function"].(map[string]any)
				b, _ := json.Marshal(fn["arguments"])
				fn["arguments"] = string(b)
			}
			if _, ok := m["content"]; !ok {
				m["content"] = nil
			}
		}
		for _, r := range fx.ref.Renders {
			if r.Conversation != c.Name || r.Prompt == nil {
				continue
			}
			t.Run(r.Template+"/"+c.Name, func(t *testing.T) {
				tpl := fx.template(t, r.Template)
				ts := newTestServer(t, func(c *Config, _ *scheduler.Config) { c.Chat = tpl })
				body, _ := json.Marshal(map[string]any{"messages": msgs, "tools": fx.spec.Tools, "add_generation_prompt": c.AddGen, "max_tokens": 1})
				_, g, err := ts.api.parseChat(context.Background(), body)
				if err != nil {
					t.Fatal(err)
				}
				want, _ := ts.api.cfg.Tokenizer.Encode(*r.Prompt, false)
				if !slices.Equal(g.prompts[0], want) {
					t.Errorf("prompt differs from the reference render\n got %q\nwant %q", ts.api.text(g.prompts[0]), *r.Prompt)
				}
			})
			checked++
		}
	}
	if checked < 6 {
		t.Fatalf("checked %d renders", checked)
	}
}

// With tool_choice none or auto the tools are in the prompt and the
// output is free text; the fake model writes no call, so it stays
// content.
func TestToolChoiceNoneAndAuto(t *testing.T) {
	ts := newTestServer(t)
	msgs := []map[string]any{{"role": "user", "content": "Weather?"}}
	_, plain := ts.post(t, "/v1/chat/completions", map[string]any{"messages": msgs, "max_tokens": 8, "temperature": 0})
	bare := plain["usage"].(map[string]any)["prompt_tokens"].(float64)
	for _, choice := range []any{"none", "auto", nil} {
		body := map[string]any{"messages": msgs, "max_tokens": 8, "temperature": 0, "tools": weatherTools}
		if choice != nil {
			body["tool_choice"] = choice
		}
		st, b := ts.post(t, "/v1/chat/completions", body)
		if st != 200 {
			t.Fatalf("%v: %d %v", choice, st, b)
		}
		ch := choices(b)[0]
		msg := ch["message"].(map[string]any)
		if c, _ := msg["content"].(string); c == "" || msg["tool_calls"] != nil || ch["finish_reason"] != "length" {
			t.Errorf("%v: %v", choice, ch)
		}
		if n := b["usage"].(map[string]any)["prompt_tokens"].(float64); n <= bare+20 {
			t.Errorf("%v: the prompt has %v tokens, %v without tools: the tools are not listed", choice, n, bare)
		}
	}
}
