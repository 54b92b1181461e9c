package transport_test

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/tessera-llm/tessera/shard/transport"

	tesserav1 "github.com/tessera-llm/tessera/proto/tessera/v1"
)

// Two tensor-parallel ranks of stage 0 reduce their partial sums, then
// rank 0 hands the hidden states to stage 1, chunked to the max payload.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	t := transport.NewInProcess(transport.InProcessMaxPayload(1024))
	defer t.Close()
	subj, _ := transport.NewSubjects("demo", 1)

	// Stage 1 listens for stage 0's activations before anything is sent.
	next, _ := transport.NewReceiver(ctx, t, subj.Act(0, 0))
	defer next.Close()

	groups := make([]*transport.Group, 2)
	for r := range groups {
		groups[r], _ = transport.NewGroup(ctx, t, subj, 0, r, 2)
		defer groups[r].Close()
	}
	partials := [][]float32{{1, 2, 3}, {10, 20, 30}}
	var wg sync.WaitGroup
	for r := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := groups[r].AllReduce(ctx, 1, 0, partials[r]); err != nil {
				fmt.Println(err)
			}
		}()
	}
	wg.Wait()
	fmt.Println("rank 0:", partials[0], "rank 1:", partials[1])

	hidden := make([]float32, 600) // 2400 bytes: 3 chunks of < 1 KiB
	hidden[599] = 42
	meta := &tesserav1.Frame{
		PlanVersion: 1, StepId: 1, Stage: 0, Rank: 0,
		Kind:  tesserav1.FrameKind_FRAME_KIND_ACTIVATION,
		Dtype: tesserav1.DType_DTYPE_F32, Shape: []int64{1, 600},
	}
	if err := transport.SendTensor(ctx, t, subj.Act(0, 0), meta, transport.AppendF32(nil, hidden)); err != nil {
		fmt.Println(err)
	}
	got, err := next.Wait(ctx, transport.KeyOf(meta))
	if err != nil {
		fmt.Println(err)
		return
	}
	out := make([]float32, 600)
	transport.F32(out, got.Data)
	fmt.Println("stage 1 got", got.Shape, "last =", out[599], "dropped =", next.Dropped())
	// Output:
	// rank 0: [11 22 33] rank 1: [11 22 33]
	// stage 1 got [1 600] last = 42 dropped = 0
}
