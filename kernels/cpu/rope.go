package cpu

import (
	"math"
	"sync"

	"github.com/tessera-llm/tessera/kernels"
)

// ropeTable holds cos and sin of pos·invFreq[i] for positions [0, n) and
// pairs i in [0, dim/2), laid out [pos][i]. A table is immutable once
// published; growing one replaces it.
type ropeTable struct {
	half     int
	n        int
	cos, sin []float32
}

type ropeKey struct {
	dim   int
	theta float32
}

// ropeCache maps (Dim, Theta) to the widest table built so far.
type ropeCache struct {
	mu sync.RWMutex
	m  map[ropeKey]*ropeTable
}

// table returns a table for dim and theta covering positions [0, maxPos].
func (c *ropeCache) table(dim int, theta float32, maxPos int) *ropeTable {
	k := ropeKey{dim, theta}
	c.mu.RLock()
	t := c.m[k]
	c.mu.RUnlock()
	if t != nil && t.n > maxPos {
		return t
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if t = c.m[k]; t != nil && t.n > maxPos {
		return t
	}
	n := max(maxPos+1, 256)
	if t != nil {
		n = max(n, 2*t.n)
	}
	t = newRopeTable(dim, theta, n)
	if c.m == nil {
		c.m = make(map[ropeKey]*ropeTable)
	}
	c.m[k] = t
	return t
}

// newRopeTable follows Hugging Face's float32 arithmetic:
// inv_freq = 1 / base**(arange(0, dim, 2).float() / dim), angle =
// pos.float() * inv_freq, then cos and sin of the float32 angle.
func newRopeTable(dim int, theta float32, n int) *ropeTable {
	half := dim / 2
	inv := make([]float32, half)
	for i := range inv {
		e := float32(2*i) / float32(dim)
		inv[i] = 1 / float32(math.Pow(float64(theta), float64(e)))
	}
	t := &ropeTable{half: half, n: n, cos: make([]float32, n*half), sin: make([]float32, n*half)}
	for p := range n {
		for i, f := range inv {
			a := float64(float32(p) * f)
			t.cos[p*half+i] = float32(math.Cos(a))
			t.sin[p*half+i] = float32(math.Sin(a))
		}
	}
	return t
}

// ApplyRoPE rotates dims [Offset, Offset+Dim) of every head of x
// [n, Heads*HeadDim] in place, rotate-half style: pair (i, i+Dim/2) turns
// by pos·Theta^(-2i/Dim). cos/sin tables are cached per (Dim, Theta).
func (b *Backend) ApplyRoPE(x kernels.Tensor, pos []int32, r kernels.RoPE) {
	xt := f32("ApplyRoPE", x)
	maxPos, err := r.Check(xt, pos)
	check("ApplyRoPE", err)
	j := b.pool.get(ropeKernel)
	j.t[0], j.ids = xt, pos
	j.rope = b.ropes.table(r.Dim, r.Theta, maxPos)
	j.i[0], j.i[1], j.i[2], j.i[3] = r.Heads, r.HeadDim, r.Offset, r.Dim
	b.pool.run(j, len(pos), rowGrain, len(pos)*r.Heads*r.Dim*3)
}

func ropeKernel(j *job, _ *scratch, lo, hi int) {
	heads, headDim, off, dim := j.i[0], j.i[1], j.i[2], j.i[3]
	tab := j.rope
	half := dim / 2
	stride := heads * headDim
	for row := lo; row < hi; row++ {
		p := int(j.ids[row])
		c := tab.cos[p*half : p*half+half]
		s := tab.sin[p*half : p*half+half]
		x := j.t[0].F32[row*stride : row*stride+stride]
		for h := range heads {
			base := h*headDim + off
			x1 := x[base : base+half]
			x2 := x[base+half : base+dim]
			x2 = x2[:len(x1)]
			c, s := c[:len(x1)], s[:len(x1)]
			for i, a := range x1 {
				bb := x2[i]
				x1[i] = a*c[i] - bb*s[i]
				x2[i] = bb*c[i] + a*s[i]
			}
		}
	}
}
