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
	"math"
	"slices"
	"sync/atomic"
	"time"

	"github.com/tessera-llm/tessera/coordinator/sampling"
	tesserav1 "github.com/tessera-llm/tessera/proto/tessera/v1"
	"github.com/tessera-llm/tessera/shard/kvblocks"
	"github.com/tessera-llm/tessera/shard/topk"
)

// Stepper runs steps on the workers.
type Stepper interface {
	// Step runs st and returns, per logit row, the last stage's
	// vocabulary-slice partials.
	Step(ctx context.Context, st *tesserav1.Step) ([][]topk.Partial, error)
	// PlanVersion waits until a plan serves and returns its version. A
	// new version means the workers hold none of the sequences' KV; a
	// stepper whose workers never change returns a constant.
	PlanVersion(ctx context.Context) (uint64, error)
}

// Sentinel errors; the API maps them to HTTP statuses.
var (
	// ErrPlanChanged is a Stepper's answer to a step built for another
	// plan version: the scheduler restarts its sequences on the new one.
	ErrPlanChanged = errors.New("plan changed")
	ErrQueueFull   = errors.New("request queue is full")
	ErrInvalid     = errors.New("invalid request")
	ErrTooLong     = errors.New("request exceeds the context length")
	ErrStopped     = errors.New("scheduler stopped")
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
	// PrefixCaching shares the KV blocks of common prompt prefixes. Only
	// for causal models: a prefix LM's keys depend on the whole prefix.
	PrefixCaching bool
	Logger        *slog.Logger
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
	// MinTokens suppresses EOS and stop ids until this many tokens exist.
	MinTokens int
	Sampling  sampling.Params
	// StopIDs end generation (the stop token is kept); EOS does too
	// unless IgnoreEOS.
	StopIDs   []int32
	IgnoreEOS bool
	// Penalties (OpenAI's presence/frequency, HF's repetition) apply to
	// tokens already generated or in the prompt (repetition).
	PresencePenalty, FrequencyPenalty, RepetitionPenalty float64
	// TopLogprobs asks for this many alternatives per token (≤ 20).
	TopLogprobs int
}

// Token is one generated token with its log-probability (under the
// model, before penalties and temperature).
type Token struct {
	ID      int32
	Logprob float64
	// Top holds the most likely alternatives when TopLogprobs > 0.
	Top []Candidate
}

// Candidate is an alternative token and its log-probability.
type Candidate struct {
	ID      int32
	Logprob float64
}

// Stats are the scheduler's counters, for /metrics.
type Stats struct {
	Waiting, Running       int
	BlocksUsed, BlocksFree int
	PrefillTokens          int64 // prompt tokens computed (prefix-cache hits excluded)
	PrefixHitTokens        int64 // prompt tokens served from the prefix cache
	GeneratedTokens, Steps int64
	Preemptions, Replays   int64
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
	blocks  kvblocks.Seq
	replays int
	// counts of generated tokens, for presence and frequency penalties;
	// seen holds every token so far, for the repetition penalty. Both are
	// made on first use.
	counts map[int32]int
	seen   map[int32]bool
}

// Scheduler runs requests through a Stepper.
type Scheduler struct {
	cfg     Config
	stepper Stepper
	in      chan *seq
	nextID  atomic.Uint64
	stepID  uint64

	alloc   *kvblocks.Allocator
	plan    uint64 // the plan version the workers' KV belongs to
	waiting []*seq
	running []*seq
	release []uint64

	queued  atomic.Int64
	stopped chan struct{}
	stats   struct {
		waiting, running, blocksUsed                    atomic.Int64
		prefill, prefixHit, generated, steps, preempted atomic.Int64
		replays                                         atomic.Int64
	}
}

// Stats reads the scheduler's counters; safe from any goroutine.
func (s *Scheduler) Stats() Stats {
	used := int(s.stats.blocksUsed.Load())
	return Stats{
		Waiting: int(s.stats.waiting.Load()), Running: int(s.stats.running.Load()),
		BlocksUsed: used, BlocksFree: s.cfg.Blocks - used,
		PrefillTokens: s.stats.prefill.Load(), PrefixHitTokens: s.stats.prefixHit.Load(),
		GeneratedTokens: s.stats.generated.Load(), Steps: s.stats.steps.Load(),
		Preemptions: s.stats.preempted.Load(), Replays: s.stats.replays.Load(),
	}
}

// New makes a scheduler; Run starts it.
func New(cfg Config, s Stepper) *Scheduler {
	cfg.defaults()
	// The hand-off channel holds everything the bound admits, so a burst
	// is refused by the bound, not by how fast the loop drains.
	return &Scheduler{cfg: cfg, stepper: s, in: make(chan *seq, cfg.MaxQueue+cfg.MaxBatch),
		alloc: kvblocks.New(cfg.BlockSize, cfg.Blocks), stopped: make(chan struct{})}
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
			s.publish() // the gauges must not keep a cancelled sequence's state
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
		err := s.step(ctx)
		s.publish()
		if err != nil && ctx.Err() != nil {
			return
		}
	}
}

