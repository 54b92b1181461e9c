package cluster

import (
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	leftOutDesc = prometheus.NewDesc("tessera_workers_left_out",
		"Registered workers the leader's plan leaves out (1 each), with the reason.", []string{"worker", "reason"}, nil)
	planFailuresDesc = prometheus.NewDesc("tessera_plan_failures_total",
		"Re-plans that failed (the serving plan, if any, kept serving).", nil, nil)
	stageBusyDesc = prometheus.NewDesc("tessera_stage_busy_seconds_total",
		"Time a pipeline stage computed steps (as its rank 0 reports).", []string{"stage"}, nil)
	stageBubbleDesc = prometheus.NewDesc("tessera_stage_bubble_seconds_total",
		"Time a pipeline stage had nothing to do while steps were in flight: waiting for activations, "+
			"for the coordinator, or for the network.", []string{"stage"}, nil)
)

// Collector exports the planning outcome for the coordinator's /metrics:
// the workers left out of planning, with the reason, failed re-plans, and
// each pipeline stage's busy time and bubble.
func (m *Manager) Collector() prometheus.Collector { return collector{m} }

type collector struct{ m *Manager }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- leftOutDesc
	ch <- planFailuresDesc
	ch <- stageBusyDesc
	ch <- stageBubbleDesc
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	c.m.mu.Lock()
	r := c.m.planning
	c.m.mu.Unlock()
	for _, l := range r.GetLeftOut() {
		ch <- prometheus.MustNewConstMetric(leftOutDesc, prometheus.GaugeValue, 1, l.WorkerId, l.Reason)
	}
	ch <- prometheus.MustNewConstMetric(planFailuresDesc, prometheus.CounterValue, float64(c.m.planFailures.Load()))
	for stage, t := range c.m.clock.read(time.Now()) {
		if !t.seen {
			continue
		}
		s := strconv.Itoa(stage)
		ch <- prometheus.MustNewConstMetric(stageBusyDesc, prometheus.CounterValue, t.busy.Seconds(), s)
		ch <- prometheus.MustNewConstMetric(stageBubbleDesc, prometheus.CounterValue, t.bubble.Seconds(), s)
	}
}

// stageClock books the pipeline's utilisation. The coordinator knows when
// the pipeline has work (at least one step in flight); each stage reports
// how long it computed. A stage's bubble is the rest of the time with work
// in flight: with one step at a time a stage of p idles about (p-1)/p of
// it; overlapped steps shrink that.
type stageClock struct {
	mu          sync.Mutex
	outstanding int
	since       time.Time     // when outstanding last rose from 0
	working     time.Duration // closed spans with work in flight
	stages      []stageTime
}

// stageTime is one stage's account, kept from the coordinator's start (a
// stage that a later plan adds counts the time before it as bubble too).
type stageTime struct {
	seen         bool
	busy, bubble time.Duration
}

func (c *stageClock) sent() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.outstanding == 0 {
		c.since = time.Now()
	}
	c.outstanding++
}

func (c *stageClock) done() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.outstanding--; c.outstanding == 0 {
		c.working += time.Since(c.since)
	}
}

func (c *stageClock) busy(stage int, d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.stages) <= stage {
		c.stages = append(c.stages, stageTime{})
	}
	t := &c.stages[stage]
	t.seen = true
	t.busy += d
}

func (c *stageClock) workingLocked(now time.Time) time.Duration {
	if c.outstanding > 0 {
		return c.working + now.Sub(c.since)
	}
	return c.working
}

// read returns every stage's busy time and bubble so far. A busy report
// can arrive after its step's span closed, so a bubble is kept from
// shrinking: Prometheus counters never go down.
func (c *stageClock) read(now time.Time) []stageTime {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.workingLocked(now)
	for i := range c.stages {
		t := &c.stages[i]
		if t.seen {
			t.bubble = max(t.bubble, w-t.busy)
		}
	}
	return slices.Clone(c.stages)
}
