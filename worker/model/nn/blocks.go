package nn

import (
	"github.com/tessera-llm/tessera/kernels"
	"github.com/tessera-llm/tessera/worker/kvcache"
)

// PostNormBlock is the original Transformer's layer, which BERT and
// Marian keep: each sublayer adds its input back and then normalises,
//
//	x = AttentionNorm(x + Attention(x))
//	x = CrossNorm(x + Cross(x))        (decoder layers of an encoder-decoder)
//	x = OutputNorm(x + MLP(x))
type PostNormBlock struct {
	Attention     SelfAttention
	AttentionNorm Norm
	// Cross is nil in encoder layers and decoder-only models.
	Cross      *CrossAttention
	CrossNorm  Norm
	MLP        FeedForward
	OutputNorm Norm
}

// Forward runs the block on ws.X.
func (blk *PostNormBlock) Forward(b kernels.Backend, ws *Workspace, cache *kvcache.Cache, index int) {
	blk.Attention.Forward(b, ws, cache, index, ws.A, ws.X)
	addNorm(b, ws, &blk.AttentionNorm)
	if blk.Cross != nil {
		blk.Cross.Forward(b, ws, index, ws.A, ws.X)
		addNorm(b, ws, &blk.CrossNorm)
	}
	blk.MLP.Forward(b, ws, ws.A, ws.X)
	addNorm(b, ws, &blk.OutputNorm)
}

// addNorm is the post-norm residual: X = norm(X + A).
func addNorm(b kernels.Backend, ws *Workspace, norm *Norm) {
	b.Add(ws.X, ws.X, ws.A)
	norm.Forward(b, ws.X, ws.X)
}