// publish updates the gauges Stats reads.
func (s *Scheduler) publish() {
	s.stats.waiting.Store(int64(len(s.waiting)))
	s.stats.running.Store(int64(len(s.running)))
	s.stats.blocksUsed.Store(int64(s.cfg.Blocks - s.alloc.FreeBlocks()))
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

// admit starts waiting requests in order while their uncomputed tokens
// fit the free blocks. A request first takes the cached blocks of its
// longest cached prefix, always leaving one token to compute for logits.
func (s *Scheduler) admit() {
	for len(s.waiting) > 0 && len(s.running) < s.cfg.MaxBatch {
		q := s.waiting[0]
		if s.cfg.PrefixCaching && len(q.blocks.Table) == 0 {
			q.fed = s.alloc.Match(&q.blocks, q.tokens, len(q.tokens)-1)
		}
		if s.alloc.Need(&q.blocks, len(q.tokens)-q.fed+1) > s.alloc.FreeBlocks() {
			s.alloc.Release(&q.blocks)
			q.fed = 0
			return
		}
		s.stats.prefixHit.Add(int64(q.fed))
		s.waiting = s.waiting[1:]
		s.running = append(s.running, q)
	}
}

// preempt stops q to free its blocks: it waits again at the front and
// recomputes its tokens (from the prefix cache where it can) later.
func (s *Scheduler) preempt(q *seq) {
	s.retire(q)
	q.id, q.fed = s.nextID.Add(1), 0
	s.running = slices.DeleteFunc(s.running, func(o *seq) bool { return o == q })
	s.waiting = append([]*seq{q}, s.waiting...)
	s.stats.preempted.Add(1)
}

// victim is the newest running sequence not in the step being built.
func (s *Scheduler) victim(inStep []*seq, keep *seq) *seq {
	for i := len(s.running) - 1; i >= 0; i-- {
		if q := s.running[i]; q != keep && !slices.Contains(inStep, q) {
			return q
		}
	}
	return nil
}

// step builds one step from the running sequences, runs it and samples.
func (s *Scheduler) step(ctx context.Context) error {
	v, err := s.stepper.PlanVersion(ctx)
	if err != nil {
		return err
	}
	if v != s.plan {
		if s.plan != 0 {
			s.restartAll()
		}
		s.plan = v
	}
	s.stepID++
	st := &tesserav1.Step{StepId: s.stepID, PlanVersion: s.plan, Release: s.release}
	budget, topK := s.cfg.TokenBudget, s.cfg.TopK
	var rows []*seq // every span's sequence, in row order
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
		if !slices.Contains(s.running, q) {
			continue // preempted for an earlier sequence of this step
		}
		n := min(len(q.tokens)-q.fed, budget)
		if n <= 0 {
			break
		}
		fits := true
		for s.alloc.Reserve(&q.blocks, n) != nil {
			v := s.victim(rows, q)
			if v == nil {
				fits = false
				break
			}
			s.preempt(v)
		}
		if !fits {
			continue
		}
		budget -= n
		st.Tokens = append(st.Tokens, q.tokens[q.fed:q.fed+n]...)
		st.Spans = append(st.Spans, &tesserav1.SeqSpan{SeqId: q.id, Tokens: int32(n), Cached: int32(q.fed),
			BlockTable: slices.Clone(q.blocks.Table)})
		rows = append(rows, q)
		topK = max(topK, q.req.Sampling.TopK, q.req.TopLogprobs)
	}
	if len(rows) == 0 {
		return nil
	}
	st.TopK = int32(min(topK, maxTopK))
	parts, err := s.stepper.Step(ctx, st)
	if err == nil && len(parts) != len(rows) {
		err = fmt.Errorf("step %d: %d result rows for %d spans", st.StepId, len(parts), len(rows))
	}
	if err != nil {
		switch {
		case ctx.Err() != nil:
		case errors.Is(err, ErrPlanChanged):
			s.restartAll() // the next step learns the new version
		default:
			s.cfg.Logger.Warn("step failed; replaying its sequences", "step", st.StepId, "err", err)
			s.replayAll(err)
		}
		return err
	}
	s.stats.steps.Add(1)
	s.release = nil
	for i, q := range rows {
		n := int(st.Spans[i].Tokens)
		if decode := n == 1 && len(q.gen) > 0 && q.fed+1 == len(q.tokens); !decode {
			s.stats.prefill.Add(int64(n))
		}
		q.fed += n
		q.blocks.Len = q.fed
		if s.cfg.PrefixCaching {
			s.alloc.Commit(&q.blocks, q.tokens)
		}
		if q.fed == len(q.tokens) {
			s.sample(q, parts[i], int(st.TopK))
		}
	}
	s.running = slices.DeleteFunc(s.running, func(q *seq) bool { return q.h.res.Finish != "" || q.h.res.Err != nil })
	return nil
}

