package cpu

import (
	"fmt"
	"math"
	"unsafe"

	"github.com/tessera-llm/tessera/kernels"
)

// Grain sizes: the fewest items a chunk of an op gets.
const (
	elemGrain = 4096 // elements, for elementwise ops
	rowGrain  = 1    // rows, for row-wise ops
)

func sameLen(op string, ts ...*Tensor) {
	for _, t := range ts[1:] {
		if t.Len() != ts[0].Len() {
			panic(fmt.Sprintf("cpu.%s: length mismatch: %v vs %v", op, ts[0], t))
		}
	}
}

// rowOp checks that x and dst are [.., d] with the same row count and that
// each per-column parameter has d elements; it returns (rows, d).
func rowOp(op string, dst, x *Tensor, params ...*Tensor) (int, int) {
	if len(x.shape) == 0 {
		panic(fmt.Sprintf("cpu.%s: scalar input %v", op, x))
	}
	d := lastDim(x)
	if dst.Len() != x.Len() || (len(dst.shape) > 0 && lastDim(dst) != d) {
		panic(fmt.Sprintf("cpu.%s: dst %v does not match x %v", op, dst, x))
	}
	for _, p := range params {
		if p != nil && p.Len() != d {
			panic(fmt.Sprintf("cpu.%s: parameter %v, want %d elements", op, p, d))
		}
	}
	return rows(x), d
}

// LayerNorm normalises each row of x over its last dim:
// dst = (x-mean)/sqrt(var+eps)*gamma + beta, with the mean and (biased)
// variance accumulated in float64 over two passes. beta may be nil.
func (b *Backend) LayerNorm(dst, x, gamma, beta kernels.Tensor, eps float32) {
	d, xt, g := f32("LayerNorm", dst), tensor("LayerNorm", x), tensor("LayerNorm", gamma)
	var bt *Tensor
	if beta != nil {
		bt = tensor("LayerNorm", beta)
	}
	n, dim := rowOp("LayerNorm", d, xt, g, bt)
	j := b.pool.get(layerNormKernel)
	j.t[0], j.t[1], j.t[2], j.t[3] = d, xt, g, bt
	j.i[0], j.f[0] = dim, eps
	b.pool.run(j, n, rowGrain, n*dim*4)
}

func layerNormKernel(j *job, s *scratch, lo, hi int) {
	d, xt, g, bt := j.t[0], j.t[1], j.t[2], j.t[3]
	dim, eps := j.i[0], float64(j.f[0])
	gamma := span(g, 0, dim, &s.b)
	var beta []float32
	if bt != nil {
		beta = span(bt, 0, dim, &s.c)
	}
	for r := lo; r < hi; r++ {
		x := span(xt, r*dim, dim, &s.a)
		out := d.F32[r*dim : r*dim+dim]
		var sum float64
		for _, v := range x {
			sum += float64(v)
		}
		mean := sum / float64(dim)
		var ss float64
		for _, v := range x {
			dv := float64(v) - mean
			ss += dv * dv
		}
		rstd := float32(1 / math.Sqrt(ss/float64(dim)+eps))
		mf := float32(mean)
		gamma := gamma[:len(x)]
		out = out[:len(x)]
		if beta != nil {
			beta := beta[:len(x)]
			for i, v := range x {
				out[i] = (v-mf)*rstd*gamma[i] + beta[i]
			}
		} else {
			for i, v := range x {
				out[i] = (v - mf) * rstd * gamma[i]
			}
		}
	}
}

// RMSNorm: dst = x / sqrt(mean(x²)+eps) * gamma per row, the mean of
// squares accumulated in float64 (LLaMA's order: (x·r)·gamma).
func (b *Backend) RMSNorm(dst, x, gamma kernels.Tensor, eps float32) {
	d, xt, g := f32("RMSNorm", dst), tensor("RMSNorm", x), tensor("RMSNorm", gamma)
	n, dim := rowOp("RMSNorm", d, xt, g)
	j := b.pool.get(rmsNormKernel)
	j.t[0], j.t[1], j.t[2] = d, xt, g
	j.i[0], j.f[0] = dim, eps
	b.pool.run(j, n, rowGrain, n*dim*3)
}

