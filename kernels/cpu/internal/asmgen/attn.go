package main

// axpyRows writes axpyRows(y, x *float32, ldx, k, rows int, a *float32):
// y[p] += a[r]·x[r·ldx+p] for r = 0, 1, ..., rows-1 (rows ≥ 1) in that
// order, one FMA each, so y ends bit for bit where rows calls of axpyAVX
// would leave it; y stays in registers across the rows. Attention adds a
// block of cached values into one head's output with one call.
func axpyRows() {
	const name = "axpyRows"
	p("// func %s(y, x *float32, ldx, k, rows int, a *float32)", name)
	p("TEXT ·%s(SB), NOSPLIT, $0-48", name)
	p("\tMOVQ y+0(FP), DI")
	p("\tMOVQ x+8(FP), SI")
	p("\tMOVQ ldx+16(FP), BX")
	p("\tSHLQ $2, BX")
	p("\tMOVQ k+24(FP), CX")
	p("\tMOVQ rows+32(FP), R12")
	p("\tMOVQ a+40(FP), R9")
	// rowLoop adds every row into Z1..Zn from the column at SI.
	rowLoop := func(label string, n int, masked bool) {
		p("\tMOVQ SI, R10")
		p("\tMOVQ R9, R11")
		p("\tMOVQ R12, R13")
		p("%s:", label)
		p("\tVBROADCASTSS (R11), Z0")
		for v := range n {
			if masked {
				p("\tVMOVUPS.Z (R10), K1, Z8")
				p("\tVFMADD231PS Z8, Z0, Z1")
			} else {
				p("\tVFMADD231PS %s, Z0, Z%d", off(64*v, "R10"), 1+v)
			}
		}
		p("\tADDQ BX, R10")
		p("\tADDQ $4, R11")
		p("\tDECQ R13")
		p("\tJNE %s", label)
	}
	p("%s_loop64:", name)
	p("\tCMPQ CX, $64")
	p("\tJLT %s_loop16", name)
	for v := range 4 {
		p("\tVMOVUPS %s, Z%d", off(64*v, "DI"), 1+v)
	}
	rowLoop(name+"_rows64", 4, false)
	for v := range 4 {
		p("\tVMOVUPS Z%d, %s", 1+v, off(64*v, "DI"))
	}
	p("\tADDQ $256, DI")
	p("\tADDQ $256, SI")
	p("\tSUBQ $64, CX")
	p("\tJMP %s_loop64", name)
	loop16(name, []string{"DI", "SI"}, func(masked bool) {
		label := name + "_rows16"
		if masked {
			label = name + "_rowsTail"
		}
		p("\tVMOVUPS%s (DI), %sZ1", mask(masked), kreg(masked))
		rowLoop(label, 1, masked)
		p("\tVMOVUPS Z1, %s(DI)", kreg(masked))
	})
	p("\tVZEROUPPER")
	p("\tRET")
	p("")
}
