// Package bloom is BigScience's BLOOM: a pre-LayerNorm causal decoder with
// ALiBi position biases, a LayerNorm right after the word embeddings, a
// fused per-head query_key_value projection, tanh-GELU MLPs and an LM head
// tied to the embeddings.
package bloom

import (
	"context"
	"fmt"
	"math"

	"github.com/tessera-llm/tessera/kernels"
	"github.com/tessera-llm/tessera/shard/spec"
	"github.com/tessera-llm/tessera/worker/model"
	"github.com/tessera-llm/tessera/worker/model/nn"
)

func init() { model.Register("bloom", New) }

// Model is a loaded BLOOM.
type Model struct {
	nn.Decoder
	WordEmbeddings          nn.Embedding
	WordEmbeddingsLayerNorm nn.Norm
}

// New loads BLOOM's tensors. Each layer is
// x += attention(input_layernorm(x)); x += mlp(post_attention_layernorm(x)).
func New(l *model.Loader, s *spec.Spec, o *model.Options) (model.Model, error) {
	h, d, g := s.Hidden, s.HeadDim, o.Geometry(s)
	m := &Model{}
	if g.First || (g.Last && s.TiedEmbeddings) {
		m.WordEmbeddings = nn.LoadEmbedding(l, "transformer.word_embeddings.weight", g, s.Vocab, h, s.TiedEmbeddings)
	}
	if g.First {
		m.WordEmbeddingsLayerNorm = layerNorm(l, s, "transformer.word_embeddings_layernorm")
	}
	for i := g.Layers[0]; i < g.Layers[1]; i++ {
		p := fmt.Sprintf("transformer.h.%d.", i)
		qkv := nn.FusedQKV(l, p+"self_attention.query_key_value", s.Heads, g.Heads, d, h)
		m.Layers = append(m.Layers, &nn.PreNormBlock{
			InputNorm: layerNorm(l, s, p+"input_layernorm"),
			Attention: nn.SelfAttention{
				Q: qkv[0], K: qkv[1], V: qkv[2],
				O:     linear(l, p+"self_attention.dense", h, h),
				Heads: g.Heads, KVHeads: g.Heads, HeadDim: d,
				Scale: float32(1 / math.Sqrt(float64(d))), Mask: kernels.Causal, Slopes: g.Slopes,
			},
			PostAttentionNorm: layerNorm(l, s, p+"post_attention_layernorm"),
			MLP: &nn.MLP{
				Up:   linear(l, p+"mlp.dense_h_to_4h", s.Intermediate, h),
				Down: linear(l, p+"mlp.dense_4h_to_h", h, s.Intermediate),
				Act:  kernels.GELUTanh,
			},
		})
	}
	if g.Last {
		m.Head = nn.LoadLMHead(l, s, layerNorm(l, s, "transformer.ln_f"), m.WordEmbeddings.Weight(o.Backend))
	}
	if err := l.Err(); err != nil {
		return nil, err
	}
	return m, m.Init(s, o.Backend, o, 1)
}

// Embed looks up the word embeddings and normalises them.
func (m *Model) Embed(b kernels.Backend, ws *nn.Workspace, batch *model.Batch) {
	m.WordEmbeddings.Forward(b, ws, ws.X, batch.Tokens)
	m.WordEmbeddingsLayerNorm.Forward(b, ws.X, ws.X)
}

// Forward runs one batch through the model.
func (m *Model) Forward(ctx context.Context, batch *model.Batch, logits kernels.Tensor) error {
	return m.Run(ctx, m, batch, logits)
}

// ForwardStage runs one batch through this pipeline stage.
func (m *Model) ForwardStage(ctx context.Context, batch *model.Batch, in, out []float32, logits kernels.Tensor) error {
	return m.Stage(ctx, m, batch, in, out, logits)
}

func layerNorm(l *model.Loader, s *spec.Spec, prefix string) nn.Norm {
	return nn.LoadLayerNorm(l, prefix, s.Hidden, s.NormEps)
}

func linear(l *model.Loader, prefix string, out, in int) nn.Linear {
	return nn.LoadLinear(l, prefix, out, in, true)
}
