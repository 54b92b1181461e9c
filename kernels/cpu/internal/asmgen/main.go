// Command asmgen writes kernels/cpu/simd_amd64.s: the AVX-512 kernels of
// the CPU backend. It is a separate module so the main module gains no
// dependency; run it with `go generate ./kernels/cpu`.
//
// The kernels are plain text templates over the weight dtype (F32, BF16,
// F16): each dtype differs only in how a vector of 16 weights is loaded
// and widened to float32 (VMOVUPS, VPMOVZXWD+VPSLLD, VCVTPH2PS).
package main

import (
	"bytes"
	"flag"
	"fmt"
	"log"
	"os"
	"strings"
)

var out bytes.Buffer

func p(format string, args ...any) { fmt.Fprintf(&out, format+"\n", args...) }

// dtype describes how 16 weights of one type become a float32 zmm.
type dtype struct {
	name  string // F32, BF16, F16
	size  int    // bytes per element
	ptr   string // Go pointer type of the weights
	load  func(addr, z string) string
	loadM func(addr, z string) string // zero-masked by K1
}

var dtypes = []dtype{
	{"F32", 4, "*float32",
		func(a, z string) string { return fmt.Sprintf("VMOVUPS %s, %s", a, z) },
		func(a, z string) string { return fmt.Sprintf("VMOVUPS.Z %s, K1, %s", a, z) }},
	{"BF16", 2, "*uint16",
		func(a, z string) string { return fmt.Sprintf("VPMOVZXWD %s, %s; VPSLLD $16, %s, %s", a, z, z, z) },
		func(a, z string) string { return fmt.Sprintf("VPMOVZXWD.Z %s, K1, %s; VPSLLD $16, %s, %s", a, z, z, z) }},
	{"F16", 2, "*uint16",
		func(a, z string) string { return fmt.Sprintf("VCVTPH2PS %s, %s", a, z) },
		func(a, z string) string { return fmt.Sprintf("VCVTPH2PS.Z %s, K1, %s", a, z) }},
}

func lines(s string) {
	for _, l := range strings.Split(s, "; ") {
		p("\t%s", l)
	}
}

// tailMask sets K1 to the low CX bits (1 <= CX < 16); it clobbers AX.
func tailMask() {
	p("\tMOVL $1, AX")
	p("\tSHLL CX, AX")
	p("\tDECL AX")
	p("\tKMOVW AX, K1")
}

// hsum reduces the 16 lanes of Zn into the low lane of Xn (clobbers Z15).
func hsum(n int) {
	p("\tVEXTRACTF64X4 $1, Z%d, Y15", n)
	p("\tVADDPS Y15, Y%d, Y%d", n, n)
	p("\tVEXTRACTF128 $1, Y%d, X15", n)
	p("\tVADDPS X15, X%d, X%d", n, n)
	p("\tVPERMILPD $1, X%d, X15", n)
	p("\tVADDPS X15, X%d, X%d", n, n)
	p("\tVMOVSHDUP X%d, X15", n)
	p("\tVADDSS X15, X%d, X%d", n, n)
}

// A gemv body(label, R, pf) emits the dot products of x (SI) with R ≤ 4
// rows of k (CX) weights, the first at DI and the others BX bytes apart,
// row r's ending in the low lane of Xr. With pf > 0 its main loop
// prefetches the weights pf bytes ahead (one row only). It clobbers SI,
// DI, R8, CX, AX, R9, K1 and vector registers Z0..Z30 as it likes; labels
// start with label.
type gemvBodyFunc func(label string, R, pf int)

// rowsPrefetch is how far ahead the prefetching one-row GEMVs (gemvRows…PF,
// chosen at run time on Intel CPUs, cpu.usePrefetch) ask for weights.
// On an Intel Xeon (2 vCPUs, one thread) 512 B–1 KiB took f32 decode from
// 18.2–18.6 to 20.0–21.0 tok/s and bf16 from 28.9–29.7 to 30.8–34.6;
// 2–4 KiB helped f32 less and bf16 not at all.
const rowsPrefetch = 1024

