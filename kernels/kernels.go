// Package kernels defines the small interface every compute backend fills.
//
// A Backend owns its tensors: activations are always float32, weights may be
// stored as float32, float16 or bfloat16 and are widened inside the kernels.
// The CPU backend (kernels/cpu) is the oracle every other backend is checked
// against. Optional capabilities are separate interfaces found by type
// assertion, so a backend grows without breaking the others.
//
// Every op writes into a caller-provided dst, so a decode loop can reuse its
// buffers and allocate nothing per token.
package kernels

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"
)

// DType is the element type of a tensor.
type DType uint8

const (
	F32 DType = iota + 1
	F16
	BF16
	// Q8_0 is a block-quantized weight format: every run of 32 weights of
	// a row is int8 values times one float16 scale (llama.cpp's Q8_0).
	// Checkpoints never hold it: a Quantizer makes it from a loaded
	// weight.
	Q8_0
)

// Size is the number of bytes one element occupies.
func (d DType) Size() int {
	switch d {
	case F32:
		return 4
	case F16, BF16:
		return 2
	}
	return 0
}

func (d DType) String() string {
	switch d {
	case F32:
		return "F32"
	case F16:
		return "F16"
	case BF16:
		return "BF16"
	case Q8_0:
		return "Q8_0"
	}
	return fmt.Sprintf("DType(%d)", uint8(d))
}

// ErrQuantize reports a weight a backend cannot quantize.
var ErrQuantize = errors.New("kernels: cannot quantize")

// ParseQuantization maps a --quantize value to its weight format: "" and
// "none" keep the checkpoint's dtype (0), "q8" is Q8_0.
func ParseQuantization(s string) (DType, error) {
	switch s {
	case "", "none":
		return 0, nil
	case "q8", "q8_0", "Q8_0":
		return Q8_0, nil
	}
	return 0, fmt.Errorf("%w: unknown format %q (known: q8)", ErrQuantize, s)
}

// Quantizer is a backend that converts loaded weights to a quantized
// format, found by type assertion. The result serves as MatMul's weight
// and as an Embedding table.
type Quantizer interface {
	// Quantize returns w [rows, cols] converted to dt; w is unchanged.
	Quantize(w Tensor, dt DType) (Tensor, error)
}

// MatMuls is a backend that runs several MatMuls of one x as a single
// parallel op, found by type assertion: dst[i] = x·w[i]ᵀ + bias[i] (a nil
// bias adds nothing). Decode's q/k/v and gate/up projections then cost one
// dispatch and one join instead of three or two.
type MatMuls interface {
	MatMuls(dst []Tensor, x Tensor, w, bias []Tensor)
}

// Tensor is a dense row-major array owned by a Backend. Only the backend
// that made it may read or write its storage.
type Tensor interface {
	DType() DType
	// Shape is the tensor's dimensions; callers must not modify it.
	Shape() []int
	// Len is the number of elements, the product of Shape.
	Len() int
}

// Activation names an elementwise nonlinearity.
type Activation uint8

const (
	ReLU Activation = iota + 1
	SiLU
	GELUTanh // tanh approximation (BLOOM, ChatGLM, GPT-2)
	GELUErf  // exact erf form (BERT)
)

// Mask names which cached keys a query may attend to.
type Mask uint8

const (
	// Causal: the query at absolute position p sees keys 0..p.
	Causal Mask = iota + 1
	// Bidirectional: every query sees every key.
	Bidirectional
	// Prefix: keys before PrefixLen are visible to every query; later keys
	// are causal (ChatGLM's prefix-LM mask).
	Prefix
)

// Attention describes one sequence's attention over a paged KV cache.
//
// The caches are pools shaped [blocks, BlockSize, KVHeads, HeadDim]; token t
// of the sequence lives in block Table[t/BlockSize] at slot t%BlockSize.
// The queries are the last n of Keys tokens: query i sits at absolute
// position Keys-n+i (that matters for Causal and Prefix only).
type Attention struct {
	Heads, KVHeads, HeadDim int
	// Scale multiplies q·k before the bias; usually 1/sqrt(HeadDim).
	Scale float32
	Mask  Mask
	// PrefixLen is the bidirectional prefix length for Mask == Prefix.
	PrefixLen int
	// Slopes are ALiBi slopes, one per local query head (nil for none).
	// The bias added to the score of key j is Slopes[h]*j, as BLOOM does;
	// softmax makes it equal to -slope*(i-j).
	Slopes []float32
	// KVMap maps a local query head to its local kv head. Nil means
	// h / (Heads/KVHeads), the usual grouped-query layout.
	KVMap     []int32
	BlockSize int
	Table     []int32
	// Keys is how many tokens of the sequence are in the cache, including
	// the n query tokens when they were just written (self-attention).
	Keys int
	// Window, when positive, is a sliding window over a Causal mask
	// (Mistral's sliding_window): the query at position p sees keys j with
	// p-Window < j ≤ p, so Window keys counting itself. 0 is no window.
	Window int
}

