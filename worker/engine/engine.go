package engine

import (
	"context"
	"fmt"

	"github.com/tessera-llm/tessera/kernels"
	"github.com/tessera-llm/tessera/worker/kvcache"
	"github.com/tessera-llm/tessera/worker/model"
)

// Sampler picks the next token from a row of logits.
type Sampler interface {
	Sample(logits []float32) int32
}

// Step is what Generate reports after each new token.
type Step struct {
	Index  int
	ID     int32
	Logits []float32 // valid only during the callback
}

// Generator runs one sequence at a time through a CausalLM, reusing its
// buffers across steps and calls.
type Generator struct {
	lm     model.CausalLM
	vocab  int
	one    kernels.Tensor // [1, vocab] logits of a decode step
	host   []float32
	tokens [1]int32
	batch  model.Batch
	seq    kvcache.Seq
}

// New makes a Generator for lm.
func New(lm model.CausalLM) *Generator {
	v := lm.Spec().Vocab
	return &Generator{lm: lm, vocab: v, one: lm.Backend().Alloc(1, v), host: make([]float32, v)}
}

// PromptLogits returns the logits at every position of ids, computed in
// one prefill of a fresh sequence.
func (g *Generator) PromptLogits(ctx context.Context, ids []int32) ([][]float32, error) {
	if len(ids) == 0 {
		return nil, fmt.Errorf("%w: empty prompt", model.ErrBadBatch)
	}
	defer g.lm.Cache().Release(&g.seq)
	b := g.lm.Backend()
	out := b.Alloc(len(ids), g.vocab)
	batch := model.Batch{Tokens: ids, Spans: []model.Span{{Seq: &g.seq, N: len(ids), AllLogits: true}}}
	if err := g.lm.Forward(ctx, &batch, out); err != nil {
		return nil, err
	}
	rows := model.ReadRows(b, out)
	return rows, nil
}

// Generate prefills prompt, then samples up to maxTokens tokens. It stops
// early after a token for which stop returns true (that token is kept).
// onStep, if set, sees every step's logits and choice.
func (g *Generator) Generate(ctx context.Context, prompt []int32, maxTokens int, s Sampler,
	stop func(int32) bool, onStep func(Step)) ([]int32, error) {
	if len(prompt) == 0 {
		return nil, fmt.Errorf("%w: empty prompt", model.ErrBadBatch)
	}
	if maxTokens < 0 {
		return nil, fmt.Errorf("%w: max tokens %d is negative", model.ErrBadBatch, maxTokens)
	}
	defer g.lm.Cache().Release(&g.seq)
	b := g.lm.Backend()
	out := make([]int32, 0, maxTokens)
	next := prompt
	for i := range maxTokens {
		g.batch.Tokens = next
		g.batch.Spans = append(g.batch.Spans[:0], model.Span{Seq: &g.seq, N: len(next)})
		if err := g.lm.Forward(ctx, &g.batch, g.one); err != nil {
			return out, err
		}
		b.Read(g.one, g.host)
		id := s.Sample(g.host)
		if onStep != nil {
			onStep(Step{Index: i, ID: id, Logits: g.host})
		}
		out = append(out, id)
		if stop != nil && stop(id) {
			break
		}
		g.tokens[0] = id
		next = g.tokens[:]
	}
	return out, nil
}

// SamplerFunc adapts a function to the Sampler interface.
type SamplerFunc func(logits []float32) int32

// Sample calls f.
func (f SamplerFunc) Sample(logits []float32) int32 { return f(logits) }
