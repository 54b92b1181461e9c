// Package chatglm is Tsinghua's ChatGLM-6B (GLM): a prefix language model.
// The prompt, which ends with [gMASK] and then <bos>, is read
// bidirectionally up to <bos>; generation is causal. Positions are 2-D:
// rotate-half RoPE turns the first half of each head by the position id
// and the second half by the block position id. Layers use DeepNorm
// residuals (x = α·LN(x) + f(LN(x)), α = √(2·layers)) around a fused
// per-head query_key_value attention and a tanh-GELU MLP (GLM-130B's
// GeGLU when the config asks for it); a final LayerNorm and an untied
// lm_head close the model.
package chatglm

import (
	"context"
	"fmt"
	"math"
	"slices"

	"github.com/tessera-llm/tessera/kernels"
	"github.com/tessera-llm/tessera/shard/spec"
	"github.com/tessera-llm/tessera/worker/kvcache"
	"github.com/tessera-llm/tessera/worker/model"
	"github.com/tessera-llm/tessera/worker/model/nn"
)

func init() { model.Register("chatglm", New) }

// Position streams of the workspace.
const (
	positionStream = 0
	blockStream    = 1
)

// Model is a loaded ChatGLM-6B.
type Model struct {
	nn.Decoder
	WordEmbeddings nn.Embedding
	// BOS (<bos>, "sop") ends the bidirectional prefix; the prefix must
	// end with a mask token (GMask, or Mask for blank infilling) whose
	// position every generated token takes.
	BOS, GMask, Mask int32
}

// New loads ChatGLM-6B's tensors. Each layer is
// h = input_layernorm(x); x = α·h + attention(h);
// h = post_attention_layernorm(x); x = α·h + mlp(h).
func New(l *model.Loader, s *spec.Spec, o *model.Options) (model.Model, error) {
	h, d, g := s.Hidden, s.HeadDim, o.Geometry(s)
	m := &Model{BOS: int32(s.BOS), GMask: int32(s.Extra["gmask_token_id"]), Mask: int32(s.Extra["mask_token_id"])}
	if g.First || (g.Last && s.TiedEmbeddings) {
		m.WordEmbeddings = nn.LoadEmbedding(l, "transformer.word_embeddings.weight", g, s.Vocab, h, s.TiedEmbeddings)
	}
	theta := float32(s.RopeTheta)
	rope := []nn.Rotary{
		{Offset: 0, Dim: d / 2, Theta: theta, Stream: positionStream},
		{Offset: d / 2, Dim: d / 2, Theta: theta, Stream: blockStream},
	}
	alpha := float32(math.Sqrt(2 * float64(s.Layers)))
	for i := g.Layers[0]; i < g.Layers[1]; i++ {
		p := fmt.Sprintf("transformer.layers.%d.", i)
		qkv := nn.FusedQKV(l, p+"attention.query_key_value", s.Heads, g.Heads, d, h)
		m.Layers = append(m.Layers, &nn.PreNormBlock{
			InputNorm: layerNorm(l, s, p+"input_layernorm"),
			Attention: nn.SelfAttention{
				Q: qkv[0], K: qkv[1], V: qkv[2],
				O:     nn.LoadLinear(l, p+"attention.dense", h, h, true),
				Heads: g.Heads, KVHeads: g.Heads, HeadDim: d,
				Scale: float32(1 / math.Sqrt(float64(d))), Mask: kernels.Prefix, Rotary: rope,
			},
			PostAttentionNorm: layerNorm(l, s, p+"post_attention_layernorm"),
			MLP:               mlp(l, s, g, p+"mlp."),
			Alpha:             alpha,
		})
	}
	if g.Last {
		m.Head = nn.LoadLMHead(l, s, layerNorm(l, s, "transformer.final_layernorm"), m.WordEmbeddings.Weight(o.Backend))
	}
	if err := l.Err(); err != nil {
		return nil, err
	}
	return m, m.Init(s, o.Backend, o, 2)
}

