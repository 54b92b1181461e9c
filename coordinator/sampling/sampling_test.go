package sampling

import (
	"errors"
	"math"
	"testing"
)

func TestGreedyFirstMax(t *testing.T) {
	cases := []struct {
		name   string
		logits []float32
		want   int32
	}{
		{"single", []float32{1}, 0},
		{"last", []float32{-1, 0, 3}, 2},
		{"tie keeps first", []float32{0, 5, 5, 1}, 1},
		{"negative", []float32{-3, -2, -9}, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Greedy(tc.logits); got != tc.want {
				t.Fatalf("Greedy = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	cases := []struct {
		name string
		p    Params
		ok   bool
	}{
		{"greedy", Params{}, true},
		{"sampling", Params{Temperature: 0.7, TopK: 40, TopP: 0.9}, true},
		{"negative temperature", Params{Temperature: -1}, false},
		{"nan temperature", Params{Temperature: math.NaN()}, false},
		{"negative top-k", Params{TopK: -2}, false},
		{"top-p above one", Params{TopP: 1.5}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.p)
			if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrParams)) {
				t.Fatalf("New(%+v) err = %v, want ok=%v", tc.p, err, tc.ok)
			}
		})
	}
}

func TestSeedReproducible(t *testing.T) {
	logits := []float32{0.1, 0.5, 0.2, 0.9, 0.3, 0.0, 0.4}
	draw := func(seed uint64) []int32 {
		s, _ := New(Params{Temperature: 1, Seed: seed})
		var out []int32
		for range 50 {
			out = append(out, s.Sample(logits))
		}
		return out
	}
	a, b, c := draw(7), draw(7), draw(8)
	same := func(x, y []int32) bool {
		for i := range x {
			if x[i] != y[i] {
				return false
			}
		}
		return true
	}
	if !same(a, b) {
		t.Fatal("same seed gave different draws")
	}
	if same(a, c) {
		t.Fatal("different seeds gave identical 50-token draws")
	}
}

func TestTopKAndTopPRestrict(t *testing.T) {
	logits := []float32{5, 4.9, 0, -1, -2, 4.8}
	cases := []struct {
		name    string
		p       Params
		allowed map[int32]bool
	}{
		{"top-k 2", Params{Temperature: 1, TopK: 2}, map[int32]bool{0: true, 1: true}},
		// The three top tokens hold ~99.5% of the mass; 0.5 needs two of them.
		{"top-p 0.5", Params{Temperature: 1, TopP: 0.5}, map[int32]bool{0: true, 1: true}},
		{"top-k 1 is greedy", Params{Temperature: 2, TopK: 1}, map[int32]bool{0: true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(tc.p)
			if err != nil {
				t.Fatal(err)
			}
			seen := map[int32]int{}
			for range 400 {
				id := s.Sample(logits)
				if !tc.allowed[id] {
					t.Fatalf("sampled %d outside %v", id, tc.allowed)
				}
				seen[id]++
			}
			if len(seen) != len(tc.allowed) {
				t.Errorf("saw %v, expected every allowed token %v", seen, tc.allowed)
			}
		})
	}
}

func TestTemperatureShapesDistribution(t *testing.T) {
	logits := []float32{1, 0}
	// P(0) = 1/(1+e^-1/T): 0.731 at T=1, 0.525 at T=10.
	for _, tc := range []struct {
		temp, want float64
	}{{1, 0.731}, {10, 0.525}} {
		s, _ := New(Params{Temperature: tc.temp, Seed: 3})
		n := 0
		const draws = 20000
		for range draws {
			if s.Sample(logits) == 0 {
				n++
			}
		}
		if got := float64(n) / draws; math.Abs(got-tc.want) > 0.02 {
			t.Errorf("T=%g: P(token 0) = %.3f, want %.3f", tc.temp, got, tc.want)
		}
	}
}

// MinP drops every token less likely than min_p × the best one's.
func TestMinP(t *testing.T) {
	// Probabilities ∝ 1, e^-1, e^-3: with min_p 0.2 only the first two stay.
	ids := []int32{7, 8, 9}
	logits := []float32{0, -1, -3}
	s, err := New(Params{Temperature: 1, MinP: 0.2, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int32]int{}
	for range 2000 {
		seen[s.SampleCandidates(ids, logits)]++
	}
	if seen[9] != 0 || seen[7] == 0 || seen[8] == 0 {
		t.Fatalf("min_p 0.2 sampled %v; token 9 (p ratio e^-3) must never appear", seen)
	}
	if _, err := New(Params{MinP: 1.5}); err == nil {
		t.Fatal("min_p 1.5 accepted")
	}
}
