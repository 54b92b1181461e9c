package kvcache

import (
	"errors"
	"testing"

	"github.com/tessera-llm/tessera/kernels"
	_ "github.com/tessera-llm/tessera/kernels/cpu"
)

func newCache(t *testing.T, blockSize, blocks int) *Cache {
	t.Helper()
	b, err := kernels.Open("cpu")
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(b, 2, 1, 4, blockSize, blocks)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestReserveAndRelease(t *testing.T) {
	c := newCache(t, 4, 3)
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

func TestInvalidGeometry(t *testing.T) {
	b, _ := kernels.Open("cpu")
	if _, err := New(b, 1, 1, 4, 0, 8); err == nil {
		t.Fatal("block size 0 accepted")
	}
}