func rmsNormKernel(j *job, s *scratch, lo, hi int) {
	d, xt, g := j.t[0], j.t[1], j.t[2]
	dim, eps := j.i[0], float64(j.f[0])
	gamma := span(g, 0, dim, &s.b)
	for r := lo; r < hi; r++ {
		x := span(xt, r*dim, dim, &s.a)
		out := d.F32[r*dim : r*dim+dim]
		var ss float64
		i0 := 0
		if useSIMD {
			i0 = len(x) &^ 7
			ss = sumSquaresAVX(unsafe.SliceData(x), i0)
		}
		for _, v := range x[i0:] {
			ss += float64(v) * float64(v)
		}
		rs := float32(1 / math.Sqrt(ss/float64(dim)+eps))
		gamma, out := gamma[:len(x)], out[:len(x)]
		if useSIMD && len(x) > 0 {
			mulScaleAVX(&out[0], &x[0], &gamma[0], len(x), rs)
			continue
		}
		for i, v := range x {
			out[i] = v * rs * gamma[i]
		}
	}
}

// act applies a to v, computed in float64 and rounded once.
func act(a kernels.Activation, v float32) float32 {
	x := float64(v)
	switch a {
	case kernels.ReLU:
		if v > 0 {
			return v
		}
		return 0
	case kernels.SiLU:
		return float32(x / (1 + math.Exp(-x)))
	case kernels.GELUTanh:
		const c = 0.7978845608028654 // √(2/π)
		return float32(0.5 * x * (1 + math.Tanh(c*(x+0.044715*x*x*x))))
	case kernels.GELUErf:
		return float32(0.5 * x * (1 + math.Erf(x/math.Sqrt2)))
	}
	panic(fmt.Sprintf("cpu: unknown activation %d", a))
}

func checkAct(op string, a kernels.Activation) {
	if a < kernels.ReLU || a > kernels.GELUErf {
		panic(fmt.Sprintf("cpu.%s: unknown activation %d", op, a))
	}
}

// Act applies an activation elementwise; dst may alias x.
func (b *Backend) Act(dst, x kernels.Tensor, a kernels.Activation) {
	d, xt := f32("Act", dst), tensor("Act", x)
	sameLen("Act", d, xt)
	checkAct("Act", a)
	j := b.pool.get(actKernel)
	j.t[0], j.t[1], j.act = d, xt, a
	b.pool.run(j, d.Len(), elemGrain, d.Len()*16)
}

func actKernel(j *job, s *scratch, lo, hi int) {
	x := span(j.t[1], lo, hi-lo, &s.a)
	out := j.t[0].F32[lo:hi]
	a := j.act
	if a == kernels.SiLU && useSIMD && len(x) > 0 {
		siluMulAVX(&out[0], &x[0], nil, len(x))
		return
	}
	if a == kernels.ReLU {
		for i, v := range x {
			out[i] = max(v, 0)
		}
		return
	}
	for i, v := range x {
		out[i] = act(a, v)
	}
}

// GLU: dst = act(gate) * up elementwise; dst may alias gate or up.
func (b *Backend) GLU(dst, gate, up kernels.Tensor, a kernels.Activation) {
	d, g, u := f32("GLU", dst), tensor("GLU", gate), tensor("GLU", up)
	sameLen("GLU", d, g, u)
	checkAct("GLU", a)
	j := b.pool.get(gluKernel)
	j.t[0], j.t[1], j.t[2], j.act = d, g, u, a
	b.pool.run(j, d.Len(), elemGrain, d.Len()*16)
}

func gluKernel(j *job, s *scratch, lo, hi int) {
	g := span(j.t[1], lo, hi-lo, &s.a)
	u := span(j.t[2], lo, hi-lo, &s.b)
	out := j.t[0].F32[lo:hi]
	u = u[:len(g)]
	if j.act == kernels.SiLU && useSIMD && len(g) > 0 {
		siluMulAVX(&out[0], &g[0], &u[0], len(g))
		return
	}
	for i, v := range g {
		out[i] = act(j.act, v) * u[i]
	}
}

