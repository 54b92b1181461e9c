package console

import (
	"encoding/json"
	"testing"
	"time"

	tesserav1 "github.com/tessera-llm/tessera/proto/tessera/v1"
	"github.com/tessera-llm/tessera/shard/plan"
	"github.com/tessera-llm/tessera/shard/registry"
	"github.com/tessera-llm/tessera/shard/spec"
)

// A plan's cause names the workers it adds and drops, whichever of the
// membership and plan watches delivers first.
func TestPlanCauseIgnoresWatchOrder(t *testing.T) {
	s, err := spec.Load("../../models/docbloom-3m")
	if err != nil {
		t.Fatal(err)
	}
	planOf := func(v uint64, ids ...string) registry.Plan {
		var ws []plan.Worker
		for _, id := range ids {
			ws = append(ws, plan.Worker{ID: id, Memory: 1 << 30})
		}
		p, err := plan.New(s, ws, plan.WithVersion(v), plan.WithDTypeBytes(2))
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := json.Marshal(p)
		return registry.Plan{Version: v, JSON: raw}
	}
	workers := func(ids ...string) []*tesserav1.WorkerInfo {
		var ws []*tesserav1.WorkerInfo
		for _, id := range ids {
			ws = append(ws, &tesserav1.WorkerInfo{Id: id, MemoryBytes: 1 << 30})
		}
		return ws
	}
	now := time.Now()
	st := newClusterState(Config{})
	last := func() string { return st.plans[len(st.plans)-1].Cause }
	for _, step := range []struct {
		apply func()
		cause string
	}{
		{func() { st.setWorkers(workers("w0", "w1"), now) }, ""},
		{func() { st.setPlan(planOf(1, "w0", "w1"), now) }, "the first plan this console saw"},
		// The plan over w2 before w2's registration: the join is its cause.
		{func() { st.setPlan(planOf(2, "w0", "w1", "w2"), now) }, "re-plan after w2 joined"},
		{func() { st.setWorkers(workers("w0", "w1", "w2"), now) }, "re-plan after w2 joined"},
		{func() { st.setPlan(planOf(3, "w0", "w1", "w2"), now) }, "re-plan"},
		// The plan without w2 before its loss: the loss, once seen, is the cause.
		{func() { st.setPlan(planOf(4, "w0", "w1"), now) }, "re-plan after w2 left the plan"},
		{func() { st.setWorkers(workers("w0", "w1"), now) }, "re-plan after w2 lost"},
		// The loss first, then the plan.
		{func() { st.setWorkers(workers("w0"), now) }, "re-plan after w2 lost"},
		{func() { st.setPlan(planOf(5, "w0"), now) }, "re-plan after w1 lost"},
	} {
		step.apply()
		if step.cause == "" {
			continue
		}
		if got := last(); got != step.cause {
			t.Fatalf("plans %+v: the last cause is %q, want %q", st.plans, got, step.cause)
		}
	}
}