// prefetchLines emits PREFETCHT0 for the n bytes at pf(DI), a line each.
func prefetchLines(pf, n int) {
	for o := 0; pf > 0 && o < n; o += 64 {
		p("\tPREFETCHT0 %d(DI)", pf+o)
	}
}

// rowAddr addresses byte off of weight row r of a gemv body: DI, DI+BX,
// R8 = DI+2·BX, R8+BX.
func rowAddr(r, off int) string {
	base := []string{"(DI)", "(DI)(BX*1)", "(R8)", "(R8)(BX*1)"}[r]
	if off == 0 {
		return base
	}
	return fmt.Sprintf("%d%s", off, base)
}

// gemvRows writes name(x, w *T, ldw, k, rows int, out *float32): out[r] =
// the dot product of x with the k weights at w + r·ldw, for r < rows
// (rows ≥ 1), one row at a time and one call for a run of rows (decode
// with one row of x), and its twin name+"PF", which prefetches. setup
// emits what every row shares.
func gemvRows(name, xPtr, wPtr string, size int, setup func(), body gemvBodyFunc) {
	gemvRowsPF(name, xPtr, wPtr, size, setup, body, 0)
	gemvRowsPF(name+"PF", xPtr, wPtr, size, setup, body, rowsPrefetch)
}

func gemvRowsPF(name, xPtr, wPtr string, size int, setup func(), body gemvBodyFunc, pf int) {
	p("// func %s(x %s, w %s, ldw, k, rows int, out *float32)", name, xPtr, wPtr)
	p("TEXT ·%s(SB), NOSPLIT, $0-48", name)
	p("\tMOVQ x+0(FP), R10")
	p("\tMOVQ w+8(FP), R13")
	p("\tMOVQ ldw+16(FP), R14")
	p("\tIMULQ $%d, R14", size)
	p("\tMOVQ k+24(FP), R11")
	p("\tMOVQ rows+32(FP), R12")
	p("\tMOVQ out+40(FP), DX")
	setup()
	p("%s_row:", name)
	p("\tMOVQ R10, SI")
	p("\tMOVQ R13, DI")
	p("\tMOVQ R11, CX")
	body(name, 1, pf)
	p("\tVMOVSS X0, (DX)")
	p("\tADDQ $4, DX")
	p("\tADDQ R14, R13")
	p("\tDECQ R12")
	p("\tJNE %s_row", name)
	p("\tVZEROUPPER")
	p("\tRET")
	p("")
}

// gemv4 writes name(x, w *T, ldw, k int, out *float32): out[r] = the dot
// product of x with the k weights at w + r·ldw for r < 4. Batched decode
// (several x rows) runs 4 weight rows a pass against each x row: x is
// loaded once for 4 rows, which counts where decode is compute-bound.
func gemv4(name, xPtr, wPtr string, size int, setup func(), body gemvBodyFunc) {
	p("// func %s(x %s, w %s, ldw, k int, out *float32)", name, xPtr, wPtr)
	p("TEXT ·%s(SB), NOSPLIT, $0-40", name)
	p("\tMOVQ x+0(FP), SI")
	p("\tMOVQ w+8(FP), DI")
	p("\tMOVQ ldw+16(FP), BX")
	p("\tIMULQ $%d, BX", size)
	p("\tMOVQ k+24(FP), CX")
	p("\tMOVQ out+32(FP), DX")
	setup()
	body(name, 4, 0)
	for r := range 4 {
		p("\tVMOVSS X%d, %d(DX)", r, 4*r)
	}
	p("\tVZEROUPPER")
	p("\tRET")
	p("")
}

