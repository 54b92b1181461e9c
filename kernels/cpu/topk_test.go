package cpu

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/tessera-llm/tessera/kernels"
)

func TestTopK(t *testing.T) {
	b := New()
	inf := float32(math.Inf(-1))
	rng := rand.New(rand.NewPCG(3, 4))
	random := make([]float32, 3*257)
	for i := range random {
		random[i] = float32(rng.IntN(9)) // many ties
	}
	cases := []struct {
		name      string
		data      []float32
		rows, n   int
		offset, k int
	}{
		{"random rows with ties", random, 3, 257, 1000, 40},
		{"k above the row", []float32{1, 2, 3, 4, 5, 6}, 2, 3, 0, 9},
		{"k zero keeps the lse", []float32{0, 0, 1, 1}, 2, 2, 7, 0},
		{"masked row", []float32{inf, inf, 0, inf}, 2, 2, 0, 1},
		{"no rows", nil, 0, 5, 0, 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := b.TopK(b.FromFloat32(tc.data, tc.rows, tc.n), tc.offset, tc.k)
			if len(got) != tc.rows {
				t.Fatalf("%d rows, want %d", len(got), tc.rows)
			}
			for r, g := range got {
				want := kernels.TopKRow(tc.data[r*tc.n:(r+1)*tc.n], tc.offset, tc.k)
				if !slices.Equal(g.IDs, want.IDs) || !slices.Equal(g.Logits, want.Logits) || g.LSE != want.LSE {
					t.Errorf("row %d: got %+v, want %+v", r, g, want)
				}
				if len(g.IDs) != min(tc.k, tc.n) {
					t.Errorf("row %d: %d entries, want %d", r, len(g.IDs), min(tc.k, tc.n))
				}
			}
		})
	}
}

func TestTopKRejects(t *testing.T) {
	b := New()
	half, err := b.Upload(kernels.BF16, make([]byte, 8), 2, 2)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		logits    kernels.Tensor
		offset, k int
		want      string
	}{
		{"half logits", half, 0, 1, "F32 logits"},
		{"negative k", b.Alloc(2, 2), 0, -1, "k -1"},
		{"negative offset", b.Alloc(2, 2), -3, 1, "offset -3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if r := recover(); r == nil || !strings.Contains(r.(string), tc.want) {
					t.Errorf("panic %v, want one naming %q", r, tc.want)
				}
			}()
			b.TopK(tc.logits, tc.offset, tc.k)
		})
	}
}