// Visible is the range [lo, hi) of keys the query at absolute position p
// sees; every mask makes one contiguous range visible.
func (a *Attention) Visible(p int) (lo, hi int) {
	switch a.Mask {
	case Causal:
		if a.Window > 0 {
			lo = max(p+1-a.Window, 0)
		}
		return lo, p + 1
	case Prefix:
		return 0, min(a.Keys, max(a.PrefixLen, p+1))
	}
	return 0, a.Keys
}

// KVHead returns the local kv head that local query head h reads.
func (a *Attention) KVHead(h int) int {
	if a.KVMap != nil {
		return int(a.KVMap[h])
	}
	return h / (a.Heads / a.KVHeads)
}

// Validate checks the descriptor for n queries: at least n keys, one
// slope per head, a KVMap inside the kv heads (or heads that group evenly
// over them), a known mask and a window only over a causal one. A bad
// descriptor is a programming error, so backends panic with this error.
func (a *Attention) Validate(n int) error {
	if a.Keys < n {
		return fmt.Errorf("%d queries but only %d keys", n, a.Keys)
	}
	if a.Slopes != nil && len(a.Slopes) != a.Heads {
		return fmt.Errorf("%d ALiBi slopes for %d heads", len(a.Slopes), a.Heads)
	}
	if a.KVMap != nil {
		if len(a.KVMap) != a.Heads {
			return fmt.Errorf("KVMap has %d entries for %d heads", len(a.KVMap), a.Heads)
		}
		for _, kv := range a.KVMap {
			if kv < 0 || int(kv) >= a.KVHeads {
				return fmt.Errorf("KVMap entry %d outside %d kv heads", kv, a.KVHeads)
			}
		}
	} else if a.Heads%a.KVHeads != 0 {
		return fmt.Errorf("%d heads do not group over %d kv heads; set KVMap", a.Heads, a.KVHeads)
	}
	switch a.Mask {
	case Causal, Bidirectional, Prefix:
	default:
		return fmt.Errorf("unknown mask %d", a.Mask)
	}
	if a.Window < 0 || a.Window > 0 && a.Mask != Causal {
		return fmt.Errorf("window %d with mask %d: a window is positive and over a causal mask", a.Window, a.Mask)
	}
	return nil
}

// RoPE describes a rotate-half rotary embedding applied to dims
// [Offset, Offset+Dim) of every head of a [n, Heads*HeadDim] tensor.
// Pair (i, i+Dim/2) rotates by pos * Theta^(-2i/Dim), or by
// pos * InvFreq[i] when InvFreq is set.
type RoPE struct {
	Heads, HeadDim int
	Offset, Dim    int
	Theta          float32
	// InvFreq are the Dim/2 pair frequencies of a scaled RoPE (linear,
	// llama3, yarn); nil for the plain Theta series. Backends cache tables
	// by this slice: keep it alive and unchanged.
	InvFreq []float32
}

// RoPEKey identifies a RoPE's cos/sin table for a backend's cache.
type RoPEKey struct {
	Dim     int
	Theta   float32
	InvFreq *float32
}

// Key is the table cache key of r.
func (r RoPE) Key() RoPEKey {
	k := RoPEKey{Dim: r.Dim, Theta: r.Theta}
	if len(r.InvFreq) > 0 {
		k.InvFreq = &r.InvFreq[0]
	}
	return k
}

