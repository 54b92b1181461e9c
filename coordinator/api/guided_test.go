package api

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/tessera-llm/tessera/coordinator/scheduler"
	"github.com/tessera-llm/tessera/coordinator/tokenizer"
)

const personSchema = `{"type":"object","properties":{"name":{"type":"string","maxLength":6},` +
	`"role":{"enum":["admin","user"]},"active":{"type":"boolean"},"tags":{"type":"array","items":{"type":"string","maxLength":3},"maxItems":2}},` +
	`"required":["name","role","active"],"additionalProperties":false}`

// Every constrained completion that finishes with "stop" is valid under its
// constraint, greedy or sampled: the fake model's favourite tokens are
// docstring pieces, never JSON or digits.
func TestGuidedCompletions(t *testing.T) {
	ts := newTestServer(t)
	person := compileSchema(t, personSchema)
	matches := func(pattern string) func(string) error {
		re := regexp.MustCompile(`^(?:` + pattern + `)$`)
		return func(s string) error {
			if !re.MatchString(s) {
				return fmt.Errorf("%q does not match %s", s, pattern)
			}
			return nil
		}
	}
	cases := []struct {
		name  string
		field map[string]any
		valid func(string) error
	}{
		{"choice", map[string]any{"guided_choice": []string{"red", "green", "blue"}}, func(s string) error {
			if !slices.Contains([]string{"red", "green", "blue"}, s) {
				return fmt.Errorf("%q is not a choice", s)
			}
			return nil
		}},
		{"regex", map[string]any{"guided_regex": `[0-9]{3}-[a-z]{2}`}, matches(`[0-9]{3}-[a-z]{2}`)},
		{"json_schema", map[string]any{"response_format": map[string]any{"type": "json_schema",
			"json_schema": map[string]any{"name": "person", "schema": json.RawMessage(personSchema), "strict": true}}},
			func(s string) error {
				inst, err := jsonschema.UnmarshalJSON(strings.NewReader(s))
				if err != nil {
					return fmt.Errorf("%q: %w", s, err)
				}
				return person.Validate(inst)
			}},
		{"json_object", map[string]any{"response_format": map[string]any{"type": "json_object"}}, func(s string) error {
			var v map[string]any
			return json.Unmarshal([]byte(s), &v)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			stopped := 0
			for i, sampling := range []map[string]any{{"temperature": 0}, {"temperature": 1, "seed": 5}, {"temperature": 1.5, "top_k": 3, "seed": 11}} {
				body := map[string]any{"prompt": fmt.Sprintf("Parameters %d\n", i), "max_tokens": 64}
				for k, v := range sampling {
					body[k] = v
				}
				for k, v := range tc.field {
					body[k] = v
				}
				st, b := ts.post(t, "/v1/completions", body)
				if st != 200 {
					t.Fatalf("status %d: %v", st, b)
				}
				ch := b["choices"].([]any)[0].(map[string]any)
				text, finish := ch["text"].(string), ch["finish_reason"]
				if finish == "stop" {
					stopped++
					if err := tc.valid(text); err != nil {
						t.Errorf("%v: %v", sampling, err)
					}
				}
			}
			if stopped == 0 {
				t.Errorf("no constrained completion finished within 64 tokens")
			}
		})
	}
}

func TestGuidedChat(t *testing.T) {
	ts := newTestServer(t)
	st, b := ts.post(t, "/v1/chat/completions", map[string]any{"messages": []map[string]any{{"role": "user", "content": "Who?"}},
		"max_tokens": 64, "temperature": 0, "response_format": map[string]any{"type": "json_schema",
			"json_schema": map[string]any{"name": "person", "schema": json.RawMessage(personSchema)}}})
	if st != 200 {
		t.Fatalf("status %d: %v", st, b)
	}
	msg := b["choices"].([]any)[0].(map[string]any)["message"].(map[string]any)
	var p struct {
		Name   string `json:"name"`
		Role   string `json:"role"`
		Active *bool  `json:"active"`
	}
	if err := json.Unmarshal([]byte(msg["content"].(string)), &p); err != nil || p.Active == nil || (p.Role != "admin" && p.Role != "user") {
		t.Fatalf("content %q: %+v, %v", msg["content"], p, err)
	}
}

// Self-consistency over guided_choice votes among the choices, with no
// answer pattern needed.
func TestGuidedChoiceVote(t *testing.T) {
	ts := newTestServer(t)
	st, b := ts.post(t, "/v1/completions", map[string]any{"prompt": "Q: yes or no?\nA:", "max_tokens": 8, "temperature": 1.2, "seed": 3,
		"guided_choice": []string{"yes", "no"}, "self_consistency": map[string]any{"samples": 6}})
	if st != 200 {
		t.Fatalf("status %d: %v", st, b)
	}
	sc := b["self_consistency"].(map[string]any)
	total := 0
	for answer, n := range sc["votes"].(map[string]any) {
		if answer != "yes" && answer != "no" {
			t.Errorf("vote for %q", answer)
		}
		total += int(n.(float64))
	}
	if total != 6 || (sc["answer"] != "yes" && sc["answer"] != "no") {
		t.Fatalf("votes %v, answer %v", sc["votes"], sc["answer"])
	}
}

