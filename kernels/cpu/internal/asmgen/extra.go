package main

// expConsts loads the constants of expZ into Z20..Z31 (clobbers AX):
// log2(e), ln2 split in two (Cephes' C1, C2), the degree-5 polynomial of
// Cephes' expf, 1, and the input clamp [-104, 89].
func expConsts() {
	for i, c := range []uint32{
		0x3fb8aa3b,             // log2(e)
		0x3f318000, 0xb95e8083, // C1 = 0.693359375, C2 = -2.12194440e-4
		0x39506967, 0x3ab743ce, 0x3c088908, 0x3d2aa9c1, 0x3e2aaaaa, 0x3f000000, // p0..p5
		0x3f800000,             // 1
		0xc2d00000, 0x42b20000, // -104, 89
	} {
		p("\tMOVL $0x%08x, AX", c)
		p("\tVPBROADCASTD AX, Z%d", 20+i)
	}
}

// expZ sets Zx = exp(Zx) (within 2 ulp), using Zt as a temporary:
// n = round(x·log2 e), r = x - n·ln2, exp(r) by Cephes' polynomial, and
// VSCALEFPS for the 2ⁿ (0 below -104, +Inf above 89, NaN stays NaN).
func expZ(x, t, u int) {
	p("\tVMAXPS Z%d, Z30, Z%d", x, x)
	p("\tVMINPS Z%d, Z31, Z%d", x, x)
	p("\tVMULPS Z20, Z%d, Z%d", x, t)
	p("\tVRNDSCALEPS $0, Z%d, Z%d", t, t)
	p("\tVFNMADD231PS Z21, Z%d, Z%d", t, x)
	p("\tVFNMADD231PS Z22, Z%d, Z%d", t, x)
	p("\tVMOVAPS Z23, Z%d", u)
	for c := 24; c <= 28; c++ {
		p("\tVFMADD213PS Z%d, Z%d, Z%d", c, x, u)
	}
	// exp(r) ≈ p(r)·r² + r + 1 = (p(r)·r + 1)·r + 1
	p("\tVFMADD213PS Z29, Z%d, Z%d", x, u)
	p("\tVFMADD213PS Z29, Z%d, Z%d", x, u)
	p("\tVSCALEFPS Z%d, Z%d, Z%d", t, u, x)
}

// loop16 emits a 16-lane loop over CX elements with a masked tail:
// body(masked) is emitted twice, once for full vectors (advancing the
// pointers by step bytes each) and once under K1 for the last CX%16.
func loop16(name string, ptrs []string, body func(masked bool)) {
	p("%s_loop16:", name)
	p("\tCMPQ CX, $16")
	p("\tJLT %s_tail", name)
	body(false)
	for _, r := range ptrs {
		p("\tADDQ $64, %s", r)
	}
	p("\tSUBQ $16, CX")
	p("\tJMP %s_loop16", name)
	p("%s_tail:", name)
	p("\tTESTQ CX, CX")
	p("\tJEQ %s_done", name)
	tailMask()
	body(true)
	p("%s_done:", name)
}

func mask(masked bool) string {
	if masked {
		return ".Z"
	}
	return ""
}

func kreg(masked bool) string {
	if masked {
		return "K1, "
	}
	return ""
}

// expSum writes expSumAVX(dst, src *float32, n int, sub float32) float32:
// dst[i] = exp(src[i]-sub), returning Σ dst[i] (dst may alias src).
func expSum() {
	const name = "expSumAVX"
	p("// func %s(dst, src *float32, n int, sub float32) float32", name)
	p("TEXT ·%s(SB), NOSPLIT, $0-36", name)
	p("\tMOVQ dst+0(FP), DI")
	p("\tMOVQ src+8(FP), SI")
	p("\tMOVQ n+16(FP), CX")
	p("\tVBROADCASTSS sub+24(FP), Z19")
	expConsts()
	p("\tVPXORD Z0, Z0, Z0")
	loop16(name, []string{"SI", "DI"}, func(m bool) {
		p("\tVMOVUPS%s (SI), %sZ1", mask(m), kreg(m))
		p("\tVSUBPS Z19, Z1, Z1")
		expZ(1, 2, 3)
		p("\tVMOVUPS Z1, %s(DI)", kreg(m))
		p("\tVADDPS Z1, Z0, %sZ0", kreg(m))
	})
	hsum(0)
	p("\tVMOVSS X0, ret+32(FP)")
	p("\tVZEROUPPER")
	p("\tRET")
	p("")
}

