package main

import "fmt"

// The Q8_0 kernels read weights in the CPU backend's grouped layout: for
// every block of 32 columns, a group of 4 rows stores 4 runs of 32 int8
// (128 bytes) and, in a separate array, their 4 float16 scales (8 bytes).
// A 4-row GEMV pass therefore reads two sequential streams.

// q8Prefetch is how far ahead (bytes) gemv4Q8 prefetches its quants; 0
// emits no prefetch. On the reference shape at 2 threads, 2–4 KiB lifted
// Q8_0 decode from 38–42 to 50–70 tok/s (docs/benchmarks.md); the
// hardware prefetcher alone falls behind this compute-heavy stream.
var q8Prefetch = 3072

// gemv4Q8 writes gemv4Q8(x *float32, q *int8, s *uint16, nb int, out *float32):
// out[r] = Σ_b s[4b+r]·Σ_i q[128b+32r+i]·x[32b+i] over nb whole blocks.
// Per row and block: two VPMOVSXBD+VCVTDQ2PS widen the int8 weights, a
// multiply and an FMA dot them with x, and one FMA applies the scale
// (the block's 4 half scales widened once, lane r spread by VPERMPS).
func gemv4Q8() {
	const name = "gemv4Q8"
	p("// func %s(x *float32, q *int8, s *uint16, nb int, out *float32)", name)
	p("TEXT ·%s(SB), NOSPLIT, $0-40", name)
	p("\tMOVQ x+0(FP), SI")
	p("\tMOVQ q+8(FP), DI")
	p("\tMOVQ s+16(FP), R8")
	p("\tMOVQ nb+24(FP), CX")
	p("\tMOVQ out+32(FP), DX")
	for r := range 4 {
		p("\tVPXORD Z%d, Z%d, Z%d", r, r, r)
		p("\tVMOVDQU32 q8bcast<>+%d(SB), Z%d", 64*r, 4+r)
	}
	p("\tTESTQ CX, CX")
	p("\tJEQ %s_done", name)
	p("%s_loop:", name)
	p("\tVCVTPH2PS (R8), X18")
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
		p("\tVPERMPS Z18, Z%d, Z%d", 4+r, sc)
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

// dequantQ8 writes dequantQ8(dst *float32, q *int8, s *uint16, nb int):
// one row of a group (q and s point at its first block) widened to
// float32, nb whole blocks of 32.
func dequantQ8() {
	const name = "dequantQ8"
	p("// func %s(dst *float32, q *int8, s *uint16, nb int)", name)
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
	p("\tVPBROADCASTW (R8), Y2")
	p("\tVCVTPH2PS Y2, Z2")
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
	p("\tADDQ $8, R8")
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
// s *uint16, nb, ng int, out *float32): the Q8_0 GEMV on activations
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
// With prefetch > 0 every block asks for its quants' lines that many bytes
// ahead (PREFETCHT0).
func gemv4Q8VNNI(name string, prefetch int) {
	p("// func %s(xq *int8, xc *int32, xd *float32, q *int8, s *uint16, nb, ng int, out *float32)", name)
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
		w0, w1, d0, d1, sc, s0, s1, hs := z, z+1, z+2, z+3, z+4, z+5, z+6, z+7
		if prefetch > 0 {
			p("\tPREFETCHT0 %s", off(128*o+prefetch, "DI"))
			p("\tPREFETCHT0 %s", off(128*o+prefetch+64, "DI"))
		}
		p("\tVPXORD %s, Z30, Z%d", off(128*o, "DI"), w0)
		p("\tVPXORD %s, Z30, Z%d", off(128*o+64, "DI"), w1)
		p("\tVPBROADCASTD %s, Z%d", off(4*o, "R9"), d0)
		p("\tVPBROADCASTD %s, Z%d", off(4*o, "R9"), d1)
		p("\tVPDPBUSD %s, Z%d, Z%d", off(64*o, "SI"), w0, d0)
		p("\tVPDPBUSD %s, Z%d, Z%d", off(64*o, "SI"), w1, d1)
		p("\tVCVTDQ2PS Z%d, Z%d", d0, d0)
		p("\tVCVTDQ2PS Z%d, Z%d", d1, d1)
		p("\tVBROADCASTSS %s, X%d", off(4*o, "R10"), sc)
		p("\tVCVTPH2PS %s, X%d", off(8*o, "R8"), hs)
		p("\tVMULPS X%d, X%d, X%d", hs, sc, sc)
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
		p("\tADDQ $%d, R8", 8*n)
	}
	// Two blocks a pass: x is read straight into VPDPBUSD and the pointers
	// move once, about 18 instructions a block against 22 (fewer in flight per
	// byte, so the out-of-order window reaches further ahead in the
	// weights).
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
// and 8..15 from 1 (first 64 bytes), then 2 and 3. q8bcast spreads one
// float over all 16 lanes: element 0 (first 64 bytes), then 1, 2 and 3.
func q8perm() {
	p("// q8perm<> are VPERMPS indices: 8×0, 8×1, then 8×2, 8×3.")
	for i := range 32 {
		p("DATA q8perm<>+%d(SB)/4, $%d", 4*i, i/8)
	}
	p("GLOBL q8perm<>(SB), RODATA|NOPTR, $128")
	p("")
	p("// q8bcast<> are VPERMPS indices: 16×0, 16×1, 16×2, 16×3.")
	for i := range 64 {
		p("DATA q8bcast<>+%d(SB)/4, $%d", 4*i, i/16)
	}
	p("GLOBL q8bcast<>(SB), RODATA|NOPTR, $256")
	p("")
}

// quantizeActAVX writes quantizeActAVX(q *int8, c *int32, d *float32,
// x *float32, nb int): quantizeAct's work for nb whole blocks of 32 floats
// at x, with quantizeBlock's arithmetic step for step (d = amax/127, q =
// trunc(x·(127/amax) ± 0.5) clamped to ±127, 0 for an all-zero block), so
// the two agree bit for bit on finite input. Each block's 32 quants are
// stored twice (64 bytes at q), c = -16·Σ quants.
func quantizeActAVX() {
	const name = "quantizeActAVX"
	p("// func %s(q *int8, c *int32, d *float32, x *float32, nb int)", name)
	p("TEXT ·%s(SB), NOSPLIT, $0-40", name)
	p("\tMOVQ q+0(FP), DI")
	p("\tMOVQ c+8(FP), R8")
	p("\tMOVQ d+16(FP), R9")
	p("\tMOVQ x+24(FP), SI")
	p("\tMOVQ nb+32(FP), CX")
	for _, c := range []struct {
		v uint32
		z int
	}{{0x7fffffff, 31}, {0x80000000, 30}, {0x3f000000, 29}, {127, 28}, {0xffffff81, 27}, {0x42fe0000, 26}} {
		p("\tMOVL $0x%08x, AX", c.v)
		p("\tVPBROADCASTD AX, Z%d", c.z)
	}
	p("\tVXORPS X25, X25, X25")
	p("\tTESTQ CX, CX")
	p("\tJEQ %s_done", name)
	p("%s_loop:", name)
	p("\tVMOVUPS (SI), Z0")
	p("\tVMOVUPS 64(SI), Z1")
	// amax, reduced across the 16 lanes into X2.
	p("\tVANDPS Z31, Z0, Z2")
	p("\tVANDPS Z31, Z1, Z3")
	p("\tVMAXPS Z3, Z2, Z2")
	p("\tVEXTRACTF64X4 $1, Z2, Y3")
	p("\tVMAXPS Y3, Y2, Y2")
	p("\tVEXTRACTF128 $1, Y2, X3")
	p("\tVMAXPS X3, X2, X2")
	p("\tVPERMILPD $1, X2, X3")
	p("\tVMAXPS X3, X2, X2")
	p("\tVMOVSHDUP X2, X3")
	p("\tVMAXSS X3, X2, X2")
	p("\tVDIVSS X26, X2, X4") // d = amax/127
	p("\tVMOVSS X4, (R9)")
	p("\tVDIVSS X2, X26, X5") // 127/amax, used only where amax > 0:
	p("\tVBROADCASTSS X2, Z11")
	p("\tVCMPPS $14, Z25, Z11, K2") // K2 = amax > 0 in every lane
	p("\tVBROADCASTSS X5, Z5")
	for _, z := range []int{0, 1} {
		p("\tVMULPS.Z Z5, Z%d, K2, Z%d", z, z) // y, or 0
		p("\tVANDPS Z30, Z%d, Z6", z)
		p("\tVORPS Z29, Z6, Z6") // ±0.5 with y's sign
		p("\tVADDPS Z6, Z%d, Z%d", z, z)
		p("\tVCVTTPS2DQ Z%d, Z%d", z, z)
		p("\tVPMINSD Z28, Z%d, Z%d", z, z)
		p("\tVPMAXSD Z27, Z%d, Z%d", z, z)
	}
	p("\tVPADDD Z1, Z0, Z7")
	p("\tVEXTRACTI64X4 $1, Z7, Y8")
	p("\tVPADDD Y8, Y7, Y7")
	p("\tVEXTRACTI128 $1, Y7, X8")
	p("\tVPADDD X8, X7, X7")
	p("\tVPSHUFD $0x4e, X7, X8")
	p("\tVPADDD X8, X7, X7")
	p("\tVPSHUFD $0xb1, X7, X8")
	p("\tVPADDD X8, X7, X7")
	p("\tVMOVD X7, AX")
	p("\tNEGL AX")
	p("\tSHLL $4, AX")
	p("\tMOVL AX, (R8)")
	p("\tVPMOVSDB Z0, X9")
	p("\tVPMOVSDB Z1, X10")
	p("\tVINSERTI128 $1, X10, Y9, Y9")
	p("\tVINSERTI64X4 $1, Y9, Z9, Z9")
	p("\tVMOVDQU32 Z9, (DI)")
	p("\tADDQ $64, DI")
	p("\tADDQ $4, R8")
	p("\tADDQ $4, R9")
	p("\tADDQ $128, SI")
	p("\tDECQ CX")
	p("\tJNE %s_loop", name)
	p("%s_done:", name)
	p("\tVZEROUPPER")
	p("\tRET")
	p("")
}
