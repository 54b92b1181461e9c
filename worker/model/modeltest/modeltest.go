// Package modeltest checks architectures against golden fixtures produced
// by Hugging Face transformers (testdata/golden). It is imported by tests.
package modeltest

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/tessera-llm/tessera/shard/topk"
	"github.com/tessera-llm/tessera/worker/engine"
	"github.com/tessera-llm/tessera/worker/kvcache"
	"github.com/tessera-llm/tessera/worker/model"
)

// Tolerance is the largest relative error allowed on logits:
// max|got-want| / max|want| per row.
const Tolerance = 1e-4

// CausalCase is one prompt of a causal-LM golden file.
type CausalCase struct {
	PromptIDs    []int32     `json:"prompt_ids"`
	PromptLogits [][]float64 `json:"prompt_logits"`
	GreedyIDs    []int32     `json:"greedy_ids"`
	// Prompt and GreedyText are the texts behind the ids, where the
	// fixture has a tokenizer (docbloom-3m's does).
	Prompt         string    `json:"prompt"`
	GreedyText     string    `json:"greedy_text"`
	LastStepLogits []float64 `json:"last_step_logits"`
}

// Golden is the part of golden.json every causal model has.
type Golden struct {
	Arch   string       `json:"arch"`
	Slopes []float64    `json:"alibi_slopes"`
	Cases  []CausalCase `json:"cases"`
}

// Root finds the repository root from a test's working directory.
func Root(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test directory")
		}
		dir = parent
	}
}

// LoadGolden reads dir/golden.json.
func LoadGolden(t testing.TB, dir string) Golden {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g Golden
	if err := json.Unmarshal(raw, &g); err != nil {
		t.Fatalf("%s: %v", dir, err)
	}
	if len(g.Cases) == 0 {
		t.Fatalf("%s: golden file has no cases", dir)
	}
	return g
}

// RelErr is max|got-want| / max|want|.
func RelErr(got []float32, want []float64) float64 {
	if len(got) != len(want) {
		return math.Inf(1)
	}
	var diff, scale float64
	for i := range got {
		diff = max(diff, math.Abs(float64(got[i])-want[i]))
		scale = max(scale, math.Abs(want[i]))
	}
	if scale == 0 {
		return diff
	}
	return diff / scale
}

// CheckCausal loads the model in dir and checks every golden case:
// prompt logits, greedy ids through KV-cached decoding, and the logits of
// the last cached decode step.
func CheckCausal(t *testing.T, dir string, opts ...model.Option) {
	t.Helper()
	g, gen := loadCausal(t, dir, opts...)
	checkCausal(t, g, gen)
}

// CheckCausalLM checks every case of dir's golden file on lm, loaded by
// the caller (a sharded pipeline, say).
func CheckCausalLM(t *testing.T, dir string, lm model.CausalLM) {
	t.Helper()
	checkCausal(t, LoadGolden(t, dir), engine.New(lm))
}

func checkCausal(t *testing.T, g Golden, gen *engine.Generator) {
	t.Helper()
	ctx := context.Background()
	for i, c := range g.Cases {
		t.Run(caseName(i, c.PromptIDs), func(t *testing.T) {
			rows, err := gen.PromptLogits(ctx, c.PromptIDs)
			if err != nil {
				t.Fatal(err)
			}
			if len(rows) != len(c.PromptLogits) {
				t.Fatalf("%d logit rows, golden has %d", len(rows), len(c.PromptLogits))
			}
			for p := range rows {
				if e := RelErr(rows[p], c.PromptLogits[p]); e > Tolerance {
					t.Errorf("prompt position %d: relative error %.2e > %.0e", p, e, Tolerance)
				}
			}
			var last []float32
			ids, err := gen.Generate(ctx, c.PromptIDs, len(c.GreedyIDs), engine.SamplerFunc(topk.Argmax), nil,
				func(s engine.Step) {
					if s.Index == len(c.GreedyIDs)-1 {
						last = append(last[:0], s.Logits...)
					}
				})
			if err != nil {
				t.Fatal(err)
			}
			if !equalIDs(ids, c.GreedyIDs) {
				t.Errorf("greedy ids\n got %v\nwant %v", ids, c.GreedyIDs)
			}
			if c.LastStepLogits != nil {
				if e := RelErr(last, c.LastStepLogits); e > Tolerance {
					t.Errorf("last cached decode step: relative error %.2e > %.0e", e, Tolerance)
				}
			}
		})
	}
}

// loadCausal reads dir's golden file and loads its causal LM.
func loadCausal(t *testing.T, dir string, opts ...model.Option) (Golden, *engine.Generator) {
	t.Helper()
	g := LoadGolden(t, dir)
	m, err := model.Load(dir, opts...)
	if err != nil {
		t.Fatal(err)
	}
	lm, ok := m.(model.CausalLM)
	if !ok {
		t.Fatalf("%s is not a causal LM", g.Arch)
	}
	return g, engine.New(lm)
}

func caseName(i int, ids []int32) string {
	b, _ := json.Marshal(ids)
	if len(b) > 24 {
		b = append(b[:21], "..."...)
	}
	return string(rune('a'+i)) + "_" + string(b)
}

func equalIDs(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// CheckRows compares rows of outputs (logits or hidden states) with
// golden rows at Tolerance, naming each bad row.
func CheckRows(t *testing.T, what string, got [][]float32, want [][]float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d rows, golden has %d", what, len(got), len(want))
		return
	}
	for i := range got {
		if e := RelErr(got[i], want[i]); e > Tolerance {
			t.Errorf("%s row %d: relative error %.2e > %.0e", what, i, e, Tolerance)
		}
	}
}

