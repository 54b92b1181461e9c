// Package marian is the original Transformer as Hugging Face's Marian
// stores it: an encoder-decoder with sinusoidal positions (computed, not
// stored), embeddings scaled by √d_model, post-LayerNorm layers and ReLU
// MLPs. The decoder's self-attention uses the KV cache; its
// cross-attention reads keys and values computed once per request from
// the encoder output (EncodeSource). Logits come from the shared
// embeddings plus final_logits_bias.
package marian

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

func init() { model.Register("marian", New) }

// Model is a loaded Marian encoder-decoder.
type Model struct {
	Encoder, Decoder nn.Decoder
	// Shared embeds source and target tokens and projects the logits.
	Shared kernels.Tensor
	// Positions is the sinusoidal table [max_position_embeddings, d_model].
	Positions  kernels.Tensor
	EmbedScale float32
	start      int32
	// cross is each decoder layer's cross-attention.
	cross []*nn.CrossAttention

	// memory holds each bound source's cross-attention keys and values.
	memory  *kvcache.Cache
	mu      sync.Mutex // guards sources and the encoder's workspace
	sources map[*kvcache.Seq]*kvcache.Seq
	encSeq  kvcache.Seq
	batch   []*kvcache.Seq
}

// New loads Marian's tensors. Encoder layers are
// x = self_attn_layer_norm(x + self_attn(x)); x = final_layer_norm(x + fc2(relu(fc1(x))));
// decoder layers add x = encoder_attn_layer_norm(x + encoder_attn(x, enc))
// between the two.
func New(l *model.Loader, s *spec.Spec, o *model.Options) (model.Model, error) {
	h := s.Hidden
	m := &Model{start: int32(s.Extra["decoder_start_token_id"]), sources: map[*kvcache.Seq]*kvcache.Seq{}}
	m.Shared = l.Matrix("model.shared.weight", s.Vocab, h)
	m.EmbedScale = 1
	if s.Extra["scale_embedding"] != 0 {
		m.EmbedScale = float32(math.Sqrt(float64(h)))
	}
	m.Positions = o.Backend.FromFloat32(Sinusoidal(s.MaxPositions, h), s.MaxPositions, h)
	act := nn.Activation(s.Activation)
	enc := nn.Stack{Layers: int(s.Extra["encoder_layers"]), Heads: int(s.Extra["encoder_attention_heads"]),
		FFN: int(s.Extra["encoder_ffn_dim"]), Streams: 1}
	enc.KVHeads, enc.HeadDim = enc.Heads, h/enc.Heads
	for i := range enc.Layers {
		p := fmt.Sprintf("model.encoder.layers.%d.", i)
		m.Encoder.Layers = append(m.Encoder.Layers, &nn.PostNormBlock{
			Attention:     attention(l, p+"self_attn", h, enc.Heads, kernels.Bidirectional),
			AttentionNorm: layerNorm(l, s, p+"self_attn_layer_norm"),
			MLP:           mlp(l, p, h, enc.FFN, act),
			OutputNorm:    layerNorm(l, s, p+"final_layer_norm"),
		})
	}
	for i := range s.Layers {
		p := fmt.Sprintf("model.decoder.layers.%d.", i)
		self := attention(l, p+"self_attn", h, s.Heads, kernels.Causal)
		q, k, v, o := projections(l, p+"encoder_attn", h)
		cross := &nn.CrossAttention{Q: q, K: k, V: v, O: o, Heads: s.Heads, HeadDim: s.HeadDim, Scale: self.Scale}
		m.cross = append(m.cross, cross)
		m.Decoder.Layers = append(m.Decoder.Layers, &nn.PostNormBlock{
			Attention:     self,
			AttentionNorm: layerNorm(l, s, p+"self_attn_layer_norm"),
			Cross:         cross,
			CrossNorm:     layerNorm(l, s, p+"encoder_attn_layer_norm"),
			MLP:           mlp(l, p, h, s.Intermediate, act),
			OutputNorm:    layerNorm(l, s, p+"final_layer_norm"),
		})
	}
	m.Decoder.Head = nn.LoadLMHead(l, s, nn.Norm{}, m.Shared)
	if bias := l.Optional("final_logits_bias", 1, s.Vocab); bias != nil {
		m.Decoder.Head.Proj.Bias = o.Backend.View(bias, s.Vocab)
	}
	if err := l.Err(); err != nil {
		return nil, err
	}
	if err := m.Decoder.Init(s, o.Backend, o, 1); err != nil {
		return nil, err
	}
	// The encoder's cache holds the one source being encoded; the memory
	// holds every bound source's keys and values for each decoder layer.
	one := *o
	one.CacheTokens = s.MaxPositions
	if err := m.Encoder.InitStack(s, o.Backend, &one, enc); err != nil {
		return nil, err
	}
	var err error
	m.memory, err = model.NewCache(o.Backend, s.Layers, s.Heads, s.HeadDim, o)
	return m, err
}

// projections are an attention's q_proj, k_proj, v_proj and out_proj.
func projections(l *model.Loader, p string, hidden int) (q, k, v, o nn.Linear) {
	return nn.LoadLinear(l, p+".q_proj", hidden, hidden, true), nn.LoadLinear(l, p+".k_proj", hidden, hidden, true),
		nn.LoadLinear(l, p+".v_proj", hidden, hidden, true), nn.LoadLinear(l, p+".out_proj", hidden, hidden, true)
}

func attention(l *model.Loader, p string, hidden, heads int, mask kernels.Mask) nn.SelfAttention {
	d := hidden / heads
	q, k, v, o := projections(l, p, hidden)
	return nn.SelfAttention{Q: q, K: k, V: v, O: o, Heads: heads, KVHeads: heads, HeadDim: d,
		Scale: float32(1 / math.Sqrt(float64(d))), Mask: mask}
}

