package main

import "fmt"

// prefetchDist is how far ahead (bytes) in each weight row gemv{R}BF16EO
// prefetches; 0 emits no prefetch.
var prefetchDist = 0

// gemvEO writes gemv{R}BF16EO(xp *float32, w *uint16, ldw, k int, out *float32):
// the bf16 decode GEMV on x de-interleaved per block of 32 (xp[32b+i] =
// x[32b+2i], xp[32b+16+i] = x[32b+2i+1], zero padded to a multiple of 32).
// One 64-byte load holds 32 weights; as dwords, the low halves are the even
// weights (VPSLLD $16 makes them float32) and the high halves the odd ones
// (VPANDD 0xFFFF0000), so each 32 weights cost a load, two integer ops and
// two FMAs, with no shuffle. The k%32 tail is a word-masked load (zero
// weights against zero padding).
func gemvEO(R int) {
	name := fmt.Sprintf("gemv%dBF16EO", R)
	p("// func %s(xp *float32, w *uint16, ldw, k int, out *float32)", name)
	p("TEXT ·%s(SB), NOSPLIT, $0-40", name)
	p("\tMOVQ xp+0(FP), SI")
	p("\tMOVQ w+8(FP), DI")
	p("\tMOVQ ldw+16(FP), BX")
	p("\tSHLQ $1, BX")
	p("\tMOVQ k+24(FP), CX")
	p("\tMOVQ out+32(FP), DX")
	p("\tLEAQ (DI)(BX*2), R8")
	p("\tMOVL $0xffff0000, AX")
	p("\tVPBROADCASTD AX, Z31")
	row := func(r int, off int) string {
		base := []string{"(DI)", "(DI)(BX*1)", "(R8)", "(R8)(BX*1)"}[r]
		if off == 0 {
			return base
		}
		return fmt.Sprintf("%d%s", off, base)
	}
	// Accumulators Z0..Z(4R-1), [unroll][even/odd][row]; row r ends in Zr.
	acc := func(u, odd, r int) int { return (2*u+odd)*R + r }
	for i := range 4 * R {
		p("\tVPXORD Z%d, Z%d, Z%d", i, i, i)
	}
	body := func(u int, woff int) {
		xo := 128 * u
		if xo == 0 {
			p("\tVMOVUPS (SI), Z16")
		} else {
			p("\tVMOVUPS %d(SI), Z16", xo)
		}
		p("\tVMOVUPS %d(SI), Z17", xo+64)
		for r := range R {
			p("\tVMOVDQU32 %s, Z%d", row(r, woff), 20+r)
		}
		for r := range R {
			p("\tVPSLLD $16, Z%d, Z%d", 20+r, 24+r)
			p("\tVPANDD Z31, Z%d, Z%d", 20+r, 20+r)
			p("\tVFMADD231PS Z16, Z%d, Z%d", 24+r, acc(u, 0, r))
			p("\tVFMADD231PS Z17, Z%d, Z%d", 20+r, acc(u, 1, r))
		}
	}
	p("%s_loop64:", name)
	p("\tCMPQ CX, $64")
	p("\tJLT %s_loop32", name)
	if prefetchDist > 0 {
		for r := range R {
			p("\tPREFETCHT0 %s", row(r, prefetchDist))
		}
	}
	body(0, 0)
	body(1, 64)
	p("\tADDQ $256, SI")
	p("\tADDQ $128, DI")
	p("\tADDQ $128, R8")
	p("\tSUBQ $64, CX")
	p("\tJMP %s_loop64", name)
	p("%s_loop32:", name)
	p("\tCMPQ CX, $32")
	p("\tJLT %s_tail", name)
	body(0, 0)
	p("\tADDQ $128, SI")
	p("\tADDQ $64, DI")
	p("\tADDQ $64, R8")
	p("\tSUBQ $32, CX")
	p("%s_tail:", name)
	p("\tTESTQ CX, CX")
	p("\tJEQ %s_done", name)
	p("\tMOVL $1, AX")
	p("\tSHLL CX, AX")
	p("\tDECL AX")
	p("\tKMOVD AX, K1")
	p("\tVMOVUPS (SI), Z16")
	p("\tVMOVUPS 64(SI), Z17")
	for r := range R {
		p("\tVMOVDQU16.Z %s, K1, Z%d", row(r, 0), 20+r)
	}
	for r := range R {
		p("\tVPSLLD $16, Z%d, Z%d", 20+r, 24+r)
		p("\tVPANDD Z31, Z%d, Z%d", 20+r, 20+r)
		p("\tVFMADD231PS Z16, Z%d, Z%d", 24+r, acc(1, 0, r))
		p("\tVFMADD231PS Z17, Z%d, Z%d", 20+r, acc(1, 1, r))
	}
	p("%s_done:", name)
	for r := range R {
		p("\tVADDPS Z%d, Z%d, Z%d", acc(0, 1, r), acc(0, 0, r), r)
		p("\tVADDPS Z%d, Z%d, Z%d", acc(1, 1, r), acc(1, 0, r), acc(1, 0, r))
		p("\tVADDPS Z%d, Z%d, Z%d", acc(1, 0, r), r, r)
	}
	for r := range R {
		hsum(r)
		p("\tVMOVSS X%d, %d(DX)", r, 4*r)
	}
	p("\tVZEROUPPER")
	p("\tRET")
	p("")
}
