package main

// eoSetup loads eoBody's mask of the high halves of dwords into Z31.
func eoSetup() {
	p("\tMOVL $0xffff0000, AX")
	p("\tVPBROADCASTD AX, Z31")
}

// eoBody is one row of gemvRowsBF16EO, the bf16 decode GEMV on x
// de-interleaved per block of 32 (xp[32b+i] = x[32b+2i], xp[32b+16+i] =
// x[32b+2i+1], zero padded to a multiple of 32). One 64-byte load holds 32
// weights; as dwords, the low halves are the even weights (VPSLLD $16
// makes them float32) and the high halves the odd ones (VPANDD
// 0xFFFF0000), so each 32 weights cost a load, two integer ops and two
// FMAs, with no shuffle. The k%32 tail is a word-masked load (zero weights
// against zero padding).
func eoBody(name string) {
	// Accumulators Z0..Z3: [unroll][even/odd].
	for i := range 4 {
		p("\tVPXORD Z%d, Z%d, Z%d", i, i, i)
	}
	// step adds 32 weights (w, a load into Z20) times x at SI+xo into
	// accumulator pair u.
	step := func(u, xo int, w string) {
		p("\tVMOVUPS %s, Z16", off(xo, "SI"))
		p("\tVMOVUPS %s, Z17", off(xo+64, "SI"))
		p("\t%s, Z20", w)
		p("\tVPSLLD $16, Z20, Z24")
		p("\tVPANDD Z31, Z20, Z20")
		p("\tVFMADD231PS Z16, Z24, Z%d", 2*u)
		p("\tVFMADD231PS Z17, Z20, Z%d", 2*u+1)
	}
	p("%s_loop64:", name)
	p("\tCMPQ CX, $64")
	p("\tJLT %s_loop32", name)
	step(0, 0, "VMOVDQU32 (DI)")
	step(1, 128, "VMOVDQU32 64(DI)")
	p("\tADDQ $256, SI")
	p("\tADDQ $128, DI")
	p("\tSUBQ $64, CX")
	p("\tJMP %s_loop64", name)
	p("%s_loop32:", name)
	p("\tCMPQ CX, $32")
	p("\tJLT %s_tail", name)
	step(0, 0, "VMOVDQU32 (DI)")
	p("\tADDQ $128, SI")
	p("\tADDQ $64, DI")
	p("\tSUBQ $32, CX")
	p("%s_tail:", name)
	p("\tTESTQ CX, CX")
	p("\tJEQ %s_done", name)
	p("\tMOVL $1, AX")
	p("\tSHLL CX, AX")
	p("\tDECL AX")
	p("\tKMOVD AX, K1")
	step(1, 0, "VMOVDQU16.Z (DI), K1")
	p("%s_done:", name)
	p("\tVADDPS Z1, Z0, Z0")
	p("\tVADDPS Z3, Z2, Z2")
	p("\tVADDPS Z2, Z0, Z0")
	hsum(0)
}