// softmax writes the max-subtracted softmax of x into out (may alias).
func softmax(out, x []float32) {
	if len(x) == 0 {
		return
	}
	out = out[:len(x)]
	m := x[0]
	for _, v := range x[1:] {
		m = max(m, v)
	}
	if useSIMD {
		inv := 1 / expSumAVX(&out[0], &x[0], len(x), m)
		mulScaleAVX(&out[0], &out[0], nil, len(x), inv)
		return
	}
	var sum float64
	for i, v := range x {
		e := float32(math.Exp(float64(v - m)))
		out[i] = e
		sum += float64(e)
	}
	inv := float32(1 / sum)
	for i := range out {
		out[i] *= inv
	}
}

// Embedding gathers rows ids of table [vocab, d] (any dtype) into dst
// [len(ids), d]. An id outside the table panics.
func (b *Backend) Embedding(dst, table kernels.Tensor, ids []int32) {
	d, t := f32("Embedding", dst), tensor("Embedding", table)
	if len(t.shape) != 2 {
		panic(fmt.Sprintf("cpu.Embedding: table %v is not 2-D", t))
	}
	vocab, dim := t.shape[0], t.shape[1]
	if d.Len() != len(ids)*dim {
		panic(fmt.Sprintf("cpu.Embedding: dst %v, want [%d %d]", d, len(ids), dim))
	}
	for _, id := range ids {
		if id < 0 || int(id) >= vocab {
			panic(fmt.Sprintf("cpu.Embedding: id %d outside vocabulary of %d", id, vocab))
		}
	}
	j := b.pool.get(embeddingKernel)
	j.t[0], j.t[1], j.i[0], j.ids = d, t, dim, ids
	b.pool.run(j, len(ids), rowGrain, len(ids)*dim)
}

func embeddingKernel(j *job, _ *scratch, lo, hi int) {
	dim := j.i[0]
	for r := lo; r < hi; r++ {
		widen(j.t[0].F32[r*dim:r*dim+dim], j.t[1], int(j.ids[r])*dim)
	}
}

// Add: dst = a + b elementwise; dst may alias a or b.
func (b *Backend) Add(dst, x, y kernels.Tensor) {
	d, at, bt := f32("Add", dst), tensor("Add", x), tensor("Add", y)
	sameLen("Add", d, at, bt)
	j := b.pool.get(addKernel)
	j.t[0], j.t[1], j.t[2] = d, at, bt
	b.pool.run(j, d.Len(), elemGrain, d.Len())
}

func addKernel(j *job, s *scratch, lo, hi int) {
	x := span(j.t[1], lo, hi-lo, &s.a)
	y := span(j.t[2], lo, hi-lo, &s.b)
	out := j.t[0].F32[lo:hi]
	y, out = y[:len(x)], out[:len(x)]
	for i, v := range x {
		out[i] = v + y[i]
	}
}

// Scale: dst = x * s; dst may alias x.
func (b *Backend) Scale(dst, x kernels.Tensor, f float32) {
	d, xt := f32("Scale", dst), tensor("Scale", x)
	sameLen("Scale", d, xt)
	j := b.pool.get(scaleKernel)
	j.t[0], j.t[1], j.f[0] = d, xt, f
	b.pool.run(j, d.Len(), elemGrain, d.Len())
}

func scaleKernel(j *job, s *scratch, lo, hi int) {
	x := span(j.t[1], lo, hi-lo, &s.a)
	scaleInto(j.t[0].F32[lo:hi], x, j.f[0])
}

// scaleInto sets dst[i] = x[i]·s over len(x) (dst may alias x).
func scaleInto(dst, x []float32, s float32) {
	dst = dst[:len(x)]
	if useSIMD && len(x) > 0 {
		mulScaleAVX(&dst[0], &x[0], nil, len(x), s)
		return
	}
	for i, v := range x {
		dst[i] = v * s
	}
}