// siluMul writes siluMulAVX(dst, gate, u *float32, n int): dst = silu(g)·u,
// or silu(g) when u is nil, with silu(g) = g/(1+exp(-g)).
func siluMul() {
	const name = "siluMulAVX"
	p("// func %s(dst, gate, u *float32, n int)", name)
	p("TEXT ·%s(SB), NOSPLIT, $0-32", name)
	p("\tMOVQ dst+0(FP), DI")
	p("\tMOVQ gate+8(FP), SI")
	p("\tMOVQ u+16(FP), DX")
	p("\tMOVQ n+24(FP), CX")
	expConsts()
	p("\tVPXORD Z0, Z0, Z0")
	p("\tTESTQ DX, DX")
	p("\tJEQ %s_nou", name)
	for _, withU := range []bool{true, false} {
		n := name + "_u"
		ptrs := []string{"SI", "DI", "DX"}
		if !withU {
			n = name + "_nou"
			ptrs = ptrs[:2]
			p("%s:", n)
		}
		loop16(n, ptrs, func(m bool) {
			p("\tVMOVUPS%s (SI), %sZ5", mask(m), kreg(m))
			p("\tVSUBPS Z5, Z0, Z1")
			expZ(1, 2, 3)
			p("\tVADDPS Z29, Z1, Z1")
			p("\tVDIVPS Z1, Z5, Z6")
			if withU {
				p("\tVMOVUPS%s (DX), %sZ7", mask(m), kreg(m))
				p("\tVMULPS Z7, Z6, Z6")
			}
			p("\tVMOVUPS Z6, %s(DI)", kreg(m))
		})
		p("\tVZEROUPPER")
		p("\tRET")
	}
	p("")
}

// sumSquares writes sumSquaresAVX(x *float32, n int) float64: Σ x[i]² over
// the first n&^7 elements, accumulated in float64.
func sumSquares() {
	const name = "sumSquaresAVX"
	p("// func %s(x *float32, n int) float64", name)
	p("TEXT ·%s(SB), NOSPLIT, $0-24", name)
	p("\tMOVQ x+0(FP), SI")
	p("\tMOVQ n+8(FP), CX")
	p("\tVPXORQ Z0, Z0, Z0")
	p("\tVPXORQ Z1, Z1, Z1")
	p("%s_loop16:", name)
	p("\tCMPQ CX, $16")
	p("\tJLT %s_loop8", name)
	p("\tVCVTPS2PD (SI), Z2")
	p("\tVCVTPS2PD 32(SI), Z3")
	p("\tVFMADD231PD Z2, Z2, Z0")
	p("\tVFMADD231PD Z3, Z3, Z1")
	p("\tADDQ $64, SI")
	p("\tSUBQ $16, CX")
	p("\tJMP %s_loop16", name)
	p("%s_loop8:", name)
	p("\tCMPQ CX, $8")
	p("\tJLT %s_done", name)
	p("\tVCVTPS2PD (SI), Z2")
	p("\tVFMADD231PD Z2, Z2, Z0")
	p("%s_done:", name)
	p("\tVADDPD Z1, Z0, Z0")
	p("\tVEXTRACTF64X4 $1, Z0, Y1")
	p("\tVADDPD Y1, Y0, Y0")
	p("\tVEXTRACTF128 $1, Y0, X1")
	p("\tVADDPD X1, X0, X0")
	p("\tVPERMILPD $1, X0, X1")
	p("\tVADDSD X1, X0, X0")
	p("\tVMOVSD X0, ret+16(FP)")
	p("\tVZEROUPPER")
	p("\tRET")
	p("")
}

// mulScale writes mulScaleAVX(dst, x, gamma *float32, n int, s float32):
// dst[i] = (x[i]·s)·gamma[i], RMSNorm's last step, or x[i]·s when gamma
// is nil. dst may alias x.
func mulScale() {
	const name = "mulScaleAVX"
	p("// func %s(dst, x, gamma *float32, n int, s float32)", name)
	p("TEXT ·%s(SB), NOSPLIT, $0-36", name)
	p("\tMOVQ dst+0(FP), DI")
	p("\tMOVQ x+8(FP), SI")
	p("\tMOVQ gamma+16(FP), DX")
	p("\tMOVQ n+24(FP), CX")
	p("\tVBROADCASTSS s+32(FP), Z0")
	p("\tTESTQ DX, DX")
	p("\tJEQ %s_nog", name)
	for _, withG := range []bool{true, false} {
		n := name + "_g"
		ptrs := []string{"SI", "DI", "DX"}
		if !withG {
			n = name + "_nog"
			ptrs = ptrs[:2]
			p("%s:", n)
		}
		loop16(n, ptrs, func(m bool) {
			p("\tVMOVUPS%s (SI), %sZ1", mask(m), kreg(m))
			p("\tVMULPS Z0, Z1, Z1")
			if withG {
				p("\tVMOVUPS%s (DX), %sZ2", mask(m), kreg(m))
				p("\tVMULPS Z2, Z1, Z1")
			}
			p("\tVMOVUPS Z1, %s(DI)", kreg(m))
		})
		p("\tVZEROUPPER")
		p("\tRET")
	}
	p("")
}

func extra() {
	expSum()
	siluMul()
	sumSquares()
	mulScale()
}
