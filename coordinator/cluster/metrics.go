package cluster

import (
	"github.com/prometheus/client_golang/prometheus"
)

var (
	leftOutDesc = prometheus.NewDesc("tessera_workers_left_out",
		"Registered workers the leader's plan leaves out (1 each), with the reason.", []string{"worker", "reason"}, nil)
	planFailuresDesc = prometheus.NewDesc("tessera_plan_failures_total",
		"Re-plans that failed (the serving plan, if any, kept serving).", nil, nil)
)

// Collector exports the planning outcome for the coordinator's /metrics:
// the workers left out of planning, with the reason, and failed re-plans.
func (m *Manager) Collector() prometheus.Collector { return collector{m} }

type collector struct{ m *Manager }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- leftOutDesc
	ch <- planFailuresDesc
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	c.m.mu.Lock()
	r := c.m.planning
	c.m.mu.Unlock()
	for _, l := range r.GetLeftOut() {
		ch <- prometheus.MustNewConstMetric(leftOutDesc, prometheus.GaugeValue, 1, l.WorkerId, l.Reason)
	}
	ch <- prometheus.MustNewConstMetric(planFailuresDesc, prometheus.CounterValue, float64(c.m.planFailures.Load()))
}
