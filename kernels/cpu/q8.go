package cpu

import (
	"fmt"
	"math"

	"github.com/tessera-llm/tessera/kernels"
)

// Q8_0 storage. A weight [m, k] is cut into blocks of q8Block columns;
// each row's block is 32 int8 values q and one float32 scale d, standing
// for q·d. Rows are stored in groups of q8Group: for group g and block b,
// the 4 rows' runs of 32 int8 lie next to each other (128 bytes) and so do
// their 4 scales. A 4-row decode GEMV then reads one sequential stream of
// quants and one of scales, where row-major storage would give the
// hardware prefetcher 4 short interleaved streams. The last group and the
// last block are zero padded (zero quants, zero scale).
const (
	q8Block = 32
	q8Group = 4
)

// q8Blocks is the number of blocks per row of k columns.
func q8Blocks(k int) int { return (k + q8Block - 1) / q8Block }

// Quantize converts an F32, F16 or BF16 weight [rows, cols] to Q8_0: per
// 32 weights, d = max|w|/127 and q = round(w/d), so every weight is off by
// at most d/2 = max|w|/254 of its block.
func (b *Backend) Quantize(w kernels.Tensor, dt kernels.DType) (kernels.Tensor, error) {
	t := tensor("Quantize", w)
	switch {
	case dt != kernels.Q8_0:
		return nil, fmt.Errorf("%w: the CPU backend has no %v format", kernels.ErrQuantize, dt)
	case t.dtype == kernels.Q8_0:
		return t, nil
	case len(t.shape) != 2:
		return nil, fmt.Errorf("%w: %v is not a 2-D weight", kernels.ErrQuantize, t)
	}
	m, k := t.shape[0], t.shape[1]
	groups, kb := (m+q8Group-1)/q8Group, q8Blocks(k)
	q := &Tensor{dtype: kernels.Q8_0, shape: []int{m, k},
		Q8: make([]int8, groups*kb*q8Group*q8Block), Scales: make([]float32, groups*kb*q8Group)}
	j := b.pool.get(quantizeKernel)
	j.t[0], j.t[1] = q, t
	b.pool.run(j, m, 16, m*k)
	return q, nil
}

// quantizeKernel quantizes rows [lo, hi) of j.t[1] into j.t[0].
func quantizeKernel(j *job, s *scratch, lo, hi int) {
	q, t := j.t[0], j.t[1]
	k := t.shape[1]
	kb := q8Blocks(k)
	row := grow(&s.a, kb*q8Block)
	for r := lo; r < hi; r++ {
		widen(row[:k], t, r*k)
		clear(row[k:])
		for b := range kb {
			qs, d := q8At(q, kb, r, b)
			quantizeBlock(qs, d, row[b*q8Block:(b+1)*q8Block])
		}
	}
}

// quantizeBlock writes 32 weights v as int8 quants and their scale,
// rounding half away from zero as llama.cpp does.
func quantizeBlock(qs []int8, d *float32, v []float32) {
	var amax float32
	for _, x := range v {
		amax = max(amax, math.Float32frombits(math.Float32bits(x)&0x7fffffff))
	}
	*d = amax / 127
	inv := float32(0)
	if amax > 0 {
		inv = 127 / amax
	}
	qs = qs[:len(v)]
	for i, x := range v {
		y := x * inv
		// Adding ±0.5 and truncating rounds half away from zero; the
		// clamp absorbs y a hair past ±127 from the rounded reciprocal.
		q := int32(y + math.Float32frombits(math.Float32bits(0.5)|math.Float32bits(y)&0x80000000))
		qs[i] = int8(max(-127, min(127, q)))
	}
}

// q8At returns the 32 quants of row r, block b and a pointer to their scale.
func q8At(t *Tensor, kb, r, b int) ([]int8, *float32) {
	i := ((r/q8Group*kb+b)*q8Group + r%q8Group)
	return t.Q8[i*q8Block : (i+1)*q8Block : (i+1)*q8Block], &t.Scales[i]
}

// dequantRows widens rows [r0, r0+len(dst)/k) of a Q8_0 tensor into dst.
func dequantRows(dst []float32, t *Tensor, r0 int) {
	k := t.shape[1]
	kb, full := q8Blocks(k), k/q8Block
	for i := range len(dst) / k {
		row, r := dst[i*k:(i+1)*k], r0+i
		if useSIMD && full > 0 {
			qs, d := q8At(t, kb, r, 0)
			dequantQ8(&row[0], &qs[0], d, full)
		} else {
			for b := range full {
				qs, d := q8At(t, kb, r, b)
				dequantBlock(row[b*q8Block:(b+1)*q8Block], qs, *d)
			}
		}
		if full < kb {
			qs, d := q8At(t, kb, r, full)
			dequantBlock(row[full*q8Block:], qs, *d)
		}
	}
}

func dequantBlock(dst []float32, qs []int8, d float32) {
	for i := range dst {
		dst[i] = float32(qs[i]) * d
	}
}