// gemvBody is the gemv body for float32 x against weights widened by
// d.load, two accumulators per row.
func gemvBody(d dtype) gemvBodyFunc {
	return func(name string, R, pf int) {
		p("\tLEAQ (DI)(BX*2), R8")
		for i := range 2 * R {
			p("\tVPXORD Z%d, Z%d, Z%d", i, i, i)
		}
		p("%s_loop32:", name)
		p("\tCMPQ CX, $32")
		p("\tJLT %s_loop16", name)
		p("\tVMOVUPS (SI), Z8")
		p("\tVMOVUPS 64(SI), Z9")
		prefetchLines(pf, 32*d.size)
		for r := range R {
			lines(d.load(rowAddr(r, 0), "Z10"))
			lines(d.load(rowAddr(r, 16*d.size), "Z11"))
			p("\tVFMADD231PS Z8, Z10, Z%d", r)
			p("\tVFMADD231PS Z9, Z11, Z%d", R+r)
		}
		p("\tADDQ $128, SI")
		p("\tADDQ $%d, DI", 32*d.size)
		p("\tADDQ $%d, R8", 32*d.size)
		p("\tSUBQ $32, CX")
		p("\tJMP %s_loop32", name)
		p("%s_loop16:", name)
		p("\tCMPQ CX, $16")
		p("\tJLT %s_tail", name)
		p("\tVMOVUPS (SI), Z8")
		for r := range R {
			lines(d.load(rowAddr(r, 0), "Z10"))
			p("\tVFMADD231PS Z8, Z10, Z%d", r)
		}
		p("\tADDQ $64, SI")
		p("\tADDQ $%d, DI", 16*d.size)
		p("\tADDQ $%d, R8", 16*d.size)
		p("\tSUBQ $16, CX")
		p("%s_tail:", name)
		p("\tTESTQ CX, CX")
		p("\tJEQ %s_done", name)
		tailMask()
		p("\tVMOVUPS.Z (SI), K1, Z8")
		for r := range R {
			lines(d.loadM(rowAddr(r, 0), "Z10"))
			p("\tVFMADD231PS Z8, Z10, Z%d", R+r)
		}
		p("%s_done:", name)
		for r := range R {
			p("\tVADDPS Z%d, Z%d, Z%d", R+r, r, r)
			hsum(r)
		}
	}
}

// widen writes widen{dtype}AVX(dst *float32, src *uint16, n int).
func widen(d dtype) {
	name := fmt.Sprintf("widen%sAVX", d.name)
	p("// func %s(dst *float32, src *uint16, n int)", name)
	p("TEXT ·%s(SB), NOSPLIT, $0-24", name)
	p("\tMOVQ dst+0(FP), DI")
	p("\tMOVQ src+8(FP), SI")
	p("\tMOVQ n+16(FP), CX")
	p("%s_loop32:", name)
	p("\tCMPQ CX, $32")
	p("\tJLT %s_loop16", name)
	lines(d.load("(SI)", "Z0"))
	lines(d.load("32(SI)", "Z1"))
	p("\tVMOVUPS Z0, (DI)")
	p("\tVMOVUPS Z1, 64(DI)")
	p("\tADDQ $64, SI")
	p("\tADDQ $128, DI")
	p("\tSUBQ $32, CX")
	p("\tJMP %s_loop32", name)
	p("%s_loop16:", name)
	p("\tCMPQ CX, $16")
	p("\tJLT %s_tail", name)
	lines(d.load("(SI)", "Z0"))
	p("\tVMOVUPS Z0, (DI)")
	p("\tADDQ $32, SI")
	p("\tADDQ $64, DI")
	p("\tSUBQ $16, CX")
	p("%s_tail:", name)
	p("\tTESTQ CX, CX")
	p("\tJEQ %s_done", name)
	tailMask()
	lines(d.loadM("(SI)", "Z0"))
	p("\tVMOVUPS Z0, K1, (DI)")
	p("%s_done:", name)
	p("\tVZEROUPPER")
	p("\tRET")
	p("")
}

