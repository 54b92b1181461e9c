package nn

import (
	"context"
	"fmt"

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
//
// With Alpha set it is ChatGLM-6B's DeepNorm layer instead: each residual
// is the normalised input scaled by Alpha (√(2·layers)), so
// h = InputNorm(x); x = Alpha·h + Attention(h), and likewise for the MLP.
type PreNormBlock struct {
	InputNorm         Norm
	Attention         SelfAttention
	PostAttentionNorm Norm
	MLP               FeedForward
	Alpha             float32
}

// Forward runs the block on ws.X.
func (blk *PreNormBlock) Forward(b kernels.Backend, ws *Workspace, cache *kvcache.Cache, index int) {
	blk.InputNorm.Forward(b, ws.H, ws.X)
	blk.Attention.Forward(b, ws, cache, index, ws.A, ws.H)
	blk.residual(b, ws)
	blk.PostAttentionNorm.Forward(b, ws.H, ws.X)
	blk.MLP.Forward(b, ws, ws.A, ws.H)
	blk.residual(b, ws)
}

// residual adds the sublayer output A to X, or to Alpha·H for DeepNorm.
func (blk *PreNormBlock) residual(b kernels.Backend, ws *Workspace) {
	if blk.Alpha != 0 {
		b.Scale(ws.X, ws.H, blk.Alpha)
	}
	b.Add(ws.X, ws.X, ws.A)
}

// Embedder writes a batch's input embeddings into ws.X.
type Embedder interface {
	Embed(b kernels.Backend, ws *Workspace, batch *model.Batch)
}

// Positioner fills position streams beyond stream 0 (ChatGLM's block
// positions). Every pipeline stage calls it, since every layer rotates.
type Positioner interface {
	Positions(ws *Workspace, batch *model.Batch)
}

// Decoder is the part of a causal LM every architecture shares: the KV
// cache, the workspace, the layer loop and the LM head. On a pipeline
// stage it holds the stage's layers only; on a tensor-parallel rank, the
// rank's heads, MLP columns and vocabulary slice.
type Decoder struct {
	spec   *spec.Spec
	b      kernels.Backend
	geo    model.Geometry
	Layers []Layer
	Head   LMHead
	cache  *kvcache.Cache
	ws     *Workspace
}

// Init sizes the decoder's cache and workspace for what o loads of s.
func (d *Decoder) Init(s *spec.Spec, b kernels.Backend, o *model.Options, streams int) error {
	g := o.Geometry(s)
	return d.InitStack(s, b, o, Stack{Layers: g.LayerCount(), Heads: g.Heads, KVHeads: g.KVHeads,
		HeadDim: s.HeadDim, FFN: g.MLP, Streams: streams})
}

// Stack is the geometry of a layer stack. Init takes it from the spec; an
// encoder-decoder's encoder has its own.
type Stack struct {
	Layers, Heads, KVHeads, HeadDim, FFN int
	Streams                              int
}

// InitStack sizes the cache and workspace for a stack of another
// geometry than the spec's decoder (an encoder's).
func (d *Decoder) InitStack(s *spec.Spec, b kernels.Backend, o *model.Options, st Stack) error {
	cache, err := model.NewCache(b, st.Layers, st.KVHeads, st.HeadDim, o)
	if err != nil {
		return err
	}
	d.spec, d.b, d.cache, d.geo = s, b, cache, o.Geometry(s)
	d.ws = NewWorkspace(b, Dims{Hidden: s.Hidden, QWidth: st.Heads * st.HeadDim,
		KVWidth: st.KVHeads * st.HeadDim, FFN: st.FFN, Streams: st.Streams})
	return nil
}

// Cache is the decoder's KV memory.
func (d *Decoder) Cache() *kvcache.Cache { return d.cache }

// Spec is the model's shape.
func (d *Decoder) Spec() *spec.Spec { return d.spec }

// Backend is where the model's tensors live.
func (d *Decoder) Backend() kernels.Backend { return d.b }

// Geometry is the part of the model this decoder holds.
func (d *Decoder) Geometry() model.Geometry { return d.geo }

// Workspace is the scratch memory of the last run; after Hidden its X
// holds the final hidden states.
func (d *Decoder) Workspace() *Workspace { return d.ws }

// Run embeds the batch, applies every layer, writes the logits and
// advances the batch's sequences.
func (d *Decoder) Run(ctx context.Context, e Embedder, batch *model.Batch, logits kernels.Tensor) error {
	return d.Stage(ctx, e, batch, nil, nil, logits)
}

// Stage runs the decoder's part of a pipeline (see model.Stage): embed
// on the first stage or read in, apply the layers, then write logits on
// the last stage or the hidden states to out. It advances the sequences.
func (d *Decoder) Stage(ctx context.Context, e Embedder, batch *model.Batch, in, out []float32, logits kernels.Tensor) error {
	ws := d.ws
	if err := d.prepare(ctx, batch); err != nil {
		return err
	}
	if p, ok := e.(Positioner); ok {
		p.Positions(ws, batch)
	}
	width := ws.n * d.spec.Hidden
	if d.geo.First {
		e.Embed(d.b, ws, batch)
	} else if len(in) != width {
		return fmt.Errorf("%w: stage input has %d values, want %d tokens × %d", model.ErrBadBatch, len(in), ws.n, d.spec.Hidden)
	} else {
		d.b.Write(ws.X, in)
	}
	if err := d.layers(ctx); err != nil {
		return err
	}
	if d.geo.Last {
		d.Head.Forward(d.b, ws, ws.X, logits)
	} else if len(out) < width {
		return fmt.Errorf("%w: stage output holds %d values, want %d", model.ErrBadBatch, len(out), width)
	} else {
		d.b.Read(ws.X, out[:width])
	}
	ws.Commit()
	return nil
}

// Hidden embeds the batch and applies every layer, leaving the hidden
// states [tokens, hidden] in Workspace().X. The tokens' keys and values
// are in the cache, but the sequences are not advanced: an encoder reads
// the states and releases its sequence.
func (d *Decoder) Hidden(ctx context.Context, e Embedder, batch *model.Batch) error {
	if err := d.prepare(ctx, batch); err != nil {
		return err
	}
	e.Embed(d.b, d.ws, batch)
	return d.layers(ctx)
}

func (d *Decoder) prepare(ctx context.Context, batch *model.Batch) error {
	if err := batch.Validate(d.spec.Vocab); err != nil {
		return err
	}
	if err := d.ws.Prepare(batch, d.cache, d.spec.MaxPositions); err != nil {
		return err
	}
	d.ws.begin(ctx, d.geo.Comm)
	return nil
}

// layers applies every layer, stopping at cancellation or at a failed
// all-reduce.
func (d *Decoder) layers(ctx context.Context) error {
	for i, layer := range d.Layers {
		if err := ctx.Err(); err != nil {
			return err
		}
		layer.Forward(d.b, d.ws, d.cache, i)
		if d.ws.err != nil {
			return d.ws.err
		}
	}
	return d.ws.err // the embedding's reduction, for an empty stack
}
