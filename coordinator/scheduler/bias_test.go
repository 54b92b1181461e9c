package scheduler

import (
	"context"
	"math"
	"testing"

	"github.com/tessera-llm/tessera/coordinator/sampling"
)

// A logit bias that sinks every candidate the step would have returned
// still picks the best token of the whole biased row: the scheduler
// widens the step by one candidate per biased token.
func TestLogitBiasIsExact(t *testing.T) {
	f := newFake(t)
	s := start(t, Config{TopK: 2}, f)
	prompt := []int32{1, 2}
	row := make([]float64, vocab)
	for i := range row {
		row[i] = math.Sin(float64(i))
	}
	row[next(prompt)] = 10
	// Sink the two best tokens: the two the configured top-k returns.
	bias := map[int32]float64{}
	for range 2 {
		best := -1
		for i, v := range row {
			if _, sunk := bias[int32(i)]; !sunk && (best < 0 || v > row[best]) {
				best = i
			}
		}
		bias[int32(best)] = -100
	}
	want := -1
	for i, v := range row {
		if b := bias[int32(i)]; want < 0 || v+b > row[want]+bias[int32(want)] {
			want = i
		}
	}
	h, err := s.Submit(context.Background(), Request{Prompt: prompt, MaxTokens: 1, Sampling: sampling.Params{LogitBias: bias}})
	if err != nil {
		t.Fatal(err)
	}
	res := h.Wait()
	if res.Err != nil || res.Tokens[0].ID != int32(want) {
		t.Fatalf("got %+v, want token %d, the best of the biased row", res, want)
	}
	if f.topK != 4 {
		t.Errorf("the step asked for %d candidates, want 2 + 2 biased", f.topK)
	}
}
