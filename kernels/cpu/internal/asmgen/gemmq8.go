package main

// gemm4x32Q8 writes gemm4x32Q8(xq *uint32, xd *float32, q *int8, s *float32,
// c *int32, nb int, out *float32, ldc int, bias *float32, rows, lanes int):
// the Q8_0 prefill micro-kernel on int8 activations, llama.cpp's Q8_0×Q8_0
// arithmetic as a register-blocked GEMM. One call multiplies a group of 4
// weight rows (nb blocks in the grouped layout: quants q; scales s, the
// group's float16 scales widened to float32 by the caller) by a
// packed panel of 32 rows of x quantized per block (packQ8Kernel): for
// block b, xq holds [8 quads][32 rows] dwords, each 4 consecutive quants
// of one row flipped to unsigned (q+128), and xd its 32 row scales.
//
// VPDPBUSD multiplies unsigned by signed bytes, so the weights, broadcast
// a dword (4 quants) at a time, are the signed side and each 32-bit lane
// accumulates one x row's products against one weight row. The flip adds
// 128·Σw to every integer dot; c[4b+r] = -128·Σw (q8Corr) is where each
// block's accumulators start, so they end exact. Per block and weight row
// the two integer accumulators (rows 0-15, 16-31 of x) are converted,
// multiplied by the x scales and added into float accumulators times the
// weight scale, as the GEMV does per block.
//
// Registers: Z0-Z7 integer accumulators for even quads, Z16-Z23 for odd
// (twice the independent VPDPBUSD chains, which have a latency of several
// cycles), Z8-Z15 float accumulators (2·r+h: weight row r, x half h),
// Z24-Z25 and Z28-Z29 the x quads, Z26-Z27 and Z30-Z31 each weight row's
// dword broadcast once for both halves of x (one load where two embedded
// broadcasts cost two: 8-17% faster on Zen 5), then Z26-Z27 the x
// scales. The store scatters like gemm12x32: c[l·ldc+r] for r < rows,
// l < lanes.
func gemmQ8() {
	const name = "gemm4x32Q8"
	p("// func %s(xq *uint32, xd *float32, q *int8, s *float32, c *int32, nb int, out *float32, ldc int, bias *float32, rows, lanes int)", name)
	p("TEXT ·%s(SB), NOSPLIT, $0-88", name)
	p("\tMOVQ xq+0(FP), SI")
	p("\tMOVQ xd+8(FP), R10")
	p("\tMOVQ q+16(FP), DI")
	p("\tMOVQ s+24(FP), R8")
	p("\tMOVQ c+32(FP), R9")
	p("\tMOVQ nb+40(FP), CX")
	for i := 8; i < 16; i++ {
		p("\tVPXORD Z%d, Z%d, Z%d", i, i, i)
	}
	p("\tTESTQ CX, CX")
	p("\tJEQ %s_done", name)
	p("%s_block:", name)
	for r := range 4 {
		p("\tVPBROADCASTD %s, Z%d", off(4*r, "R9"), 2*r)
		p("\tVMOVDQA32 Z%d, Z%d", 2*r, 2*r+1)
		p("\tVPXORD Z%d, Z%d, Z%d", 16+2*r, 16+2*r, 16+2*r)
		p("\tVPXORD Z%d, Z%d, Z%d", 17+2*r, 17+2*r, 17+2*r)
	}
	for u := range 8 {
		x0, acc := 24, 0
		if u%2 == 1 {
			x0, acc = 28, 16
		}
		p("\tVMOVDQU32 %s, Z%d", off(128*u, "SI"), x0)
		p("\tVMOVDQU32 %s, Z%d", off(128*u+64, "SI"), x0+1)
		for r := range 4 {
			w := []int{26, 27, 30, 31}[r]
			p("\tVPBROADCASTD %s, Z%d", off(32*r+4*u, "DI"), w)
			for h := range 2 {
				p("\tVPDPBUSD Z%d, Z%d, Z%d", w, x0+h, acc+2*r+h)
			}
		}
	}
	p("\tVMOVUPS (R10), Z26")
	p("\tVMOVUPS 64(R10), Z27")
	for r := range 4 {
		for h := range 2 {
			z := 2*r + h
			p("\tVPADDD Z%d, Z%d, Z%d", 16+z, z, z)
			p("\tVCVTDQ2PS Z%d, Z%d", z, z)
			p("\tVMULPS Z%d, Z%d, Z%d", 26+h, z, z)
			p("\tVFMADD231PS.BCST %s, Z%d, Z%d", off(4*r, "R8"), z, 8+z)
		}
	}
	p("\tADDQ $1024, SI")
	p("\tADDQ $128, R10")
	p("\tADDQ $128, DI")
	p("\tADDQ $16, R8")
	p("\tADDQ $16, R9")
	p("\tDECQ CX")
	p("\tJNE %s_block", name)
	p("%s_done:", name)
	p("\tMOVQ out+48(FP), DX")
	scatterTile(name, 56, 4, 2, func(r, h int) int { return 8 + 2*r + h })
	p("%s_ret:", name)
	p("\tVZEROUPPER")
	p("\tRET")
	p("")
}

