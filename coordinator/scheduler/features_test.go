package scheduler

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/tessera-llm/tessera/coordinator/sampling"
	tesserav1 "github.com/tessera-llm/tessera/proto/tessera/v1"
	"github.com/tessera-llm/tessera/shard/topk"
)

// A second request sharing a long prefix computes only its new tokens.
func TestPrefixCacheSkipsSharedPrefix(t *testing.T) {
	s := start(t, Config{Blocks: 512, BlockSize: 4, PrefixCaching: true, TokenBudget: 2048}, newFake(t))
	prefix := make([]int32, 512)
	for i := range prefix {
		prefix[i] = int32(i*13) % vocab
	}
	first := append(slices.Clone(prefix), 1, 2, 3)
	second := append(slices.Clone(prefix), 7, 8)
	run := func(p []int32) []int32 {
		h, err := s.Submit(context.Background(), Request{Prompt: p, MaxTokens: 6})
		if err != nil {
			t.Fatal(err)
		}
		res := h.Wait()
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		return ids(res.Tokens)
	}
	if got, want := run(first), expected(first, 6); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("first request: %v, want %v", got, want)
	}
	before := s.Stats()
	if got, want := run(second), expected(second, 6); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("second request from the prefix cache: %v, want %v", got, want)
	}
	after := s.Stats()
	if computed := after.PrefillTokens - before.PrefillTokens; computed != 2 {
		t.Errorf("the second request computed %d prompt tokens, want only its 2 new ones", computed)
	}
	if hit := after.PrefixHitTokens - before.PrefixHitTokens; hit != 512 {
		t.Errorf("prefix cache served %d tokens, want 512", hit)
	}
}

// When blocks run out, the newest sequence is preempted and recomputed
// later; every request still gets its own tokens.
func TestPreemptionByRecompute(t *testing.T) {
	// 12 blocks of 4: 48 tokens for 6 requests of 4 + 20 tokens each.
	// Steps wait until all six are queued, so they must share the pool.
	f := newFake(t)
	f.block = make(chan struct{})
	s := start(t, Config{Blocks: 12, BlockSize: 4}, f)
	var wg, queued sync.WaitGroup
	queued.Add(6)
	for i := range 6 {
		wg.Go(func() {
			prompt := []int32{int32(i), 9, 8, 7}
			h, err := s.Submit(context.Background(), Request{Prompt: prompt, MaxTokens: 20})
			queued.Done()
			if err != nil {
				t.Error(err)
				return
			}
			res := h.Wait()
			if want := expected(prompt, 20); res.Err != nil || fmt.Sprint(ids(res.Tokens)) != fmt.Sprint(want) {
				t.Errorf("request %d: %v %v, want %v", i, ids(res.Tokens), res.Err, want)
			}
		})
	}
	queued.Wait()
	close(f.block)
	wg.Wait()
	if p := s.Stats().Preemptions; p == 0 {
		t.Error("no preemption, though the requests cannot all fit; the test lost its point")
	}
	waitIdle(t, s)
	if st := s.Stats(); st.BlocksUsed != 0 {
		t.Errorf("%d blocks used after all requests", st.BlocksUsed)
	}
}