// gemvQ8 computes output columns [lo, hi) (lo a multiple of q8Group) for
// all n rows of x against a Q8_0 weight, a group of 4 weight rows at a
// time, each group's result computed whole and its rows past m dropped.
// With xq (the rows of x quantized by quantizeAct) the whole blocks run on
// int8 activations.
func gemvQ8(out, x []float32, xq *q8Act, wt, bt *Tensor, n, m, k, lo, hi int) {
	kb, full := q8Blocks(k), k/q8Block
	var acc [q8Group]float32
	r0 := lo
	if xq != nil && full == kb {
		// Groups stored back to back run in one kernel call per row of x,
		// straight into out: all but a last group that passes m.
		if ng := (min(hi, m/q8Group*q8Group) - lo) / q8Group; ng > 0 {
			g := lo / q8Group * kb
			for i := range n {
				b := i * full
				gemvQ8VNNI(&xq.q[b*2*q8Block], &xq.c[b], &xq.d[b], &wt.Q8[g*q8Group*q8Block], &wt.Scales[g*q8Group],
					full, ng, &out[i*m+lo])
				if bt != nil {
					for r := lo; r < lo+ng*q8Group; r++ {
						out[i*m+r] += biasAt(bt, r)
					}
				}
			}
			r0 += ng * q8Group
		}
	}
	for ; r0 < hi; r0 += q8Group {
		for i := range n {
			dotGroupQ8(&acc, x[i*k:(i+1)*k], xq, i, wt, kb, full, r0)
			for l := range min(q8Group, hi-r0) {
				out[i*m+r0+l] = acc[l] + biasAt(bt, r0+l)
			}
		}
	}
}

// gemvQ8VNNI runs gemv4Q8VNNI, or its prefetching twin where
// usePrefetch says the host wants it.
func gemvQ8VNNI(xq *int8, xc *int32, xd *float32, q *int8, s *float32, nb, ng int, out *float32) {
	if usePrefetch {
		gemv4Q8VNNIPF(xq, xc, xd, q, s, nb, ng, out)
		return
	}
	gemv4Q8VNNI(xq, xc, xd, q, s, nb, ng, out)
}

// dotGroupQ8 sets acc[l] to x · row r0+l of the Q8_0 weight t; x is row i
// of xq when xq is set.
func dotGroupQ8(acc *[q8Group]float32, x []float32, xq *q8Act, i int, t *Tensor, kb, full, r0 int) {
	g := r0 / q8Group * kb
	switch {
	case xq != nil:
		b := i * full
		gemvQ8VNNI(&xq.q[b*2*q8Block], &xq.c[b], &xq.d[b], &t.Q8[g*q8Group*q8Block], &t.Scales[g*q8Group], full, 1, &acc[0])
	case useSIMD && full > 0:
		gemv4Q8(&x[0], &t.Q8[g*q8Group*q8Block], &t.Scales[g*q8Group], full, &acc[0])
	default:
		*acc = [q8Group]float32{}
		for b := range full {
			xb := x[b*q8Block : (b+1)*q8Block]
			for l := range q8Group {
				qs, d := q8At(t, kb, r0+l, b)
				acc[l] += dotInt8(xb, qs) * *d
			}
		}
	}
	if full < kb { // the k%32 tail: x ends mid-block
		xb := x[full*q8Block:]
		for l := range q8Group {
			qs, d := q8At(t, kb, r0+l, full)
			acc[l] += dotInt8(xb, qs[:len(xb)]) * *d
		}
	}
}

// q8Act is x quantized for gemv4Q8VNNI, the whole blocks of each row in
// turn: block b is d[b]·q[64b+i] for i < 32 (q[64b+32+i] repeats them), and
// c[b] = -16·Σ its quants.
type q8Act struct {
	q []int8
	c []int32
	d []float32
}

// quantizeAct fills a with the whole blocks of the n rows of x [n, k],
// each quantized like a weight block (quantizeBlock), so every activation
// is off by at most max|x|/254 of its block.
func quantizeAct(a *q8Act, x []float32, n, k int) {
	full := k / q8Block
	blocks := n * full
	a.q = grow(&a.q, blocks*2*q8Block)
	a.c = grow(&a.c, blocks)
	a.d = grow(&a.d, blocks)
	for i := range n {
		if useSIMD && full > 0 {
			o := i * full
			quantizeActAVX(&a.q[o*2*q8Block], &a.c[o], &a.d[o], &x[i*k], full)
			continue
		}
		for b := range full {
			o := i*full + b
			qs := a.q[o*2*q8Block : (o+1)*2*q8Block]
			quantizeBlock(qs[:q8Block], &a.d[o], x[i*k+b*q8Block:i*k+(b+1)*q8Block])
			var sum int32
			for _, v := range qs[:q8Block] {
				sum += int32(v)
			}
			a.c[o] = -16 * sum
			copy(qs[q8Block:], qs[:q8Block])
		}
	}
}

func dotInt8(x []float32, q []int8) float32 {
	q = q[:len(x)]
	var s float32
	for i, v := range x {
		s += v * float32(q[i])
	}
	return s
}

// q8Rows is the view of rows [lo, hi) of a Q8_0 tensor; lo must start a
// group, since storage interleaves the rows of each group.
func q8Rows(c *Tensor, lo, hi int) *Tensor {
	if lo%q8Group != 0 {
		panic(fmt.Sprintf("cpu.Rows: a Q8_0 view must start at a multiple of %d rows, not %d", q8Group, lo))
	}
	kb := q8Blocks(c.shape[1])
	g0, g1 := lo/q8Group*kb, (hi+q8Group-1)/q8Group*kb
	return &Tensor{dtype: kernels.Q8_0, shape: []int{hi - lo, c.shape[1]},
		Q8: c.Q8[g0*q8Group*q8Block : g1*q8Group*q8Block : g1*q8Group*q8Block], Scales: c.Scales[g0*q8Group : g1*q8Group : g1*q8Group]}
}