// mlp is dense_4h_to_h(gelu(dense_h_to_4h(x))), or with GeGLU
// dense_4h_to_h(x1·gelu(x2)) where dense_h_to_4h(x) = [x1, x2].
func mlp(l *model.Loader, s *spec.Spec, g model.Geometry, p string) nn.FeedForward {
	h, ff := s.Hidden, s.Intermediate
	down := nn.LoadLinear(l, p+"dense_4h_to_h", h, ff, true)
	if s.Gated {
		gate, up := nn.FusedGLU(l, p+"dense_h_to_4h", ff, g.MLP, h, true)
		return &nn.GatedMLP{Gate: gate, Up: up, Down: down, Act: nn.Activation(s.Activation)}
	}
	return &nn.MLP{Up: nn.LoadLinear(l, p+"dense_h_to_4h", ff, h, true), Down: down, Act: nn.Activation(s.Activation)}
}

func layerNorm(l *model.Loader, s *spec.Spec, prefix string) nn.Norm {
	return nn.LoadLayerNorm(l, prefix, s.Hidden, s.NormEps)
}

// Forward runs one batch. A sequence's first span must hold its whole
// prefix and the <bos> after it; that sets the sequence's PrefixLen.
func (m *Model) Forward(ctx context.Context, batch *model.Batch, logits kernels.Tensor) error {
	return m.ForwardStage(ctx, batch, nil, nil, logits)
}

// ForwardStage runs one batch through this pipeline stage. Every stage
// sees the tokens, so each finds its sequences' prefixes itself.
func (m *Model) ForwardStage(ctx context.Context, batch *model.Batch, in, out []float32, logits kernels.Tensor) error {
	off := 0
	for _, sp := range batch.Spans {
		if sp.N <= 0 || sp.Seq == nil || off+sp.N > len(batch.Tokens) {
			break // Run's validation reports it
		}
		if err := m.startPrefix(sp.Seq, batch.Tokens[off:off+sp.N]); err != nil {
			return err
		}
		off += sp.N
	}
	return m.Stage(ctx, m, batch, in, out, logits)
}

// startPrefix sets PrefixLen on a new sequence from its first tokens, as
// ChatGLM-6B's get_position_ids does: the context is everything before
// <bos>, and it must end with the mask token generation fills.
func (m *Model) startPrefix(seq *kvcache.Seq, tokens []int32) error {
	if seq.Len > 0 {
		if seq.PrefixLen == 0 {
			return fmt.Errorf("%w: chatglm sequence of %d tokens has no prefix; its first span must contain <bos> (%d)",
				model.ErrBadBatch, seq.Len, m.BOS)
		}
		return nil
	}
	ctxLen := slices.Index(tokens, m.BOS)
	if ctxLen < 0 {
		return fmt.Errorf("%w: chatglm prompt has no <bos> (%d); a prompt is context, [gMASK] (%d), <bos>",
			model.ErrBadBatch, m.BOS, m.GMask)
	}
	mask := m.GMask
	if !slices.Contains(tokens[:ctxLen], mask) {
		mask = m.Mask
	}
	if ctxLen == 0 || tokens[ctxLen-1] != mask {
		return fmt.Errorf("%w: chatglm prompt must put the mask token [gMASK] (%d) right before <bos> (%d); "+
			"a mask elsewhere in the context is not supported", model.ErrBadBatch, m.GMask, m.BOS)
	}
	seq.PrefixLen = ctxLen
	return nil
}

// Embed looks up the word embeddings.
func (m *Model) Embed(b kernels.Backend, ws *nn.Workspace, batch *model.Batch) {
	m.WordEmbeddings.Forward(b, ws, ws.X, batch.Tokens)
}

// Positions fills the 2-D positions: a context token at t has position t
// and block position 0; <bos> and every later token take the mask's
// position (the last context token) and block positions 1, 2, 3, ….
func (m *Model) Positions(ws *nn.Workspace, batch *model.Batch) {
	pos, blk := ws.Pos[positionStream], ws.Pos[blockStream]
	ws.Spans(func(seq *kvcache.Seq, first, n int) {
		ctx := int32(seq.PrefixLen)
		for i := first; i < first+n; i++ {
			t := pos[i] // stream 0 starts as the index in the sequence
			if t < ctx {
				blk[i] = 0
				continue
			}
			pos[i], blk[i] = ctx-1, t-ctx+1
		}
	})
}
