package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/tessera-llm/tessera/worker"
	"github.com/tessera-llm/tessera/worker/model"
)

func init() {
	register(command{name: "fill-mask", summary: "Predict the [MASK] tokens of a prompt with a masked LM (BERT).", run: runFillMask})
	register(command{name: "embed", summary: "Print an encoder's hidden states and mean-pooled embedding.", run: runEmbed})
}

// encoderFlags are the flags of the encoder commands.
type encoderFlags struct {
	modelFlags
	typeIDs string
}

func (e *encoderFlags) register(fs *flag.FlagSet) {
	e.modelFlags.register(fs)
	fs.StringVar(&e.typeIDs, "token-type-ids", "", "segment ids, one per prompt token (default all 0)")
}

// input reads the prompt and token types and loads the model.
func (e *encoderFlags) input(stderr io.Writer) (model.Model, model.EncoderInput, error) {
	var in model.EncoderInput
	var err error
	if in.IDs, err = e.prompt(); err != nil {
		return nil, in, err
	}
	if in.TypeIDs, err = parseIDs(e.typeIDs); err != nil {
		return nil, in, err
	}
	if in.TypeIDs != nil && len(in.TypeIDs) != len(in.IDs) {
		return nil, in, fmt.Errorf("%w: %d --token-type-ids for %d --prompt-ids", errUsage, len(in.TypeIDs), len(in.IDs))
	}
	m, err := e.load(stderr)
	return m, in, err
}

// maskScore is one candidate for a masked position.
type maskScore struct {
	ID    int32   `json:"id"`
	Logit float32 `json:"logit"`
}

// maskResult is the prediction at one [MASK] position.
type maskResult struct {
	Position int         `json:"position"`
	Top      []maskScore `json:"top"`
}

func runFillMask(args []string, stdout, stderr io.Writer) error {
	var ef encoderFlags
	var top, maskID int
	fs := newFlagSet("fill-mask", "fill-mask --model DIR --prompt-ids 2,40,4,3 [--token-type-ids 0,0,0,0] [--top 5] [--json]", stderr)
	ef.register(fs)
	fs.IntVar(&top, "top", 5, "how many candidates to print per [MASK]")
	fs.IntVar(&maskID, "mask-id", -1, "the [MASK] token id (default: from the model's tokenizer.json)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if top < 1 {
		return fmt.Errorf("%w: --top must be ≥ 1, got %d", errUsage, top)
	}
	m, in, err := ef.input(stderr)
	if err != nil {
		return err
	}
	mlm, ok := m.(model.MaskedLM)
	if !ok {
		return fmt.Errorf("%s is not a masked language model; fill-mask needs one (bert)", m.Spec().Arch)
	}
	if maskID < 0 {
		if maskID, err = worker.MaskTokenID(ef.dir); errors.Is(err, worker.ErrNoMaskToken) {
			return fmt.Errorf("%w: %v; pass --mask-id", errUsage, err)
		} else if err != nil {
			return err
		}
	}
	var positions []int
	for i, id := range in.IDs {
		if int(id) == maskID {
			positions = append(positions, i)
		}
	}
	if len(positions) == 0 {
		return fmt.Errorf("%w: --prompt-ids has no [MASK] token (id %d)", errUsage, maskID)
	}
	rows, err := mlm.MaskedLogits(context.Background(), in, positions)
	if err != nil {
		return err
	}
	masks := make([]maskResult, len(positions))
	for i, p := range positions {
		masks[i] = maskResult{Position: p, Top: topK(rows[i], top)}
	}
	if ef.json {
		return json.NewEncoder(stdout).Encode(struct {
			Masks []maskResult `json:"masks"`
		}{masks})
	}
	for _, r := range masks {
		var sb strings.Builder
		for i, c := range r.Top {
			if i > 0 {
				sb.WriteString(", ")
			}
			fmt.Fprintf(&sb, "%d (%.3f)", c.ID, c.Logit)
		}
		fmt.Fprintf(stdout, "position %d: %s\n", r.Position, sb.String())
	}
	return nil
}

// topK is the k highest logits, best first; ties go to the lower id.
func topK(logits []float32, k int) []maskScore {
	ids := make([]int32, len(logits))
	for i := range ids {
		ids[i] = int32(i)
	}
	slices.SortFunc(ids, func(a, b int32) int {
		if c := cmp.Compare(logits[b], logits[a]); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	out := make([]maskScore, min(k, len(ids)))
	for i := range out {
		out[i] = maskScore{ID: ids[i], Logit: logits[ids[i]]}
	}
	return out
}

func runEmbed(args []string, stdout, stderr io.Writer) error {
	var ef encoderFlags
	fs := newFlagSet("embed", "embed --model DIR --prompt-ids 2,40,41,3 [--token-type-ids 0,0,0,0] [--json]", stderr)
	ef.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	m, in, err := ef.input(stderr)
	if err != nil {
		return err
	}
	enc, ok := m.(model.Encoder)
	if !ok {
		return fmt.Errorf("%s has no encoder; embed needs one (bert, marian)", m.Spec().Arch)
	}
	out, err := enc.Encode(context.Background(), in)
	if err != nil {
		return err
	}
	mean := out.Mean()
	if ef.json {
		return json.NewEncoder(stdout).Encode(struct {
			LastHiddenState [][]float32 `json:"last_hidden_state"`
			Mean            []float32   `json:"mean"`
			Pooled          []float32   `json:"pooler_output,omitempty"`
		}{out.Hidden, mean, out.Pooled})
	}
	fmt.Fprintf(stdout, "%d tokens × %d dims; mean-pooled embedding:\n%v\n", len(out.Hidden), len(mean), mean)
	if out.Pooled != nil {
		fmt.Fprintf(stdout, "pooler output:\n%v\n", out.Pooled)
	}
	return nil
}
