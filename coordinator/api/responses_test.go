package api

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// responseEvent is one SSE event of a streamed response.
type responseEvent struct {
	kind string
	data map[string]any
}

func (ts *testServer) responseEvents(t *testing.T, body map[string]any) []responseEvent {
	t.Helper()
	body["stream"] = true
	raw, _ := json.Marshal(body)
	resp, err := http.Post(ts.URL+"/v1/responses", "application/json", bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("stream: %d", resp.StatusCode)
	}
	var out []responseEvent
	kind := ""
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if k, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
			kind = k
		}
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			var m map[string]any
			if err := json.Unmarshal([]byte(d), &m); err != nil {
				t.Fatalf("event data %q: %v", d, err)
			}
			if m["type"] != kind {
				t.Errorf("event %q carries type %v", kind, m["type"])
			}
			out = append(out, responseEvent{kind, m})
		}
	}
	for i, e := range out {
		if n, _ := e.data["sequence_number"].(float64); int(n) != i {
			t.Errorf("event %d (%s) has sequence_number %v", i, e.kind, e.data["sequence_number"])
		}
	}
	return out
}

// outputText joins a Response object's output_text parts.
func responseText(resp map[string]any) string {
	var sb strings.Builder
	for _, it := range resp["output"].([]any) {
		item := it.(map[string]any)
		if item["type"] != "message" {
			continue
		}
		for _, c := range item["content"].([]any) {
			sb.WriteString(c.(map[string]any)["text"].(string))
		}
	}
	return sb.String()
}

