package cpu

import (
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

// ropeCache maps a RoPE's key to the widest table built so far.
type ropeCache struct {
	mu sync.RWMutex
	m  map[kernels.RoPEKey]*ropeTable
}

// table returns a table for r covering positions [0, maxPos].
func (c *ropeCache) table(r kernels.RoPE, maxPos int) *ropeTable {
	k := r.Key()
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
	t = &ropeTable{half: r.Dim / 2, n: n}
	t.cos, t.sin = r.Table(n)
	if c.m == nil {
		c.m = make(map[kernels.RoPEKey]*ropeTable)
	}
	c.m[k] = t
	return t
}

// ApplyRoPE rotates dims [Offset, Offset+Dim) of every head of x
// [n, Heads*HeadDim] in place, rotate-half style: pair (i, i+Dim/2) turns
// by pos·Theta^(-2i/Dim) (or pos·InvFreq[i]). cos/sin tables are cached
// per RoPE key.
func (b *Backend) ApplyRoPE(x kernels.Tensor, pos []int32, r kernels.RoPE) {
	xt := f32("ApplyRoPE", x)
	maxPos, err := r.Check(xt, pos)
	check("ApplyRoPE", err)
	j := b.pool.get(ropeKernel)
	j.t[0], j.ids = xt, pos
	j.rope = b.ropes.table(r, maxPos)
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
