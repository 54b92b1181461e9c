// Package bert is Google's BERT: a post-LayerNorm bidirectional encoder
// over word, position and token-type embeddings, with erf-GELU MLPs. It
// serves the last hidden state, its mean (a sentence embedding), the
// pooler output when the checkpoint has one, and the masked-LM head
// (fill-mask).
package bert

import (
	"context"
	"fmt"
	"math"
	"sync"

	"github.com/tessera-llm/tessera/kernels"
	"github.com/tessera-llm/tessera/shard/spec"
	"github.com/tessera-llm/tessera/worker/kvcache"
	"github.com/tessera-llm/tessera/worker/model"
	"github.com/tessera-llm/tessera/worker/model/nn"
)

func init() { model.Register("bert", New) }

// Model is a loaded BERT. The nn.Decoder is its encoder stack: its cache
// only holds the keys and values of the sequence being encoded.
type Model struct {
	nn.Decoder
	WordEmbeddings, PositionEmbeddings, TokenTypeEmbeddings kernels.Tensor
	EmbeddingsLayerNorm                                     nn.Norm
	// Pooler is tanh(dense(h[CLS])); nil when the checkpoint has none.
	Pooler *nn.Linear
	// MLM is cls.predictions; nil when the checkpoint has none.
	MLM *MLMHead

	mu    sync.Mutex // one encoding at a time: the workspace is shared
	types []int32
	seq   kvcache.Seq
}

// MLMHead is BERT's masked-LM head:
// Decoder(LayerNorm(act(Transform(h)))) + Bias, Decoder tied to the word
// embeddings.
type MLMHead struct {
	Transform nn.Linear
	Act       kernels.Activation
	Norm      nn.Norm
	Decoder   nn.Linear
}

// New loads BERT's tensors, with or without the "bert." prefix
// BertForMaskedLM and friends put on the encoder. Each layer is
// x = attention.output.LayerNorm(x + attention(x));
// x = output.LayerNorm(x + output.dense(gelu(intermediate.dense(x)))).
func New(l *model.Loader, s *spec.Spec, o *model.Options) (model.Model, error) {
	h, ff := s.Hidden, s.Intermediate
	p := ""
	if l.Has("bert.embeddings.word_embeddings.weight") {
		p = "bert."
	}
	m := &Model{}
	m.WordEmbeddings = l.Tensor(p+"embeddings.word_embeddings.weight", s.Vocab, h)
	m.PositionEmbeddings = l.Tensor(p+"embeddings.position_embeddings.weight", s.MaxPositions, h)
	m.TokenTypeEmbeddings = l.Tensor(p+"embeddings.token_type_embeddings.weight", int(s.Extra["type_vocab_size"]), h)
	m.EmbeddingsLayerNorm = layerNorm(l, s, p+"embeddings.LayerNorm")
	act := nn.Activation(s.Activation)
	for i := range s.Layers {
		lp := fmt.Sprintf("%sencoder.layer.%d.", p, i)
		m.Layers = append(m.Layers, &nn.PostNormBlock{
			Attention: nn.SelfAttention{
				Q:     linear(l, lp+"attention.self.query", h, h),
				K:     linear(l, lp+"attention.self.key", h, h),
				V:     linear(l, lp+"attention.self.value", h, h),
				O:     linear(l, lp+"attention.output.dense", h, h),
				Heads: s.Heads, KVHeads: s.Heads, HeadDim: s.HeadDim,
				Scale: float32(1 / math.Sqrt(float64(s.HeadDim))), Mask: kernels.Bidirectional,
			},
			AttentionNorm: layerNorm(l, s, lp+"attention.output.LayerNorm"),
			MLP: &nn.MLP{
				Up:   linear(l, lp+"intermediate.dense", ff, h),
				Down: linear(l, lp+"output.dense", h, ff),
				Act:  act,
			},
			OutputNorm: layerNorm(l, s, lp+"output.LayerNorm"),
		})
	}
	if l.Has(p + "pooler.dense.weight") {
		pool := linear(l, p+"pooler.dense", h, h)
		m.Pooler = &pool
	}
	if l.Has("cls.predictions.bias") {
		dec := m.WordEmbeddings
		if l.Has("cls.predictions.decoder.weight") {
			dec = l.Matrix("cls.predictions.decoder.weight", s.Vocab, h)
		}
		m.MLM = &MLMHead{
			Transform: linear(l, "cls.predictions.transform.dense", h, h),
			Act:       act,
			Norm:      layerNorm(l, s, "cls.predictions.transform.LayerNorm"),
			Decoder:   nn.Linear{Weight: dec, Bias: l.Tensor("cls.predictions.bias", s.Vocab)},
		}
	}
	if err := l.Err(); err != nil {
		return nil, err
	}
	// Encoding is transient: the cache holds one sequence of MaxPositions.
	enc := *o
	enc.CacheTokens = s.MaxPositions
	return m, m.Init(s, o.Backend, &enc, 1)
}