func TestPenaltiesAndMinTokens(t *testing.T) {
	prompt := []int32{3, 1, 4, 1, 5}
	greedy := expected(prompt, 30)
	cases := []struct {
		name  string
		req   Request
		check func(t *testing.T, got []int32, res Result)
	}{
		{"presence penalty forbids repeats", Request{Prompt: prompt, MaxTokens: 30, Sampling: sampling.Params{PresencePenalty: 100}}, func(t *testing.T, got []int32, _ Result) {
			seen := map[int32]bool{}
			for _, id := range got {
				if seen[id] {
					t.Fatalf("token %d repeats under a presence penalty of 100: %v", id, got)
				}
				seen[id] = true
			}
			if fmt.Sprint(got) == fmt.Sprint(greedy) {
				t.Fatal("the penalty changed nothing")
			}
		}},
		{"repetition penalty forbids prompt tokens", Request{Prompt: prompt, MaxTokens: 10, Sampling: sampling.Params{RepetitionPenalty: 1000}}, func(t *testing.T, got []int32, _ Result) {
			for _, id := range got {
				if slices.Contains(prompt, id) {
					t.Fatalf("prompt token %d generated under a repetition penalty of 1000: %v", id, got)
				}
			}
		}},
		{"min tokens defers a stop id", Request{Prompt: prompt, MaxTokens: 30, MinTokens: 8, StopIDs: []int32{greedy[2]}}, func(t *testing.T, got []int32, res Result) {
			if len(got) < 8 {
				t.Fatalf("stopped after %d tokens with min_tokens 8", len(got))
			}
			if slices.Contains(got[:7], greedy[2]) {
				t.Fatalf("stop id %d generated before min_tokens: %v", greedy[2], got)
			}
		}},
		{"top logprobs", Request{Prompt: prompt, MaxTokens: 3, TopLogprobs: 5}, func(t *testing.T, got []int32, res Result) {
			for _, tok := range res.Tokens {
				if len(tok.Top) != 5 || tok.Top[0].ID != tok.ID || tok.Top[0].Logprob != tok.Logprob {
					t.Fatalf("token %d: top %+v", tok.ID, tok.Top)
				}
				for i := 1; i < 5; i++ {
					if tok.Top[i].Logprob > tok.Top[i-1].Logprob {
						t.Fatalf("top logprobs out of order: %+v", tok.Top)
					}
				}
			}
		}},
	}
	s := start(t, Config{}, newFake(t))
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, err := s.Submit(context.Background(), tc.req)
			if err != nil {
				t.Fatal(err)
			}
			res := h.Wait()
			if res.Err != nil {
				t.Fatal(res.Err)
			}
			tc.check(t, ids(res.Tokens), res)
		})
	}
}

// A request's top_k beyond the configured candidate count widens the
// step's candidates, so top-k sampling stays exact.
func TestStepTopKFollowsRequests(t *testing.T) {
	f := newFake(t)
	s := start(t, Config{TopK: 8}, f)
	h, _ := s.Submit(context.Background(), Request{Prompt: []int32{1}, MaxTokens: 2, Sampling: samplingTopK(40)})
	h.Wait()
	if f.topK != 40 {
		t.Fatalf("steps asked for %d candidates, the request's top_k is 40", f.topK)
	}
}

// versionedFake is a cluster whose plan changes: a new version has fresh
// workers, with none of the old KV, and refuses steps built for the old.
type versionedFake struct {
	*fakeCluster
	version uint64
	bumpAt  int
}

func (v *versionedFake) PlanVersion(context.Context) (uint64, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.version, nil
}

func (v *versionedFake) Step(ctx context.Context, st *tesserav1.Step) ([][]topk.Partial, error) {
	v.mu.Lock()
	if v.steps == v.bumpAt {
		v.version++
		v.kv = map[int32][]int32{}
	}
	stale := st.PlanVersion != v.version
	if stale {
		v.steps++
	}
	v.mu.Unlock()
	if stale {
		return nil, ErrPlanChanged
	}
	return v.fakeCluster.Step(ctx, st)
}

// A plan change between steps restarts running sequences on the new
// workers (fresh KV, prefix cache emptied) without counting a replay.
func TestPlanChangeRestartsSequences(t *testing.T) {
	f := &versionedFake{fakeCluster: newFake(t), version: 1, bumpAt: 5}
	s := start(t, Config{PrefixCaching: true}, f)
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() {
			prompt := []int32{int32(i), 1, 2, 3, 4, 5, 6, 7, 8}
			h, err := s.Submit(context.Background(), Request{Prompt: prompt, MaxTokens: 12})
			if err != nil {
				t.Error(err)
				return
			}
			res := h.Wait()
			if want := expected(prompt, 12); res.Err != nil || fmt.Sprint(ids(res.Tokens)) != fmt.Sprint(want) {
				t.Errorf("request %d across a plan change: %v %v, want %v", i, ids(res.Tokens), res.Err, want)
			}
		})
	}
	wg.Wait()
	if st := s.Stats(); st.Replays != 0 {
		t.Errorf("%d replays counted for a plan change", st.Replays)
	}
	if f.version != 2 {
		t.Fatal("the plan never changed; the test lost its point")
	}
}
