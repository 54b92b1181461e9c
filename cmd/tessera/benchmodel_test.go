package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tessera-llm/tessera/worker/model/modelbench"
	"github.com/tessera-llm/tessera/worker/weights"
)

func TestBenchModelCLI(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "llama")
	code, stdout, stderr := runCLI(t, "bench-model", "--model", dir, "--random-llama", "64,2,4,2,96,300,f32",
		"--prompt", "9", "--gen", "5", "--threads", "2", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var rep modelbench.Report
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("%v in %q", err, stdout)
	}
	// 2 layers of q,k,v,o (64·64·2 + 64·32·2) and gate/up/down (3·64·96),
	// two norms each, the final norm and lm_head (300·64), 4 bytes each.
	want := int64(4 * (2*(2*64*64+2*64*32+3*64*96+2*64) + 64 + 300*64))
	if rep.WeightBytes != want || rep.Weights != "F32" || rep.Threads != 2 || rep.Prompt != 9 || rep.Gen != 5 {
		t.Fatalf("report %+v, want weight_bytes %d, 2 threads, 9 prompt and 5 gen tokens", rep, want)
	}
	if rep.PromptTokPerS <= 0 || rep.DecodeTokPerS <= 0 || rep.WeightGBPerSec <= 0 {
		t.Fatalf("report %+v: rates must be positive", rep)
	}

	// --batch: one decode rate per batch size, in order.
	code, stdout, stderr = runCLI(t, "bench-model", "--model", dir, "--prompt", "4", "--gen", "2", "--batch", "1,3", "--json")
	if code != 0 {
		t.Fatalf("--batch: exit %d: %s", code, stderr)
	}
	rep = modelbench.Report{}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("%v in %q", err, stdout)
	}
	if len(rep.BatchDecode) != 2 || rep.BatchDecode[0].Batch != 1 || rep.BatchDecode[1].Batch != 3 ||
		rep.BatchDecode[0].TokensPerS <= 0 || rep.BatchDecode[1].TokensPerS <= 0 {
		t.Fatalf("--batch 1,3 gave %+v, want positive rates for batches 1 and 3", rep.BatchDecode)
	}

	// Plain text on an existing folder (the one just written, no --random-llama).
	code, stdout, stderr = runCLI(t, "bench-model", "--model", dir, "--prompt", "4", "--gen", "2")
	if code != 0 || !strings.Contains(stdout, "decode") || !strings.Contains(stdout, "GB/s of weights") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}

	// --quantize q8: the matrices stream 1 byte per weight and a 2-byte
	// scale per 32 (k=64: 68 bytes a row, k=96: 102); the f32 norms stay.
	code, stdout, stderr = runCLI(t, "bench-model", "--model", dir, "--prompt", "4", "--gen", "2", "--quantize", "q8", "--json")
	if code != 0 {
		t.Fatalf("q8: exit %d: %s", code, stderr)
	}
	rep = modelbench.Report{}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("%v in %q", err, stdout)
	}
	wantQ8 := int64(2*((2*64+2*32+2*96)*68+64*102+4*2*64) + 4*64 + 300*68)
	if rep.Weights != "Q8_0" || rep.WeightBytes != wantQ8 || rep.DecodeTokPerS <= 0 {
		t.Fatalf("q8 report %+v, want weights Q8_0 and weight_bytes %d", rep, wantQ8)
	}

	// Any causal folder: ChatGLM's prompt must end with [gMASK] <bos>, which
	// bench-model's synthetic prompt does for it.
	glm := filepath.Join(repoRoot, "testdata/golden/chatglm")
	if code, _, stderr := runCLI(t, "bench-model", "--model", glm, "--prompt", "8", "--gen", "2", "--quantize", "q8"); code != 0 {
		t.Fatalf("chatglm: exit %d: %s", code, stderr)
	}

	// --shards: the same weights as the single file, over files and an index
	// (the 8B benchmark's layout); --write-only stops after writing.
	sharded := filepath.Join(t.TempDir(), "sharded")
	if code, _, stderr := runCLI(t, "bench-model", "--model", sharded, "--random-llama", "64,2,4,2,96,300,f32", "--shards", "3", "--write-only"); code != 0 {
		t.Fatalf("--shards 3: exit %d: %s", code, stderr)
	}
	files, _ := filepath.Glob(filepath.Join(sharded, "model-*-of-00003.safetensors"))
	if _, err := os.Stat(filepath.Join(sharded, weights.IndexFileName)); err != nil || len(files) != 3 {
		t.Fatalf("--shards 3 wrote %v (index: %v), want 3 files and an index", files, err)
	}
	one, err := weights.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	three, err := weights.Open(sharded)
	if err != nil {
		t.Fatal(err)
	}
	defer three.Close()
	if !slices.Equal(one.Names(), three.Names()) {
		t.Fatalf("sharded names %v, single %v", three.Names(), one.Names())
	}
	for _, n := range one.Names() {
		a, _ := one.Bytes(n)
		b, _ := three.Bytes(n)
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs between the single file and the shards", n)
		}
	}

	for _, args := range [][]string{
		{"bench-model"},
		{"bench-model", "--model", dir, "--shards", "2"},
		{"bench-model", "--model", dir, "--random-llama", "64,2,4,2,96,300", "--shards", "0"},
		{"bench-model", "--model", dir, "--gen", "0"},
		{"bench-model", "--model", dir, "--quantize", "q4"},
		{"bench-model", "--model", dir, "--batch", "8,0"},
		{"bench-model", "--model", dir, "--random-llama", "64,2,4"},
	} {
		if code, _, _ := runCLI(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
}
