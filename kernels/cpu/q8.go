package cpu

import (
	"fmt"
	"math"
	"slices"

	"github.com/tessera-llm/tessera/kernels"
)

// Q8_0 storage. A weight [m, k] is cut into blocks of q8Block columns;
// each row's block is 32 int8 values q and one float16 scale d, standing
// for q·d: 34 bytes per 32 weights, llama.cpp's block_q8_0. Rows are
// stored in groups of q8Group: for group g and block b, the 4 rows' runs
// of 32 int8 lie next to each other (128 bytes) and so do their 4 scales. A 4-row decode GEMV then reads one sequential stream of
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
// at most d/2 = max|w|/254 of its block, plus 127 times d's rounding to
// float16 (2⁻¹¹·d when d is a normal half, under 2⁻²⁴ absolute when it is
// not): at most max|w|/226 in all. A weight too large for a float16 scale
// (|w| ≥ 127·65520) is refused.
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
		Q8: make([]int8, groups*kb*q8Group*q8Block), Scales: make([]uint16, groups*kb*q8Group)}
	j := b.pool.get(quantizeKernel)
	j.t[0], j.t[1] = q, t
	b.pool.run(j, m, 16, m*k)
	if i := slices.IndexFunc(q.Scales, func(h uint16) bool { return h&0x7c00 == 0x7c00 }); i >= 0 {
		r := i/(kb*q8Group)*q8Group + i%q8Group
		return nil, fmt.Errorf("%w: %v row %d has a weight of magnitude %g or more (or NaN), beyond a float16 block scale",
			kernels.ErrQuantize, t, r, 127*65520.0)
	}
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
			*d = toF16(quantizeBlock(qs, row[b*q8Block:(b+1)*q8Block]))
		}
	}
}

// quantizeBlock writes 32 values v as int8 quants and returns their
// float32 scale, rounding half away from zero as llama.cpp does (which
// also quantizes with the float32 scale, then stores it as float16).
func quantizeBlock(qs []int8, v []float32) (d float32) {
	var amax float32
	for _, x := range v {
		amax = max(amax, math.Float32frombits(math.Float32bits(x)&0x7fffffff))
	}
	d = amax / 127
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
	return d
}

