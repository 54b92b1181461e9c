package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestTokenizeCLI(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(repoRoot, "testdata/golden/tokenizers/golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g map[string]struct {
		Cases []struct {
			Text       string   `json:"text"`
			AddSpecial bool     `json:"add_special_tokens"`
			IDs        []int32  `json:"ids"`
			Tokens     []string `json:"tokens"`
			Offsets    [][2]int `json:"offsets"`
			Decoded    string   `json:"decoded"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(raw, &g); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"bytelevel_bpe", "metaspace_bpe_bytefallback", "wordpiece_bert"} {
		file := filepath.Join(repoRoot, "testdata/golden/tokenizers", name+".json")
		for _, i := range []int{1, 19, 20} { // "Hello world" and "[CLS]我是谁…" with specials, "emoji 🤗🚀…" without
			c := g[name].Cases[i]
			t.Run(name+"/"+c.Text, func(t *testing.T) {
				args := []string{"tokenize", "--tokenizer", file, "--text", c.Text, "--json"}
				if c.AddSpecial {
					args = append(args, "--add-special-tokens")
				}
				code, stdout, stderr := runCLI(t, args...)
				if code != 0 {
					t.Fatalf("exit %d: %s", code, stderr)
				}
				var got struct {
					IDs     []int32  `json:"ids"`
					Tokens  []string `json:"tokens"`
					Offsets [][2]int `json:"offsets"`
				}
				if err := json.Unmarshal([]byte(stdout), &got); err != nil {
					t.Fatalf("%v: %s", err, stdout)
				}
				if !reflect.DeepEqual(got.IDs, c.IDs) || !reflect.DeepEqual(got.Tokens, c.Tokens) || !reflect.DeepEqual(got.Offsets, c.Offsets) {
					t.Errorf("got %+v\nwant ids %v tokens %q offsets %v", got, c.IDs, c.Tokens, c.Offsets)
				}
				code, stdout, stderr = runCLI(t, "detokenize", "--tokenizer", file, "--ids", joinIDs(c.IDs), "--skip-special-tokens")
				if code != 0 || stdout != c.Decoded+"\n" {
					t.Errorf("detokenize: exit %d, %q (stderr %q), want %q", code, stdout, stderr, c.Decoded)
				}
			})
		}
	}
}

func TestTokenizeCLIErrors(t *testing.T) {
	file := filepath.Join(repoRoot, "testdata/golden/tokenizers/wordpiece_bert.json")
	cases := []struct {
		name     string
		args     []string
		code     int
		mentions string
	}{
		{"missing text", []string{"tokenize", "--tokenizer", file}, 2, "--text is required"},
		{"missing ids", []string{"detokenize", "--tokenizer", file}, 2, "--ids is required"},
		{"bad id", []string{"detokenize", "--tokenizer", file, "--ids", "1,x"}, 2, `"x" is not a token id`},
		{"unknown id", []string{"detokenize", "--tokenizer", file, "--ids", "1,99999"}, 1, "unknown token id"},
		{"missing file", []string{"tokenize", "--tokenizer", "/nonexistent/tokenizer.json", "--text", "a"}, 1, "no such file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, c.args...)
			if code != c.code || !strings.Contains(stderr, c.mentions) {
				t.Errorf("exit %d, stderr %q; want exit %d mentioning %q", code, stderr, c.code, c.mentions)
			}
		})
	}
}

func TestTokenizeDefaultsToBundledModel(t *testing.T) {
	dir := filepath.Join(repoRoot, "models/docbloom-3m")
	code, stdout, stderr := runCLI(t, "tokenize", "--tokenizer", dir, "--text", "Return the number of", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if want := `{"ids":[444,272,657,296],"tokens":["Return","Ġthe","Ġnumber","Ġof"],"offsets":[[0,6],[6,10],[10,17],[17,20]]}` + "\n"; stdout != want {
		t.Errorf("stdout %q, want %q", stdout, want)
	}
}
