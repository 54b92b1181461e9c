package cpu

import (
	"fmt"

	"github.com/tessera-llm/tessera/kernels"
)

// gemmMinRows is the row count of x from which MatMul switches from the
// streaming GEMV kernel (parallel over weight rows, each weight row read
// once and dotted with every x row) to the register-blocked GEMM kernel
// (2 x rows × 4 weight rows per step, half weights widened once per block).
const gemmMinRows = 4

// MatMul: dst[n,m] = x[n,k] · w[m,k]ᵀ (+ bias[m]). x and dst are float32
// with any leading shape; w is [m, k] of any dtype; bias may be any dtype.
func (b *Backend) MatMul(dst, x, w, bias kernels.Tensor) {
	var segs [maxFused]gemvSeg
	xt, n, k := matMulArgs(&segs[0], dst, x, w, bias)
	d, wt, bt, m := segs[0].d, segs[0].w, segs[0].b, segs[0].w.shape[0]
	if n < simdGemmRows && k > 0 && (wt.dtype == kernels.Q8_0 || useSIMD) {
		b.gemv(&segs, 1, xt, n, k)
		return
	}
	if useSIMD && useVNNI && wt.dtype == kernels.Q8_0 && k >= q8Block && k%q8Block == 0 {
		b.matMulQ8(d, xt, wt, bt, n, m, k)
		return
	}
	if useSIMD && k > 0 {
		b.matMulSIMD(d, xt, wt, bt, n, m, k)
		return
	}
	var j *job
	if n < gemmMinRows {
		j = b.pool.get(gemvKernel)
	} else {
		j = b.pool.get(gemmKernel)
	}
	j.t[0], j.t[1], j.t[2], j.t[3] = d, xt, wt, bt
	j.i[0], j.i[1], j.i[2] = n, m, k
	if n < gemmMinRows {
		b.pool.run(j, m, 16, n*m*k)
	} else {
		b.pool.run(j, (m+3)/4, 1, n*m*k)
	}
}

// MatMuls runs the products dst[i] = x·w[i]ᵀ + bias[i] (kernels.MatMuls).
// For decode (few rows of x) with up to maxFused weights of one dtype they
// are one op: x is prepared once (de-interleaved for bf16, quantized for
// Q8_0) and the goroutines share out the rows of all the weights, so the
// op joins once. Otherwise each product is a MatMul.
func (b *Backend) MatMuls(dst []kernels.Tensor, x kernels.Tensor, w, bias []kernels.Tensor) {
	if len(dst) != len(w) || len(bias) != len(w) {
		panic(fmt.Sprintf("cpu.MatMuls: %d outputs, %d weights and %d biases", len(dst), len(w), len(bias)))
	}
	var segs [maxFused]gemvSeg
	fuse := len(w) <= maxFused
	var xt *Tensor
	var n, k int
	for i := range w {
		seg := &gemvSeg{}
		if i < maxFused {
			seg = &segs[i]
		}
		xt, n, k = matMulArgs(seg, dst[i], x, w[i], bias[i])
		dt := seg.w.dtype
		fuse = fuse && n < simdGemmRows && k > 0 && dt == segs[0].w.dtype && (dt == kernels.Q8_0 || useSIMD)
	}
	if !fuse {
		for i := range w {
			b.MatMul(dst[i], x, w[i], bias[i])
		}
		return
	}
	b.gemv(&segs, len(w), xt, n, k)
}

// matMulArgs checks one product's operands and sets seg's tensors; it
// returns x and its row count and width.
func matMulArgs(seg *gemvSeg, dst, x, w, bias kernels.Tensor) (xt *Tensor, n, k int) {
	d, xt, wt := f32("MatMul", dst), f32("MatMul", x), tensor("MatMul", w)
	var bt *Tensor
	if bias != nil {
		bt = tensor("MatMul", bias)
	}
	n, _, k, err := kernels.MatMulShape(d, xt, wt, bias)
	check("MatMul", err)
	if overlaps(d, xt) {
		panic("cpu.MatMul: dst must not share storage with x")
	}
	*seg = gemvSeg{d: d, w: wt, b: bt}
	return xt, n, k
}

