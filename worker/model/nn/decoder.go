package nn

import (
	"context"

	"github.com/tessera-llm/tessera/kernels"
	"github.com/tessera-llm/tessera/shard/spec"
	"github.com/tessera-llm/tessera/worker/kvcache"
	"github.com/tessera-llm/tessera/worker/model"
)

// Layer transforms the workspace's hidden states ws.X in place.
type Layer interface {
	Forward(b kernels.Backend, ws *Workspace, cache *kvcache.Cache, index int)
}

// FeedForward is an MLP: MLP or GatedMLP.
type FeedForward interface {
	Forward(b kernels.Backend, ws *Workspace, dst, x kernels.Tensor)
}

// PreNormBlock is the GPT-2 style layer BLOOM and LLaMA share:
// x += Attention(InputNorm(x)); x += MLP(PostAttentionNorm(x)).
type PreNormBlock struct {
	InputNorm         Norm
	Attention         SelfAttention
	PostAttentionNorm Norm
	MLP               FeedForward
}

// Forward runs the block on ws.X.
func (blk *PreNormBlock) Forward(b kernels.Backend, ws *Workspace, cache *kvcache.Cache, index int) {
	blk.InputNorm.Forward(b, ws.H, ws.X)
	blk.Attention.Forward(b, ws, cache, index, ws.A, ws.H)
	b.Add(ws.X, ws.X, ws.A)
	blk.PostAttentionNorm.Forward(b, ws.H, ws.X)
	blk.MLP.Forward(b, ws, ws.A, ws.H)
	b.Add(ws.X, ws.X, ws.A)
}

// Embedder writes a batch's input embeddings into ws.X (and fills any
// extra position streams its attention uses).
type Embedder interface {
	Embed(b kernels.Backend, ws *Workspace, batch *model.Batch)
}

// Decoder is the part of a causal LM every architecture shares: the KV
// cache, the workspace, the layer loop and the LM head.
type Decoder struct {
	spec   *spec.Spec
	b      kernels.Backend
	Layers []Layer
	Head   LMHead
	cache  *kvcache.Cache
	ws     *Workspace
}

// Init sizes the decoder's cache and workspace for spec s.
func (d *Decoder) Init(s *spec.Spec, b kernels.Backend, o *model.Options, streams int) error {
	cache, err := model.NewCache(b, s.Layers, s.KVHeads, s.HeadDim, o)
	if err != nil {
		return err
	}
	d.spec, d.b, d.cache = s, b, cache
	d.ws = NewWorkspace(b, Dims{Hidden: s.Hidden, QWidth: s.Heads * s.HeadDim,
		KVWidth: s.KVHeads * s.HeadDim, FFN: s.Intermediate, Streams: streams})
	return nil
}

// Cache is the decoder's KV memory.
func (d *Decoder) Cache() *kvcache.Cache { return d.cache }

// Spec is the model's shape.
func (d *Decoder) Spec() *spec.Spec { return d.spec }

// Backend is where the model's tensors live.
func (d *Decoder) Backend() kernels.Backend { return d.b }

// Run embeds the batch, applies every layer, and writes the logits.
func (d *Decoder) Run(ctx context.Context, e Embedder, batch *model.Batch, logits kernels.Tensor) error {
	if err := batch.Validate(d.spec.Vocab); err != nil {
		return err
	}
	ws := d.ws
	if err := ws.Prepare(batch, d.cache, d.spec.MaxPositions); err != nil {
		return err
	}
	e.Embed(d.b, ws, batch)
	for i, layer := range d.Layers {
		if err := ctx.Err(); err != nil {
			return err
		}
		layer.Forward(d.b, ws, d.cache, i)
	}
	d.Head.Forward(d.b, ws, ws.X, logits)
	ws.Commit()
	return nil
}
