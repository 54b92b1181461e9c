package engine

import (
	"context"
	"fmt"

	"github.com/tessera-llm/tessera/worker/model"
)

// bind encodes src for the generator's sequence; the caller releases it.
func (g *Generator) bind(ctx context.Context, src []int32) (model.Seq2SeqLM, error) {
	m, ok := g.lm.(model.Seq2SeqLM)
	if !ok {
		return nil, fmt.Errorf("%s is not an encoder-decoder model", g.lm.Spec().Arch)
	}
	return m, m.EncodeSource(ctx, &g.seq, src)
}

// Translate encodes src once, then decodes greedily or by s from the
// model's decoder start token, as Generate does for a causal LM. The
// returned ids exclude the start token.
func (g *Generator) Translate(ctx context.Context, src []int32, maxTokens int, s Sampler,
	stop func(int32) bool, onStep func(Step)) ([]int32, error) {
	m, err := g.bind(ctx, src)
	if err != nil {
		return nil, err
	}
	defer m.ReleaseSource(&g.seq)
	return g.Generate(ctx, []int32{m.DecoderStart()}, maxTokens, s, stop, onStep)
}

// DecoderLogits returns the decoder's logits at every position of
// decoderIDs (which normally begin with the start token) given src.
func (g *Generator) DecoderLogits(ctx context.Context, src, decoderIDs []int32) ([][]float32, error) {
	m, err := g.bind(ctx, src)
	if err != nil {
		return nil, err
	}
	defer m.ReleaseSource(&g.seq)
	return g.PromptLogits(ctx, decoderIDs)
}