// rows is the product of all but the last dimension.
func rows(t *Tensor) int {
	r := 1
	for _, d := range t.shape[:len(t.shape)-1] {
		r *= d
	}
	return r
}

// biasAt returns bias element r widened (0 for no bias).
func biasAt(bt *Tensor, r int) float32 {
	if bt == nil {
		return 0
	}
	switch bt.dtype {
	case kernels.BF16:
		return bf16(bt.Half[r])
	case kernels.F16:
		return f16(bt.Half[r])
	}
	return bt.F32[r]
}

// gemvKernel computes output columns [lo, hi) (weight rows) for all n rows
// of x. Each weight row is streamed once.
func gemvKernel(j *job, s *scratch, lo, hi int) {
	d, xt, wt, bt := j.t[0], j.t[1], j.t[2], j.t[3]
	n, m, k := j.i[0], j.i[1], j.i[2]
	out, x := d.F32, xt.F32
	if n == 1 {
		x = x[:k]
		switch wt.dtype {
		case kernels.F32:
			for r := lo; r < hi; r++ {
				out[r] = dot(x, wt.F32[r*k:r*k+k]) + biasAt(bt, r)
			}
		case kernels.BF16:
			for r := lo; r < hi; r++ {
				out[r] = dotBF16(x, wt.Half[r*k:r*k+k]) + biasAt(bt, r)
			}
		case kernels.F16:
			for r := lo; r < hi; r++ {
				out[r] = dotF16(x, wt.Half[r*k:r*k+k]) + biasAt(bt, r)
			}
		}
		return
	}
	for r := lo; r < hi; r++ {
		wr := span(wt, r*k, k, &s.a)
		bv := biasAt(bt, r)
		for i := range n {
			out[i*m+r] = dot(x[i*k:i*k+k], wr) + bv
		}
	}
}

// gemmKernel computes weight-row blocks [lo, hi) of 4 rows each for all n
// rows of x, 2 x rows at a time, so each widened weight block is reused
// across all of x and each x row across 4 weight rows.
func gemmKernel(j *job, s *scratch, lo, hi int) {
	d, xt, wt, bt := j.t[0], j.t[1], j.t[2], j.t[3]
	n, m, k := j.i[0], j.i[1], j.i[2]
	out, x := d.F32, xt.F32
	for blk := lo; blk < hi; blk++ {
		r0 := blk * 4
		if r0+4 > m { // ragged last block
			for r := r0; r < m; r++ {
				wr := span(wt, r*k, k, &s.a)
				bv := biasAt(bt, r)
				for i := range n {
					out[i*m+r] = dot(x[i*k:i*k+k], wr) + bv
				}
			}
			continue
		}
		wb := span(wt, r0*k, 4*k, &s.a)
		w0, w1, w2, w3 := wb[:k], wb[k:2*k], wb[2*k:3*k], wb[3*k:4*k]
		b0, b1, b2, b3 := biasAt(bt, r0), biasAt(bt, r0+1), biasAt(bt, r0+2), biasAt(bt, r0+3)
		i := 0
		for ; i+2 <= n; i += 2 {
			xb := x[i*k : (i+2)*k]
			c := dot2x4(xb[:k], xb[k:2*k], w0, w1, w2, w3)
			o := out[i*m+r0 : i*m+r0+4]
			o[0], o[1], o[2], o[3] = c[0]+b0, c[1]+b1, c[2]+b2, c[3]+b3
			o = out[(i+1)*m+r0 : (i+1)*m+r0+4]
			o[0], o[1], o[2], o[3] = c[4]+b0, c[5]+b1, c[6]+b2, c[7]+b3
		}
		for ; i < n; i++ {
			c := dot1x4(x[i*k:i*k+k], w0, w1, w2, w3)
			o := out[i*m+r0 : i*m+r0+4]
			o[0], o[1], o[2], o[3] = c[0]+b0, c[1]+b1, c[2]+b2, c[3]+b3
		}
	}
}

