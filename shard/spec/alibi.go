package spec

import "math"

// ALiBiSlopes returns the per-head ALiBi slopes for a model with n heads in
// total. A tensor-parallel rank holding heads [a,b) must use
// ALiBiSlopes(n)[a:b], never ALiBiSlopes(b-a): the slopes depend on the
// global head count.
//
// With c the largest power of two ≤ n, the first c slopes are 2^(-8i/c),
// i = 1..c; the remaining n-c are every other slope of the 2c-head series.
func ALiBiSlopes(n int) []float32 {
	if n <= 0 {
		return nil
	}
	c := 1
	for c*2 <= n {
		c *= 2
	}
	out := make([]float32, 0, n)
	for i := 1; i <= c; i++ {
		out = append(out, float32(math.Exp2(-8*float64(i)/float64(c))))
	}
	for i := 1; len(out) < n; i += 2 {
		out = append(out, float32(math.Exp2(-8*float64(i)/float64(2*c))))
	}
	return out
}
