package main

import "fmt"

// The Q8_0 kernels read weights in the CPU backend's grouped layout: for
// every block of 32 columns, a group of 4 rows stores 4 runs of 32 int8
// (128 bytes) and, in a separate array, their 4 float32 scales (16 bytes).
// A 4-row GEMV pass therefore reads two sequential streams.

// q8Prefetch is how far ahead (bytes) gemv4Q8 prefetches its quants; 0
// emits no prefetch. On the reference shape at 2 threads, 2–4 KiB lifted
// Q8_0 decode from 38–42 to 50–70 tok/s (docs/benchmarks.md); the
// hardware prefetcher alone falls behind this compute-heavy stream.
var q8Prefetch = 3072

// gemv4Q8 writes gemv4Q8(x *float32, q *int8, s *float32, nb int, out *float32):
// out[r] = Σ_b s[4b+r]·Σ_i q[128b+32r+i]·x[32b+i] over nb whole blocks.
// Per row and block: two VPMOVSXBD+VCVTDQ2PS widen the int8 weights, a
// multiply and an FMA dot them with x, and one FMA applies the scale.
func gemv4Q8() {
	const name = "gemv4Q8"
	p("// func %s(x *float32, q *int8, s *float32, nb int, out *float32)", name)
	p("TEXT ·%s(SB), NOSPLIT, $0-40", name)
	p("\tMOVQ x+0(FP), SI")
	p("\tMOVQ q+8(FP), DI")
	p("\tMOVQ s+16(FP), R8")
	p("\tMOVQ nb+24(FP), CX")
	p("\tMOVQ out+32(FP), DX")
	for r := range 4 {
		p("\tVPXORD Z%d, Z%d, Z%d", r, r, r)
	}
	p("\tTESTQ CX, CX")
	p("\tJEQ %s_done", name)
	p("%s_loop:", name)
	if q8Prefetch > 0 {
		p("\tPREFETCHT0 %d(DI)", q8Prefetch)
		p("\tPREFETCHT0 %d(DI)", q8Prefetch+64)
	}
	p("\tVMOVUPS (SI), Z16")
	p("\tVMOVUPS 64(SI), Z17")
	for r := range 4 {
		lo, hi, sc := 20+3*r, 21+3*r, 22+3*r
		p("\tVPMOVSXBD %s, Z%d", off(32*r, "DI"), lo)
		p("\tVPMOVSXBD %s, Z%d", off(32*r+16, "DI"), hi)
		p("\tVCVTDQ2PS Z%d, Z%d", lo, lo)
		p("\tVCVTDQ2PS Z%d, Z%d", hi, hi)
		p("\tVMULPS Z16, Z%d, Z%d", lo, lo)
		p("\tVFMADD231PS Z17, Z%d, Z%d", hi, lo)
		p("\tVBROADCASTSS %s, Z%d", off(4*r, "R8"), sc)
		p("\tVFMADD231PS Z%d, Z%d, Z%d", sc, lo, r)
	}
	nextBlock(name)
	for r := range 4 {
		hsum(r)
		p("\tVMOVSS X%d, %d(DX)", r, 4*r)
	}
	p("\tVZEROUPPER")
	p("\tRET")
	p("")
}

// dequantQ8 writes dequantQ8(dst *float32, q *int8, s *float32, nb int):
// one row of a group (q and s point at its first block) widened to
// float32, nb whole blocks of 32.
func dequantQ8() {
	const name = "dequantQ8"
	p("// func %s(dst *float32, q *int8, s *float32, nb int)", name)
	p("TEXT ·%s(SB), NOSPLIT, $0-32", name)
	p("\tMOVQ dst+0(FP), SI")
	p("\tMOVQ q+8(FP), DI")
	p("\tMOVQ s+16(FP), R8")
	p("\tMOVQ nb+24(FP), CX")
	p("\tTESTQ CX, CX")
	p("\tJEQ %s_done", name)
	p("%s_loop:", name)
	p("\tVPMOVSXBD (DI), Z0")
	p("\tVPMOVSXBD 16(DI), Z1")
	p("\tVCVTDQ2PS Z0, Z0")
	p("\tVCVTDQ2PS Z1, Z1")
	p("\tVBROADCASTSS (R8), Z2")
	p("\tVMULPS Z2, Z0, Z0")
	p("\tVMULPS Z2, Z1, Z1")
	p("\tVMOVUPS Z0, (SI)")
	p("\tVMOVUPS Z1, 64(SI)")
	nextBlock(name)
	p("\tVZEROUPPER")
	p("\tRET")
	p("")
}

// nextBlock closes a Q8_0 block loop: SI (x or dst) moves 32 floats, DI
// the group's 128 quants, R8 its 4 scales, and CX counts blocks down.
func nextBlock(name string) {
	p("\tADDQ $128, SI")
	p("\tADDQ $128, DI")
	p("\tADDQ $16, R8")
	p("\tDECQ CX")
	p("\tJNE %s_loop", name)
	p("%s_done:", name)
}

// off formats a displacement from a base register.
func off(d int, reg string) string {
	if d == 0 {
		return "(" + reg + ")"
	}
	return fmt.Sprintf("%d(%s)", d, reg)
}
