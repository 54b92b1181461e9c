package main

import (
	"encoding/json"
	"math"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/tessera-llm/tessera/worker/model/modeltest"
)

// cliJSON runs a command that must succeed quietly and decodes its JSON.
func cliJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	code, stdout, stderr := runCLI(t, args...)
	if code != 0 {
		t.Fatalf("%v: exit %d: %s", args, code, stderr)
	}
	if stderr != "" {
		t.Errorf("--json should keep stderr quiet, got %q", stderr)
	}
	if err := json.Unmarshal([]byte(stdout), v); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, stdout)
	}
}

type generated struct {
	PromptIDs    []int32 `json:"prompt_ids"`
	GeneratedIDs []int32 `json:"generated_ids"`
}

type logitsOut struct {
	Logits [][]float32 `json:"logits"`
}

func TestChatGLMGenerateAndLogits(t *testing.T) {
	dir := filepath.Join(repoRoot, "testdata/golden/chatglm")
	g := modeltest.LoadGolden(t, dir)
	for _, c := range g.Cases {
		var gen generated
		cliJSON(t, &gen, "generate", "--model", dir, "--prompt-ids", joinIDs(c.PromptIDs),
			"--max-tokens", "12", "--ignore-eos", "--json")
		if !slices.Equal(gen.PromptIDs, c.PromptIDs) || !slices.Equal(gen.GeneratedIDs, c.GreedyIDs) {
			t.Errorf("generate: got %+v, want generated %v", gen, c.GreedyIDs)
		}
		var lg logitsOut
		cliJSON(t, &lg, "logits", "--model", dir, "--prompt-ids", joinIDs(c.PromptIDs), "--json")
		modeltest.CheckRows(t, "logits", lg.Logits, c.PromptLogits)
	}
}

func TestMarianGenerateAndLogits(t *testing.T) {
	dir := filepath.Join(repoRoot, "testdata/golden/transformer-marian")
	var g modeltest.Seq2SeqGolden
	modeltest.ReadGolden(t, dir, &g)
	for _, c := range g.Cases {
		var gen generated
		cliJSON(t, &gen, "generate", "--model", dir, "--prompt-ids", joinIDs(c.InputIDs), "--max-tokens", "12", "--json")
		// generated_ids leaves out the decoder start token.
		if !slices.Equal(gen.PromptIDs, c.InputIDs) || !slices.Equal(gen.GeneratedIDs, c.GreedyIDs[1:]) {
			t.Errorf("generate: got %+v, want generated %v", gen, c.GreedyIDs[1:])
		}
		var lg logitsOut
		cliJSON(t, &lg, "logits", "--model", dir, "--prompt-ids", joinIDs(c.InputIDs),
			"--decoder-ids", joinIDs(c.ProbeDecoderIDs), "--json")
		modeltest.CheckRows(t, "probe logits", lg.Logits, c.ProbeDecoderLogits)
	}
}

const maskID = 4 // [MASK] in the golden BERT's tokenizer.json

