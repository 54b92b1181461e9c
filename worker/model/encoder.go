package model

import (
	"context"

	"github.com/tessera-llm/tessera/kernels"
	"github.com/tessera-llm/tessera/worker/kvcache"
)

// EncoderInput is one whole sequence for an encoder.
type EncoderInput struct {
	IDs []int32
	// TypeIDs are BERT's segment ids, one per token; nil means all zero.
	TypeIDs []int32
}

// Encoding is an encoder's output for one sequence, on the host.
type Encoding struct {
	// Hidden is the last hidden state: one row of width hidden per token.
	Hidden [][]float32
	// Pooled is the pooler output (BERT's tanh(dense(h[CLS]))); nil when
	// the checkpoint has no pooler.
	Pooled []float32
}

// Mean is the mean of the token states: the mean-pooled sentence
// embedding.
func (e *Encoding) Mean() []float32 {
	if len(e.Hidden) == 0 {
		return nil
	}
	sum := make([]float64, len(e.Hidden[0]))
	for _, row := range e.Hidden {
		for i, v := range row {
			sum[i] += float64(v)
		}
	}
	mean := make([]float32, len(sum))
	for i, v := range sum {
		mean[i] = float32(v / float64(len(e.Hidden)))
	}
	return mean
}

// Encoder maps a whole sequence to one hidden state per token, every
// token seeing every other (BERT, an encoder-decoder's encoder).
type Encoder interface {
	Model
	Encode(ctx context.Context, in EncoderInput) (*Encoding, error)
}

// MaskedLM is an encoder with a masked-language-model head: it predicts
// the token at chosen positions of a sequence (fill-mask).
type MaskedLM interface {
	Encoder
	// MaskedLogits returns logits [len(positions)][vocab]; nil positions
	// means every position.
	MaskedLogits(ctx context.Context, in EncoderInput, positions []int) ([][]float32, error)
}

// Seq2SeqLM is an encoder-decoder. EncodeSource runs the encoder once per
// request and binds its output to a decoder sequence; Forward then decodes
// that sequence like a CausalLM, its cross-attention reading the bound
// source.
type Seq2SeqLM interface {
	CausalLM
	// DecoderStart is the token every decoder sequence begins with.
	DecoderStart() int32
	// EncodeSource encodes src and binds it to seq, which must be empty.
	EncodeSource(ctx context.Context, seq *kvcache.Seq, src []int32) error
	// ReleaseSource frees what EncodeSource bound to seq.
	ReleaseSource(seq *kvcache.Seq)
}

// ReadRows copies a [n, d] tensor to the host as n rows of one block.
func ReadRows(b kernels.Backend, t kernels.Tensor) [][]float32 {
	n := t.Shape()[0]
	d := t.Len() / max(n, 1)
	flat := make([]float32, n*d)
	b.Read(t, flat)
	rows := make([][]float32, n)
	for i := range rows {
		rows[i] = flat[i*d : (i+1)*d : (i+1)*d]
	}
	return rows
}
