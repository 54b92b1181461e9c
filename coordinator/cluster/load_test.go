package cluster

import (
	"slices"
	"testing"

	"github.com/tessera-llm/tessera/shard/plan"
)

// A stage reduces directly only when every rank's worker has a mesh
// address; otherwise all its ranks get none and use NATS together.
func TestReducePeers(t *testing.T) {
	addr := map[string]string{"a": "10.0.0.1:7001", "b": "10.0.0.2:7002", "c": ""}
	stage := func(workers ...string) plan.Stage {
		var st plan.Stage
		for i, w := range workers {
			st.Ranks = append(st.Ranks, plan.Rank{Index: i, Worker: w})
		}
		return st
	}
	for _, c := range []struct {
		name string
		st   plan.Stage
		want []string
	}{
		{"every rank has one", stage("b", "a"), []string{"10.0.0.2:7002", "10.0.0.1:7001"}},
		{"one rank reduces over nats", stage("a", "c"), nil},
		{"unknown worker", stage("a", "gone"), nil},
		{"one rank needs no reduce", stage("a"), nil},
	} {
		if got := reducePeers(c.st, addr); !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}
