package api

import (
	"context"
	"testing"

	tesserav1 "github.com/tessera-llm/tessera/proto/tessera/v1"
	"github.com/tessera-llm/tessera/shard/topk"
)

type versionedStepper struct{}

func (versionedStepper) Step(context.Context, *tesserav1.Step) ([][]topk.Partial, error) {
	return nil, nil
}
func (versionedStepper) PlanVersion(context.Context) (uint64, error) { return 7, nil }

// Timing steps must not hide the plan version from the scheduler.
func TestTimedStepperKeepsPlanVersion(t *testing.T) {
	s := NewMetrics().TimeSteps(versionedStepper{})
	if v, err := s.PlanVersion(context.Background()); v != 7 || err != nil {
		t.Fatalf("PlanVersion = %d, %v; want 7", v, err)
	}
}
