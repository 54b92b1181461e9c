package cpu

import "math"

// The dot kernels below are the inner loops of MatMul and Attend. They are
// written so an assembly version can replace each one with the same
// signature.

// dot returns Σ a[i]·b[i] over len(a); len(b) must be at least len(a).
func dot(a, b []float32) float32 {
	b = b[:len(a)]
	if useSIMD && len(a) > 0 {
		var s float32
		gemvRowsF32(&a[0], &b[0], 0, len(a), 1, &s)
		return s
	}
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+8 <= len(a); i += 8 {
		aa, bb := a[i:i+8:i+8], b[i:i+8:i+8]
		s0 += aa[0]*bb[0] + aa[4]*bb[4]
		s1 += aa[1]*bb[1] + aa[5]*bb[5]
		s2 += aa[2]*bb[2] + aa[6]*bb[6]
		s3 += aa[3]*bb[3] + aa[7]*bb[7]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// dotBF16 is dot with b stored as bfloat16, widened on the fly.
func dotBF16(a []float32, b []uint16) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+8 <= len(a); i += 8 {
		aa, bb := a[i:i+8:i+8], b[i:i+8:i+8]
		s0 += aa[0]*math.Float32frombits(uint32(bb[0])<<16) + aa[4]*math.Float32frombits(uint32(bb[4])<<16)
		s1 += aa[1]*math.Float32frombits(uint32(bb[1])<<16) + aa[5]*math.Float32frombits(uint32(bb[5])<<16)
		s2 += aa[2]*math.Float32frombits(uint32(bb[2])<<16) + aa[6]*math.Float32frombits(uint32(bb[6])<<16)
		s3 += aa[3]*math.Float32frombits(uint32(bb[3])<<16) + aa[7]*math.Float32frombits(uint32(bb[7])<<16)
	}
	for ; i < len(a); i++ {
		s0 += a[i] * math.Float32frombits(uint32(b[i])<<16)
	}
	return (s0 + s1) + (s2 + s3)
}

// dotF16 is dot with b stored as IEEE half, widened through f16Table.
func dotF16(a []float32, b []uint16) float32 {
	tab := f16Table()
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+8 <= len(a); i += 8 {
		aa, bb := a[i:i+8:i+8], b[i:i+8:i+8]
		s0 += aa[0]*tab[bb[0]] + aa[4]*tab[bb[4]]
		s1 += aa[1]*tab[bb[1]] + aa[5]*tab[bb[5]]
		s2 += aa[2]*tab[bb[2]] + aa[6]*tab[bb[6]]
		s3 += aa[3]*tab[bb[3]] + aa[7]*tab[bb[7]]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * tab[b[i]]
	}
	return (s0 + s1) + (s2 + s3)
}

// dot1x4 returns the dots of x with four weight rows, reading x once.
func dot1x4(x, w0, w1, w2, w3 []float32) (c [4]float32) {
	w0, w1, w2, w3 = w0[:len(x)], w1[:len(x)], w2[:len(x)], w3[:len(x)]
	var c0, c1, c2, c3 float32
	for i, xv := range x {
		c0 += xv * w0[i]
		c1 += xv * w1[i]
		c2 += xv * w2[i]
		c3 += xv * w3[i]
	}
	return [4]float32{c0, c1, c2, c3}
}

// dot2x4 returns the 8 dots of x rows 0..1 with weight rows 0..3 as
// c[4*xi+wi]. Eight accumulators fit amd64's registers without spills.
func dot2x4(x0, x1, w0, w1, w2, w3 []float32) (c [8]float32) {
	k := len(x0)
	x1 = x1[:k]
	w0, w1, w2, w3 = w0[:k], w1[:k], w2[:k], w3[:k]
	var c00, c01, c02, c03, c10, c11, c12, c13 float32
	for i := range k {
		a, b := x0[i], x1[i]
		w := w0[i]
		c00 += a * w
		c10 += b * w
		w = w1[i]
		c01 += a * w
		c11 += b * w
		w = w2[i]
		c02 += a * w
		c12 += b * w
		w = w3[i]
		c03 += a * w
		c13 += b * w
	}
	return [8]float32{c00, c01, c02, c03, c10, c11, c12, c13}
}