// Table computes cos and sin of the angle pos·inv_freq[i] for positions
// [0, n), laid out [pos][i], in Hugging Face's float32 arithmetic:
// inv_freq = 1 / Theta**(arange(0, Dim, 2).float() / Dim) unless InvFreq
// gives it, and the angle is the float32 product.
func (r RoPE) Table(n int) (cos, sin []float32) {
	half := r.Dim / 2
	inv := r.InvFreq
	if len(inv) != half {
		inv = make([]float32, half)
		for i := range inv {
			e := float32(2*i) / float32(r.Dim)
			inv[i] = 1 / float32(math.Pow(float64(r.Theta), float64(e)))
		}
	}
	cos, sin = make([]float32, n*half), make([]float32, n*half)
	for p := range n {
		for i, f := range inv {
			a := float64(float32(p) * f)
			cos[p*half+i] = float32(math.Cos(a))
			sin[p*half+i] = float32(math.Sin(a))
		}
	}
	return cos, sin
}

// Backend is the set of kernels a model needs. Shapes are checked by the
// caller's construction; a backend may panic on a shape mismatch since that
// is a programming error, never a user input error.
type Backend interface {
	Name() string

	// Alloc returns a zeroed float32 tensor.
	Alloc(shape ...int) Tensor
	// FromFloat32 copies host data into a new float32 tensor.
	FromFloat32(data []float32, shape ...int) Tensor
	// Upload makes a weight tensor from little-endian bytes of dtype dt.
	Upload(dt DType, raw []byte, shape ...int) (Tensor, error)
	// Read copies a float32 tensor into dst (len(dst) >= t.Len()).
	Read(t Tensor, dst []float32)
	// Write copies src (len(src) == t.Len()) into a float32 tensor; with
	// Read it moves activations between ranks and stages.
	Write(t Tensor, src []float32)
	// Rows is a view of rows [a,b) of t seen as [Shape[0], rest...].
	Rows(t Tensor, a, b int) Tensor
	// View is t with another shape of the same element count.
	View(t Tensor, shape ...int) Tensor

	// MatMul: dst[n,m] = x[n,k] · w[m,k]ᵀ (+ bias[m] when bias != nil).
	// w is in Hugging Face's [out, in] layout and may be any DType.
	MatMul(dst, x, w, bias Tensor)
	// LayerNorm normalises each row of x over its last dim.
	LayerNorm(dst, x, gamma, beta Tensor, eps float32)
	// RMSNorm: dst = x / sqrt(mean(x²)+eps) * gamma, per row.
	RMSNorm(dst, x, gamma Tensor, eps float32)
	// Act applies an activation elementwise; dst may alias x.
	Act(dst, x Tensor, act Activation)
	// GLU: dst = act(gate) * up (SwiGLU with SiLU, GeGLU with GELU).
	GLU(dst, gate, up Tensor, act Activation)
	// ApplyRoPE rotates x [n, Heads*HeadDim] in place; pos has n entries.
	ApplyRoPE(x Tensor, pos []int32, r RoPE)
	// Embedding gathers rows of table [vocab, d] into dst [len(ids), d].
	Embedding(dst, table Tensor, ids []int32)
	// Add: dst = a + b elementwise; dst may alias a or b.
	Add(dst, a, b Tensor)
	// Scale: dst = x * s; dst may alias x.
	Scale(dst, x Tensor, s float32)

	// WriteKV stores k, v [n, KVHeads*HeadDim] as tokens start..start+n-1
	// of the sequence whose block table is table.
	WriteKV(kCache, vCache, k, v Tensor, blockSize int, table []int32, start int)
	// Attend computes softmax(q·kᵀ·Scale + ALiBi + mask)·v for q
	// [n, Heads*HeadDim] into dst [n, Heads*HeadDim].
	Attend(dst, q, kCache, vCache Tensor, a *Attention)
}

// ErrUnknownBackend is returned by Open for a name nobody registered.
var ErrUnknownBackend = errors.New("kernels: unknown backend")

var (
	mu       sync.Mutex
	registry = map[string]func() (Backend, error){}
)

// Register makes a backend available by name. Backends call it from init.
func Register(name string, open func() (Backend, error)) {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := registry[name]; dup {
		panic("kernels: backend registered twice: " + name)
	}
	registry[name] = open
}

// Open returns the backend registered under name.
func Open(name string) (Backend, error) {
	mu.Lock()
	open, ok := registry[name]
	mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("%w %q (available: %v)", ErrUnknownBackend, name, Names())
	}
	return open()
}

// Names lists the registered backends, sorted.
func Names() []string {
	mu.Lock()
	defer mu.Unlock()
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
