package cpu

import "github.com/tessera-llm/tessera/kernels"

// useSIMD selects the AVX-512 assembly kernels (simd_amd64.s). It starts
// as hasAVX512: true on amd64 CPUs with AVX-512 F/BW/VL, false under the
// purego build tag or on other architectures. Tests set it false to run
// the pure-Go fallback on the same inputs; it must not change while ops
// are running.
var useSIMD = hasAVX512

// useVNNI selects the Q8_0 GEMV on int8 activations (gemv4Q8VNNI), on
// CPUs with AVX512_VNNI; like useSIMD, tests toggle it.
var useVNNI = hasVNNI

// usePrefetch selects the decode GEMVs that prefetch their weights
// (gemvRows*PF, gemv4Q8VNNIPF), on Intel CPUs. On an Intel Xeon core they
// read 10–25% faster (one thread: f32 18.2–18.6 → 20.0–21.0 tok/s, bf16
// 28.9–29.7 → 30.8–34.6, Q8_0 50–53 → 64–67), while on the Zen 5 host of
// issue 20 a Q8_0 prefetch cost 2–15% (docs/benchmarks.md). Tests toggle
// it; both choices compute the same bits.
var usePrefetch = isIntel

// rowKernels are the one-row decode GEMVs for each weight format.
type rowKernels struct {
	f32         func(x, w *float32, ldw, k, rows int, out *float32)
	f16, bf16EO func(x *float32, w *uint16, ldw, k, rows int, out *float32)
	bf16DP      func(x *uint16, w *uint16, ldw, k, rows int, out *float32)
}

var (
	plainRows    = rowKernels{gemvRowsF32, gemvRowsF16, gemvRowsBF16EO, gemvRowsBF16DP}
	prefetchRows = rowKernels{gemvRowsF32PF, gemvRowsF16PF, gemvRowsBF16EOPF, gemvRowsBF16DPPF}
)

// decodeRows is the row kernels usePrefetch selects.
func decodeRows() *rowKernels {
	if usePrefetch {
		return &prefetchRows
	}
	return &plainRows
}

// useBF16 selects the bf16 decode GEMV on x split into two bf16 parts
// (gemvRowsBF16DP, VDPBF16PS; splitBF16), on CPUs with AVX512_BF16; tests
// toggle it. The split holds x to 2⁻¹⁶ of itself, so the golden logits of
// bf16 checkpoints stay within their 1e-4 (one bf16 x would cost 2⁻⁸).
var useBF16 = hasBF16

// SIMD reports whether the backend runs its AVX-512 kernels.
func SIMD() bool { return useSIMD }

// Prefill GEMM blocking: gemm12x32 computes a tile of gemmMR weight rows ×
// gemmNR rows of x. x is packed into panels [k][gemmNR] (transposed, zero
// padded) once per MatMul; each goroutine takes blocks of gemmMR weight
// rows (half weights widened once per block) and runs them against every
// panel, so weights stream from memory once and the panels stay in L2.
const (
	gemmMR = 12
	gemmNR = 32
	// simdGemmRows is the row count of x from which the SIMD MatMul packs x
	// and runs the GEMM micro-kernel; below it, the GEMV kernel (each
	// weight row dotted with every x row while it sits in L1) wins: a
	// GEMM panel computes 32 rows whatever n is. One core, 2816×1024,
	// cpu-ms GEMV (4 rows a pass, issue 7's host) / GEMM: bf16 0.53/1.84 at n = 8,
	// 0.93/2.45 at 12, 1.09/1.69 at 16; f32 1.59/1.81 at 12, 1.93/1.73 at 16.
	simdGemmRows = 16
	// packChunk is the k range one packing item transposes.
	packChunk = 64
)

// gemvSIMD computes output columns [lo, hi) for all n rows of x with the
// AVX-512 GEMV kernels, the weight rows in storage order, widened in
// registers. For bf16 weights xb holds the rows of x split by splitBF16,
// 2·eoLen(k) each (the VDPBF16PS kernels) or, when nil, xp holds them
// de-interleaved by deinterleave (the even/odd kernels), each eoLen(k)
// long; other dtypes read x.
//
// One x row (decode) takes its whole range in one gemvRows call: row
// after row, the weights are one sequential stream, which the hardware
// prefetchers follow across pages. On one Zen 5 core a 128 MiB bf16 GEMV
// read 27–32 GB/s that way, the streaming-read rate, against 16–25 GB/s
// for 4 rows at a time taken a page apart (4 streams), the earlier layout
// tuned on an Intel host (docs/benchmarks.md, issue 20). Several x rows
// (batched decode) are compute-bound instead: they take 4 adjacent weight
// rows a pass (gemv4*), each x row loaded once for 4 weight rows, which at
// 8 and 12 rows was 10–17% faster than row by row.
func gemvSIMD(out, x, xp []float32, xb []uint16, wt, bt *Tensor, n, m, k, lo, hi int) {
	kp := eoLen(k)
	rk := decodeRows()
	// run dots x row i with rows [r, r+rows) into out; four uses gemv4*.
	run := func(i, r, rows int, four bool) {
		o := &out[i*m+r]
		switch wt.dtype {
		case kernels.F32:
			if four {
				gemv4F32(&x[i*k], &wt.F32[r*k], k, k, o)
			} else {
				rk.f32(&x[i*k], &wt.F32[r*k], k, k, rows, o)
			}
		case kernels.BF16:
			switch {
			case xb != nil && four:
				gemv4BF16DP(&xb[2*i*kp], &wt.Half[r*k], k, k, o)
			case xb != nil:
				rk.bf16DP(&xb[2*i*kp], &wt.Half[r*k], k, k, rows, o)
			case four:
				gemv4BF16EO(&xp[i*kp], &wt.Half[r*k], k, k, o)
			default:
				rk.bf16EO(&xp[i*kp], &wt.Half[r*k], k, k, rows, o)
			}
		case kernels.F16:
			if four {
				gemv4F16(&x[i*k], &wt.Half[r*k], k, k, o)
			} else {
				rk.f16(&x[i*k], &wt.Half[r*k], k, k, rows, o)
			}
		}
	}
	r := lo
	if n > 1 {
		for ; r+4 <= hi; r += 4 {
			for i := range n {
				run(i, r, 4, true)
			}
		}
	}
	if r < hi {
		for i := range n {
			run(i, r, hi-r, false)
		}
	}
	if bt != nil {
		for i := range n {
			for r := lo; r < hi; r++ {
				out[i*m+r] += biasAt(bt, r)
			}
		}
	}
}

