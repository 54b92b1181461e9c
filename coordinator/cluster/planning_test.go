package cluster

import (
	"errors"
	"slices"
	"strings"
	"testing"

	tesserav1 "github.com/tessera-llm/tessera/proto/tessera/v1"
	"github.com/tessera-llm/tessera/shard/plan"
)

// place leaves out the workers too small for a share, smallest first, and
// nobody when the cluster as a whole is too small.
func TestPlaceLeavesOutTinyWorkers(t *testing.T) {
	const gib = 1 << 30
	worker := func(id string, mem int64) *tesserav1.WorkerInfo {
		return &tesserav1.WorkerInfo{Id: id, MemoryBytes: mem}
	}
	cases := []struct {
		name   string
		pp, tp int
		ws     []*tesserav1.WorkerInfo
		placed []string
		left   []string
		err    error
	}{
		{name: "all fit", ws: []*tesserav1.WorkerInfo{worker("a", 300*gib), worker("b", 300*gib)}, placed: []string{"a", "b"}},
		{name: "one tiny", ws: []*tesserav1.WorkerInfo{worker("a", 300*gib), worker("b", 1024), worker("c", 300*gib)},
			placed: []string{"a", "c"}, left: []string{"b"}},
		{name: "two tiny", ws: []*tesserav1.WorkerInfo{worker("a", 1024), worker("b", 400*gib), worker("c", 2048)},
			placed: []string{"b"}, left: []string{"a", "c"}},
		{name: "fixed shape takes the next worker", pp: 2, tp: 1,
			ws:     []*tesserav1.WorkerInfo{worker("a", 1024), worker("b", 300*gib), worker("c", 300*gib)},
			placed: []string{"b", "c"}, left: []string{"a"}},
		{name: "fixed shape short of workers", pp: 2, tp: 1,
			ws: []*tesserav1.WorkerInfo{worker("a", 1024), worker("b", 300*gib)}, err: plan.ErrMemory},
		{name: "fixed shape, one worker", pp: 2, tp: 1, ws: []*tesserav1.WorkerInfo{worker("a", 300*gib)}, err: ErrNotReady},
		{name: "the cluster is too small", ws: []*tesserav1.WorkerInfo{worker("a", gib), worker("b", gib)}, err: plan.ErrMemory},
		{name: "nobody registered"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := New(Config{Cluster: "c", ID: "leader", Spec: bloom176B, DTypeBytes: 2, PP: tc.pp, TP: tc.tp}, nil, nil)
			p, left, err := m.place(tc.ws)
			if !errors.Is(err, tc.err) || (tc.err != nil && err == nil) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			var gotLeft []string
			for _, l := range left {
				gotLeft = append(gotLeft, l.WorkerId)
				if !strings.Contains(l.Reason, "cannot hold a share") {
					t.Errorf("reason for %s: %q", l.WorkerId, l.Reason)
				}
			}
			if !slices.Equal(gotLeft, tc.left) {
				t.Errorf("left out %v, want %v", gotLeft, tc.left)
			}
			var placed []string
			if p != nil {
				placed = p.Workers()
			}
			if !slices.Equal(placed, tc.placed) {
				t.Errorf("placed %v, want %v", placed, tc.placed)
			}
		})
	}
}
