// Package scheduler is the coordinator's continuous batcher. One goroutine
// owns every sequence and block table: requests join and leave at every
// step, each step mixes decode tokens of running sequences with chunks of
// new prompts under a token budget, and the merged top-k of the last stage
// is sampled per sequence. A step that fails (a lost worker, a new plan)
// is recovered by replaying each sequence's tokens into fresh KV blocks, so
// requests pause instead of failing.
//
// A Stepper whose stages can work on different steps at once (a
// Pipeline) gets several steps in flight, each with its own sequences.
//
// request.go is what a valid request is (Check); admit.go admission and
// preemption; step.go step building and sampling; pipeline.go steps in
// flight; replay.go recovery.
package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"

	"github.com/tessera-llm/tessera/coordinator/guide"
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
	// MaxContext bounds prompt + generated tokens (0: the cache capacity;
	// never more unless a Window keeps each sequence's blocks few).
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
	// Window is the model's sliding attention window (0: none): a
	// sequence's blocks behind it go back to the pool as it grows.
	Window int
	Logger *slog.Logger
}

func (c *Config) defaults() {
	c.MaxQueue = cmpOr(c.MaxQueue, 256)
	c.TokenBudget = cmpOr(c.TokenBudget, 512)
	c.MaxBatch = cmpOr(c.MaxBatch, 64)
	c.TopK = cmpOr(c.TopK, 64)
	c.MaxReplays = cmpOr(c.MaxReplays, 5)
	// A sliding window bounds the blocks a sequence holds (its window and
	// one step's tokens), not its length, when the pool holds that much.
	slides := c.Window > 0 && c.Window+c.TokenBudget+2*c.BlockSize <= c.Blocks*c.BlockSize
	if c.MaxContext <= 0 || !slides && c.MaxContext > c.Blocks*c.BlockSize {
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
	// Overlapped counts steps sent while an earlier one was still in
	// flight: pipeline stages working on different micro-batches.
	Overlapped int64
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
	// busy marks a sequence in a step in flight.
	busy bool
	// at is where the generated text is in req.Guide.
	at guide.State
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
	flying  []*flight // oldest first

	queued  atomic.Int64
	stopped chan struct{}
	stats   struct {
		waiting, running, blocksUsed                    atomic.Int64
		prefill, prefixHit, generated, steps, preempted atomic.Int64
		replays, overlapped                             atomic.Int64
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
		Overlapped: s.stats.overlapped.Load(),
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

// Submit queues req, which must pass Check (it answers Check's error
// otherwise). It never blocks: a full queue answers ErrQueueFull. ctx
// cancels the request.
func (s *Scheduler) Submit(ctx context.Context, req Request) (*Handle, error) {
	if err := s.Check(req); err != nil {
		return nil, err
	}
	sm, err := sampling.New(req.Sampling)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	h := &Handle{tokens: make(chan Token, req.MaxTokens+1), done: make(chan struct{})}
	q := &seq{id: s.nextID.Add(1), req: req, ctx: ctx, h: h, sampler: sm, tokens: slices.Clone(req.Prompt)}
	sm.SetPrompt(req.Prompt)
	if req.Guide != nil {
		q.at = req.Guide.Start()
	}
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
		if len(s.running) == 0 && len(s.waiting) == 0 && len(s.flying) == 0 {
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
		// Keep up to inFlight steps going; wait for the oldest when no
		// more may go or none can be built (its sequences all fly).
		if len(s.flying) < s.inFlight() && s.idleRunning() {
			sent, err := s.launch(ctx)
			if err != nil && ctx.Err() != nil {
				return
			}
			if sent || len(s.flying) == 0 {
				continue
			}
		}
		if len(s.flying) == 0 {
			continue
		}
		select {
		case l := <-s.flying[0].landed:
			err := s.land(ctx, l)
			s.publish()
			if err != nil && ctx.Err() != nil {
				return
			}
		case q := <-s.in:
			s.waiting = append(s.waiting, q) // it may join the next step
		case <-ctx.Done():
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
