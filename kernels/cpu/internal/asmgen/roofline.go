package main

// streamRead writes streamRead(p *byte, n int) uint64: it loads n bytes (a
// multiple of 256) with 4 zmm loads a step and XORs them together, the
// least work that still reads every byte. Benchmarks time it on a buffer
// larger than the caches to get one core's streaming-read rate, the
// roofline the decode GEMVs are measured against.
func streamRead() {
	const name = "streamRead"
	p("// func %s(p *byte, n int) uint64", name)
	p("TEXT ·%s(SB), NOSPLIT, $0-24", name)
	p("\tMOVQ p+0(FP), SI")
	p("\tMOVQ n+8(FP), CX")
	for i := range 4 {
		p("\tVPXORQ Z%d, Z%d, Z%d", i, i, i)
	}
	p("\tSHRQ $8, CX")
	p("\tJEQ %s_done", name)
	p("%s_loop:", name)
	for i := range 4 {
		p("\tVPXORQ %s, Z%d, Z%d", off(64*i, "SI"), i, i)
	}
	p("\tADDQ $256, SI")
	p("\tDECQ CX")
	p("\tJNE %s_loop", name)
	p("%s_done:", name)
	p("\tVPXORQ Z1, Z0, Z0")
	p("\tVPXORQ Z3, Z2, Z2")
	p("\tVPXORQ Z2, Z0, Z0")
	p("\tVMOVQ X0, AX")
	p("\tMOVQ AX, ret+16(FP)")
	p("\tVZEROUPPER")
	p("\tRET")
	p("")
}
