package main

// eoSetup loads eoBody's mask of the high halves of dwords into Z31.
func eoSetup() {
	p("\tMOVL $0xffff0000, AX")
	p("\tVPBROADCASTD AX, Z31")
}

// eoBody is the gemv body of the bf16 decode GEMV on x de-interleaved per
// block of 32 (xp[32b+i] = x[32b+2i], xp[32b+16+i] = x[32b+2i+1], zero
// padded to a multiple of 32). One 64-byte load holds 32 weights; as
// dwords, the low halves are the even weights (VPSLLD $16 makes them
// float32) and the high halves the odd ones (VPANDD 0xFFFF0000), so each
// 32 weights cost a load, two integer ops and two FMAs, with no shuffle.
// The k%32 tail is a word-masked load (zero weights against zero padding).
func eoBody(name string, R, pf int) {
	p("\tLEAQ (DI)(BX*2), R8")
	// Accumulators Z0..Z(4R-1), [unroll][even/odd][row]; row r ends in Zr.
	acc := func(u, odd, r int) int { return (2*u+odd)*R + r }
	for i := range 4 * R {
		p("\tVPXORD Z%d, Z%d, Z%d", i, i, i)
	}
	// step adds 32 weights of each row (load(r) into Z20+r) times x at
	// SI+xo into accumulator pair u.
	step := func(u, xo int, load func(r int) string) {
		p("\tVMOVUPS %s, Z16", off(xo, "SI"))
		p("\tVMOVUPS %s, Z17", off(xo+64, "SI"))
		for r := range R {
			p("\t%s, Z%d", load(r), 20+r)
		}
		for r := range R {
			p("\tVPSLLD $16, Z%d, Z%d", 20+r, 24+r)
			p("\tVPANDD Z31, Z%d, Z%d", 20+r, 20+r)
			p("\tVFMADD231PS Z16, Z%d, Z%d", 24+r, acc(u, 0, r))
			p("\tVFMADD231PS Z17, Z%d, Z%d", 20+r, acc(u, 1, r))
		}
	}
	full := func(woff int) func(int) string {
		return func(r int) string { return "VMOVDQU32 " + rowAddr(r, woff) }
	}
	p("%s_loop64:", name)
	p("\tCMPQ CX, $64")
	p("\tJLT %s_loop32", name)
	prefetchLines(pf, 128)
	step(0, 0, full(0))
	step(1, 128, full(64))
	p("\tADDQ $256, SI")
	p("\tADDQ $128, DI")
	p("\tADDQ $128, R8")
	p("\tSUBQ $64, CX")
	p("\tJMP %s_loop64", name)
	p("%s_loop32:", name)
	p("\tCMPQ CX, $32")
	p("\tJLT %s_tail", name)
	step(0, 0, full(0))
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
	step(1, 0, func(r int) string { return "VMOVDQU16.Z " + rowAddr(r, 0) + ", K1" })
	p("%s_done:", name)
	for r := range R {
		p("\tVADDPS Z%d, Z%d, Z%d", acc(0, 1, r), acc(0, 0, r), r)
		p("\tVADDPS Z%d, Z%d, Z%d", acc(1, 1, r), acc(1, 0, r), acc(1, 0, r))
		p("\tVADDPS Z%d, Z%d, Z%d", acc(1, 0, r), r, r)
	}
	for r := range R {
		hsum(r)
	}
}
