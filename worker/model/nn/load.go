package nn

import (
	"github.com/tessera-llm/tessera/kernels"
	"github.com/tessera-llm/tessera/shard/spec"
	"github.com/tessera-llm/tessera/worker/model"
)

// LoadLinear reads prefix.weight [out, in] and, when bias is set,
// prefix.bias [out].
func LoadLinear(l *model.Loader, prefix string, out, in int, bias bool) Linear {
	lin := Linear{Weight: l.Matrix(prefix+".weight", out, in)}
	if bias {
		lin.Bias = l.Tensor(prefix+".bias", out)
	}
	return lin
}

// LoadLayerNorm reads a LayerNorm's prefix.weight and prefix.bias [width].
func LoadLayerNorm(l *model.Loader, prefix string, width int, eps float64) Norm {
	return Norm{Weight: l.Tensor(prefix+".weight", width), Bias: l.Tensor(prefix+".bias", width), Eps: float32(eps)}
}

// FusedQKV splits a [heads·3·headDim, hidden] projection (with its bias)
// into Q, K and V. Rows are laid out [heads, 3, headDim], as BLOOM and
// ChatGLM store query_key_value, so each head contributes one contiguous
// run of rows to each of Q, K and V. A rank holds localHeads whole
// (q,k,v) groups of the heads in the checkpoint.
func FusedQKV(l *model.Loader, prefix string, heads, localHeads, headDim, hidden int) [3]Linear {
	rows := 3 * heads * headDim
	var parts [3][][2]int
	for h := range localHeads {
		for j := range 3 {
			start := (3*h + j) * headDim
			parts[j] = append(parts[j], [2]int{start, start + headDim})
		}
	}
	w := l.SplitMatrix(prefix+".weight", []int{rows, hidden}, parts[0], parts[1], parts[2])
	bias := l.Split(prefix+".bias", []int{rows}, parts[0], parts[1], parts[2])
	var out [3]Linear
	for j := range out {
		out[j] = Linear{Weight: w[j], Bias: bias[j]}
	}
	return out
}

// FusedGLU reads a GLU projection stored as one [2·inner, hidden] matrix
// (GLM-130B's GeGLU: the output splits into halves x1, x2 and the block
// computes x1·act(x2)). It returns the gate (second half) and the up
// projection (first half), ready for a GatedMLP. A rank holds localInner
// columns of each half.
func FusedGLU(l *model.Loader, prefix string, inner, localInner, hidden int, bias bool) (gate, up Linear) {
	first, second := [][2]int{{0, localInner}}, [][2]int{{localInner, 2 * localInner}}
	w := l.SplitMatrix(prefix+".weight", []int{2 * inner, hidden}, second, first)
	gate, up = Linear{Weight: w[0]}, Linear{Weight: w[1]}
	if bias {
		b := l.Split(prefix+".bias", []int{2 * inner}, second, first)
		gate.Bias, up.Bias = b[0], b[1]
	}
	return gate, up
}

// LoadLMHead is the final norm and the vocabulary projection: the token
// embeddings when the spec ties them, lm_head.weight [vocab, hidden]
// otherwise (a rank's vocabulary slice of either).
func LoadLMHead(l *model.Loader, s *spec.Spec, norm Norm, embeddings kernels.Tensor) LMHead {
	proj := embeddings
	if !s.TiedEmbeddings {
		proj = l.Matrix("lm_head.weight", s.Vocab, s.Hidden)
	}
	return LMHead{Norm: norm, Proj: Linear{Weight: proj}}
}