func layerNorm(l *model.Loader, s *spec.Spec, prefix string) nn.Norm {
	return nn.LoadLayerNorm(l, prefix, s.Hidden, s.NormEps)
}

func linear(l *model.Loader, prefix string, out, in int) nn.Linear {
	return nn.LoadLinear(l, prefix, out, in, true)
}

// Embed sums the word, position and token-type embeddings and
// normalises them.
func (m *Model) Embed(b kernels.Backend, ws *nn.Workspace, batch *model.Batch) {
	b.Embedding(ws.X, m.WordEmbeddings, batch.Tokens)
	b.Embedding(ws.H, m.PositionEmbeddings, ws.Pos[0])
	b.Add(ws.X, ws.X, ws.H)
	b.Embedding(ws.H, m.TokenTypeEmbeddings, m.types)
	b.Add(ws.X, ws.X, ws.H)
	m.EmbeddingsLayerNorm.Forward(b, ws.X, ws.X)
}

// encode runs the encoder on in and calls read with the hidden states
// [n, hidden] while they are valid. The caller holds m.mu.
func (m *Model) encode(ctx context.Context, in model.EncoderInput, read func(hidden kernels.Tensor) error) error {
	if len(in.IDs) == 0 {
		return fmt.Errorf("%w: empty input", model.ErrBadBatch)
	}
	types, err := tokenTypes(in, int(m.Spec().Extra["type_vocab_size"]))
	if err != nil {
		return err
	}
	m.types = types
	defer m.Cache().Release(&m.seq)
	batch := model.Batch{Tokens: in.IDs, Spans: []model.Span{{Seq: &m.seq, N: len(in.IDs)}}}
	if err := m.Hidden(ctx, m, &batch); err != nil {
		return err
	}
	return read(m.Workspace().X)
}

// tokenTypes checks in.TypeIDs, or makes all-zero ones.
func tokenTypes(in model.EncoderInput, types int) ([]int32, error) {
	if in.TypeIDs == nil {
		return make([]int32, len(in.IDs)), nil
	}
	if len(in.TypeIDs) != len(in.IDs) {
		return nil, fmt.Errorf("%w: %d token type ids for %d tokens", model.ErrBadBatch, len(in.TypeIDs), len(in.IDs))
	}
	for i, t := range in.TypeIDs {
		if t < 0 || int(t) >= types {
			return nil, fmt.Errorf("%w: token type %d at position %d; the model has %d types", model.ErrBadBatch, t, i, types)
		}
	}
	return in.TypeIDs, nil
}

// Encode returns the last hidden state and, with a pooler, the pooled
// output tanh(pooler.dense(h[0])).
func (m *Model) Encode(ctx context.Context, in model.EncoderInput) (*model.Encoding, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b := m.Backend()
	var enc model.Encoding
	err := m.encode(ctx, in, func(x kernels.Tensor) error {
		enc.Hidden = model.ReadRows(b, x)
		if m.Pooler != nil {
			pooled := b.Alloc(1, m.Spec().Hidden)
			m.Pooler.Forward(b, pooled, b.Rows(x, 0, 1))
			// The backend has no tanh activation; the pooled row is tiny.
			enc.Pooled = model.ReadRows(b, pooled)[0]
			for i, v := range enc.Pooled {
				enc.Pooled[i] = float32(math.Tanh(float64(v)))
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &enc, nil
}

// MaskedLogits runs the MLM head at positions (every position when nil).
func (m *Model) MaskedLogits(ctx context.Context, in model.EncoderInput, positions []int) ([][]float32, error) {
	if m.MLM == nil {
		return nil, fmt.Errorf("this BERT checkpoint has no masked-LM head (cls.predictions)")
	}
	rows := make([]int32, 0, len(in.IDs))
	if positions == nil {
		for i := range in.IDs {
			rows = append(rows, int32(i))
		}
	}
	for _, p := range positions {
		if p < 0 || p >= len(in.IDs) {
			return nil, fmt.Errorf("%w: position %d outside a sequence of %d tokens", model.ErrBadBatch, p, len(in.IDs))
		}
		rows = append(rows, int32(p))
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	b, s := m.Backend(), m.Spec()
	var out [][]float32
	err := m.encode(ctx, in, func(x kernels.Tensor) error {
		if len(rows) == 0 {
			return nil
		}
		sel, t := b.Alloc(len(rows), s.Hidden), b.Alloc(len(rows), s.Hidden)
		logits := b.Alloc(len(rows), s.Vocab)
		b.Embedding(sel, x, rows)
		m.MLM.Transform.Forward(b, t, sel)
		b.Act(t, t, m.MLM.Act)
		m.MLM.Norm.Forward(b, t, t)
		m.MLM.Decoder.Forward(b, logits, t)
		out = model.ReadRows(b, logits)
		return nil
	})
	return out, err
}