// matMulSIMD is MatMul's packed-panel GEMM on the AVX-512 kernels, for
// simdGemmRows rows of x and more.
func (b *Backend) matMulSIMD(d, xt, wt, bt *Tensor, n, m, k int) {
	panels := (n + gemmNR - 1) / gemmNR
	s := b.pool.scr.get()
	xp := grow(&s.c, panels*gemmNR*k)
	j := b.pool.get(packXKernel)
	j.t[1], j.fs = xt, xp
	j.i[0], j.i[1] = n, k
	b.pool.run(j, panels*((k+packChunk-1)/packChunk), 1, panels*gemmNR*k)
	j = b.pool.get(gemmSIMDKernel)
	j.t[0], j.t[2], j.t[3], j.fs = d, wt, bt, xp
	j.i[0], j.i[1], j.i[2] = n, m, k
	b.pool.run(j, (m+gemmMR-1)/gemmMR, 1, n*m*k)
	b.pool.scr.put(s)
}

// maxFused is how many products one MatMuls op runs together: q, k, v.
const maxFused = 3

// gemvSeg is one product of a decode GEMV op: d = x·wᵀ + b, whose items
// (blocks of output columns) end at end, counted over the op's products.
type gemvSeg struct {
	d, w, b *Tensor
	end     int
}

// gemv runs products segs[:nseg] of x [n, k] (n < simdGemmRows, one weight
// dtype) as one op with the GEMV kernels, in work items of q8Group rows (a
// Q8_0 group, or a batched pass of gemvSIMD; see there). x is
// prepared once for all: split into bf16 parts or de-interleaved for bf16
// weights, quantized to int8 for the VNNI Q8_0 kernel.
func (b *Backend) gemv(segs *[maxFused]gemvSeg, nseg int, xt *Tensor, n, k int) {
	dt := segs[0].w.dtype
	j := b.pool.get(gemvSegsKernel)
	var s *scratch
	const per = q8Group
	switch {
	case dt == kernels.Q8_0:
		if useSIMD && useVNNI && k >= q8Block {
			s = b.pool.scr.get()
			quantizeAct(&s.xq, xt.F32, n, k)
			j.xq = &s.xq
		}
	case dt == kernels.BF16:
		s = b.pool.scr.get()
		kp := eoLen(k)
		if useBF16 {
			j.hs = grow(&s.h, 2*n*kp)
			for i := range n {
				splitBF16(j.hs[2*i*kp:2*(i+1)*kp], xt.F32[i*k:(i+1)*k])
			}
		} else {
			j.fs = grow(&s.c, n*kp)
			for i := range n {
				deinterleave(j.fs[i*kp:(i+1)*kp], xt.F32[i*k:(i+1)*k])
			}
		}
	}
	items, work := 0, 0
	for i := range nseg {
		m := segs[i].w.shape[0]
		items += (m + per - 1) / per
		segs[i].end = items
		work += n * m * k
	}
	j.segs, j.nseg = *segs, nseg
	j.t[1] = xt
	j.i[0], j.i[1], j.i[2] = n, k, per
	b.pool.run(j, items, max(1, 64/per), work)
	if s != nil {
		b.pool.scr.put(s)
	}
}

// gemvSegsKernel computes items [lo, hi) of a gemv op, each inside the
// product it falls in.
// j.segs[:j.nseg]: products; j.t[1]: x; j.i: n, k, rows per item; j.hs:
// x split into bf16 parts, or j.fs: x de-interleaved (bf16); j.xq: int8 x (Q8_0
// on VNNI).
func gemvSegsKernel(j *job, _ *scratch, lo, hi int) {
	n, k, per := j.i[0], j.i[1], j.i[2]
	x, start := j.t[1].F32, 0
	for i := range j.nseg {
		sg := &j.segs[i]
		a, e := max(lo, start)-start, min(hi, sg.end)-start
		start = sg.end
		if a >= e {
			continue
		}
		m := sg.w.shape[0]
		if sg.w.dtype == kernels.Q8_0 {
			gemvQ8(sg.d.F32, x, j.xq, sg.w, sg.b, n, m, k, per*a, min(per*e, m))
		} else {
			gemvSIMD(sg.d.F32, x, j.fs, j.hs, sg.w, sg.b, n, m, k, per*a, min(per*e, m))
		}
	}
}
