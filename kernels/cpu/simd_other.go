//go:build !amd64 || purego

package cpu

// hasAVX512 is false where the assembly kernels are not built: every op
// runs its pure-Go fallback.
const hasAVX512 = false

const hasVNNI = false

const hasBF16 = false

const isIntel = false

func widenBF16AVX(dst *float32, src *uint16, n int) { panic("unreachable") }
func widenF16AVX(dst *float32, src *uint16, n int)  { panic("unreachable") }
func axpyAVX(y, x *float32, n int, a float32)       { panic("unreachable") }
func gemm12x32(w *float32, ldw int, xp *float32, k int, c *float32, ldc int, bias *float32, rows, lanes int) {
	panic("unreachable")
}
func gemm12x16(w *float32, ldw int, xp *float32, k int, c *float32, ldc int, bias *float32, rows, lanes int) {
	panic("unreachable")
}

func expSumAVX(dst, src *float32, n int, sub float32) float32 { panic("unreachable") }
func siluMulAVX(dst, gate, u *float32, n int)                 { panic("unreachable") }
func sumSquaresAVX(x *float32, n int) float64                 { panic("unreachable") }
func mulScaleAVX(dst, x, gamma *float32, n int, s float32)    { panic("unreachable") }

func gemv4Q8(x *float32, q *int8, s *uint16, nb int, out *float32) { panic("unreachable") }
func dequantQ8(dst *float32, q *int8, s *uint16, nb int)           { panic("unreachable") }

func streamRead(p *byte, n int) uint64 { panic("unreachable") }

func gemv4Q8VNNI(xq *int8, xc *int32, xd *float32, q *int8, s *uint16, nb, ng int, out *float32) {
	panic("unreachable")
}

func gemv4Q8VNNIPF(xq *int8, xc *int32, xd *float32, q *int8, s *uint16, nb, ng int, out *float32) {
	panic("unreachable")
}

func axpyRows(y, x *float32, ldx, k, rows int, a *float32) { panic("unreachable") }

func gemvRowsF32(x, w *float32, ldw, k, rows int, out *float32)         { panic("unreachable") }
func gemvRowsF16(x *float32, w *uint16, ldw, k, rows int, out *float32) { panic("unreachable") }
func gemvRowsBF16EO(x *float32, w *uint16, ldw, k, rows int, out *float32) {
	panic("unreachable")
}
func gemvRowsBF16DP(x *uint16, w *uint16, ldw, k, rows int, out *float32) {
	panic("unreachable")
}
func gemvRowsF32PF(x, w *float32, ldw, k, rows int, out *float32)         { panic("unreachable") }
func gemvRowsF16PF(x *float32, w *uint16, ldw, k, rows int, out *float32) { panic("unreachable") }
func gemvRowsBF16EOPF(x *float32, w *uint16, ldw, k, rows int, out *float32) {
	panic("unreachable")
}
func gemvRowsBF16DPPF(x *uint16, w *uint16, ldw, k, rows int, out *float32) {
	panic("unreachable")
}

func quantizeActAVX(q *int8, c *int32, d *float32, x *float32, nb int) { panic("unreachable") }

func gemv4F32(x, w *float32, ldw, k int, out *float32)         { panic("unreachable") }
func gemv4F16(x *float32, w *uint16, ldw, k int, out *float32) { panic("unreachable") }
func gemv4BF16EO(x *float32, w *uint16, ldw, k int, out *float32) {
	panic("unreachable")
}
func gemv4BF16DP(x *uint16, w *uint16, ldw, k int, out *float32) {
	panic("unreachable")
}

func gemm4x32Q8(xq *uint32, xd *float32, q *int8, s *float32, c *int32, nb int, out *float32, ldc int, bias *float32, rows, lanes int) {
	panic("unreachable")
}
func q8Corr(q *int8, nb int, c *int32) { panic("unreachable") }