// axpy writes axpyAVX(y, x *float32, n int, a float32): y += a·x.
func axpy() {
	const name = "axpyAVX"
	p("// func %s(y, x *float32, n int, a float32)", name)
	p("TEXT ·%s(SB), NOSPLIT, $0-28", name)
	p("\tMOVQ y+0(FP), DI")
	p("\tMOVQ x+8(FP), SI")
	p("\tMOVQ n+16(FP), CX")
	p("\tVBROADCASTSS a+24(FP), Z0")
	p("%s_loop32:", name)
	p("\tCMPQ CX, $32")
	p("\tJLT %s_loop16", name)
	p("\tVMOVUPS (DI), Z1")
	p("\tVMOVUPS 64(DI), Z2")
	p("\tVFMADD231PS (SI), Z0, Z1")
	p("\tVFMADD231PS 64(SI), Z0, Z2")
	p("\tVMOVUPS Z1, (DI)")
	p("\tVMOVUPS Z2, 64(DI)")
	p("\tADDQ $128, SI")
	p("\tADDQ $128, DI")
	p("\tSUBQ $32, CX")
	p("\tJMP %s_loop32", name)
	p("%s_loop16:", name)
	p("\tCMPQ CX, $16")
	p("\tJLT %s_tail", name)
	p("\tVMOVUPS (DI), Z1")
	p("\tVFMADD231PS (SI), Z0, Z1")
	p("\tVMOVUPS Z1, (DI)")
	p("\tADDQ $64, SI")
	p("\tADDQ $64, DI")
	p("\tSUBQ $16, CX")
	p("%s_tail:", name)
	p("\tTESTQ CX, CX")
	p("\tJEQ %s_done", name)
	tailMask()
	p("\tVMOVUPS.Z (DI), K1, Z1")
	p("\tVMOVUPS.Z (SI), K1, Z2")
	p("\tVFMADD231PS Z2, Z0, Z1")
	p("\tVMOVUPS Z1, K1, (DI)")
	p("%s_done:", name)
	p("\tVZEROUPPER")
	p("\tRET")
	p("")
}

// gemm writes gemm12x{16H}(w *float32, ldw int, xp *float32, k int, c
// *float32, ldc int, bias *float32, rows, lanes int): the prefill
// micro-kernel. w is 12 float32 rows of stride ldw; xp is a packed panel
// [k][32] of 32 x rows (transposed), of which it reads the first 16H. It
// sets c[l·ldc+r] = Σ_p w[r][p]·xp[p][l] + bias[r] for r < rows, l <
// lanes (1 <= rows <= 12, 1 <= lanes <= 16H), scattering each accumulator
// (16 x rows of one weight row) with VSCATTERDPS. Each k step broadcasts
// 12 weights and does 12H FMAs into 12H zmm accumulators. H = 1 serves a
// panel of at most 16 x rows (a decode batch of 16, a prompt's last
// panel) with half the FMAs of H = 2.
func gemm(H int) {
	name := fmt.Sprintf("gemm12x%d", 16*H)
	p("// func %s(w *float32, ldw int, xp *float32, k int, c *float32, ldc int, bias *float32, rows, lanes int)", name)
	p("TEXT ·%s(SB), NOSPLIT, $0-72", name)
	p("\tMOVQ w+0(FP), R8")
	p("\tMOVQ ldw+8(FP), R9")
	p("\tSHLQ $2, R9")
	p("\tMOVQ xp+16(FP), DI")
	p("\tMOVQ k+24(FP), CX")
	p("\tMOVQ c+32(FP), DX")
	p("\tLEAQ (R8)(R9*2), R10")
	p("\tADDQ R9, R10") // row 3
	p("\tLEAQ (R10)(R9*2), R11")
	p("\tADDQ R9, R11") // row 6
	p("\tLEAQ (R11)(R9*2), R12")
	p("\tADDQ R9, R12") // row 9
	for i := range 12 * H {
		p("\tVPXORD Z%d, Z%d, Z%d", i, i, i)
	}
	addr := func(r, disp int) string {
		base := []string{"R8", "R10", "R11", "R12"}[r/3]
		idx := []string{"", "(R9*1)", "(R9*2)"}[r%3]
		if disp == 0 {
			return fmt.Sprintf("(%s)%s", base, idx)
		}
		return fmt.Sprintf("%d(%s)%s", disp, base, idx)
	}
	step := func(s int) {
		xo := s * 128
		if xo == 0 {
			p("\tVMOVUPS (DI), Z24")
		} else {
			p("\tVMOVUPS %d(DI), Z24", xo)
		}
		if H == 2 {
			p("\tVMOVUPS %d(DI), Z25", xo+64)
		}
		for r := range 12 {
			z := 26 + r%4
			p("\tVBROADCASTSS %s, Z%d", addr(r, 4*s), z)
			for h := range H {
				p("\tVFMADD231PS Z%d, Z%d, Z%d", 24+h, z, H*r+h)
			}
		}
	}
	p("%s_loop4:", name)
	p("\tCMPQ CX, $4")
	p("\tJLT %s_loop1", name)
	for s := range 4 {
		step(s)
	}
	p("\tADDQ $512, DI")
	for _, b := range []string{"R8", "R10", "R11", "R12"} {
		p("\tADDQ $16, %s", b)
	}
	p("\tSUBQ $4, CX")
	p("\tJMP %s_loop4", name)
	p("%s_loop1:", name)
	p("\tTESTQ CX, CX")
	p("\tJEQ %s_done", name)
	step(0)
	p("\tADDQ $128, DI")
	for _, b := range []string{"R8", "R10", "R11", "R12"} {
		p("\tADDQ $4, %s", b)
	}
	p("\tDECQ CX")
	p("\tJMP %s_loop1", name)
	p("%s_done:", name)
	scatterTile(name, 40, 12, H, func(r, h int) int { return H*r + h })
	p("%s_ret:", name)
	p("\tVZEROUPPER")
	p("\tRET")
	p("")
}