// splitBF16 writes x (len k) into dst (len 2·eoLen(k)) as two bf16
// parts for the VDPBF16PS kernels: hi = bf16(x) in the first half and
// lo = bf16(x - hi) in the second, each zero past k. hi + lo is x to
// within 2⁻¹⁶ of itself (the 8 bits of hi, then 8 more).
func splitBF16(dst []uint16, x []float32) {
	kp := eoLen(len(x))
	hi, lo := dst[:kp], dst[kp:2*kp]
	for i, v := range x {
		hi[i] = toBF16(v)
		lo[i] = toBF16(v - bf16(hi[i]))
	}
	clear(hi[len(x):])
	clear(lo[len(x):])
}

// eoLen is the length of a row of k values de-interleaved for the even/odd
// bf16 kernels: k rounded up to a multiple of 32.
func eoLen(k int) int { return (k + 31) &^ 31 }

// deinterleave writes x (len k) into dst (len eoLen(k)) in blocks of 32:
// dst[32b+i] = x[32b+2i] and dst[32b+16+i] = x[32b+2i+1] for i < 16, zero
// past k. Read as dwords, 32 bf16 weights hold the even ones in their low
// halves and the odd ones in their high halves, matching these two halves.
func deinterleave(dst, x []float32) {
	dst = dst[:eoLen(len(x))]
	for b := 0; b < len(dst); b += 32 {
		blk := dst[b : b+32 : b+32]
		if b+32 <= len(x) {
			src := x[b : b+32 : b+32]
			for i := range 16 {
				blk[i], blk[16+i] = src[2*i], src[2*i+1]
			}
			continue
		}
		clear(blk)
		for p := b; p < len(x); p++ {
			blk[(p-b)/2+16*((p-b)%2)] = x[p]
		}
	}
}

// packXKernel transposes x [n, k] into panels [panels][k][gemmNR], zero
// padding rows past n. Item = (panel, chunk of packChunk k values), so
// each goroutine writes its own contiguous part of a panel.
// j.t[1]: x; j.fs: panels; j.i: n, k.
func packXKernel(j *job, _ *scratch, lo, hi int) {
	x, xp := j.t[1].F32, j.fs
	n, k := j.i[0], j.i[1]
	chunks := (k + packChunk - 1) / packChunk
	for item := lo; item < hi; item++ {
		q, c := item/chunks, item%chunks
		p0, p1 := c*packChunk, min(c*packChunk+packChunk, k)
		panel := xp[q*gemmNR*k : (q+1)*gemmNR*k]
		for l := range gemmNR {
			i := q*gemmNR + l
			if i >= n {
				for p := p0; p < p1; p++ {
					panel[p*gemmNR+l] = 0
				}
				continue
			}
			row := x[i*k+p0 : i*k+p1]
			dst := panel[p0*gemmNR+l:]
			for p, v := range row {
				dst[p*gemmNR] = v
			}
		}
	}
}

// gemmSIMDKernel computes weight-row blocks [lo, hi) of gemmMR rows each
// against every packed panel of x.
// j.t: dst, -, w, bias; j.fs: panels; j.i: n, m, k.
func gemmSIMDKernel(j *job, s *scratch, lo, hi int) {
	d, wt, bt, xp := j.t[0], j.t[2], j.t[3], j.fs
	n, m, k := j.i[0], j.i[1], j.i[2]
	out := d.F32
	var bias [gemmMR]float32
	for blk := lo; blk < hi; blk++ {
		r0 := blk * gemmMR
		rows := min(gemmMR, m-r0)
		var wb []float32
		if wt.dtype == kernels.F32 && rows == gemmMR {
			wb = wt.F32[r0*k : (r0+gemmMR)*k]
		} else {
			wb = grow(&s.a, gemmMR*k)
			widen(wb[:rows*k], wt, r0*k)
			clear(wb[rows*k:])
		}
		for r := range rows {
			bias[r] = biasAt(bt, r0+r)
		}
		for q := 0; q*gemmNR < n; q++ {
			lanes := min(gemmNR, n-q*gemmNR)
			if lanes <= gemmNR/2 {
				gemm12x16(&wb[0], k, &xp[q*gemmNR*k], k, &out[q*gemmNR*m+r0], m, &bias[0], rows, lanes)
			} else {
				gemm12x32(&wb[0], k, &xp[q*gemmNR*k], k, &out[q*gemmNR*m+r0], m, &bias[0], rows, lanes)
			}
		}
	}
}
