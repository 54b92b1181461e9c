package kvblocks

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

func TestPrefixCache(t *testing.T) {
	a := New(4, 6)
	tokens := []int32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	var first Seq
	if err := a.Reserve(&first, len(tokens)); err != nil {
		t.Fatal(err)
	}
	first.Len = len(tokens)
	a.Commit(&first, tokens)
	if a.Cached() != 2 {
		t.Fatalf("%d blocks cached after 10 tokens in blocks of 4, want the 2 full ones", a.Cached())
	}
	shared := first.Table[:2]
	a.Release(&first)
	if a.FreeBlocks() != 6 {
		t.Fatalf("%d free after release, want all 6 (cached blocks stay reclaimable)", a.FreeBlocks())
	}

	steps := []struct {
		name   string
		tokens []int32
		limit  int
		want   int
	}{
		{"same prefix", []int32{1, 2, 3, 4, 5, 6, 7, 8, 99}, 8, 8},
		{"limit leaves a token to compute", []int32{1, 2, 3, 4, 5, 6, 7, 8}, 7, 4},
		{"diverges in block two", []int32{1, 2, 3, 4, 5, 6, 0, 8}, 8, 4},
		{"diverges at once", []int32{9, 2, 3, 4}, 4, 0},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			var s Seq
			got := a.Match(&s, st.tokens, st.limit)
			if got != st.want || s.Len != got || len(s.Table) != got/4 {
				t.Fatalf("matched %d (len %d, table %v), want %d", got, s.Len, s.Table, st.want)
			}
			for i, b := range s.Table {
				if b != shared[i] {
					t.Fatalf("block %d is %d, the cached one is %d", i, b, shared[i])
				}
			}
			a.Release(&s)
		})
	}

	// Filling the pool evicts idle cached blocks; their prefix is gone.
	var big Seq
	if err := a.Reserve(&big, 24); err != nil {
		t.Fatalf("idle cached blocks were not reclaimed: %v", err)
	}
	var s Seq
	if a.Match(&s, tokens, 8) != 0 || a.Cached() != 0 {
		t.Fatalf("evicted prefix still matches (cached %d)", a.Cached())
	}
	a.Release(&big)
	if a.FreeBlocks() != 6 {
		t.Fatalf("%d free at the end, want 6", a.FreeBlocks())
	}
}

func TestForgetKeepsHeldBlocks(t *testing.T) {
	a := New(2, 4)
	var s Seq
	toks := []int32{1, 2, 3, 4}
	_ = a.Reserve(&s, 4)
	s.Len = 4
	a.Commit(&s, toks)
	a.Forget()
	if a.Cached() != 0 || a.FreeBlocks() != 2 {
		t.Fatalf("after Forget: cached %d, free %d; want 0 and 2 (the held blocks stay held)", a.Cached(), a.FreeBlocks())
	}
	a.Release(&s)
	if a.FreeBlocks() != 4 {
		t.Fatalf("free %d after release, want 4", a.FreeBlocks())
	}
}

// TestSlide: a sliding window gives back the blocks no later query reaches,
// keeps their numbers in the table, and a Release after it frees each block
// once.
func TestSlide(t *testing.T) {
	c := New(4, 4)
	var seq Seq
	for _, tc := range []struct {
		grow, window, wantDropped, wantFree int
	}{
		{6, 8, 0, 2}, // len 6: the next query (position 6) sees keys from 0
		{3, 8, 0, 1}, // len 9: keys from 2, block 0 (tokens 0-3) still needed
		{4, 8, 1, 1}, // len 13: keys from 6: block 0 goes, block 3 is taken
		{3, 8, 2, 2}, // len 16: keys from 9: block 1 goes too
		{0, 0, 2, 2}, // no window: nothing more
		{4, 4, 4, 3}, // len 20, window 4: keys from 17: only block 4 is held
		{8, 4, 6, 3}, // len 28: keys from 25: two blocks taken from the freed ones, two given back
	} {
		if err := c.Reserve(&seq, tc.grow); err != nil {
			t.Fatalf("len %d + %d: %v", seq.Len, tc.grow, err)
		}
		seq.Len += tc.grow
		c.Slide(&seq, tc.window)
		if seq.Dropped != tc.wantDropped || c.FreeBlocks() != tc.wantFree || len(seq.Table) != (seq.Len+3)/4 {
			t.Fatalf("len %d, window %d: dropped %d, free %d, table %v; want dropped %d, free %d, %d blocks",
				seq.Len, tc.window, seq.Dropped, c.FreeBlocks(), seq.Table, tc.wantDropped, tc.wantFree, (seq.Len+3)/4)
		}
	}
	c.Release(&seq)
	if c.FreeBlocks() != 4 || seq.Dropped != 0 || len(seq.Table) != 0 {
		t.Fatalf("after release: free %d, seq %+v", c.FreeBlocks(), seq)
	}
	var other Seq
	if err := c.Reserve(&other, 16); err != nil || len(other.Table) != 4 {
		t.Fatalf("the whole pool after a slide and a release: %v, table %v", err, other.Table)
	}
}
