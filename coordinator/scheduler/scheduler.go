// Package scheduler is the coordinator's continuous batcher. One goroutine
// owns every sequence and block table: requests join and leave at every
// step, each step mixes decode tokens of running sequences with chunks of
// new prompts under a token budget, and the merged top-k of the last stage
// is sampled per sequence. A step that fails (a lost worker, a new plan)
// is recovered by replaying each sequence's tokens into fresh KV blocks, so
// requests pause instead of failing.
package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/tessera-llm/tessera/coordinator/sampling"
	tesserav1 "github.com/tessera-llm/tessera/proto/tessera/v1"
	"github.com/tessera-llm/tessera/shard/blocks"
	"github.com/tessera-llm/tessera/shard/merge"
)

// Stepper runs one step on the workers and returns, per logit row, the
// last stage's vocabulary-slice partials.
type Stepper interface {
	Step(ctx context.Context, st *tesserav1.Step) ([][]merge.Partial, error)
}

// Sentinel errors; the API maps them to HTTP statuses.
var (
	ErrQueueFull = errors.New("request queue is full")
	ErrInvalid   = errors.New("invalid request")
	ErrTooLong   = errors.New("request exceeds the context length")
	ErrStopped   = errors.New("scheduler stopped")
)

// Config sizes the scheduler. Blocks and BlockSize must match the
// workers' KV pools.
type Config struct {
	Blocks, BlockSize int
	Vocab             int
	// MaxContext bounds prompt + generated tokens (0: the cache capacity).
	MaxContext int
	// MaxQueue bounds waiting requests (MaxBatch more may run); more are
	// refused with ErrQueueFull.
	MaxQueue int
	// TokenBudget bounds the tokens of one step; MaxBatch its sequences.
	TokenBudget, MaxBatch int
	// TopK is how many candidates each last-stage rank returns per row.
	TopK int
	EOS  int32
	// MaxReplays bounds how often one request is replayed after failed
	// steps before it fails.
	MaxReplays int
	Logger     *slog.Logger
}

