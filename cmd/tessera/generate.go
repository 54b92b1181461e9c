package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/tessera-llm/tessera/coordinator/sampling"
	"github.com/tessera-llm/tessera/worker/engine"
	"github.com/tessera-llm/tessera/worker/model"
	_ "github.com/tessera-llm/tessera/worker/model/all"

	_ "github.com/tessera-llm/tessera/kernels/cpu"
)

func init() {
	register(command{name: "generate", summary: "Generate tokens from a model directory on this machine.", run: runGenerate})
	register(command{name: "logits", summary: "Print the logits at every prompt position.", run: runLogits})
}

func runGenerate(args []string, stdout, stderr io.Writer) error {
	var mf modelFlags
	var maxTokens int
	var p sampling.Params
	var ignoreEOS bool
	fs := newFlagSet("generate", "generate --model DIR (--prompt TEXT | --prompt-ids 5,77,300) --max-tokens N [--temperature T --top-k K --top-p P --seed S] [--json]\n\n"+
		"For an encoder-decoder (marian) --prompt-ids is the source; decoding starts from the decoder start token,\n"+
		"which generated_ids leaves out.", stderr)
	mf.register(fs)
	mf.registerPlan(fs)
	fs.IntVar(&maxTokens, "max-tokens", 32, "how many tokens to generate at most")
	fs.Float64Var(&p.Temperature, "temperature", 0, "sampling temperature; 0 is greedy")
	fs.IntVar(&p.TopK, "top-k", 0, "sample among the K most likely tokens (0: all)")
	fs.Float64Var(&p.TopP, "top-p", 0, "sample among the most likely tokens holding probability P (0: all)")
	fs.Uint64Var(&p.Seed, "seed", 0, "random seed: the same seed gives the same output")
	fs.BoolVar(&ignoreEOS, "ignore-eos", false, "keep generating after the end-of-sequence token")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if maxTokens < 0 {
		return fmt.Errorf("%w: --max-tokens must be ≥ 0, got %d", errUsage, maxTokens)
	}
	sampler, err := sampling.New(p)
	if err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	prompt, err := mf.prompt()
	if err != nil {
		return err
	}
	lm, err := mf.loadCausal(stderr)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	eos := int32(lm.Spec().EOS)
	isEOS := func(id int32) bool { return !ignoreEOS && eos >= 0 && id == eos }
	start := time.Now()
	gen := engine.New(lm)
	var ids []int32
	if _, ok := lm.(model.Seq2SeqLM); ok {
		ids, err = gen.Translate(ctx, prompt, maxTokens, sampler, isEOS, nil)
	} else {
		ids, err = gen.Generate(ctx, prompt, maxTokens, sampler, isEOS, nil)
	}
	if err != nil {
		return err
	}
	tok, err := mf.tokenizer()
	if err != nil {
		return err
	}
	var text *string
	if tok != nil {
		t, err := tok.Decode(ids, true)
		if err != nil {
			return err
		}
		text = &t
	}
	if mf.json {
		return json.NewEncoder(stdout).Encode(struct {
			PromptIDs    []int32 `json:"prompt_ids"`
			GeneratedIDs []int32 `json:"generated_ids"`
			Text         *string `json:"text,omitempty"`
		}{prompt, nonNil(ids), text})
	}
	if text != nil {
		fmt.Fprintln(stdout, *text)
	} else {
		fmt.Fprintln(stdout, joinIDs(ids))
	}
	if el := time.Since(start); len(ids) > 0 {
		fmt.Fprintf(stderr, "%d tokens in %.2fs (%.1f tok/s)\n", len(ids), el.Seconds(), float64(len(ids))/el.Seconds())
	}
	return nil
}

func runLogits(args []string, stdout, stderr io.Writer) error {
	var mf modelFlags
	var decoderIDs string
	fs := newFlagSet("logits", "logits --model DIR --prompt-ids 5,77,300 [--decoder-ids 3,17] --json", stderr)
	mf.register(fs)
	mf.registerPlan(fs)
	fs.StringVar(&decoderIDs, "decoder-ids", "", "encoder-decoder models: the decoder input (starting with the decoder start token); --prompt-ids is the source")
	if err := fs.Parse(args); err != nil {
		return err
	}
	prompt, err := mf.prompt()
	if err != nil {
		return err
	}
	dec, err := parseIDs(decoderIDs)
	if err != nil {
		return err
	}
	lm, err := mf.loadCausal(stderr)
	if err != nil {
		return err
	}
	rows, scored, err := promptLogits(lm, prompt, dec)
	if err != nil {
		return err
	}
	if !mf.json {
		for i, r := range rows {
			fmt.Fprintf(stdout, "position %d (token %d): argmax %d\n", i, scored[i], sampling.Greedy(r))
		}
		return nil
	}
	return json.NewEncoder(stdout).Encode(struct {
		Logits [][]float32 `json:"logits"`
	}{rows})
}

// promptLogits scores prompt, or for an encoder-decoder the decoder ids
// given prompt as the source. It returns the logits and the ids scored.
func promptLogits(lm model.CausalLM, prompt, dec []int32) ([][]float32, []int32, error) {
	gen := engine.New(lm)
	if _, ok := lm.(model.Seq2SeqLM); ok {
		if len(dec) == 0 {
			return nil, nil, fmt.Errorf("%w: %s is an encoder-decoder: --decoder-ids is required (--prompt-ids is the source)", errUsage, lm.Spec().Arch)
		}
		rows, err := gen.DecoderLogits(context.Background(), prompt, dec)
		return rows, dec, err
	}
	if len(dec) > 0 {
		return nil, nil, fmt.Errorf("%w: --decoder-ids is for encoder-decoder models; %s is a decoder", errUsage, lm.Spec().Arch)
	}
	rows, err := gen.PromptLogits(context.Background(), prompt)
	return rows, prompt, err
}

func nonNil(ids []int32) []int32 {
	if ids == nil {
		return []int32{}
	}
	return ids
}

func joinIDs(ids []int32) string {
	var sb strings.Builder
	for i, id := range ids {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprint(&sb, id)
	}
	return sb.String()
}