func TestGuidedRefusals(t *testing.T) {
	ts := newTestServer(t)
	deep := strings.Repeat(`{"type":"array","items":`, 200) + `{}` + strings.Repeat(`}`, 200)
	members, enum := make([]string, 5000), make([]string, 60000)
	for i := range members {
		members[i] = fmt.Sprintf(`"p%d":{"type":"null"}`, i)
	}
	for i := range enum {
		enum[i] = fmt.Sprintf(`"value-%d-xxxxxxxxxxxx"`, i)
	}
	cases := []struct {
		name  string
		field map[string]any
		param string
	}{
		{"invalid regex", map[string]any{"guided_regex": `a(b`}, "guided_regex"},
		{"huge regex", map[string]any{"guided_regex": `((a{100}){100}){100}`}, "guided_regex"},
		{"unsatisfiable schema", map[string]any{"guided_json": json.RawMessage(`{"type":"string","minLength":3,"maxLength":1}`)}, "guided_json"},
		{"unsupported keyword", map[string]any{"guided_json": json.RawMessage(`{"type":"integer","multipleOf":3}`)}, "guided_json"},
		{"deep schema", map[string]any{"guided_json": json.RawMessage(deep)}, "guided_json"},
		{"repeat of repeat", map[string]any{"guided_regex": `a{1000}{1000}`}, "guided_regex"},
		{"wide object", map[string]any{"guided_json": json.RawMessage(`{"properties":{` + strings.Join(members, ",") + `}}`)}, "guided_json"},
		{"huge enum", map[string]any{"response_format": map[string]any{"type": "json_schema",
			"json_schema": map[string]any{"name": "e", "schema": json.RawMessage(`{"enum":[` + strings.Join(enum, ",") + `]}`)}}}, "response_format"},
		{"overlapping oneOf", map[string]any{"guided_json": json.RawMessage(`{"oneOf":[{"type":"string"},{"type":"string","maxLength":2}]}`)}, "guided_json"},
		{"anyOf beside type", map[string]any{"guided_json": json.RawMessage(`{"type":"string","anyOf":[{"type":"integer"},{"type":"string"}]}`)}, "guided_json"},
		{"pattern beside maxLength", map[string]any{"guided_json": json.RawMessage(`{"type":"string","pattern":"^a+$","maxLength":3}`)}, "guided_json"},
		{"two constraints", map[string]any{"guided_regex": "a", "guided_choice": []string{"b"}}, "guided_choice"},
		{"empty choice", map[string]any{"guided_choice": []string{}}, "guided_choice"},
		{"unknown format", map[string]any{"response_format": map[string]any{"type": "yaml"}}, "response_format"},
		{"schema missing", map[string]any{"response_format": map[string]any{"type": "json_schema"}}, "response_format"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := map[string]any{"prompt": "x", "max_tokens": 4}
			for k, v := range tc.field {
				body[k] = v
			}
			start := time.Now()
			st, b := ts.post(t, "/v1/completions", body)
			if st != 400 {
				t.Fatalf("status %d: %v", st, b)
			}
			e := b["error"].(map[string]any)
			if e["param"] != tc.param || e["message"] == "" {
				t.Fatalf("error %v, want param %s", e, tc.param)
			}
			if d := time.Since(start); d > 20*time.Second {
				t.Fatalf("refusing took %v", d) // a bound against hangs, not a speed goal
			}
		})
	}
	// The server still serves.
	if st, b := ts.post(t, "/v1/completions", map[string]any{"prompt": "x", "max_tokens": 2, "guided_choice": []string{"ok"}}); st != 200 {
		t.Fatalf("after refusals: %d %v", st, b)
	}
}

// With a tokenizer whose decoder strips the text's first space (LLaMA's
// Metaspace and Strip), a guided completion keeps the space the
// constraint asked for: the text is the bytes the guide checked.
func TestGuidedTextKeepsLeadingSpace(t *testing.T) {
	tk, err := tokenizer.Load("../../testdata/golden/llama/tokenizer.json")
	if err != nil {
		t.Fatal(err)
	}
	ts := newTestServer(t, func(c *Config, _ *scheduler.Config) { c.Tokenizer = HF(tk) })
	const pattern = ` [a-z]{2}( [a-z]{2})?`
	re := regexp.MustCompile(`^(?:` + pattern + `)$`)
	for _, stream := range []bool{false, true} {
		body := map[string]any{"prompt": "x", "max_tokens": 8, "temperature": 0, "guided_regex": pattern}
		var text string
		if stream {
			for _, c := range ts.stream(t, "/v1/completions", body) {
				for _, ch := range choices(c) {
					s, _ := ch["text"].(string)
					text += s
				}
			}
		} else {
			st, b := ts.post(t, "/v1/completions", body)
			if st != 200 {
				t.Fatalf("status %d: %v", st, b)
			}
			text = choices(b)[0]["text"].(string)
		}
		if !re.MatchString(text) {
			t.Errorf("stream %v: %q does not match %q", stream, text, pattern)
		}
	}
}

// A constraint the vocabulary cannot finish, found only while generating
// (the LLaMA fixture spells no "é": its byte tokens are special), is the
// request's fault: 400, not a server error.
func TestGuidedUnspellableMidway(t *testing.T) {
	tk, err := tokenizer.Load("../../testdata/golden/llama/tokenizer.json")
	if err != nil {
		t.Fatal(err)
	}
	ts := newTestServer(t, func(c *Config, _ *scheduler.Config) { c.Tokenizer = HF(tk) })
	st, b := ts.post(t, "/v1/completions", map[string]any{"prompt": "x", "max_tokens": 8, "guided_regex": `ab?é`})
	if st != 400 || !strings.Contains(errMessage(b), "constraint") {
		t.Fatalf("status %d: %v", st, b)
	}
}