// q8Corr writes q8Corr(q *int8, nb int, c *int32): for nb blocks of a
// 4-row group in the grouped layout, c[4b+r] = -128·Σ of row r's 32 quants
// in block b, the start gemm4x32Q8 gives each block's integer dots. The
// quants are flipped to unsigned (q+128) and summed 8 at a time with
// VPSADBW; -128·Σq = 128·(32·128 - Σ(q+128)).
func q8Corr() {
	const name = "q8Corr"
	p("// func %s(q *int8, nb int, c *int32)", name)
	p("TEXT ·%s(SB), NOSPLIT, $0-24", name)
	p("\tMOVQ q+0(FP), SI")
	p("\tMOVQ nb+8(FP), CX")
	p("\tMOVQ c+16(FP), DI")
	p("\tMOVL $0x80808080, AX")
	p("\tVPBROADCASTD AX, Z30")
	p("\tMOVL $4096, AX")
	p("\tVPBROADCASTD AX, X29")
	p("\tVPXORD Z31, Z31, Z31")
	p("\tVMOVDQU32 q8corrIdx<>(SB), X28")
	p("\tTESTQ CX, CX")
	p("\tJEQ %s_done", name)
	p("%s_loop:", name)
	p("\tVPXORD (SI), Z30, Z0")
	p("\tVPXORD 64(SI), Z30, Z1")
	p("\tVPSADBW Z31, Z0, Z0") // 8 qword sums: rows 0 (qwords 0-3), 1 (4-7)
	p("\tVPSADBW Z31, Z1, Z1")
	p("\tVPMOVQD Z0, Y0")
	p("\tVPMOVQD Z1, Y1")
	p("\tVINSERTI64X4 $1, Y1, Z0, Z0") // row r's 4 partial sums in lane r
	p("\tVPSHUFD $0x4e, Z0, Z1")
	p("\tVPADDD Z1, Z0, Z0")
	p("\tVPSHUFD $0xb1, Z0, Z1")
	p("\tVPADDD Z1, Z0, Z0")  // each 128-bit lane holds its row's sum
	p("\tVPERMD Z0, Z28, Z0") // dwords 0, 4, 8, 12 to the low four
	p("\tVPSUBD X0, X29, X0")
	p("\tVPSLLD $7, X0, X0")
	p("\tVMOVDQU32 X0, (DI)")
	p("\tADDQ $128, SI")
	p("\tADDQ $16, DI")
	p("\tDECQ CX")
	p("\tJNE %s_loop", name)
	p("%s_done:", name)
	p("\tVZEROUPPER")
	p("\tRET")
	p("")
	p("// q8corrIdx<> picks dwords 0, 4, 8 and 12 (VPERMD; the upper lanes")
	p("// load as zeros and pick dword 0, unused).")
	for i := range 4 {
		p("DATA q8corrIdx<>+%d(SB)/4, $%d", 4*i, 4*i)
	}
	p("GLOBL q8corrIdx<>(SB), RODATA|NOPTR, $16")
	p("")
}
