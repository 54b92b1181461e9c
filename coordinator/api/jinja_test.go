package api

import (
	"errors"
	"testing"
	"time"
)

// TestJinjaExtensions checks what chatEnvironment adds to gonja: tojson as
// Python's json.dumps(ensure_ascii=False) writes it (the wants are
// python3's output), objects in their JSON key order through items(), keys()
// and the items filter, and Python's negative list indexes.
func TestJinjaExtensions(t *testing.T) {
	cases := []struct {
		name, src, vars, want string
	}{
		{"tojson", `{{ v | tojson }}`,
			`{"v": {"b": [1, 2.5, {}], "a": "é\"\\\n\t\u0001<&>'", "c": [], "d": null, "e": true, "f": 1e16, "g": 1e-5, "h": 0.0001, "i": -0.0, "j": 123456789012345678.0}}`,
			`{"b": [1, 2.5, {}], "a": "é\"\\\n\t\u0001<&>'", "c": [], "d": null, "e": true, "f": 1e+16, "g": 1e-05, "h": 0.0001, "i": -0.0, "j": 1.2345678901234568e+17}`},
		{"tojson indent", `{{ v | tojson(indent=2) }}`, `{"v": {"b": [1, {"x": []}], "a": {}}}`,
			"{\n  \"b\": [\n    1,\n    {\n      \"x\": []\n    }\n  ],\n  \"a\": {}\n}"},
		{"tojson of a template dict", `{{ {"k": [1, "x"]} | tojson }}`, `{}`, `{"k": [1, "x"]}`},
		{"ordered items", `{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}|{{ d | items | list | length }}|{{ d.keys() | join(",") }}|{{ d.values() | join(",") }}`,
			`{"d": {"z": 1, "a": 2, "m": 3}}`, "z=1;a=2;m=3;|3|z,a,m|1,2,3"},
		{"items filter order", `{% for k, v in d | items %}{{ k }}{% endfor %}`, `{"d": {"z": 1, "a": 2}}`, "za"},
		{"negative index", `{{ xs[-1] }} {{ (xs | list)[-1] }} {{ ys[1:][-2] }} {{ ys[-3] }}`, `{"xs": [7], "ys": [1, 2, 3]}`, "7 7 2 1"},
		{"out of range stays undefined", `{{ xs[-2] is defined }} {{ xs[1] is defined }}`, `{"xs": [7]}`, "False False"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// These templates read variables a chat has none of, so they
			// skip the load-time check on a sample conversation.
			tpl, err := parseChatTemplate(c.src, "", "")
			if err != nil {
				t.Fatal(err)
			}
			got, err := tpl.RenderChat(ChatInput{Messages: []byte(`[]`), Vars: []byte(c.vars)})
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Errorf("got  %q\nwant %q", got, c.want)
			}
		})
	}
}

// TestRenderChatErrors: bad input is an ErrTemplate naming the problem; a
// template that fails on every input is refused at load.
func TestRenderChatErrors(t *testing.T) {
	if _, err := NewChatTemplate(`{{ messages | tojson(indent="x") }}`, "", ""); !errors.Is(err, ErrTemplateBroken) {
		t.Errorf("a template whose tojson call is wrong: err = %v, want ErrTemplateBroken at load", err)
	}
	tpl, err := NewChatTemplate(`{{ messages | tojson }}`, "", "")
	if err != nil {
		t.Fatal(err)
	}
	for name, in := range map[string]ChatInput{
		"messages not JSON":  {Messages: []byte(`[{`)},
		"trailing data":      {Messages: []byte(`[] []`)},
		"vars not an object": {Messages: []byte(`[]`), Vars: []byte(`[1]`)},
		"tools not JSON":     {Messages: []byte(`[]`), Tools: []byte(`{"a"`)},
	} {
		if _, err := tpl.RenderChat(in); !errors.Is(err, ErrTemplate) {
			t.Errorf("%s: err = %v, want ErrTemplate", name, err)
		}
	}
}

// TestStrftime: the wants are python3's datetime.strftime of the same time.
func TestStrftime(t *testing.T) {
	at := time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC)
	layout := "Date 1 2 Jan: %d %b %Y %% %B %H:%M:%S %y %a %A %I %p %j %m %q %"
	want := "Date 1 2 Jan: 02 Jan 2026 % January 15:04:05 26 Fri Friday 03 PM 002 01 %q %"
	if got := strftime(at, layout); got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}
