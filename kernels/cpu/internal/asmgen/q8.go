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

// gemv4Q8VNNI writes gemv4Q8VNNI(xq *int8, xc *int32, xd *float32, q *int8,
// s *float32, nb, ng int, out *float32): the Q8_0 GEMV on activations
// quantized to int8 per block of 32 (quantizeAct), llama.cpp's scheme, for
// ng consecutive groups of 4 rows whose nb blocks each are stored back to
// back (no k%32 tail), so one call streams a whole chunk of the weight.
// Block b of x is xd[b]·xq[64b+i] (its 32 quants twice, for both halves of
// a zmm), and xc[b] = -16·Σ its quants. VPDPBUSD multiplies unsigned by
// signed bytes, so the weights are flipped to q+128 (XOR 0x80) and the
// excess 128·Σx, spread as 16·Σx over the 8 dword lanes of each row, is
// the accumulator's start (xc). Per block one zmm holds two rows' 32
// quants: 2 loads, 2 XORs and 2 VPDPBUSD give 4 rows' integer dots in 8
// lanes each, converted and scaled by s[4b+r]·xd[b] into float
// accumulators (rows 0, 1 in Z0's low and high halves, rows 2, 3 in Z1's).
func gemv4Q8VNNI() {
	const name = "gemv4Q8VNNI"
	p("// func %s(xq *int8, xc *int32, xd *float32, q *int8, s *float32, nb, ng int, out *float32)", name)
	p("TEXT ·%s(SB), NOSPLIT, $0-64", name)
	p("\tMOVQ xq+0(FP), R11")
	p("\tMOVQ xc+8(FP), R12")
	p("\tMOVQ xd+16(FP), R13")
	p("\tMOVQ q+24(FP), DI")
	p("\tMOVQ s+32(FP), R8")
	p("\tMOVQ nb+40(FP), BX")
	p("\tMOVQ ng+48(FP), R14")
	p("\tMOVQ out+56(FP), DX")
	p("\tMOVL $0x80808080, AX")
	p("\tVPBROADCASTD AX, Z30")
	p("\tVMOVDQU32 q8perm<>(SB), Z28")
	p("\tVMOVDQU32 q8perm<>+64(SB), Z29")
	p("%s_group:", name)
	p("\tVPXORD Z0, Z0, Z0")
	p("\tVPXORD Z1, Z1, Z1")
	p("\tMOVQ R11, SI")
	p("\tMOVQ R12, R9")
	p("\tMOVQ R13, R10")
	p("\tMOVQ BX, CX")
	p("\tTESTQ CX, CX")
	p("\tJEQ %s_done", name)
	// block emits block o of the loop: integer dots of 4 rows into 8 lanes
	// each, scaled and added to Z0 (rows 0|1) and Z1 (rows 2|3) in block
	// order. Registers alternate between even and odd blocks.
	block := func(o int) {
		z := 2 + 8*(o%2)
		w0, w1, d0, d1, sc, s0, s1 := z, z+1, z+2, z+3, z+4, z+5, z+6
		p("\tVPXORD %s, Z30, Z%d", off(128*o, "DI"), w0)
		p("\tVPXORD %s, Z30, Z%d", off(128*o+64, "DI"), w1)
		p("\tVPBROADCASTD %s, Z%d", off(4*o, "R9"), d0)
		p("\tVPBROADCASTD %s, Z%d", off(4*o, "R9"), d1)
		p("\tVPDPBUSD %s, Z%d, Z%d", off(64*o, "SI"), w0, d0)
		p("\tVPDPBUSD %s, Z%d, Z%d", off(64*o, "SI"), w1, d1)
		p("\tVCVTDQ2PS Z%d, Z%d", d0, d0)
		p("\tVCVTDQ2PS Z%d, Z%d", d1, d1)
		p("\tVBROADCASTSS %s, X%d", off(4*o, "R10"), sc)
		p("\tVMULPS %s, X%d, X%d", off(16*o, "R8"), sc, sc)
		p("\tVPERMPS Z%d, Z28, Z%d", sc, s0)
		p("\tVPERMPS Z%d, Z29, Z%d", sc, s1)
		p("\tVFMADD231PS Z%d, Z%d, Z0", s0, d0)
		p("\tVFMADD231PS Z%d, Z%d, Z1", s1, d1)
	}
	advance := func(n int) {
		p("\tADDQ $%d, SI", 64*n)
		p("\tADDQ $%d, R9", 4*n)
		p("\tADDQ $%d, R10", 4*n)
		p("\tADDQ $%d, DI", 128*n)
		p("\tADDQ $%d, R8", 16*n)
	}
	// Two blocks a pass: x is read straight into VPDPBUSD and the pointers
	// move once, about 18 instructions a block against 22 (fewer in flight per
	// byte, so the out-of-order window reaches further ahead in the
	// weights). No software prefetch, unlike gemv4Q8: on the Zen 5 host of
	// issue 20 (AVX512_VNNI) 3 KiB ahead cost 2–15% of Q8_0 decode in three
	// alternating pairs, and 4–16 KiB ahead once a block cost as much.
	p("%s_loop2:", name)
	p("\tCMPQ CX, $2")
	p("\tJLT %s_loop1", name)
	block(0)
	block(1)
	advance(2)
	p("\tSUBQ $2, CX")
	p("\tJMP %s_loop2", name)
	p("%s_loop1:", name)
	p("\tTESTQ CX, CX")
	p("\tJEQ %s_done", name)
	block(0)
	advance(1)
	p("%s_done:", name)
	// Z0 = rows 0|1, Z1 = rows 2|3 (8 lanes each): move the high halves
	// to Z2, Z3 and reduce each zmm's low 8 lanes.
	p("\tVEXTRACTF64X4 $1, Z0, Y2")
	p("\tVEXTRACTF64X4 $1, Z1, Y3")
	for r, z := range []int{0, 2, 1, 3} {
		p("\tVEXTRACTF128 $1, Y%d, X15", z)
		p("\tVADDPS X15, X%d, X%d", z, z)
		p("\tVPERMILPD $1, X%d, X15", z)
		p("\tVADDPS X15, X%d, X%d", z, z)
		p("\tVMOVSHDUP X%d, X15", z)
		p("\tVADDSS X15, X%d, X%d", z, z)
		p("\tVMOVSS X%d, %d(DX)", z, 4*r)
	}
	p("\tADDQ $16, DX")
	p("\tDECQ R14")
	p("\tJNE %s_group", name)
	p("\tVZEROUPPER")
	p("\tRET")
	p("")
}

// q8perm spreads 4 floats over 8 lanes each: lanes 0..7 from element 0
// and 8..15 from 1 (first 64 bytes), then 2 and 3.
func q8perm() {
	p("// q8perm<> are VPERMPS indices: 8×0, 8×1, then 8×2, 8×3.")
	for i := range 32 {
		p("DATA q8perm<>+%d(SB)/4, $%d", 4*i, i/8)
	}
	p("GLOBL q8perm<>(SB), RODATA|NOPTR, $128")
	p("")
}