// Load reads dir/golden.json into golden (for fixtures whose cases are
// not causal-LM cases) and loads the model in dir.
func Load(t testing.TB, dir string, golden any, opts ...model.Option) model.Model {
	t.Helper()
	ReadGolden(t, dir, golden)
	m, err := model.Load(dir, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// ReadGolden decodes dir/golden.json into v.
func ReadGolden(t testing.TB, dir string, v any) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("%s: %v", dir, err)
	}
}

// EncoderGolden is golden.json of a BERT fixture.
type EncoderGolden struct {
	Cases []EncoderCase `json:"cases"`
}

// EncoderCase is one input of a BERT fixture.
type EncoderCase struct {
	InputIDs        []int32     `json:"input_ids"`
	TokenTypeIDs    []int32     `json:"token_type_ids"`
	LastHiddenState [][]float64 `json:"last_hidden_state"`
	MLMLogits       [][]float64 `json:"mlm_logits"`
}

// Seq2SeqGolden is golden.json of an encoder-decoder fixture. GreedyIDs
// begin with the decoder start token; DecoderLogits are the logits for
// GreedyIDs without its last token.
type Seq2SeqGolden struct {
	Cases []struct {
		InputIDs               []int32     `json:"input_ids"`
		EncoderLastHiddenState [][]float64 `json:"encoder_last_hidden_state"`
		GreedyIDs              []int32     `json:"greedy_ids"`
		DecoderLogits          [][]float64 `json:"decoder_logits"`
		ProbeDecoderIDs        []int32     `json:"probe_decoder_ids"`
		ProbeDecoderLogits     [][]float64 `json:"probe_decoder_logits"`
	} `json:"cases"`
}

// CheckDecodeAllocs prefills prompt into seq (a fresh sequence, or one an
// encoder-decoder has bound a source to) and fails if a decode step then
// allocates.
func CheckDecodeAllocs(t *testing.T, lm model.CausalLM, seq *kvcache.Seq, prompt []int32) {
	t.Helper()
	ctx := context.Background()
	logits := lm.Backend().Alloc(1, lm.Spec().Vocab)
	defer lm.Cache().Release(seq)
	if err := lm.Forward(ctx, &model.Batch{Tokens: prompt, Spans: []model.Span{{Seq: seq, N: len(prompt)}}}, logits); err != nil {
		t.Fatal(err)
	}
	batch := model.Batch{Tokens: []int32{prompt[len(prompt)-1]}, Spans: []model.Span{{Seq: seq, N: 1}}}
	var err error
	step := func() {
		if e := lm.Forward(ctx, &batch, logits); e != nil && err == nil {
			err = e
		}
	}
	step() // the first decode step lays out the workspace for one token
	allocs := testing.AllocsPerRun(20, step)
	if err != nil {
		t.Fatal(err)
	}
	if allocs != 0 {
		t.Errorf("decode step allocates %.1f times per token, want 0", allocs)
	}
}

// QuantTolerance bounds Q8_0 logits against the golden ones: per row,
// max|got-want| / max|want| (RelErr). Every fixture measures under it
// (docs/benchmarks.md lists each); the margin covers other prompts. It
// covers llama.cpp's Q8_0 arithmetic, activations quantized per block of
// 32 like the weights, which prefill and decode both run on VNNI CPUs
// (the random-weight llama fixture: 0.055).
const QuantTolerance = 0.06

// CheckQuantized loads the causal LM in dir with opts (a quantized
// format) and checks every prompt position of every golden case: the
// logits within QuantTolerance, and the top token equal to the golden one
// wherever the golden top-2 margin exceeds 2·QuantTolerance·max|want|, so
// that no error within the bound could change it. It returns the largest
// error and how many of all rows kept their top token.
func CheckQuantized(t *testing.T, dir string, opts ...model.Option) (maxErr float64, top1, rows int) {
	t.Helper()
	g, gen := loadCausal(t, dir, opts...)
	for i, c := range g.Cases {
		got, err := gen.PromptLogits(context.Background(), c.PromptIDs)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(c.PromptLogits) {
			t.Fatalf("case %d: %d logit rows, golden has %d", i, len(got), len(c.PromptLogits))
		}
		for p, want := range c.PromptLogits {
			e := RelErr(got[p], want)
			maxErr = max(maxErr, e)
			if e > QuantTolerance {
				t.Errorf("case %d position %d: relative error %.3g > %g", i, p, e, QuantTolerance)
			}
			best, second, scale := top2(want)
			rows++
			if argmax32(got[p]) == best {
				top1++
			} else if want[best]-want[second] > 2*QuantTolerance*scale {
				t.Errorf("case %d position %d: top token %d, golden %d leads by %.3g (> 2·bound)",
					i, p, argmax32(got[p]), best, want[best]-want[second])
			}
		}
	}
	return maxErr, top1, rows
}

// top2 returns the indices of the two largest values and max|v|.
func top2(v []float64) (best, second int, scale float64) {
	best, second = 0, -1
	for i, x := range v {
		scale = max(scale, math.Abs(x))
		switch {
		case i == 0:
		case x > v[best]:
			best, second = i, best
		case second < 0 || x > v[second]:
			second = i
		}
	}
	return best, max(second, 0), scale
}

func argmax32(v []float32) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}
