package blocks

import (
	"errors"
	"testing"
)

func TestReserveAndRelease(t *testing.T) {
	c := New(4, 3)
	var a, b Seq
	steps := []struct {
		name      string
		seq       *Seq
		n         int
		wantBlock int
		wantFree  int
		wantErr   error
	}{
		{"first token takes a block", &a, 1, 1, 2, nil},
		{"fits in the same block", &a, 2, 1, 2, nil},
		{"crosses into a second block", &a, 4, 2, 1, nil},
		{"other sequence", &b, 4, 1, 0, nil},
		{"pool exhausted", &b, 1, 1, 0, ErrOutOfBlocks},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			err := c.Reserve(s.seq, s.n)
			if !errors.Is(err, s.wantErr) {
				t.Fatalf("err = %v, want %v", err, s.wantErr)
			}
			if err == nil {
				s.seq.Len += s.n
			}
			if len(s.seq.Table) != s.wantBlock || c.FreeBlocks() != s.wantFree {
				t.Fatalf("table %v, free %d; want %d blocks, %d free", s.seq.Table, c.FreeBlocks(), s.wantBlock, s.wantFree)
			}
		})
	}
	if a.Table[0] == a.Table[1] || a.Table[0] == b.Table[0] || a.Table[1] == b.Table[0] {
		t.Fatalf("blocks shared: a %v b %v", a.Table, b.Table)
	}
	c.Release(&a)
	if c.FreeBlocks() != 2 || len(a.Table) != 0 || a.Len != 0 {
		t.Fatalf("after release: free %d, a %+v", c.FreeBlocks(), a)
	}
	if err := c.Reserve(&b, 8); err != nil {
		t.Fatalf("released blocks not reusable: %v", err)
	}
}

func TestNeed(t *testing.T) {
	a := New(4, 8)
	seq := Seq{Len: 3, Table: []int32{0}}
	for _, tc := range []struct{ n, want int }{{1, 0}, {2, 1}, {5, 1}, {6, 2}} {
		if got := a.Need(&seq, tc.n); got != tc.want {
			t.Errorf("Need(len 3, +%d) = %d, want %d", tc.n, got, tc.want)
		}
	}
}