// scatterTile writes the end of a micro-kernel that leaves a tile of
// accumulators, acc(r, h) for weight row r < R and x half h < H (16 x rows
// each): with the output at DX, it loads ldc, bias, rows and lanes from the
// frame at argument offset ldcArg and the three words after it, adds
// bias[r], and scatters c[l·ldc+r] for r < rows, l < lanes with
// VSCATTERDPS. It clobbers Z24, AX, BX, CX, SI, R11-R13 and K1.
func scatterTile(name string, ldcArg, R, H int, acc func(r, h int) int) {
	// Z24 = l·ldc for l < 16; R11 = c + 16·ldc floats; K masks from
	// lanes: R13 for l < 16, AX for l >= 16.
	p("\tMOVQ ldc+%d(FP), BX", ldcArg)
	p("\tVPBROADCASTD BX, Z24")
	p("\tVPMULLD iota<>(SB), Z24, Z24")
	if H == 2 { // the second 16 lanes' base
		p("\tSHLQ $6, BX")
		p("\tLEAQ (DX)(BX*1), R11")
	}
	p("\tMOVQ bias+%d(FP), R12", ldcArg+8)
	p("\tMOVQ rows+%d(FP), SI", ldcArg+16)
	p("\tMOVQ lanes+%d(FP), CX", ldcArg+24)
	p("\tMOVL $0xffff, R13")
	p("\tXORL AX, AX")
	p("\tCMPQ CX, $16")
	p("\tJGE %s_hi", name)
	tailMask()
	p("\tMOVL AX, R13")
	p("\tXORL AX, AX")
	p("\tJMP %s_store", name)
	p("%s_hi:", name)
	if H == 2 {
		p("\tSUBQ $16, CX")
		p("\tJEQ %s_store", name)
		p("\tMOVL $1, AX")
		p("\tSHLL CX, AX")
		p("\tDECL AX")
	}
	p("%s_store:", name)
	for r := range R {
		if r > 0 {
			p("\tCMPQ SI, $%d", r)
			p("\tJLE %s_ret", name)
		}
		for h, base := range []string{"DX", "R11"}[:H] {
			z := acc(r, h)
			p("\tVADDPS.BCST %d(R12), Z%d, Z%d", 4*r, z, z)
			if h == 0 {
				p("\tKMOVW R13, K1")
			} else {
				p("\tKMOVW AX, K1")
			}
			p("\tVSCATTERDPS Z%d, K1, %d(%s)(Z24*4)", z, 4*r, base)
		}
	}
}

