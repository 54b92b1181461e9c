package scheduler

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/tessera-llm/tessera/coordinator/sampling"
	tesserav1 "github.com/tessera-llm/tessera/proto/tessera/v1"
	"github.com/tessera-llm/tessera/shard/topk"
)

const vocab = 50

// next is the fake model: the token after a history.
func next(h []int32) int32 {
	sum := 0
	for _, t := range h {
		sum += int(t)
	}
	return int32((31*sum + 7*len(h)) % vocab)
}

// fakeCluster behaves like a set of workers: it stores every token in the
// block and slot its table names, and reads a sequence's history back from
// those blocks, as attention over a paged KV cache does. A wrong table, a
// wrong cached length or a shared block overwritten shows up as a wrong
// token.
type fakeCluster struct {
	t      *testing.T
	mu     sync.Mutex
	kv     map[int32][]int32 // block → the tokens in its slots
	bs     int
	steps  int
	failAt map[int]bool
	block  chan struct{} // when set, Step waits on it
	tokens int           // largest step seen, in tokens
	topK   int32
	// window, when set, makes the model attend to its last window tokens
	// only, and the fake reads no cached token behind them.
	window int
}

func newFake(t *testing.T) *fakeCluster {
	return &fakeCluster{t: t, kv: map[int32][]int32{}, bs: 4, failAt: map[int]bool{}}
}

// PlanVersion is constant: these workers never change.
func (f *fakeCluster) PlanVersion(context.Context) (uint64, error) { return 1, nil }

