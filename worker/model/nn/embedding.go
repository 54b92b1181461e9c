package nn

import (
	"github.com/tessera-llm/tessera/kernels"
	"github.com/tessera-llm/tessera/worker/model"
)

// Embedding is a token embedding table, or on a tensor-parallel rank the
// rows [Vocab[0], Vocab[1]) of it. A rank's table carries one extra zero
// row: tokens outside its slice look that row up, and the stage's
// all-reduce then sums exactly one non-zero row per token.
type Embedding struct {
	Table   kernels.Tensor
	Vocab   [2]int
	sharded bool
	local   []int32
}

// LoadEmbedding reads name [vocab, hidden] (the rank's slice of it). A
// table tied to the LM head loads as a matrix (quantized with the model).
func LoadEmbedding(l *model.Loader, name string, g model.Geometry, vocab, hidden int, tied bool) Embedding {
	e := Embedding{Vocab: g.Vocab, sharded: g.Vocab != [2]int{0, vocab}}
	switch {
	case e.sharded:
		e.Table = l.TensorWithZeroRow(name, tied, vocab, hidden)
	case tied:
		e.Table = l.Matrix(name, vocab, hidden)
	default:
		e.Table = l.Tensor(name, vocab, hidden)
	}
	return e
}

// Weight is the table without its padding row, for a tied LM head.
func (e *Embedding) Weight(b kernels.Backend) kernels.Tensor {
	if !e.sharded || e.Table == nil {
		return e.Table
	}
	return b.Rows(e.Table, 0, e.Vocab[1]-e.Vocab[0])
}

// Forward looks up tokens into dst [len(tokens), hidden].
func (e *Embedding) Forward(b kernels.Backend, ws *Workspace, dst kernels.Tensor, tokens []int32) {
	if !e.sharded {
		b.Embedding(dst, e.Table, tokens)
		return
	}
	e.local = e.local[:0]
	pad := int32(e.Vocab[1] - e.Vocab[0])
	for _, id := range tokens {
		local := id - int32(e.Vocab[0])
		if local < 0 || local >= pad {
			local = pad
		}
		e.local = append(e.local, local)
	}
	b.Embedding(dst, e.Table, e.local)
	ws.AllReduce(dst)
}
