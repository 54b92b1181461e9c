package main

import (
	"fmt"
	"strings"
)

// vdpbf16ps emits VDPBF16PS Zrm, Zsrc1, Zdst (AVX512_BF16, which Go's
// assembler does not know) as EVEX bytes: EVEX.512.F3.0F38.W0 52 /r,
// register operands only. Each dword lane of dst gains the two products of
// the bf16 pairs in that lane of src1 and rm.
func vdpbf16ps(rm, src1, dst int) {
	bit := func(r, b int) int { return r >> b & 1 }
	p0 := (1-bit(dst, 3))<<7 | (1-bit(rm, 4))<<6 | (1-bit(rm, 3))<<5 | (1-bit(dst, 4))<<4 | 2 // mm = 0F38
	p1 := (^src1&15)<<3 | 1<<2 | 2                                                            // W0, pp = F3
	p2 := 2<<5 | (1-bit(src1, 4))<<3                                                          // 512 bits
	modrm := 0xc0 | (dst&7)<<3 | rm&7
	var b []string
	for _, x := range []int{0x62, p0, p1, p2, 0x52, modrm} {
		b = append(b, fmt.Sprintf("BYTE $0x%02x", x))
	}
	p("\t%s // VDPBF16PS Z%d, Z%d, Z%d", strings.Join(b, "; "), rm, src1, dst)
}

// dpBody is the gemv body of the bf16 decode GEMV on x split into two
// bf16 parts, xb = [hi | lo], each zero padded to kp = a multiple of 32
// (splitBF16): hi = bf16(x), lo = bf16(x - hi), so hi + lo holds x to
// 2⁻¹⁶ of itself. VDPBF16PS multiplies 32 weights by 32 values and adds
// the pairs into 16 float32 lanes: per 64 bytes of a row one load and two
// instructions (hi and lo, separate accumulators), against the even/odd
// kernel's load, two integer ops and two FMAs. The k%32 tail is a
// word-masked load (zero weights against zero padding).
func dpBody(name string, R, pf int) {
	p("\tLEAQ (DI)(BX*2), R8")
	// R9 = byte offset of lo: kp·2, kp = k rounded up to 32.
	p("\tLEAQ 31(CX), R9")
	p("\tANDQ $-32, R9")
	p("\tSHLQ $1, R9")
	// Accumulators Z0..Z(4R-1), [unroll][hi/lo][row]; row r ends in Zr.
	acc := func(u, part, r int) int { return (2*u+part)*R + r }
	for i := range 4 * R {
		p("\tVPXORD Z%d, Z%d, Z%d", i, i, i)
	}
	step := func(u int, load func(r int) string) {
		xh, xl := 16+2*u, 17+2*u
		p("\tVMOVDQU16 %s, Z%d", off(64*u, "SI"), xh)
		if u == 0 {
			p("\tVMOVDQU16 (SI)(R9*1), Z%d", xl)
		} else {
			p("\tVMOVDQU16 %d(SI)(R9*1), Z%d", 64*u, xl)
		}
		for r := range R {
			p("\t%s, Z%d", load(r), 24+r)
		}
		for r := range R {
			vdpbf16ps(24+r, xh, acc(u, 0, r))
			vdpbf16ps(24+r, xl, acc(u, 1, r))
		}
	}
	full := func(woff int) func(int) string {
		return func(r int) string { return "VMOVDQU16 " + rowAddr(r, woff) }
	}
	p("%s_loop64:", name)
	p("\tCMPQ CX, $64")
	p("\tJLT %s_loop32", name)
	prefetchLines(pf, 128)
	step(0, full(0))
	step(1, full(64))
	p("\tADDQ $128, SI")
	p("\tADDQ $128, DI")
	p("\tADDQ $128, R8")
	p("\tSUBQ $64, CX")
	p("\tJMP %s_loop64", name)
	p("%s_loop32:", name)
	p("\tCMPQ CX, $32")
	p("\tJLT %s_tail", name)
	step(0, full(0))
	p("\tADDQ $64, SI")
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
	step(0, func(r int) string { return "VMOVDQU16.Z " + rowAddr(r, 0) + ", K1" })
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
