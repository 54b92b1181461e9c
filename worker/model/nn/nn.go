// Package nn holds the transformer building blocks every architecture
// composes: linear layers, norms, self-attention over the paged KV cache,
// plain and gated MLPs, and the LM head. An architecture package wires them
// together in the order its paper gives; no block is written twice.
package nn

import (
	"github.com/tessera-llm/tessera/kernels"
	"github.com/tessera-llm/tessera/shard/spec"
	"github.com/tessera-llm/tessera/worker/kvcache"
)

// Linear is y = x·Wᵀ + b with W in Hugging Face's [out, in] layout. On a
// tensor-parallel rank it holds a slice: output rows (column-parallel) or
// input columns (row-parallel, whose partial sums the block all-reduces).
type Linear struct {
	Weight, Bias kernels.Tensor
}

// Forward writes x·Wᵀ + b into dst.
func (l *Linear) Forward(b kernels.Backend, dst, x kernels.Tensor) {
	b.MatMul(dst, x, l.Weight, l.Bias)
}

// maxProjections is the most linears Workspace.project runs together.
const maxProjections = 3

// project writes x·Wᵀ + b of the first n linears into their dst: as one
// op on a backend that fuses MatMuls (decode's q/k/v and gate/up then
// join their goroutines once), else one MatMul each. The operands go
// through the workspace's arrays, so the slices allocate nothing.
func (ws *Workspace) project(b kernels.Backend, x kernels.Tensor, n int, dst [maxProjections]kernels.Tensor, ls [maxProjections]*Linear) {
	mm, ok := b.(kernels.MatMuls)
	if !ok {
		for i := range n {
			ls[i].Forward(b, dst[i], x)
		}
		return
	}
	ws.proj.dst = dst
	for i := range n {
		ws.proj.w[i], ws.proj.b[i] = ls[i].Weight, ls[i].Bias
	}
	mm.MatMuls(ws.proj.dst[:n], x, ws.proj.w[:n], ws.proj.b[:n])
	ws.proj.dst, ws.proj.w, ws.proj.b = [maxProjections]kernels.Tensor{}, [maxProjections]kernels.Tensor{}, [maxProjections]kernels.Tensor{}
}

// Norm is a LayerNorm (with Bias) or an RMSNorm (Bias nil, RMS true).
type Norm struct {
	Weight, Bias kernels.Tensor
	Eps          float32
	RMS          bool
}

// NewNorm picks the kind from the spec.
func NewNorm(s *spec.Spec, weight, bias kernels.Tensor) Norm {
	return Norm{Weight: weight, Bias: bias, Eps: float32(s.NormEps), RMS: s.Norm == spec.RMSNorm}
}

// Forward normalises each row of x into dst (dst may alias x).
func (n *Norm) Forward(b kernels.Backend, dst, x kernels.Tensor) {
	if n.RMS {
		b.RMSNorm(dst, x, n.Weight, n.Eps)
		return
	}
	b.LayerNorm(dst, x, n.Weight, n.Bias, n.Eps)
}

// Rotary is one rotate-half RoPE over dims [Offset, Offset+Dim) of each
// head, driven by position stream Stream of the workspace (LLaMA uses one;
// ChatGLM rotates each half of the head by a different stream).
type Rotary struct {
	Offset, Dim int
	Theta       float32
	// InvFreq, if set, are the pair frequencies of a scaled RoPE.
	InvFreq []float32
	Stream  int
}

// SelfAttention is multi-head attention whose keys and values go through
// the paged KV cache, so prefill and decode are the same code.
type SelfAttention struct {
	Q, K, V, O              Linear
	Heads, KVHeads, HeadDim int
	Scale                   float32
	Mask                    kernels.Mask
	// Window is a causal mask's sliding window (kernels.Attention.Window).
	Window int
	// Slopes are this rank's ALiBi slopes (a slice of the global list).
	Slopes []float32
	// KVMap maps local query heads to local kv heads when a rank's heads
	// do not split evenly over its kv heads (nil: the grouped default).
	KVMap  []int32
	Rotary []Rotary
}

// Forward attends x [n, hidden] for layer's cache and writes the
// projected output into dst [n, hidden].
func (a *SelfAttention) Forward(b kernels.Backend, ws *Workspace, cache *kvcache.Cache, layer int, dst, x kernels.Tensor) {
	ws.project(b, x, 3, [maxProjections]kernels.Tensor{ws.Q, ws.K, ws.V}, [maxProjections]*Linear{&a.Q, &a.K, &a.V})
	for _, r := range a.Rotary {
		rope := kernels.RoPE{Heads: a.Heads, HeadDim: a.HeadDim, Offset: r.Offset, Dim: r.Dim, Theta: r.Theta, InvFreq: r.InvFreq}
		b.ApplyRoPE(ws.Q, ws.Pos[r.Stream], rope)
		rope.Heads = a.KVHeads
		b.ApplyRoPE(ws.K, ws.Pos[r.Stream], rope)
	}
	for i := range ws.spans {
		sp := &ws.spans[i]
		seq := sp.seq
		b.WriteKV(cache.K[layer], cache.V[layer], sp.k, sp.v, cache.BlockSize, seq.Table, seq.Len)
		sp.att = attention(a.Heads, a.KVHeads, a.HeadDim, a.Scale, a.Mask, cache, seq, seq.Len+sp.n)
		sp.att.Slopes, sp.att.KVMap, sp.att.Window = a.Slopes, a.KVMap, a.Window
		b.Attend(sp.ctx, sp.q, cache.K[layer], cache.V[layer], &sp.att)
	}
	a.O.Forward(b, dst, ws.Ctx)
	ws.AllReduce(dst)
}