func (f *fakeCluster) Step(ctx context.Context, st *tesserav1.Step) ([][]topk.Partial, error) {
	if f.block != nil {
		select {
		case <-f.block:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.steps++
	if f.failAt[f.steps] {
		f.kv = map[int32][]int32{} // a lost worker loses its KV
		return nil, errors.New("worker lost")
	}
	f.tokens = max(f.tokens, len(st.Tokens))
	f.topK = max(f.topK, st.TopK)
	var rows [][]topk.Partial
	off := 0
	for _, sp := range st.Spans {
		cached, n := int(sp.Cached), int(sp.Tokens)
		var h []int32
		from := 0
		if f.window > 0 {
			from = max(cached+n-f.window, 0)
		}
		for p := from; p < cached; p++ {
			blk := f.kv[sp.BlockTable[p/f.bs]]
			if p%f.bs >= len(blk) {
				f.t.Errorf("step %d seq %d: cached token %d is not in block %d", st.StepId, sp.SeqId, p, sp.BlockTable[p/f.bs])
				return nil, errors.New("missing KV")
			}
			h = append(h, blk[p%f.bs])
		}
		for i, tok := range st.Tokens[off : off+n] {
			p := cached + i
			b := sp.BlockTable[p/f.bs]
			slot := f.kv[b]
			if p%f.bs < len(slot) && slot[p%f.bs] != tok {
				// Overwriting a slot is fine for a block just handed out
				// again, but it must start at slot 0 of a fresh block.
				if p%f.bs != 0 {
					f.t.Errorf("step %d seq %d writes slot %d of block %d holding other tokens", st.StepId, sp.SeqId, p%f.bs, b)
				}
			}
			if p%f.bs == 0 {
				slot = nil
			}
			f.kv[b] = append(slot[:min(len(slot), p%f.bs)], tok)
			h = append(h, tok)
		}
		off += n
		if f.window > 0 {
			h = h[max(len(h)-f.window, 0):]
		}
		logits := make([]float32, vocab)
		for i := range logits {
			logits[i] = float32(math.Sin(float64(i)))
		}
		logits[next(h)] = 10
		if len(sp.Allow) > 0 {
			topk.Mask(logits, 0, sp.Allow)
		}
		rows = append(rows, []topk.Partial{topk.Local(logits[:20], 0, int(st.TopK)), topk.Local(logits[20:], 20, int(st.TopK))})
	}
	return rows, nil
}

func expected(prompt []int32, n int) []int32 {
	return expectedWindow(prompt, n, 0)
}

// expectedWindow is expected for a model that sees its last window tokens
// (0: all).
func expectedWindow(prompt []int32, n, window int) []int32 {
	h := append([]int32(nil), prompt...)
	var out []int32
	for range n {
		t := next(h)
		if window > 0 {
			t = next(h[max(len(h)-window, 0):])
		}
		out = append(out, t)
		h = append(h, t)
	}
	return out
}

func start(t *testing.T, cfg Config, f Stepper) *Scheduler {
	t.Helper()
	if cfg.Blocks == 0 {
		cfg.Blocks, cfg.BlockSize = 64, 4
	}
	cfg.Vocab, cfg.EOS = vocab, -1
	s := New(cfg, f)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return s
}

func ids(toks []Token) []int32 {
	out := make([]int32, len(toks))
	for i, t := range toks {
		out[i] = t.ID
	}
	return out
}

func TestBatchedRequestsMatchAlone(t *testing.T) {
	f := newFake(t)
	s := start(t, Config{TokenBudget: 16}, f)
	var wg sync.WaitGroup
	for i := range 12 {
		wg.Go(func() {
			prompt := make([]int32, 3+i*2)
			for j := range prompt {
				prompt[j] = int32((i*7 + j) % vocab)
			}
			h, err := s.Submit(context.Background(), Request{Prompt: prompt, MaxTokens: 5 + i%4})
			if err != nil {
				t.Error(err)
				return
			}
			var streamed []int32
			for tok := range h.Tokens() {
				streamed = append(streamed, tok.ID)
			}
			res := h.Wait()
			want := expected(prompt, 5+i%4)
			if res.Err != nil || fmt.Sprint(ids(res.Tokens)) != fmt.Sprint(want) || fmt.Sprint(streamed) != fmt.Sprint(want) {
				t.Errorf("request %d: %v %v (streamed %v), want %v", i, ids(res.Tokens), res.Err, streamed, want)
			}
			if res.Finish != "length" {
				t.Errorf("request %d finished %q", i, res.Finish)
			}
		})
	}
	wg.Wait()
	if f.tokens > 16 {
		t.Errorf("a step carried %d tokens, budget 16", f.tokens)
	}
	waitIdle(t, s)
	if free := s.alloc.FreeBlocks(); free != 64 {
		t.Errorf("%d of 64 blocks free after all requests", free)
	}
}

// TestSlidingWindowBlocks: with a sliding window, sequences much longer
// than the pool run side by side, because each gives back the blocks its
// window has passed; the tokens show that no block still in a window was
// handed to another sequence.
func TestSlidingWindowBlocks(t *testing.T) {
	f := newFake(t)
	f.window = 6
	// 8 blocks of 4: 32 tokens for three sequences of 45.
	s := start(t, Config{Blocks: 8, BlockSize: 4, MaxContext: 64, TokenBudget: 8, Window: f.window}, f)
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() {
			prompt := make([]int32, 15)
			for j := range prompt {
				prompt[j] = int32((i*11 + j*3) % vocab)
			}
			h, err := s.Submit(context.Background(), Request{Prompt: prompt, MaxTokens: 30})
			if err != nil {
				t.Error(err)
				return
			}
			res := h.Wait()
			if want := expectedWindow(prompt, 30, f.window); res.Err != nil || fmt.Sprint(ids(res.Tokens)) != fmt.Sprint(want) {
				t.Errorf("request %d: %v %v, want %v", i, ids(res.Tokens), res.Err, want)
			}
		})
	}
	wg.Wait()
	waitIdle(t, s)
	if free := s.alloc.FreeBlocks(); free != 8 {
		t.Errorf("%d of 8 blocks free after all requests", free)
	}
}

func waitIdle(t *testing.T, s *Scheduler) {
	for range 200 {
		if s.Queued() == 0 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("%d requests still queued", s.Queued())
}

func TestFailedStepsReplay(t *testing.T) {
	f := newFake(t)
	f.failAt[3], f.failAt[7], f.failAt[8] = true, true, true
	s := start(t, Config{}, f)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			prompt := []int32{int32(i), 3, 4, 5}
			h, err := s.Submit(context.Background(), Request{Prompt: prompt, MaxTokens: 8})
			if err != nil {
				t.Error(err)
				return
			}
			res := h.Wait()
			if want := expected(prompt, 8); res.Err != nil || fmt.Sprint(ids(res.Tokens)) != fmt.Sprint(want) {
				t.Errorf("request %d after replays: %v %v, want %v", i, ids(res.Tokens), res.Err, want)
			}
		})
	}
	wg.Wait()
}

