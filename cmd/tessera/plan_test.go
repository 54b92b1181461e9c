package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPlanCommand(t *testing.T) {
	llama := filepath.Join(repoRoot, "testdata/golden/llama")
	code, stdout, stderr := runCLI(t, "plan", "--model", llama, "--workers", "8GiB,8GiB,16GiB", "--tp", "3")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	// Heads go by memory: 8 heads over 8/8/16 GiB is 2, 2, 4.
	for _, want := range []string{"pp=1 tp=3", "[0,2)", "[2,4)", "[4,8)"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("plan output lacks %q:\n%s", want, stdout)
		}
	}
	code, stdout, _ = runCLI(t, "plan", "--model", llama, "--workers", "1GiB,1GiB", "--json")
	var p struct {
		Stages []struct {
			Layers [2]int `json:"layers"`
		} `json:"stages"`
	}
	if code != 0 || json.Unmarshal([]byte(stdout), &p) != nil || len(p.Stages) != 2 {
		t.Fatalf("exit %d, want a 2-stage JSON plan:\n%s", code, stdout)
	}
}

func TestPlanErrors(t *testing.T) {
	llama := filepath.Join(repoRoot, "testdata/golden/llama")
	cases := []struct {
		name    string
		args    []string
		mention string
	}{
		{"no workers", []string{"plan", "--model", llama}, "--workers"},
		{"bad size", []string{"plan", "--model", llama, "--workers", "lots"}, "memory size"},
		{"too little memory", []string{"plan", "--model", llama, "--workers", "100KiB,100KiB"}, "memory"},
		{"more ranks than heads", []string{"generate", "--model", llama, "--prompt-ids", "1", "--plan", "tp=9"}, "heads"},
		{"bad plan flag", []string{"generate", "--model", llama, "--prompt-ids", "1", "--plan", "pp=two"}, "pp=N,tp=M"},
		{"unknown arch", []string{"logits", "--model", filepath.Join(repoRoot, "testdata/golden/bert"), "--prompt-ids", "1", "--plan", "tp=2"}, "shardable"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, tc.args...)
			if code == 0 || !strings.Contains(stderr, tc.mention) {
				t.Fatalf("exit %d, stderr %q should mention %q", code, stderr, tc.mention)
			}
		})
	}
}

func TestShardedCommandsMatchUnsharded(t *testing.T) {
	bloom := filepath.Join(repoRoot, "testdata/golden/bloom")
	logits := func(args ...string) [][]float64 {
		code, stdout, stderr := runCLI(t, append([]string{"logits", "--model", bloom, "--prompt-ids", "5,77,300,12", "--json"}, args...)...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		var out struct {
			Logits [][]float64 `json:"logits"`
		}
		if err := json.Unmarshal([]byte(stdout), &out); err != nil {
			t.Fatal(err)
		}
		return out.Logits
	}
	whole := logits()
	planFile := filepath.Join(t.TempDir(), "plan.json")
	_, planJSON, _ := runCLI(t, "plan", "--model", bloom, "--workers", "1GiB,2GiB,1GiB,1GiB", "--pp", "2", "--tp", "2", "--json")
	if err := os.WriteFile(planFile, []byte(planJSON), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, plan := range []string{"pp=3,tp=5", planFile, strings.TrimSpace(planJSON)} {
		sharded := logits("--plan", plan)
		if len(sharded) != len(whole) {
			t.Fatalf("--plan %.20s: %d rows, want %d", plan, len(sharded), len(whole))
		}
		for r := range whole {
			var diff, scale float64
			for i := range whole[r] {
				diff = max(diff, math.Abs(sharded[r][i]-whole[r][i]))
				scale = max(scale, math.Abs(whole[r][i]))
			}
			if diff/scale > 1e-5 {
				t.Errorf("--plan %.20s row %d: relative error %.2e", plan, r, diff/scale)
			}
		}
	}
	code, stdout, stderr := runCLI(t, "generate", "--model", bloom, "--prompt-ids", "5,77,300", "--max-tokens", "8", "--json", "--plan", "pp=2,tp=3")
	_, want, _ := runCLI(t, "generate", "--model", bloom, "--prompt-ids", "5,77,300", "--max-tokens", "8", "--json")
	if code != 0 || stdout != want {
		t.Fatalf("sharded generate (exit %d, %s):\n%s\nunsharded:\n%s", code, stderr, stdout, want)
	}
}