// attention describes one span's attention over the first keys tokens of
// seq in cache.
func attention(heads, kvHeads, headDim int, scale float32, mask kernels.Mask, cache *kvcache.Cache, seq *kvcache.Seq, keys int) kernels.Attention {
	return kernels.Attention{
		Heads: heads, KVHeads: kvHeads, HeadDim: headDim, Scale: scale,
		Mask: mask, PrefixLen: seq.PrefixLen,
		BlockSize: cache.BlockSize, Table: seq.Table, Keys: keys,
	}
}

// Memory is what cross-attention reads: an encoder's output projected to
// keys and values once per request, kept per decoder layer in a paged
// cache of its own. Sources holds, per batch span, the sequence of that
// cache the span's decoder sequence attends to.
type Memory struct {
	Cache   *kvcache.Cache
	Sources []*kvcache.Seq
}

// CrossAttention is an encoder-decoder's attention from decoder states to
// the encoder output (the original Transformer's second sublayer). Keys
// and values come from Memory; Remember fills it once per request.
type CrossAttention struct {
	Q, K, V, O     Linear
	Heads, HeadDim int
	Scale          float32
}

// Remember projects the encoder output memory [m, hidden] to keys and
// values for layer and stores them as tokens 0..m-1 of src, whose blocks
// the caller has reserved. k and v are scratch [m, heads·headDim].
func (a *CrossAttention) Remember(b kernels.Backend, cache *kvcache.Cache, layer int, src *kvcache.Seq, memory, k, v kernels.Tensor) {
	a.K.Forward(b, k, memory)
	a.V.Forward(b, v, memory)
	b.WriteKV(cache.K[layer], cache.V[layer], k, v, cache.BlockSize, src.Table, 0)
}

// Forward attends x [n, hidden] to each span's source in ws.Memory and
// writes the projected output into dst [n, hidden].
func (a *CrossAttention) Forward(b kernels.Backend, ws *Workspace, layer int, dst, x kernels.Tensor) {
	a.Q.Forward(b, ws.Q, x)
	cache := ws.Memory.Cache
	for i := range ws.spans {
		sp := &ws.spans[i]
		src := ws.Memory.Sources[i]
		sp.att = attention(a.Heads, a.Heads, a.HeadDim, a.Scale, kernels.Bidirectional, cache, src, src.Len)
		// Attend wants no more queries than keys. Every query sees every
		// source token, so a span longer than its source runs in chunks.
		if sp.n <= src.Len {
			b.Attend(sp.ctx, sp.q, cache.K[layer], cache.V[layer], &sp.att)
			continue
		}
		for lo := 0; lo < sp.n; lo += src.Len {
			hi := min(lo+src.Len, sp.n)
			b.Attend(b.Rows(sp.ctx, lo, hi), b.Rows(sp.q, lo, hi), cache.K[layer], cache.V[layer], &sp.att)
		}
	}
	a.O.Forward(b, dst, ws.Ctx)
}

// MLP is Down(act(Up(x))).
type MLP struct {
	Up, Down Linear
	Act      kernels.Activation
}

// Forward writes the MLP of x into dst.
func (m *MLP) Forward(b kernels.Backend, ws *Workspace, dst, x kernels.Tensor) {
	m.Up.Forward(b, ws.Up, x)
	b.Act(ws.Up, ws.Up, m.Act)
	m.Down.Forward(b, dst, ws.Up)
	ws.AllReduce(dst)
}

// GatedMLP is Down(act(Gate(x)) * Up(x)): SwiGLU with SiLU, GeGLU with GELU.
type GatedMLP struct {
	Gate, Up, Down Linear
	Act            kernels.Activation
}

// Forward writes the gated MLP of x into dst.
func (m *GatedMLP) Forward(b kernels.Backend, ws *Workspace, dst, x kernels.Tensor) {
	ws.project(b, x, 2, [maxProjections]kernels.Tensor{ws.Gate, ws.Up}, [maxProjections]*Linear{&m.Gate, &m.Up})
	b.GLU(ws.Up, ws.Gate, ws.Up, m.Act)
	m.Down.Forward(b, dst, ws.Up)
	ws.AllReduce(dst)
}

// LMHead is the final norm and the vocabulary projection, applied only to
// the rows that need logits. A Norm without weights is skipped (Marian
// has no final norm).
type LMHead struct {
	Norm Norm
	Proj Linear
}

// Forward gathers the logit rows of x, normalises them and projects them
// into logits [rows, vocab].
func (h *LMHead) Forward(b kernels.Backend, ws *Workspace, x, logits kernels.Tensor) {
	b.Embedding(ws.Sel, x, ws.selRows)
	if h.Norm.Weight != nil {
		h.Norm.Forward(b, ws.Sel, ws.Sel)
	}
	h.Proj.Forward(b, logits, ws.Sel)
}

// Activation maps a spec activation onto the backend's.
func Activation(a spec.Activation) kernels.Activation {
	switch a {
	case spec.ReLU:
		return kernels.ReLU
	case spec.SiLU:
		return kernels.SiLU
	case spec.GELUErf:
		return kernels.GELUErf
	default:
		return kernels.GELUTanh
	}
}
