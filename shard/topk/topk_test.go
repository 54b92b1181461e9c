package topk

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// reference is the unsharded answer: ids sorted best first (ties to the
// lower id) and log_softmax in float64.
func reference(logits []float32) (order []int32, logprob []float64) {
	order = make([]int32, len(logits))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortStableFunc(order, func(a, b int32) int { return cmp.Compare(logits[b], logits[a]) })
	m := math.Inf(-1)
	for _, v := range logits {
		m = max(m, float64(v))
	}
	var s float64
	for _, v := range logits {
		s += math.Exp(float64(v) - m)
	}
	lse := m + math.Log(s)
	logprob = make([]float64, len(logits))
	for i, v := range logits {
		logprob[i] = float64(v) - lse
	}
	return order, logprob
}

// split cuts [0,n) into parts uneven slices (some of length 1 when n allows).
func split(rng *rand.Rand, n, parts int) [][2]int {
	cuts := map[int]bool{}
	for len(cuts) < parts-1 {
		cuts[1+rng.IntN(n-1)] = true
	}
	bounds := []int{0}
	for c := range cuts {
		bounds = append(bounds, c)
	}
	bounds = append(bounds, n)
	slices.Sort(bounds)
	out := make([][2]int, 0, parts)
	for i := 1; i < len(bounds); i++ {
		out = append(out, [2]int{bounds[i-1], bounds[i]})
	}
	return out
}

func TestMergeMatchesUnsharded(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	gens := []struct {
		name string
		gen  func(n int) []float32
	}{
		{"normal", func(n int) []float32 {
			out := make([]float32, n)
			for i := range out {
				out[i] = float32(rng.NormFloat64() * 3)
			}
			return out
		}},
		{"many ties", func(n int) []float32 {
			out := make([]float32, n)
			for i := range out {
				out[i] = float32(rng.IntN(4))
			}
			return out
		}},
		{"large and masked", func(n int) []float32 {
			out := make([]float32, n)
			for i := range out {
				out[i] = float32(1e4 + rng.NormFloat64()*50)
				if rng.IntN(5) == 0 {
					out[i] = float32(math.Inf(-1))
				}
			}
			out[rng.IntN(n)] = 1e4
			return out
		}},
		{"all equal", func(n int) []float32 { return make([]float32, n) }},
	}
	for _, g := range gens {
		t.Run(g.name, func(t *testing.T) {
			for iter := range 300 {
				n := 1 + rng.IntN(3000)
				if iter%10 == 0 {
					n = 1 + rng.IntN(8)
				}
				parts := 1 + rng.IntN(min(n, 9))
				k := 1 + rng.IntN(60)
				if iter%7 == 0 {
					k = n + 3 // more than the vocabulary
				}
				logits := g.gen(n)
				name := fmt.Sprintf("n=%d parts=%d k=%d", n, parts, k)
				order, logprob := reference(logits)
				var ps []Partial
				for _, s := range split(rng, n, parts) {
					ps = append(ps, Local(logits[s[0]:s[1]], s[0], k))
				}
				rng.Shuffle(len(ps), func(i, j int) { ps[i], ps[j] = ps[j], ps[i] })
				if err := Check(ps, k); err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				ids, lps, lse := Merge(ps, k)
				want := order[:min(k, n)]
				if !slices.Equal(ids, want) {
					t.Fatalf("%s: ids %v, want %v", name, ids, want)
				}
				if ids[0] != Argmax(logits) {
					t.Fatalf("%s: greedy %d, argmax %d", name, ids[0], Argmax(logits))
				}
				for i, id := range ids {
					if d := math.Abs(lps[i] - logprob[id]); !(d <= 1e-9) && lps[i] != logprob[id] {
						t.Fatalf("%s: logprob of %d = %.15g, want %.15g", name, id, lps[i], logprob[id])
					}
				}
				if wantLSE := float64(logits[ids[0]]) - logprob[ids[0]]; math.Abs(lse-wantLSE) > 1e-9*max(1, math.Abs(wantLSE)) {
					t.Fatalf("%s: lse %.15g, want %.15g", name, lse, wantLSE)
				}
			}
		})
	}
}

func TestLocal(t *testing.T) {
	inf := float32(math.Inf(-1))
	cases := []struct {
		name   string
		logits []float32
		offset int
		k      int
		ids    []int32
		lse    float64
	}{
		{"top two with a tie", []float32{1, 3, 3, 2}, 100, 2, []int32{101, 102}, math.Log(math.E + 2*math.Exp(3) + math.Exp(2))},
		{"k above length", []float32{0, 1}, 5, 10, []int32{6, 5}, math.Log(1 + math.E)},
		{"k zero keeps the lse", []float32{0, 0}, 0, 0, []int32{}, math.Log(2)},
		{"masked", []float32{inf, 0, inf}, 0, 3, []int32{1, 0, 2}, 0},
		{"all masked", []float32{inf, inf}, 0, 1, []int32{0}, math.Inf(-1)},
		{"empty", nil, 9, 4, nil, math.Inf(-1)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := Local(tc.logits, tc.offset, tc.k)
			if !slices.Equal(p.IDs, tc.ids) || len(p.Logits) != len(p.IDs) || p.Offset != tc.offset || p.Len != len(tc.logits) {
				t.Errorf("got %+v, want ids %v", p, tc.ids)
			}
			if p.LSE != tc.lse && math.Abs(p.LSE-tc.lse) > 1e-12 {
				t.Errorf("lse %g, want %g", p.LSE, tc.lse)
			}
			for i, id := range p.IDs {
				if p.Logits[i] != tc.logits[int(id)-tc.offset] {
					t.Errorf("logit of %d is %g", id, p.Logits[i])
				}
			}
		})
	}
}