// q8At returns the 32 quants of row r, block b and a pointer to their scale.
func q8At(t *Tensor, kb, r, b int) ([]int8, *uint16) {
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
				dequantBlock(row[b*q8Block:(b+1)*q8Block], qs, f16(*d))
			}
		}
		if full < kb {
			qs, d := q8At(t, kb, r, full)
			dequantBlock(row[full*q8Block:], qs, f16(*d))
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
func gemvQ8VNNI(xq *int8, xc *int32, xd *float32, q *int8, s *uint16, nb, ng int, out *float32) {
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
				acc[l] += dotInt8(xb, qs) * f16(*d)
			}
		}
	}
	if full < kb { // the k%32 tail: x ends mid-block
		xb := x[full*q8Block:]
		for l := range q8Group {
			qs, d := q8At(t, kb, r0+l, full)
			acc[l] += dotInt8(xb, qs[:len(xb)]) * f16(*d)
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
			a.d[o] = quantizeBlock(qs[:q8Block], x[i*k+b*q8Block:i*k+(b+1)*q8Block])
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

// matMulQ8 is MatMul's Q8_0 GEMM on int8 activations (gemm4x32Q8), for
// simdGemmRows rows of x and more on CPUs with AVX512_VNNI when k is whole
// blocks: x is quantized per block of 32 as the GEMV's is (every x off by
// at most max|x|/254 of its block) and packed into panels of gemmNR rows;
// each goroutine takes groups of 4 weight rows, straight from the grouped
// storage, against every panel. Per multiply-add it issues about a third
// of the instructions of dequantizing into the float32 GEMM.
func (b *Backend) matMulQ8(d, xt, wt, bt *Tensor, n, m, k int) {
	kb, panels := k/q8Block, (n+gemmNR-1)/gemmNR
	s := b.pool.scr.get()
	xq := grow(&s.xp8, panels*kb*8*gemmNR)
	xd := grow(&s.c, panels*kb*gemmNR)
	j := b.pool.get(packQ8Kernel)
	j.t[1], j.u32, j.fs = xt, xq, xd
	j.i[0], j.i[1] = n, k
	b.pool.run(j, panels, 1, panels*gemmNR*k)
	j = b.pool.get(gemmQ8Kernel)
	j.t[0], j.t[2], j.t[3], j.u32, j.fs = d, wt, bt, xq, xd
	j.i[0], j.i[1], j.i[2] = n, m, k
	b.pool.run(j, (m+q8Group-1)/q8Group, 1, n*m*k)
	b.pool.scr.put(s)
}

// packQ8Kernel quantizes and packs panels [lo, hi) of x for gemm4x32Q8:
// for panel p and block b, j.u32 holds [8 quads][gemmNR rows] dwords of 4
// quants each, flipped to unsigned (q+128), and j.fs the rows' block
// scales. Rows past n are zeros (quants 128, scale 0). A whole panel is
// one item, so goroutines never write the same cache line.
// j.t[1]: x; j.u32, j.fs: panels; j.i: n, k.
func packQ8Kernel(j *job, s *scratch, lo, hi int) {
	x, xq, xd := j.t[1].F32, j.u32, j.fs
	n, k := j.i[0], j.i[1]
	kb := k / q8Block
	a := &s.xq
	a.q, a.c, a.d = grow(&a.q, kb*2*q8Block), grow(&a.c, kb), grow(&a.d, kb)
	for p := lo; p < hi; p++ {
		pq, pd := xq[p*kb*8*gemmNR:(p+1)*kb*8*gemmNR], xd[p*kb*gemmNR:(p+1)*kb*gemmNR]
		for l := range gemmNR {
			i := p*gemmNR + l
			if i >= n {
				for b := range kb {
					for u := range 8 {
						pq[(b*8+u)*gemmNR+l] = 0x80808080
					}
					pd[b*gemmNR+l] = 0
				}
				continue
			}
			quantizeActAVX(&a.q[0], &a.c[0], &a.d[0], &x[i*k], kb)
			for b := range kb {
				qs := a.q[b*2*q8Block:]
				for u := range 8 {
					v := uint32(uint8(qs[4*u])) | uint32(uint8(qs[4*u+1]))<<8 | uint32(uint8(qs[4*u+2]))<<16 | uint32(uint8(qs[4*u+3]))<<24
					pq[(b*8+u)*gemmNR+l] = v ^ 0x80808080
				}
				pd[b*gemmNR+l] = a.d[b]
			}
		}
	}
}

// gemmQ8Kernel computes weight groups [lo, hi) (q8Group rows each)
// against every packed panel of x.
// j.t: dst, -, w, bias; j.u32, j.fs: panels; j.i: n, m, k.
func gemmQ8Kernel(j *job, s *scratch, lo, hi int) {
	d, wt, bt, xq, xd := j.t[0], j.t[2], j.t[3], j.u32, j.fs
	n, m, k := j.i[0], j.i[1], j.i[2]
	kb := k / q8Block
	corr := grow(&s.corr, kb*q8Group)
	scales := grow(&s.a, kb*q8Group)
	var bias [q8Group]float32
	for g := lo; g < hi; g++ {
		r0 := g * q8Group
		rows := min(q8Group, m-r0)
		q := wt.Q8[g*kb*q8Group*q8Block:]
		q8Corr(&q[0], kb, &corr[0])
		widenF16(scales, wt.Scales[g*kb*q8Group:(g+1)*kb*q8Group])
		for r := range rows {
			bias[r] = biasAt(bt, r0+r)
		}
		for p := 0; p*gemmNR < n; p++ {
			gemm4x32Q8(&xq[p*kb*8*gemmNR], &xd[p*kb*gemmNR], &q[0], &scales[0], &corr[0], kb,
				&d.F32[p*gemmNR*m+r0], m, &bias[0], rows, min(gemmNR, n-p*gemmNR))
		}
	}
}