func mlp(l *model.Loader, p string, hidden, ffn int, act kernels.Activation) *nn.MLP {
	return &nn.MLP{Up: nn.LoadLinear(l, p+"fc1", ffn, hidden, true), Down: nn.LoadLinear(l, p+"fc2", hidden, ffn, true), Act: act}
}

func layerNorm(l *model.Loader, s *spec.Spec, prefix string) nn.Norm {
	return nn.LoadLayerNorm(l, prefix, s.Hidden, s.NormEps)
}

// Sinusoidal is Marian's position table [n, d] as Hugging Face builds it:
// row p holds sin(p·ω_k) for k < d/2, then cos(p·ω_k), with
// ω_k = 10000^(-2k/d), computed in float64 and rounded once. Position ids
// start at 0 (Marian has no offset, unlike BART's 2).
func Sinusoidal(n, d int) []float32 {
	out := make([]float32, n*d)
	half := d / 2
	for p := range n {
		for k := range half {
			a := float64(p) / math.Pow(10000, float64(2*k)/float64(d))
			out[p*d+k] = float32(math.Sin(a))
			out[p*d+half+k] = float32(math.Cos(a))
		}
	}
	return out
}

// Spec is the model's shape; Layers, Heads and Intermediate are the
// decoder's.
func (m *Model) Spec() *spec.Spec { return m.Decoder.Spec() }

// Backend is where the model's tensors live.
func (m *Model) Backend() kernels.Backend { return m.Decoder.Backend() }

// Cache is the decoder's self-attention KV memory.
func (m *Model) Cache() *kvcache.Cache { return m.Decoder.Cache() }

// DecoderStart is decoder_start_token_id.
func (m *Model) DecoderStart() int32 { return m.start }

// Embed is embed_tokens(ids)·EmbedScale + positions, for either stack.
func (m *Model) Embed(b kernels.Backend, ws *nn.Workspace, batch *model.Batch) {
	b.Embedding(ws.X, m.Shared, batch.Tokens)
	b.Scale(ws.X, ws.X, m.EmbedScale)
	b.Embedding(ws.H, m.Positions, ws.Pos[0])
	b.Add(ws.X, ws.X, ws.H)
}

// encode runs the encoder on src and calls read with the encoder
// workspace, whose X holds the output [len(src), d_model]. The caller
// holds m.mu.
func (m *Model) encode(ctx context.Context, src []int32, read func(ws *nn.Workspace)) error {
	if len(src) == 0 {
		return fmt.Errorf("%w: empty source", model.ErrBadBatch)
	}
	defer m.Encoder.Cache().Release(&m.encSeq)
	batch := model.Batch{Tokens: src, Spans: []model.Span{{Seq: &m.encSeq, N: len(src)}}}
	if err := m.Encoder.Hidden(ctx, m, &batch); err != nil {
		return err
	}
	read(m.Encoder.Workspace())
	return nil
}

// Encode returns the encoder's last hidden state for in.IDs.
func (m *Model) Encode(ctx context.Context, in model.EncoderInput) (*model.Encoding, error) {
	if in.TypeIDs != nil {
		return nil, fmt.Errorf("%w: marian has no token types", model.ErrBadBatch)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var enc model.Encoding
	err := m.encode(ctx, in.IDs, func(ws *nn.Workspace) { enc.Hidden = model.ReadRows(m.Backend(), ws.X) })
	if err != nil {
		return nil, err
	}
	return &enc, nil
}

// EncodeSource encodes src and stores every decoder layer's
// cross-attention keys and values for it, bound to seq.
func (m *Model) EncodeSource(ctx context.Context, seq *kvcache.Seq, src []int32) error {
	if seq.Len != 0 {
		return fmt.Errorf("%w: a source binds to an empty decoder sequence, this one has %d tokens", model.ErrBadBatch, seq.Len)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	mem := &kvcache.Seq{}
	if err := m.memory.Reserve(mem, len(src)); err != nil {
		return fmt.Errorf("%w: %w", model.ErrContextFull, err)
	}
	b := m.Backend()
	err := m.encode(ctx, src, func(ws *nn.Workspace) {
		for i, cross := range m.cross {
			cross.Remember(b, m.memory, i, mem, ws.X, ws.K, ws.V)
		}
	})
	if err != nil {
		m.memory.Release(mem)
		return err
	}
	mem.Len = len(src)
	if old, ok := m.sources[seq]; ok {
		m.memory.Release(old)
	}
	m.sources[seq] = mem
	return nil
}

// ReleaseSource frees the cross-attention memory bound to seq.
func (m *Model) ReleaseSource(seq *kvcache.Seq) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if mem, ok := m.sources[seq]; ok {
		m.memory.Release(mem)
		delete(m.sources, seq)
	}
}

// Forward decodes one batch; every span's sequence must have a source
// bound by EncodeSource.
func (m *Model) Forward(ctx context.Context, batch *model.Batch, logits kernels.Tensor) error {
	m.mu.Lock()
	m.batch = m.batch[:0]
	for _, sp := range batch.Spans {
		mem, ok := m.sources[sp.Seq]
		if !ok {
			m.mu.Unlock()
			return fmt.Errorf("%w: marian decoder sequence has no encoded source (call EncodeSource first)", model.ErrBadBatch)
		}
		m.batch = append(m.batch, mem)
	}
	m.mu.Unlock()
	m.Decoder.Workspace().Memory = nn.Memory{Cache: m.memory, Sources: m.batch}
	return m.Decoder.Run(ctx, m, batch, logits)
}
