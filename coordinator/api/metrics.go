package api

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	tesserav1 "github.com/tessera-llm/tessera/proto/tessera/v1"
	"github.com/tessera-llm/tessera/shard/topk"

	"github.com/tessera-llm/tessera/coordinator/scheduler"
)

// Metrics are the coordinator's Prometheus metrics, on their own
// registry (so several servers can live in one process).
type Metrics struct {
	reg       *prometheus.Registry
	requests  *prometheus.CounterVec
	ttft, itl prometheus.Histogram
	generated prometheus.Counter
	stepTime  prometheus.Histogram
	stepFails prometheus.Counter
}

var latencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// NewMetrics registers the API's metrics (and Go/process collectors).
func NewMetrics() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tessera_requests_total",
		Help: "HTTP API requests by endpoint and status code."}, []string{"endpoint", "status"})
	m.ttft = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tessera_time_to_first_token_seconds",
		Help: "Time from a sequence's submission to its first token.", Buckets: latencyBuckets})
	m.itl = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tessera_inter_token_latency_seconds",
		Help: "Time between consecutive tokens of a sequence.", Buckets: latencyBuckets})
	m.generated = prometheus.NewCounter(prometheus.CounterOpts{Name: "tessera_generated_tokens_total",
		Help: "Tokens generated (rate() of it is tokens/s)."})
	m.stepTime = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tessera_step_duration_seconds",
		Help: "Wall time of one scheduler step across the workers (all stages).", Buckets: latencyBuckets})
	m.stepFails = prometheus.NewCounter(prometheus.CounterOpts{Name: "tessera_step_failures_total",
		Help: "Steps that failed (a lost worker, a new plan) and were replayed."})
	m.reg.MustRegister(m.requests, m.ttft, m.itl, m.generated, m.stepTime, m.stepFails,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the metrics in Prometheus' text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Registry is where more collectors may be registered.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// TimeSteps wraps a Stepper so every step's duration is observed. A
// scheduler.Pipeline stays one: a step is timed from its send to its
// result.
func (m *Metrics) TimeSteps(s scheduler.Stepper) scheduler.Stepper {
	t := &timedStepper{s, m}
	if p, ok := s.(scheduler.Pipeline); ok {
		return &timedPipeline{t, p}
	}
	return t
}

type timedStepper struct {
	s scheduler.Stepper
	m *Metrics
}

func (t *timedStepper) Step(ctx context.Context, st *tesserav1.Step) ([][]topk.Partial, error) {
	start := time.Now()
	out, err := t.s.Step(ctx, st)
	t.observe(start, err)
	return out, err
}

func (t *timedStepper) observe(start time.Time, err error) {
	if err != nil {
		t.m.stepFails.Inc()
	} else {
		t.m.stepTime.Observe(time.Since(start).Seconds())
	}
}

// PlanVersion is the wrapped stepper's.
func (t *timedStepper) PlanVersion(ctx context.Context) (uint64, error) { return t.s.PlanVersion(ctx) }

type timedPipeline struct {
	*timedStepper
	p scheduler.Pipeline
}

// InFlight is the wrapped pipeline's.
func (t *timedPipeline) InFlight() int { return t.p.InFlight() }

func (t *timedPipeline) Send(ctx context.Context, st *tesserav1.Step) (scheduler.Await, error) {
	start := time.Now()
	await, err := t.p.Send(ctx, st)
	if err != nil {
		t.observe(start, err)
		return nil, err
	}
	return func(ctx context.Context) ([][]topk.Partial, error) {
		out, err := await(ctx)
		t.observe(start, err)
		return out, err
	}, nil
}

// statser is the scheduler's Stats method, looked up at run time.
type statser interface{ Stats() scheduler.Stats }

// watch registers the scheduler's gauges: queue depth always; KV blocks,
// prefix-cache hits and the other counters when it reports Stats.
func (m *Metrics) watch(s *scheduler.Scheduler) {
	if s == nil {
		return
	}
	gauge := func(name, help string, f func() float64) {
		_ = m.reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
	}
	counter := func(name, help string, f func() float64) {
		_ = m.reg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f))
	}
	gauge("tessera_requests_in_flight", "Sequences waiting or running in the scheduler.", func() float64 { return float64(s.Queued()) })
	st, ok := any(s).(statser)
	if !ok {
		return
	}
	stat := func(f func(scheduler.Stats) float64) func() float64 { return func() float64 { return f(st.Stats()) } }
	gauge("tessera_queue_depth", "Sequences waiting to be scheduled.", stat(func(x scheduler.Stats) float64 { return float64(x.Waiting) }))
	gauge("tessera_running_sequences", "Sequences in the running batch.", stat(func(x scheduler.Stats) float64 { return float64(x.Running) }))
	gauge("tessera_kv_blocks_used", "KV-cache blocks in use.", stat(func(x scheduler.Stats) float64 { return float64(x.BlocksUsed) }))
	gauge("tessera_kv_blocks_free", "KV-cache blocks free.", stat(func(x scheduler.Stats) float64 { return float64(x.BlocksFree) }))
	gauge("tessera_prefix_cache_hit_rate", "Prompt tokens served from the prefix cache over all prompt tokens.",
		stat(func(x scheduler.Stats) float64 {
			if all := x.PrefillTokens + x.PrefixHitTokens; all > 0 {
				return float64(x.PrefixHitTokens) / float64(all)
			}
			return 0
		}))
	counter("tessera_prefill_tokens_total", "Prompt tokens computed (prefix-cache hits excluded).", stat(func(x scheduler.Stats) float64 { return float64(x.PrefillTokens) }))
	counter("tessera_prefix_cache_hit_tokens_total", "Prompt tokens served from the prefix cache.", stat(func(x scheduler.Stats) float64 { return float64(x.PrefixHitTokens) }))
	counter("tessera_scheduler_generated_tokens_total", "Tokens the scheduler sampled.", stat(func(x scheduler.Stats) float64 { return float64(x.GeneratedTokens) }))
	counter("tessera_steps_total", "Scheduler steps run.", stat(func(x scheduler.Stats) float64 { return float64(x.Steps) }))
	counter("tessera_preemptions_total", "Sequences preempted (recomputed) when KV blocks ran out.", stat(func(x scheduler.Stats) float64 { return float64(x.Preemptions) }))
	counter("tessera_overlapped_steps_total", "Steps sent while an earlier one was still in flight (pipeline stages overlapping).",
		stat(func(x scheduler.Stats) float64 { return float64(x.Overlapped) }))
	counter("tessera_replays_total", "Sequences replayed after a failed step.", stat(func(x scheduler.Stats) float64 { return float64(x.Replays) }))
}
