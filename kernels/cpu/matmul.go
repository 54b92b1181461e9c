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
	d, xt, wt := f32("MatMul", dst), f32("MatMul", x), tensor("MatMul", w)
	if len(wt.shape) != 2 {
		panic(fmt.Sprintf("cpu.MatMul: weight %v is not 2-D", wt))
	}
	m, k := wt.shape[0], wt.shape[1]
	if len(xt.shape) == 0 || lastDim(xt) != k {
		panic(fmt.Sprintf("cpu.MatMul: x %v does not end in k=%d of weight %v", xt, k, wt))
	}
	n := rows(xt)
	if len(d.shape) == 0 || lastDim(d) != m || d.Len() != n*m {
		panic(fmt.Sprintf("cpu.MatMul: dst %v, want [%d %d] for x %v · w %v", d, n, m, xt, wt))
	}
	if overlaps(d, xt) {
		panic("cpu.MatMul: dst must not share storage with x")
	}
	var bt *Tensor
	if bias != nil {
		bt = tensor("MatMul", bias)
		if bt.Len() != m {
			panic(fmt.Sprintf("cpu.MatMul: bias %v, want %d elements", bt, m))
		}
	}
	if wt.dtype == kernels.Q8_0 && n < simdGemmRows {
		// gemvQ8 picks the AVX-512 kernel or its Go fallback itself.
		j := b.pool.get(gemvQ8Kernel)
		j.t[0], j.t[1], j.t[2], j.t[3] = d, xt, wt, bt
		j.i[0], j.i[1], j.i[2] = n, m, k
		var s *scratch
		if useSIMD && useVNNI && k >= q8Block {
			s = b.pool.scr.get()
			quantizeAct(&s.xq, xt.F32, n, k)
			j.xq = &s.xq
		}
		b.pool.run(j, (m+q8Group-1)/q8Group, 16, n*m*k)
		if s != nil {
			b.pool.scr.put(s)
		}
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

// matMulSIMD is MatMul on the AVX-512 kernels: GEMV for few rows of x,
// packed-panel GEMM from simdGemmRows rows.
func (b *Backend) matMulSIMD(d, xt, wt, bt *Tensor, n, m, k int) {
	if n < simdGemmRows {
		var s *scratch
		j := b.pool.get(gemvSIMDKernel)
		if wt.dtype == kernels.BF16 {
			// De-interleave x once for the even/odd bf16 kernels.
			s = b.pool.scr.get()
			kp := eoLen(k)
			j.fs = grow(&s.c, n*kp)
			for i := range n {
				deinterleave(j.fs[i*kp:(i+1)*kp], xt.F32[i*k:(i+1)*k])
			}
		}
		j.t[0], j.t[1], j.t[2], j.t[3] = d, xt, wt, bt
		j.i[0], j.i[1], j.i[2] = n, m, k
		blk := 4 * pageStride(k*wt.dtype.Size())
		j.i[3] = blk
		b.pool.run(j, (m+blk-1)/blk, max(1, 64/blk), n*m*k)
		if s != nil {
			b.pool.scr.put(s)
		}
		return
	}
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

// gemvQ8Kernel: items are groups of q8Group output columns of a Q8_0
// weight, SIMD or not.
func gemvQ8Kernel(j *job, _ *scratch, lo, hi int) {
	n, m, k := j.i[0], j.i[1], j.i[2]
	gemvQ8(j.t[0].F32, j.t[1].F32, j.xq, j.t[2], j.t[3], n, m, k, q8Group*lo, min(q8Group*hi, m))
}

// gemvSIMDKernel: items are blocks of j.i[3] output columns (weight rows),
// 4 page-strided passes' worth (pageStride).
func gemvSIMDKernel(j *job, _ *scratch, lo, hi int) {
	n, m, k, blk := j.i[0], j.i[1], j.i[2], j.i[3]
	gemvSIMD(j.t[0].F32, j.t[1].F32, j.fs, j.t[2], j.t[3], n, m, k, blk*lo, min(blk*hi, m))
}