func TestMergeEdges(t *testing.T) {
	ids, lps, lse := Merge(nil, 3)
	if len(ids) != 0 || len(lps) != 0 || !math.IsInf(lse, -1) {
		t.Errorf("empty merge: %v %v %g", ids, lps, lse)
	}
	ps := []Partial{Local([]float32{1, 2}, 0, 2), Local([]float32{2, 0}, 2, 2)}
	ids, _, _ = Merge(ps, 0)
	if len(ids) != 0 {
		t.Errorf("k=0 gave %v", ids)
	}
	ids, _, _ = Merge(ps, 3)
	if !slices.Equal(ids, []int32{1, 2, 0}) {
		t.Errorf("tie across slices: %v, want [1 2 0]", ids)
	}
	if got := LogSumExp([]float64{math.Inf(-1), 0, math.Log(3)}); math.Abs(got-math.Log(4)) > 1e-15 {
		t.Errorf("LogSumExp = %g", got)
	}
}

func TestCheck(t *testing.T) {
	good := func() []Partial {
		return []Partial{Local([]float32{1, 5, 2, 4}, 0, 2), Local([]float32{3, 0, 6}, 4, 2)}
	}
	cases := []struct {
		name   string
		mutate func(ps []Partial)
		k      int
		msg    string
	}{
		{"fewer entries than k", func(ps []Partial) {}, 3, "merge needs 3"},
		{"length mismatch", func(ps []Partial) { ps[0].Logits = ps[0].Logits[:1] }, 2, "2 ids but 1 logits"},
		{"id outside slice", func(ps []Partial) { ps[1].IDs[0] = 2 }, 2, "outside"},
		{"not best first", func(ps []Partial) {
			ps[0].IDs[0], ps[0].IDs[1] = ps[0].IDs[1], ps[0].IDs[0]
			ps[0].Logits[0], ps[0].Logits[1] = ps[0].Logits[1], ps[0].Logits[0]
		}, 2, "best first"},
		{"overlap", func(ps []Partial) { ps[1].Offset, ps[1].IDs = 3, []int32{5, 3} }, 2, "overlap"},
		{"nan lse", func(ps []Partial) { ps[0].LSE = math.NaN() }, 2, "log-sum-exp"},
		{"nan logit", func(ps []Partial) { ps[0].Logits[1] = float32(math.NaN()) }, 2, "NaN"},
		{"too many entries", func(ps []Partial) { ps[0].Len = 1 }, 2, "for a slice of 1"},
	}
	if err := Check(good(), 2); err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ps := good()
			tc.mutate(ps)
			err := Check(ps, tc.k)
			if !errors.Is(err, ErrPartial) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("Check = %v, want ErrPartial mentioning %q", err, tc.msg)
			}
		})
	}
}

func BenchmarkLocal(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	logits := make([]float32, 250880)
	for i := range logits {
		logits[i] = float32(rng.NormFloat64() * 4)
	}
	for _, k := range []int{1, 64} {
		b.Run(fmt.Sprintf("vocab=250880/k=%d", k), func(b *testing.B) {
			b.SetBytes(int64(4 * len(logits)))
			for b.Loop() {
				Local(logits, 0, k)
			}
		})
	}
}

// Masking each rank's slice and merging equals masking the whole row: the
// allowed tokens keep their order and their probabilities renormalise
// over the allowed set.
func TestMaskedMergeMatchesMaskedRow(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	const vocab = 1000
	for trial := range 50 {
		logits := make([]float32, vocab)
		for i := range logits {
			logits[i] = float32(rng.NormFloat64() * 3)
		}
		allow := make([]byte, (vocab+7)/8)
		var allowed []int32
		for id := range int32(vocab) {
			if rng.IntN(10) == 0 || (trial%5 == 0 && id == 777) {
				allow[id>>3] |= 1 << (id & 7)
				allowed = append(allowed, id)
			}
		}
		row := slices.Clone(logits)
		Mask(row, 0, allow)
		wantIDs, wantLP := reference(row)
		cuts := []int{0, 1 + rng.IntN(vocab/2), vocab/2 + rng.IntN(vocab/2), vocab}
		var parts []Partial
		for r := range 3 {
			slice := slices.Clone(logits[cuts[r]:cuts[r+1]])
			Mask(slice, cuts[r], allow)
			parts = append(parts, Local(slice, cuts[r], 16))
		}
		ids, lps, _ := Merge(parts, 16)
		for i := range min(16, len(allowed)) {
			if ids[i] != wantIDs[i] || math.Abs(lps[i]-wantLP[ids[i]]) > 1e-9 {
				t.Fatalf("trial %d rank %d: got %d (%g), want %d (%g)", trial, i, ids[i], lps[i], wantIDs[i], wantLP[wantIDs[i]])
			}
			if allow[ids[i]>>3]&(1<<(ids[i]&7)) == 0 {
				t.Fatalf("trial %d: masked token %d in the top", trial, ids[i])
			}
		}
		for i := len(allowed); i < len(ids); i++ {
			if !math.IsInf(lps[i], -1) {
				t.Fatalf("trial %d: candidate %d past the %d allowed has log-prob %g", trial, i, len(allowed), lps[i])
			}
		}
	}
}