func (c *Config) defaults() {
	c.MaxQueue = cmpOr(c.MaxQueue, 256)
	c.TokenBudget = cmpOr(c.TokenBudget, 512)
	c.MaxBatch = cmpOr(c.MaxBatch, 64)
	c.TopK = cmpOr(c.TopK, 64)
	c.MaxReplays = cmpOr(c.MaxReplays, 5)
	if c.MaxContext <= 0 || c.MaxContext > c.Blocks*c.BlockSize {
		c.MaxContext = c.Blocks * c.BlockSize
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

func cmpOr(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}

// Request is one generation.
type Request struct {
	Prompt    []int32
	MaxTokens int
	Sampling  sampling.Params
	// StopIDs end generation (the stop token is kept); EOS does too
	// unless IgnoreEOS.
	StopIDs   []int32
	IgnoreEOS bool
}

// Token is one generated token with its log-probability.
type Token struct {
	ID      int32
	Logprob float64
}

// Result is how a request ended.
type Result struct {
	Tokens []Token
	// Finish is "stop" (a stop or EOS token) or "length" (MaxTokens).
	Finish string
	Err    error
}

// Handle follows a submitted request.
type Handle struct {
	tokens chan Token
	done   chan struct{}
	res    Result
}

// Tokens delivers each token as it is generated; it is closed at the end.
func (h *Handle) Tokens() <-chan Token { return h.tokens }

// Wait blocks until the request ends.
func (h *Handle) Wait() Result {
	<-h.done
	return h.res
}

// seq is the scheduler's state of one request.
type seq struct {
	id      uint64
	req     Request
	ctx     context.Context
	h       *Handle
	sampler *sampling.Sampler
	tokens  []int32 // prompt then generated
	gen     []Token
	fed     int // tokens whose KV is in the workers' cache
	blocks  blocks.Seq
	replays int
}

// Scheduler runs requests through a Stepper.
type Scheduler struct {
	cfg     Config
	stepper Stepper
	in      chan *seq
	nextID  atomic.Uint64
	stepID  uint64

	alloc   *blocks.Allocator
	waiting []*seq
	running []*seq
	release []uint64

	queued  atomic.Int64
	steps   atomic.Int64
	stopped chan struct{}
}

// New makes a scheduler; Run starts it.
func New(cfg Config, s Stepper) *Scheduler {
	cfg.defaults()
	return &Scheduler{cfg: cfg, stepper: s, in: make(chan *seq, cfg.MaxQueue),
		alloc: blocks.New(cfg.BlockSize, cfg.Blocks), stopped: make(chan struct{})}
}

// Config is the scheduler's configuration with defaults applied.
func (s *Scheduler) Config() Config { return s.cfg }

// Queued is how many requests wait or run.
func (s *Scheduler) Queued() int64 { return s.queued.Load() }

// Submit validates req and queues it. It never blocks: a full queue
// answers ErrQueueFull. ctx cancels the request.
func (s *Scheduler) Submit(ctx context.Context, req Request) (*Handle, error) {
	if err := s.validate(req); err != nil {
		return nil, err
	}
	sm, err := sampling.New(req.Sampling)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	h := &Handle{tokens: make(chan Token, req.MaxTokens+1), done: make(chan struct{})}
	q := &seq{id: s.nextID.Add(1), req: req, ctx: ctx, h: h, sampler: sm, tokens: slices.Clone(req.Prompt)}
	select {
	case <-s.stopped:
		return nil, ErrStopped
	default:
	}
	// Bound what waits and runs, not just the hand-off channel, which
	// the scheduler drains into its waiting list.
	if s.queued.Add(1) > int64(s.cfg.MaxQueue+s.cfg.MaxBatch) {
		s.queued.Add(-1)
		return nil, fmt.Errorf("%w (%d waiting or running); retry later", ErrQueueFull, s.cfg.MaxQueue+s.cfg.MaxBatch)
	}
	select {
	case s.in <- q:
		return h, nil
	default:
		s.queued.Add(-1)
		return nil, fmt.Errorf("%w (%d waiting); retry later", ErrQueueFull, cap(s.in))
	}
}

func (s *Scheduler) validate(req Request) error {
	switch {
	case len(req.Prompt) == 0:
		return fmt.Errorf("%w: the prompt is empty", ErrInvalid)
	case req.MaxTokens < 1:
		return fmt.Errorf("%w: max_tokens must be at least 1, got %d", ErrInvalid, req.MaxTokens)
	case len(req.Prompt)+req.MaxTokens > s.cfg.MaxContext:
		return fmt.Errorf("%w: %d prompt tokens + %d max_tokens > %d", ErrTooLong, len(req.Prompt), req.MaxTokens, s.cfg.MaxContext)
	}
	for i, id := range req.Prompt {
		if id < 0 || int(id) >= s.cfg.Vocab {
			return fmt.Errorf("%w: prompt token %d at position %d is outside the vocabulary of %d", ErrInvalid, id, i, s.cfg.Vocab)
		}
	}
	return nil
}

// Run schedules until ctx ends; then every open request fails with
// ErrStopped.
func (s *Scheduler) Run(ctx context.Context) {
	defer func() {
		close(s.stopped)
		for _, q := range append(s.running, s.waiting...) {
			s.finish(q, "", ErrStopped)
		}
		for {
			select {
			case q := <-s.in:
				s.finish(q, "", ErrStopped)
			default:
				return
			}
		}
	}()
	for {
		if len(s.running) == 0 && len(s.waiting) == 0 {
			select {
			case q := <-s.in:
				s.waiting = append(s.waiting, q)
			case <-ctx.Done():
				return
			}
		}
		s.drain()
		s.dropCancelled()
		s.admit()
		if len(s.running) == 0 {
			if len(s.waiting) > 0 {
				// Nothing runs and the head does not fit: it never will.
				s.finish(s.waiting[0], "", fmt.Errorf("%w: the KV cache cannot hold it", ErrTooLong))
				s.waiting = s.waiting[1:]
			}
			continue
		}
		if err := s.step(ctx); err != nil && ctx.Err() != nil {
			return
		}
	}
}

func (s *Scheduler) drain() {
	for {
		select {
		case q := <-s.in:
			s.waiting = append(s.waiting, q)
		default:
			return
		}
	}
}

func (s *Scheduler) dropCancelled() {
	keep := s.running[:0]
	for _, q := range s.running {
		if err := q.ctx.Err(); err != nil {
			s.retire(q)
			s.finish(q, "", err)
			continue
		}
		keep = append(keep, q)
	}
	s.running = keep
	w := s.waiting[:0]
	for _, q := range s.waiting {
		if err := q.ctx.Err(); err != nil {
			s.finish(q, "", err)
			continue
		}
		w = append(w, q)
	}
	s.waiting = w
}

// admit starts waiting requests in order while the cache can hold all of
// their tokens, so a running request never runs out of blocks.
func (s *Scheduler) admit() {
	for len(s.waiting) > 0 && len(s.running) < s.cfg.MaxBatch {
		q := s.waiting[0]
		need := (len(q.tokens) + q.req.MaxTokens - len(q.gen) + s.cfg.BlockSize - 1) / s.cfg.BlockSize
		if need > s.alloc.FreeBlocks()-s.reserved() {
			return
		}
		s.waiting = s.waiting[1:]
		s.running = append(s.running, q)
	}
}

// reserved is how many blocks running sequences will still take.
func (s *Scheduler) reserved() int {
	n := 0
	for _, q := range s.running {
		total := (len(q.req.Prompt) + q.req.MaxTokens + s.cfg.BlockSize - 1) / s.cfg.BlockSize
		n += max(total-len(q.blocks.Table), 0)
	}
	return n
}

// step builds one step from the running sequences, runs it and samples.
func (s *Scheduler) step(ctx context.Context) error {
	s.stepID++
	st := &tesserav1.Step{StepId: s.stepID, TopK: int32(s.cfg.TopK), Release: s.release}
	budget := s.cfg.TokenBudget
	var sampled []*seq // sequences whose row yields a token, in row order
	var rows []*seq    // every span's sequence, in row order
	// Decodes first (one token each), then prompt chunks with what is left.
	order := make([]*seq, 0, len(s.running))
	for _, q := range s.running {
		if len(q.tokens)-q.fed == 1 {
			order = append(order, q)
		}
	}
	for _, q := range s.running {
		if len(q.tokens)-q.fed > 1 {
			order = append(order, q)
		}
	}
	for _, q := range order {
		n := min(len(q.tokens)-q.fed, budget)
		if n <= 0 {
			break
		}
		if err := s.alloc.Reserve(&q.blocks, n); err != nil {
			break // admission keeps room; a replayed history may wait a step
		}
		budget -= n
		st.Tokens = append(st.Tokens, q.tokens[q.fed:q.fed+n]...)
		st.Spans = append(st.Spans, &tesserav1.SeqSpan{SeqId: q.id, Tokens: int32(n), Cached: int32(q.fed),
			BlockTable: slices.Clone(q.blocks.Table)})
		rows = append(rows, q)
		if q.fed+n == len(q.tokens) {
			sampled = append(sampled, q)
		}
	}
	if len(rows) == 0 {
		return nil
	}
	parts, err := s.stepper.Step(ctx, st)
	if err == nil && len(parts) != len(rows) {
		err = fmt.Errorf("step %d: %d result rows for %d spans", st.StepId, len(parts), len(rows))
	}
	if err != nil {
		if ctx.Err() == nil {
			s.cfg.Logger.Warn("step failed; replaying its sequences", "step", st.StepId, "err", err)
			s.replayAll(err)
		}
		return err
	}
	s.steps.Add(1)
	s.release = nil
	for i, q := range rows {
		q.fed += int(st.Spans[i].Tokens)
		q.blocks.Len = q.fed
		if !slices.Contains(sampled, q) {
			continue
		}
		s.sample(q, parts[i])
	}
	s.running = slices.DeleteFunc(s.running, func(q *seq) bool { return q.h.res.Finish != "" || q.h.res.Err != nil })
	return nil
}

// sample picks q's next token from the merged candidates of its row.
func (s *Scheduler) sample(q *seq, parts []merge.Partial) {
	if err := merge.Check(parts, s.cfg.TopK); err != nil {
		s.retire(q)
		s.finish(q, "", err)
		return
	}
	ids, logprobs, _ := merge.Merge(parts, s.cfg.TopK)
	logits := make([]float32, len(ids))
	for i := range ids {
		logits[i] = float32(logprobs[i])
	}
	id := q.sampler.SampleCandidates(ids, logits)
	tok := Token{ID: id, Logprob: logprobs[slices.Index(ids, id)]}
	q.gen = append(q.gen, tok)
	q.tokens = append(q.tokens, id)
	q.h.tokens <- tok // buffered for MaxTokens: never blocks
	switch {
	case slices.Contains(q.req.StopIDs, id) || (!q.req.IgnoreEOS && s.cfg.EOS >= 0 && id == s.cfg.EOS):
		s.retire(q)
		s.finish(q, "stop", nil)
	case len(q.gen) >= q.req.MaxTokens:
		s.retire(q)
		s.finish(q, "length", nil)
	}
}

// replayAll restarts every running sequence from token 0 under a new id:
// the workers' KV of the failed step cannot be trusted.
func (s *Scheduler) replayAll(cause error) {
	keep := s.running[:0]
	for _, q := range s.running {
		s.retire(q)
		q.replays++
		if q.replays > s.cfg.MaxReplays {
			s.finish(q, "", fmt.Errorf("gave up after %d replays: %w", q.replays-1, cause))
			continue
		}
		q.id, q.fed = s.nextID.Add(1), 0
		keep = append(keep, q)
	}
	s.running = keep
	time.Sleep(50 * time.Millisecond) // let a re-plan land before retrying
}

// retire frees q's blocks and tells the workers to forget it.
func (s *Scheduler) retire(q *seq) {
	if len(q.blocks.Table) > 0 || q.fed > 0 {
		s.release = append(s.release, q.id)
	}
	s.alloc.Release(&q.blocks)
}

func (s *Scheduler) finish(q *seq, reason string, err error) {
	if q.h.res.Finish != "" || q.h.res.Err != nil {
		return
	}
	q.h.res = Result{Tokens: q.gen, Finish: reason, Err: err}
	close(q.h.tokens)
	close(q.h.done)
	s.queued.Add(-1)
}