// cpuid writes cpuid(leaf, sub uint32) (a, b, c, d uint32) and
// xgetbv() (a, d uint32).
func cpuid() {
	p("// func cpuid(leaf, sub uint32) (a, b, c, d uint32)")
	p("TEXT ·cpuid(SB), NOSPLIT, $0-24")
	p("\tMOVL leaf+0(FP), AX")
	p("\tMOVL sub+4(FP), CX")
	p("\tCPUID")
	p("\tMOVL AX, a+8(FP)")
	p("\tMOVL BX, b+12(FP)")
	p("\tMOVL CX, c+16(FP)")
	p("\tMOVL DX, d+20(FP)")
	p("\tRET")
	p("")
	p("// func xgetbv() (a, d uint32)")
	p("TEXT ·xgetbv(SB), NOSPLIT, $0-8")
	p("\tMOVL $0, CX")
	p("\tXGETBV")
	p("\tMOVL AX, a+0(FP)")
	p("\tMOVL DX, d+4(FP)")
	p("\tRET")
	p("")
}

func main() {
	dst := flag.String("out", "../../simd_amd64.s", "output file")
	flag.IntVar(&q8Prefetch, "q8prefetch", q8Prefetch, "Q8_0 GEMV prefetch distance in bytes (0: none)")
	flag.Parse()
	p("// Code generated by kernels/cpu/internal/asmgen. DO NOT EDIT.")
	p("")
	p("//go:build amd64 && !purego")
	p("")
	p(`#include "textflag.h"`)
	p("")
	p("// iota<> is the int32 vector 0, 1, ..., 15.")
	for i := range 16 {
		p("DATA iota<>+%d(SB)/4, $%d", 4*i, i)
	}
	p("GLOBL iota<>(SB), RODATA|NOPTR, $64")
	p("")
	cpuid()
	for _, d := range dtypes {
		if d.name == "BF16" {
			// bf16 reads x de-interleaved or split instead
			gemvRows("gemvRowsBF16EO", "*float32", d.ptr, 2, eoSetup, eoBody)
			gemv4("gemv4BF16EO", "*float32", d.ptr, 2, eoSetup, eoBody)
			gemvRows("gemvRowsBF16DP", "*uint16", d.ptr, 2, func() {}, dpBody)
			gemv4("gemv4BF16DP", "*uint16", d.ptr, 2, func() {}, dpBody)
			continue
		}
		gemvRows("gemvRows"+d.name, "*float32", d.ptr, d.size, func() {}, gemvBody(d))
		gemv4("gemv4"+d.name, "*float32", d.ptr, d.size, func() {}, gemvBody(d))
	}
	for _, d := range dtypes[1:] {
		widen(d)
	}
	axpy()
	gemm(2)
	gemm(1)
	extra()
	gemv4Q8()
	dequantQ8()
	q8perm()
	// Software prefetch is a matter of the host (cpu.usePrefetch): on
	// the Zen 5 host of issue 20, 3 KiB ahead cost 2–15% of Q8_0 decode in
	// three alternating pairs; on an Intel Xeon (AMX, 2 vCPUs) 1–8 KiB
	// ahead took one thread from 50–53 to 62–67 tok/s.
	gemv4Q8VNNI("gemv4Q8VNNI", 0)
	gemv4Q8VNNI("gemv4Q8VNNIPF", 4096)
	quantizeActAVX()
	gemmQ8()
	q8Corr()
	streamRead()
	axpyRows()
	if err := os.WriteFile(*dst, out.Bytes(), 0o644); err != nil {
		log.Fatal(err)
	}
}
