package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tessera-llm/tessera/worker/model/modeltest"
)

const repoRoot = "../.."

// runCLI runs the binary's entry point in-process.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestGenerateMatchesGolden(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(repoRoot, "models/docbloom-3m/golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g struct {
		Cases []struct {
			PromptIDs []int32 `json:"prompt_ids"`
			GreedyIDs []int32 `json:"greedy_ids"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(raw, &g); err != nil {
		t.Fatal(err)
	}
	c := g.Cases[0]
	code, stdout, stderr := runCLI(t, "generate", "--model", filepath.Join(repoRoot, "models/docbloom-3m"),
		"--prompt-ids", joinIDs(c.PromptIDs), "--max-tokens", "32", "--ignore-eos", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if stderr != "" {
		t.Errorf("--json should keep stderr quiet, got %q", stderr)
	}
	var got struct {
		PromptIDs    []int32 `json:"prompt_ids"`
		GeneratedIDs []int32 `json:"generated_ids"`
	}
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, stdout)
	}
	if joinIDs(got.PromptIDs) != joinIDs(c.PromptIDs) || joinIDs(got.GeneratedIDs) != joinIDs(c.GreedyIDs) {
		t.Fatalf("got %+v\nwant generated %v", got, c.GreedyIDs)
	}
}

func TestSeededSamplingIsReproducible(t *testing.T) {
	args := []string{"generate", "--model", filepath.Join(repoRoot, "models/docbloom-3m"), "--prompt-ids", "712,487",
		"--max-tokens", "12", "--temperature", "0.9", "--top-k", "50", "--top-p", "0.95", "--json"}
	sample := func(seed string) string {
		code, stdout, stderr := runCLI(t, append(args, "--seed", seed)...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		return stdout
	}
	if a, b := sample("11"), sample("11"); a != b {
		t.Fatalf("same seed, different output:\n%s%s", a, b)
	}
}

func TestLogitsJSON(t *testing.T) {
	code, stdout, stderr := runCLI(t, "logits", "--model", filepath.Join(repoRoot, "testdata/golden/bloom"),
		"--prompt-ids", "1,2", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var got struct {
		Logits [][]float32 `json:"logits"`
	}
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Logits) != 2 || len(got.Logits[0]) != 512 {
		t.Fatalf("logits shape %d×%d, want 2×512", len(got.Logits), len(got.Logits[0]))
	}
}

func TestBadInput(t *testing.T) {
	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, "config.json"), []byte(`{"model_type":"mamba"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	docbloom := filepath.Join(repoRoot, "models/docbloom-3m")
	truncated := t.TempDir()
	cfg, _ := os.ReadFile(filepath.Join(repoRoot, "testdata/golden/bloom/config.json"))
	st, _ := os.ReadFile(filepath.Join(repoRoot, "testdata/golden/bloom/model.safetensors"))
	if err := os.WriteFile(filepath.Join(truncated, "config.json"), cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(truncated, "model.safetensors"), st[:len(st)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	tooLong := strings.TrimSuffix(strings.Repeat("1,", 257), ",")
	cases := []struct {
		name     string
		args     []string
		wantCode int
		mention  string
	}{
		{"unknown command", []string{"frobnicate"}, 2, "unknown command"},
		{"no prompt", []string{"generate", "--model", docbloom}, 2, "--prompt-ids"},
		{"bad id", []string{"generate", "--model", docbloom, "--prompt-ids", "1,x"}, 2, `"x"`},
		{"negative id", []string{"generate", "--model", docbloom, "--prompt-ids", "-4"}, 2, "-4"},
		{"id past vocab", []string{"generate", "--model", docbloom, "--prompt-ids", "4096"}, 1, "vocabulary"},
		{"negative max tokens", []string{"generate", "--model", docbloom, "--prompt-ids", "1", "--max-tokens", "-1"}, 2, "max-tokens"},
		{"bad temperature", []string{"generate", "--model", docbloom, "--prompt-ids", "1", "--temperature", "-2"}, 2, "temperature"},
		{"missing model", []string{"generate", "--model", filepath.Join(bad, "nope"), "--prompt-ids", "1"}, 1, "config"},
		{"unknown arch", []string{"logits", "--model", bad, "--prompt-ids", "1"}, 1, "mamba"},
		{"truncated weights", []string{"logits", "--model", truncated, "--prompt-ids", "1"}, 1, "model.safetensors"},
		{"prompt past max positions", []string{"logits", "--model", filepath.Join(repoRoot, "testdata/golden/llama"), "--prompt-ids", tooLong}, 1, "context length"},
		{"unknown device", []string{"logits", "--model", docbloom, "--prompt-ids", "1", "--device", "tpu"}, 2, "tpu"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, tc.args...)
			if code != tc.wantCode || !strings.Contains(stderr, tc.mention) {
				t.Fatalf("exit %d (want %d), stderr %q should mention %q", code, tc.wantCode, stderr, tc.mention)
			}
		})
	}
}

func TestHelpExplainsFlags(t *testing.T) {
	code, _, stderr := runCLI(t, "generate", "--help")
	if code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	for _, flag := range []string{"-model", "-prompt-ids", "-max-tokens", "-temperature", "-top-k", "-top-p", "-seed", "-json"} {
		if !strings.Contains(stderr, flag) {
			t.Errorf("generate --help does not mention %s", flag)
		}
	}
}

// --prompt tokenizes with the model folder's tokenizer.json and the output
// carries the decoded text: docbloom's golden prompts give its golden ids
// and text.
func TestGenerateFromText(t *testing.T) {
	g := modeltest.LoadGolden(t, filepath.Join(repoRoot, "models/docbloom-3m"))
	for _, c := range g.Cases[:2] {
		t.Run(c.Prompt, func(t *testing.T) {
			code, stdout, stderr := runCLI(t, "generate", "--model", filepath.Join(repoRoot, "models/docbloom-3m"),
				"--prompt", c.Prompt, "--max-tokens", fmt.Sprint(len(c.GreedyIDs)), "--ignore-eos", "--json")
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			var got struct {
				PromptIDs    []int32 `json:"prompt_ids"`
				GeneratedIDs []int32 `json:"generated_ids"`
				Text         string  `json:"text"`
			}
			if err := json.Unmarshal([]byte(stdout), &got); err != nil {
				t.Fatal(err)
			}
			if joinIDs(got.PromptIDs) != joinIDs(c.PromptIDs) || joinIDs(got.GeneratedIDs) != joinIDs(c.GreedyIDs) || got.Text != c.GreedyText {
				t.Errorf("got %+v\nwant prompt %v, ids %v, text %q", got, c.PromptIDs, c.GreedyIDs, c.GreedyText)
			}
		})
	}
	code, _, stderr := runCLI(t, "generate", "--model", filepath.Join(repoRoot, "models/docbloom-3m"), "--prompt", "x", "--prompt-ids", "1")
	if code != 2 || !strings.Contains(stderr, "not both") {
		t.Errorf("--prompt with --prompt-ids: exit %d, %q", code, stderr)
	}
}
