// Package llama is Meta's LLaMA: a pre-RMSNorm causal decoder with
// rotate-half rotary position embeddings, grouped-query attention and a
// SwiGLU MLP. It serves the family that shares its layout: Llama 2 and
// 3.x (scaled RoPE), Mistral (a sliding attention window) and Qwen2 (q/k/v
// biases).
package llama

import (
	"context"
	"fmt"
	"math"

	"github.com/tessera-llm/tessera/kernels"
	"github.com/tessera-llm/tessera/shard/spec"
	"github.com/tessera-llm/tessera/worker/model"
	"github.com/tessera-llm/tessera/worker/model/nn"
)

func init() {
	for _, arch := range []string{"llama", "mistral", "qwen2"} {
		model.Register(arch, New)
	}
}

// Model is a loaded LLaMA.
type Model struct {
	nn.Decoder
	EmbedTokens nn.Embedding
}

// New loads LLaMA's tensors. Each layer is
// x += self_attn(input_layernorm(x)); x += mlp(post_attention_layernorm(x)),
// with RoPE on q and k and a SwiGLU mlp: down(silu(gate(x)) * up(x)).
func New(l *model.Loader, s *spec.Spec, o *model.Options) (model.Model, error) {
	h, d, g := s.Hidden, s.HeadDim, o.Geometry(s)
	m := &Model{}
	if g.First || (g.Last && s.TiedEmbeddings) {
		m.EmbedTokens = nn.LoadEmbedding(l, "model.embed_tokens.weight", g, s.Vocab, h, s.TiedEmbeddings)
	}
	rope := []nn.Rotary{{Dim: d, Theta: float32(s.RopeTheta), InvFreq: s.RopeInvFreq}}
	// yarn scales cos and sin by mscale, so q·k by mscale².
	scale := 1 / math.Sqrt(float64(d))
	if m := s.RopeMscale; m != 0 {
		scale *= m * m
	}
	for i := g.Layers[0]; i < g.Layers[1]; i++ {
		p := fmt.Sprintf("model.layers.%d.", i)
		m.Layers = append(m.Layers, &nn.PreNormBlock{
			InputNorm: rmsNorm(l, s, p+"input_layernorm"),
			Attention: nn.SelfAttention{
				Q:     nn.LoadLinear(l, p+"self_attn.q_proj", s.Heads*d, h, s.QKVBias),
				K:     nn.LoadLinear(l, p+"self_attn.k_proj", s.KVHeads*d, h, s.QKVBias),
				V:     nn.LoadLinear(l, p+"self_attn.v_proj", s.KVHeads*d, h, s.QKVBias),
				O:     linear(l, p+"self_attn.o_proj", h, s.Heads*d),
				Heads: g.Heads, KVHeads: g.KVHeads, HeadDim: d, KVMap: g.KVMap,
				Scale: float32(scale), Mask: kernels.Causal, Window: s.SlidingWindow, Rotary: rope,
			},
			PostAttentionNorm: rmsNorm(l, s, p+"post_attention_layernorm"),
			MLP: &nn.GatedMLP{
				Gate: linear(l, p+"mlp.gate_proj", s.Intermediate, h),
				Up:   linear(l, p+"mlp.up_proj", s.Intermediate, h),
				Down: linear(l, p+"mlp.down_proj", h, s.Intermediate),
				Act:  kernels.SiLU,
			},
		})
	}
	if g.Last {
		m.Head = nn.LoadLMHead(l, s, rmsNorm(l, s, "model.norm"), m.EmbedTokens.Weight(o.Backend))
	}
	if err := l.Err(); err != nil {
		return nil, err
	}
	return m, m.Init(s, o.Backend, o, 1)
}

// Embed looks up the token embeddings.
func (m *Model) Embed(b kernels.Backend, ws *nn.Workspace, batch *model.Batch) {
	m.EmbedTokens.Forward(b, ws, ws.X, batch.Tokens)
}

// Forward runs one batch through the model.
func (m *Model) Forward(ctx context.Context, batch *model.Batch, logits kernels.Tensor) error {
	return m.Run(ctx, m, batch, logits)
}

// ForwardStage runs one batch through this pipeline stage.
func (m *Model) ForwardStage(ctx context.Context, batch *model.Batch, in, out []float32, logits kernels.Tensor) error {
	return m.Stage(ctx, m, batch, in, out, logits)
}

func rmsNorm(l *model.Loader, s *spec.Spec, prefix string) nn.Norm {
	return nn.NewNorm(s, l.Tensor(prefix+".weight", s.Hidden), nil)
}

func linear(l *model.Loader, prefix string, out, in int) nn.Linear {
	return nn.LoadLinear(l, prefix, out, in, false)
}