// maxTopK is the most candidates a step asks each rank for.
const maxTopK = 1024

// sample picks q's next token from the merged candidates of its row,
// after penalties and the min_tokens rule.
func (s *Scheduler) sample(q *seq, parts []topk.Partial, k int) {
	if err := topk.Check(parts, k); err != nil {
		s.retire(q)
		s.finish(q, "", err)
		return
	}
	ids, logprobs, lse := topk.Merge(parts, k)
	logits := make([]float32, len(ids))
	for i := range ids {
		logits[i] = float32(logprobs[i] + lse) // the raw logit, for HF's repetition penalty
	}
	s.penalize(q, ids, logits)
	id := q.sampler.SampleCandidates(ids, logits)
	at := slices.Index(ids, id)
	tok := Token{ID: id, Logprob: logprobs[at]}
	for i := range min(q.req.TopLogprobs, len(ids)) {
		tok.Top = append(tok.Top, Candidate{ID: ids[i], Logprob: logprobs[i]})
	}
	q.gen = append(q.gen, tok)
	q.tokens = append(q.tokens, id)
	if q.counts != nil {
		q.counts[id]++
	}
	if q.seen != nil {
		q.seen[id] = true
	}
	s.stats.generated.Add(1)
	q.h.tokens <- tok // buffered for MaxTokens: never blocks
	switch {
	case len(q.gen) >= q.req.MinTokens && (slices.Contains(q.req.StopIDs, id) || (!q.req.IgnoreEOS && s.cfg.EOS >= 0 && id == s.cfg.EOS)):
		s.retire(q)
		s.finish(q, "stop", nil)
	case len(q.gen) >= q.req.MaxTokens:
		s.retire(q)
		s.finish(q, "length", nil)
	}
}

// penalize applies presence, frequency and repetition penalties and, below
// MinTokens, removes the tokens that would end the sequence. The logits
// are the row's candidates: tokens outside them are not reconsidered.
func (s *Scheduler) penalize(q *seq, ids []int32, logits []float32) {
	r := q.req
	changed := false
	if r.PresencePenalty != 0 || r.FrequencyPenalty != 0 {
		changed = true
		if q.counts == nil {
			q.counts = map[int32]int{}
			for _, t := range q.gen {
				q.counts[t.ID]++
			}
		}
		for i, id := range ids {
			if c := q.counts[id]; c > 0 {
				logits[i] -= float32(r.PresencePenalty + r.FrequencyPenalty*float64(c))
			}
		}
	}
	if r.RepetitionPenalty > 0 && r.RepetitionPenalty != 1 {
		changed = true
		if q.seen == nil {
			q.seen = make(map[int32]bool, len(q.tokens))
			for _, t := range q.tokens {
				q.seen[t] = true
			}
		}
		for i, id := range ids {
			if !q.seen[id] {
				continue
			}
			if logits[i] > 0 {
				logits[i] /= float32(r.RepetitionPenalty)
			} else {
				logits[i] *= float32(r.RepetitionPenalty)
			}
		}
	}
	if len(q.gen) < r.MinTokens {
		ends := func(id int32) bool {
			return slices.Contains(r.StopIDs, id) || (!r.IgnoreEOS && s.cfg.EOS >= 0 && id == s.cfg.EOS)
		}
		kept := 0
		for i, id := range ids {
			if ends(id) {
				logits[i] = float32(math.Inf(-1))
				changed = true
			} else {
				kept++
			}
		}
		if kept == 0 {
			return // nothing else to pick: the model insists
		}
	}
	if changed {
		// Penalties reorder candidates; samplers want them best first.
		sortCandidates(ids, logits)
	}
}

// sortCandidates orders (ids, logits) by logit, best first, ties by id.
func sortCandidates(ids []int32, logits []float32) {
	idx := make([]int, len(ids))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		if logits[a] != logits[b] {
			if logits[a] > logits[b] {
				return -1
			}
			return 1
		}
		return int(ids[a] - ids[b])
	})
	si, sl := slices.Clone(ids), slices.Clone(logits)
	for i, j := range idx {
		ids[i], logits[i] = si[j], sl[j]
	}
}

// replayAll restarts every running sequence from token 0 under a new id:
// the workers' KV of the failed step cannot be trusted, nor the prefix
// cache.
func (s *Scheduler) replayAll(cause error) {
	s.stats.replays.Add(1)
	defer s.alloc.Forget()
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

// restartAll moves every running sequence to fresh KV under new ids after
// a plan change: nothing failed, so no replay is counted.
func (s *Scheduler) restartAll() {
	for _, q := range s.running {
		s.retire(q)
		q.id, q.fed = s.nextID.Add(1), 0
	}
	s.release = nil // the new plan's workers never saw the old ids
	s.alloc.Forget()
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