func TestGivesUpAfterMaxReplays(t *testing.T) {
	f := newFake(t)
	for i := range 100 {
		f.failAt[i] = true
	}
	s := start(t, Config{MaxReplays: 2}, f)
	h, err := s.Submit(context.Background(), Request{Prompt: []int32{1, 2}, MaxTokens: 3})
	if err != nil {
		t.Fatal(err)
	}
	if res := h.Wait(); res.Err == nil {
		t.Fatal("a request whose every step fails succeeded")
	}
}

func TestStopTokens(t *testing.T) {
	prompt := []int32{1, 2, 3}
	want := expected(prompt, 10)
	s := start(t, Config{}, newFake(t))
	h, _ := s.Submit(context.Background(), Request{Prompt: prompt, MaxTokens: 10, StopIDs: []int32{want[3]}})
	res := h.Wait()
	stop := 3
	for i, id := range want {
		if id == want[3] {
			stop = i
			break
		}
	}
	if res.Finish != "stop" || len(res.Tokens) != stop+1 {
		t.Fatalf("finish %q after %d tokens, want stop after %d", res.Finish, len(res.Tokens), stop+1)
	}
}

func TestSubmitValidation(t *testing.T) {
	s := start(t, Config{Blocks: 8, BlockSize: 4}, newFake(t))
	cases := []struct {
		name string
		req  Request
		want error
	}{
		{"empty prompt", Request{MaxTokens: 1}, ErrInvalid},
		{"no tokens", Request{Prompt: []int32{1}}, ErrInvalid},
		{"too long", Request{Prompt: make([]int32, 30), MaxTokens: 3}, ErrTooLong},
		{"outside vocab", Request{Prompt: []int32{vocab}, MaxTokens: 1}, ErrInvalid},
		{"negative id", Request{Prompt: []int32{-1}, MaxTokens: 1}, ErrInvalid},
		{"bad sampling", Request{Prompt: []int32{1}, MaxTokens: 1, Sampling: sampling.Params{TopP: 2}}, ErrInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := s.Submit(context.Background(), tc.req); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestQueueFullAndCancel(t *testing.T) {
	f := newFake(t)
	f.block = make(chan struct{})
	s := start(t, Config{MaxQueue: 2, MaxBatch: 2}, f)
	ctx, cancel := context.WithCancel(context.Background())
	var hs []*Handle
	var full error
	for range 10 {
		h, err := s.Submit(ctx, Request{Prompt: []int32{1}, MaxTokens: 4})
		if err != nil {
			full = err
			continue
		}
		hs = append(hs, h)
	}
	if !errors.Is(full, ErrQueueFull) {
		t.Fatalf("10 submissions to a blocked scheduler holding 2 + 2: err %v", full)
	}
	cancel()
	close(f.block)
	for _, h := range hs {
		if res := h.Wait(); res.Err == nil && len(res.Tokens) == 4 {
			continue // finished before it saw the cancellation
		} else if !errors.Is(res.Err, context.Canceled) {
			t.Errorf("cancelled request: %+v", res)
		}
	}
	waitIdle(t, s)
	if s.alloc.FreeBlocks() != 64 {
		t.Errorf("%d of 64 blocks free after cancellation", s.alloc.FreeBlocks())
	}
}

func TestSeededSampling(t *testing.T) {
	s := start(t, Config{}, newFake(t))
	run := func(seed uint64) string {
		h, err := s.Submit(context.Background(), Request{Prompt: []int32{4, 5}, MaxTokens: 6,
			Sampling: sampling.Params{Temperature: 5, Seed: seed}})
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(ids(h.Wait().Tokens))
	}
	if a, b := run(9), run(9); a != b {
		t.Fatalf("same seed: %s vs %s", a, b)
	}
}

func samplingTopK(k int) sampling.Params { return sampling.Params{Temperature: 1, TopK: k} }