// A response is the chat completion of its instructions and input; the
// stream sends the Responses events in order and adds up to the same.
func TestResponses(t *testing.T) {
	ts := newTestServer(t)
	st, chat := ts.post(t, "/v1/chat/completions", map[string]any{"messages": []map[string]any{
		{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Parameters?"}}, "max_tokens": 12, "temperature": 0})
	if st != 200 {
		t.Fatalf("chat %d %v", st, chat)
	}
	want := choices(chat)[0]["message"].(map[string]any)["content"].(string)
	req := map[string]any{"instructions": "Be brief.", "input": "Parameters?", "max_output_tokens": 12, "temperature": 0}
	st, resp := ts.post(t, "/v1/responses", req)
	if st != 200 {
		t.Fatalf("%d %v", st, resp)
	}
	u := resp["usage"].(map[string]any)
	if resp["object"] != "response" || !strings.HasPrefix(resp["id"].(string), "resp_") || responseText(resp) != want ||
		resp["status"] != "incomplete" || resp["incomplete_details"].(map[string]any)["reason"] != "max_output_tokens" || u["output_tokens"] != 12.0 {
		t.Fatalf("response %v, want text %q", resp, want)
	}
	// The same as a list of input items.
	st, items := ts.post(t, "/v1/responses", map[string]any{"input": []map[string]any{{"role": "system", "content": "Be brief."},
		{"type": "message", "role": "user", "content": []map[string]any{{"type": "input_text", "text": "Parameters?"}}}}, "max_output_tokens": 12, "temperature": 0})
	if st != 200 || responseText(items) != want {
		t.Fatalf("input items: %d %v", st, items)
	}

	events := ts.responseEvents(t, req)
	var kinds []string
	var deltas strings.Builder
	for _, e := range events {
		if len(kinds) == 0 || kinds[len(kinds)-1] != e.kind {
			kinds = append(kinds, e.kind)
		}
		if e.kind == "response.output_text.delta" {
			deltas.WriteString(e.data["delta"].(string))
		}
	}
	wantKinds := []string{"response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
		"response.output_text.delta", "response.output_text.done", "response.content_part.done", "response.output_item.done", "response.incomplete"}
	if !slices.Equal(kinds, wantKinds) {
		t.Fatalf("events %v\nwant   %v", kinds, wantKinds)
	}
	last := events[len(events)-1].data["response"].(map[string]any)
	done := events[len(events)-4].data["text"]
	if deltas.String() != want || done != want || responseText(last) != want || last["usage"].(map[string]any)["output_tokens"] != 12.0 {
		t.Fatalf("streamed %q, done %q, final %v; want %q", deltas.String(), done, last, want)
	}
}

// text.format and tools constrain a response as they do chat.
func TestResponsesStructured(t *testing.T) {
	ts := newTestServer(t)
	weather := compileSchema(t, weatherParams)
	st, resp := ts.post(t, "/v1/responses", map[string]any{"input": "Weather?", "max_output_tokens": 200, "temperature": 0,
		"text": map[string]any{"format": map[string]any{"type": "json_schema", "name": "w", "schema": json.RawMessage(weatherParams)}}})
	if st != 200 {
		t.Fatalf("%d %v", st, resp)
	}
	if err := validJSON(weather, responseText(resp)); err != nil {
		t.Fatal(err)
	}
	tools := []map[string]any{{"type": "function", "name": "get_weather", "parameters": json.RawMessage(weatherParams)}}
	req := map[string]any{"input": "Weather?", "max_output_tokens": 512, "temperature": 0, "tools": tools, "tool_choice": "required"}
	st, resp = ts.post(t, "/v1/responses", req)
	if st != 200 || resp["status"] != "completed" {
		t.Fatalf("%d %v", st, resp)
	}
	var calls []map[string]any
	for _, it := range resp["output"].([]any) {
		if item := it.(map[string]any); item["type"] == "function_call" {
			calls = append(calls, item)
		}
	}
	if len(calls) == 0 {
		t.Fatalf("no function_call in %v", resp["output"])
	}
	for _, c := range calls {
		if c["name"] != "get_weather" || !strings.HasPrefix(c["call_id"].(string), "call_") {
			t.Errorf("call %v", c)
		}
		if err := validJSON(weather, c["arguments"].(string)); err != nil {
			t.Error(err)
		}
	}
	// Streamed: one item per call, arguments in done events.
	var streamed []string
	for _, e := range ts.responseEvents(t, req) {
		if e.kind == "response.function_call_arguments.done" {
			streamed = append(streamed, e.data["arguments"].(string))
		}
	}
	if len(streamed) != len(calls) {
		t.Fatalf("streamed %d calls, want %d", len(streamed), len(calls))
	}
	for i, a := range streamed {
		if a != calls[i]["arguments"] {
			t.Errorf("streamed arguments %q, want %q", a, calls[i]["arguments"])
		}
	}
	// A conversation that carries a call and its output renders.
	st, resp = ts.post(t, "/v1/responses", map[string]any{"max_output_tokens": 4, "tools": tools, "input": []map[string]any{
		{"role": "user", "content": "Weather?"},
		{"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": `{"city":"Oslo","unit":"c"}`},
		{"type": "function_call_output", "call_id": "call_1", "output": "3 C"}}})
	if st != 200 {
		t.Fatalf("with a call in the input: %d %v", st, resp)
	}
}

func TestResponsesRefusals(t *testing.T) {
	ts := newTestServer(t)
	cases := []struct {
		name   string
		fields map[string]any
		param  string
		says   string
	}{
		{"previous_response_id", map[string]any{"previous_response_id": "resp_1"}, "previous_response_id", "previous_response_id"},
		{"store", map[string]any{"store": true}, "store", "store"},
		{"several", map[string]any{"reasoning": map[string]any{"effort": "low"}, "background": true, "include": []string{"x"}}, "background", "background, include, reasoning"},
		{"unknown field", map[string]any{"frobnicate": 1}, "frobnicate", "frobnicate"},
		{"no input", map[string]any{}, "input", "input"},
		{"image input", map[string]any{"input": []map[string]any{{"role": "user", "content": []map[string]any{{"type": "input_image"}}}}}, "input", "input_image"},
		{"item type", map[string]any{"input": []map[string]any{{"type": "reasoning"}}}, "input", "reasoning"},
		{"built-in tool", map[string]any{"tools": []map[string]any{{"type": "web_search"}}}, "tools", "web_search"},
		{"named tool not there", map[string]any{"tools": []map[string]any{{"type": "function", "name": "f"}}, "tool_choice": map[string]any{"type": "function", "name": "g"}}, "tool_choice", `"g"`},
		{"format type", map[string]any{"text": map[string]any{"format": map[string]any{"type": "yaml"}}}, "text.format", "yaml"},
		{"format without schema", map[string]any{"text": map[string]any{"format": map[string]any{"type": "json_schema", "name": "x"}}}, "text.format", "needs schema"},
		{"format and guided", map[string]any{"text": map[string]any{"format": map[string]any{"type": "json_object"}}, "guided_regex": "a"}, "guided_regex", "text.format"},
		{"too long", map[string]any{"max_output_tokens": 5000}, "max_output_tokens", "max_output_tokens"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := map[string]any{"input": "x", "max_output_tokens": 4}
			if tc.name == "no input" {
				delete(body, "input")
			}
			for k, v := range tc.fields {
				body[k] = v
			}
			ts.refused(t, "/v1/responses", body, tc.param, tc.says)
		})
	}
	// The values that ask for nothing unsupported pass.
	if st, b := ts.post(t, "/v1/responses", map[string]any{"input": "x", "max_output_tokens": 2, "store": false, "truncation": "disabled",
		"service_tier": "auto", "metadata": map[string]string{"k": "v"}}); st != 200 || b["metadata"].(map[string]any)["k"] != "v" {
		t.Fatalf("%d %v", st, b)
	}
}

// Input items become the chat messages a template expects: calls join
// the assistant message they follow, outputs are tool messages.
func TestResponsesInput(t *testing.T) {
	instructions := "Be brief."
	cases := []struct {
		name  string
		input string
		want  string
	}{
		{"string", `"Hi"`, `[{"content":"Be brief.","role":"system"},{"content":"Hi","role":"user"}]`},
		{"calls after an assistant message", `[{"role": "user", "content": "Weather?"},
			{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
			{"type": "function_call", "call_id": "c1", "name": "w", "arguments": "{\"city\": \"Oslo\"}"},
			{"type": "function_call", "call_id": "c2", "name": "w", "arguments": "{\"city\": \"Rome\"}"},
			{"type": "function_call_output", "call_id": "c1", "output": "3"},
			{"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "25"}]}]`,
			`[{"content":"Be brief.","role":"system"},{"content":"Weather?","role":"user"},` +
				`{"content":"Checking.","role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"w","arguments":{"city":"Oslo"}}},{"id":"c2","type":"function","function":{"name":"w","arguments":{"city":"Rome"}}}]},` +
				`{"content":"3","role":"tool","tool_call_id":"c1"},{"content":"25","role":"tool","tool_call_id":"c2"}]`},
		{"calls after a tool output start a new message", `[{"role": "user", "content": "Go"},
			{"type": "function_call", "call_id": "c1", "name": "w", "arguments": "{}"},
			{"type": "function_call_output", "call_id": "c1", "output": "x"},
			{"type": "function_call", "call_id": "c2", "name": "w", "arguments": "not json"}]`,
			`[{"content":"Be brief.","role":"system"},{"content":"Go","role":"user"},` +
				`{"content":"","role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"w","arguments":{}}}]},` +
				`{"content":"x","role":"tool","tool_call_id":"c1"},` +
				`{"content":"","role":"assistant","tool_calls":[{"id":"c2","type":"function","function":{"name":"w","arguments":"not json"}}]}]`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			msgs, err := responsesInput(json.RawMessage(tc.input), &instructions)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := json.Marshal(msgs)
			if string(got) != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}
