package modelbench

import (
	"context"
	"fmt"
	"time"

	"github.com/tessera-llm/tessera/kernels"
	"github.com/tessera-llm/tessera/worker/kvcache"
	"github.com/tessera-llm/tessera/worker/model"
)

// BatchResult is one batched decode measurement.
type BatchResult struct {
	Batch int `json:"batch"`
	// TokensPerS counts every sequence's token: batch × steps / time.
	TokensPerS float64 `json:"tokens_per_s"`
}

// CacheTokens is the KV cache a BatchDecode of batch sequences needs with
// blocks of blockSize tokens: context tokens of prefix and steps + 1
// decode tokens each, every sequence in whole blocks.
func CacheTokens(batch, context, steps, blockSize int) int {
	per := context + steps + 1
	return batch * ((per + blockSize - 1) / blockSize * blockSize)
}

// BatchDecode gives batch sequences a context of context tokens each
// (prefilled, untimed), runs one untimed step of all of them, then times
// steps forward passes that each append one token to every sequence: the
// decode step of a server with batch requests in flight. It releases the
// sequences before returning. lm's cache must hold CacheTokens(batch,
// context, steps, its block size).
func BatchDecode(ctx context.Context, lm model.CausalLM, be kernels.Backend, batch, context, steps int) (BatchResult, error) {
	if batch < 1 || context < 1 || steps < 1 {
		return BatchResult{}, fmt.Errorf("modelbench: batch %d, context %d and steps %d must be at least 1", batch, context, steps)
	}
	vocab := lm.Spec().Vocab
	seqs := make([]kvcache.Seq, batch)
	defer func() {
		for i := range seqs {
			lm.Cache().Release(&seqs[i])
		}
	}()
	logits := be.Alloc(batch, vocab)
	ids := make([]int32, context)
	for s := range seqs {
		for i := range ids {
			ids[i] = int32((s*131 + i*7919 + 13) % vocab)
		}
		b := model.Batch{Tokens: ids, Spans: []model.Span{{Seq: &seqs[s], N: context}}}
		if err := lm.Forward(ctx, &b, be.Rows(logits, 0, 1)); err != nil {
			return BatchResult{}, err
		}
	}
	b := model.Batch{Tokens: make([]int32, batch), Spans: make([]model.Span, batch)}
	for s := range seqs {
		b.Spans[s] = model.Span{Seq: &seqs[s], N: 1}
	}
	step := func(i int) error {
		for s := range b.Tokens {
			b.Tokens[s] = int32((i*31 + s*17 + 7) % vocab)
		}
		return lm.Forward(ctx, &b, logits)
	}
	if err := step(0); err != nil { // sizes the workspace for this batch
		return BatchResult{}, err
	}
	t0 := time.Now()
	for i := range steps {
		if err := step(i + 1); err != nil {
			return BatchResult{}, err
		}
	}
	return BatchResult{Batch: batch, TokensPerS: float64(batch*steps) / time.Since(t0).Seconds()}, nil
}