func TestFillMaskAndEmbed(t *testing.T) {
	dir := filepath.Join(repoRoot, "testdata/golden/bert")
	var g modeltest.EncoderGolden
	modeltest.ReadGolden(t, dir, &g)
	for _, c := range g.Cases {
		var fm struct {
			Masks []struct {
				Position int `json:"position"`
				Top      []struct {
					ID    int32   `json:"id"`
					Logit float32 `json:"logit"`
				} `json:"top"`
			} `json:"masks"`
		}
		cliJSON(t, &fm, "fill-mask", "--model", dir, "--prompt-ids", joinIDs(c.InputIDs),
			"--token-type-ids", joinIDs(c.TokenTypeIDs), "--top", "5", "--json")
		var want []int
		for i, id := range c.InputIDs {
			if id == maskID {
				want = append(want, i)
			}
		}
		if len(fm.Masks) != len(want) {
			t.Fatalf("%d masks, want positions %v", len(fm.Masks), want)
		}
		for i, m := range fm.Masks {
			row := c.MLMLogits[want[i]]
			if m.Position != want[i] || len(m.Top) != 5 {
				t.Fatalf("mask %d: position %d with %d candidates, want position %d with 5", i, m.Position, len(m.Top), want[i])
			}
			best := bestIDs(row, 5)
			for j, cand := range m.Top {
				if math.Abs(float64(cand.Logit)-row[cand.ID]) > 1e-4*math.Abs(row[best[0]]) {
					t.Errorf("position %d: id %d logit %g, golden %g", m.Position, cand.ID, cand.Logit, row[cand.ID])
				}
				// Ids may swap only between near-equal golden logits.
				if math.Abs(row[cand.ID]-row[best[j]]) > 1e-4*math.Abs(row[best[0]]) {
					t.Errorf("position %d rank %d: id %d, golden best %d", m.Position, j, cand.ID, best[j])
				}
			}
		}

		var emb struct {
			LastHiddenState [][]float32 `json:"last_hidden_state"`
			Mean            []float32   `json:"mean"`
		}
		cliJSON(t, &emb, "embed", "--model", dir, "--prompt-ids", joinIDs(c.InputIDs),
			"--token-type-ids", joinIDs(c.TokenTypeIDs), "--json")
		modeltest.CheckRows(t, "last_hidden_state", emb.LastHiddenState, c.LastHiddenState)
		mean := make([]float64, len(c.LastHiddenState[0]))
		for _, r := range c.LastHiddenState {
			for j, v := range r {
				mean[j] += v / float64(len(c.LastHiddenState))
			}
		}
		modeltest.CheckRows(t, "mean", [][]float32{emb.Mean}, [][]float64{mean})
	}
}

// bestIDs is the k ids of the highest golden logits, best first.
func bestIDs(row []float64, k int) []int {
	ids := make([]int, len(row))
	for i := range ids {
		ids[i] = i
	}
	sort.SliceStable(ids, func(a, b int) bool { return row[ids[a]] > row[ids[b]] })
	return ids[:k]
}

func TestEncoderCommandErrors(t *testing.T) {
	bert := filepath.Join(repoRoot, "testdata/golden/bert")
	marian := filepath.Join(repoRoot, "testdata/golden/transformer-marian")
	chatglm := filepath.Join(repoRoot, "testdata/golden/chatglm")
	cases := []struct {
		name    string
		args    []string
		code    int
		mention string
	}{
		{"no mask", []string{"fill-mask", "--model", bert, "--prompt-ids", "2,40,3"}, 2, "no [MASK]"},
		{"types length", []string{"fill-mask", "--model", bert, "--prompt-ids", "2,4,3", "--token-type-ids", "0,1"}, 2, "token-type-ids"},
		{"bad top", []string{"fill-mask", "--model", bert, "--prompt-ids", "2,4,3", "--top", "0"}, 2, "--top"},
		{"type range", []string{"embed", "--model", bert, "--prompt-ids", "2,4,3", "--token-type-ids", "0,0,5"}, 1, "token type 5"},
		{"not an mlm", []string{"fill-mask", "--model", chatglm, "--prompt-ids", "4"}, 1, "not a masked language model"},
		{"not an encoder", []string{"embed", "--model", chatglm, "--prompt-ids", "4"}, 1, "has no encoder"},
		{"bert is no decoder", []string{"generate", "--model", bert, "--prompt-ids", "2"}, 1, "not a causal"},
		{"marian needs decoder ids", []string{"logits", "--model", marian, "--prompt-ids", "40,2"}, 2, "--decoder-ids"},
		{"decoder ids for a decoder", []string{"logits", "--model", chatglm, "--prompt-ids", "5,1", "--decoder-ids", "3"}, 2, "encoder-decoder"},
		{"chatglm without bos", []string{"generate", "--model", chatglm, "--prompt-ids", "40,5"}, 1, "<bos>"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.mention) {
				t.Errorf("exit %d, stderr %q; want exit %d mentioning %q", code, stderr, tc.code, tc.mention)
			}
		})
	}
}
