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
func gemvQ8(out, x []float32, wt, bt *Tensor, n, m, k, lo, hi int) {
	kb, full := q8Blocks(k), k/q8Block
	var acc [q8Group]float32
	for r0 := lo; r0 < hi; r0 += q8Group {
		for i := range n {
			xi := x[i*k : (i+1)*k]
			dotGroupQ8(&acc, xi, wt, kb, full, r0)
			for l := range min(q8Group, hi-r0) {
				out[i*m+r0+l] = acc[l] + biasAt(bt, r0+l)
			}
		}
	}
}

// dotGroupQ8 sets acc[l] to x · row r0+l of the Q8_0 weight t.
func dotGroupQ8(acc *[q8Group]float32, x []float32, t *Tensor, kb, full, r0 int) {
	g := r0 / q8Group * kb
	if useSIMD && full > 0 {
		gemv4Q8(&x[0], &t.Q8[g*q8Group*q8Block], &t.Scales[g*q8Group], full, &acc[0])
	} else {
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
