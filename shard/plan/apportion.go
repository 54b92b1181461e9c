package plan

import "math/big"

// apportion splits n units over len(w) holders in proportion to the
// weights w (all > 0), giving each holder at least one unit, so that the
// counts sum to exactly n. It is Hamilton's largest-remainder method with a
// floor of one: start from max(1, ⌊n·wᵢ/W⌋), hand out what is left to the
// largest remainders (ties to the lower index), and, when the floor of one
// overshoots, take back from the holders furthest above their quota (ties to
// the higher index). Equal weights give the familiar 3,3,2,2,2 for 12 over
// 5. The arithmetic is exact (big integers), so the split never depends on
// floating-point rounding. The caller guarantees n ≥ len(w) > 0.
func apportion(n int, w []int64) []int {
	W := new(big.Int)
	for _, x := range w {
		W.Add(W, big.NewInt(x))
	}
	bn := big.NewInt(int64(n))
	num := make([]*big.Int, len(w)) // n·wᵢ: the quota is num[i]/W
	out := make([]int, len(w))
	sum := 0
	for i, x := range w {
		num[i] = new(big.Int).Mul(bn, big.NewInt(x))
		q := new(big.Int).Quo(num[i], W)
		out[i] = max(1, int(q.Int64()))
		sum += out[i]
	}
	// deficit(i) = n·wᵢ − aᵢ·W: how far holder i sits below its quota, in
	// units of 1/W.
	deficit := func(i int) *big.Int {
		d := new(big.Int).Mul(big.NewInt(int64(out[i])), W)
		return d.Sub(num[i], d)
	}
	for ; sum < n; sum++ {
		best, bd := 0, deficit(0)
		for i := 1; i < len(w); i++ {
			if d := deficit(i); d.Cmp(bd) > 0 {
				best, bd = i, d
			}
		}
		out[best]++
	}
	for ; sum > n; sum-- {
		best, bd := -1, (*big.Int)(nil)
		for i := len(w) - 1; i >= 0; i-- {
			if out[i] <= 1 {
				continue
			}
			if d := deficit(i); best < 0 || d.Cmp(bd) < 0 {
				best, bd = i, d
			}
		}
		out[best]--
	}
	return out
}
