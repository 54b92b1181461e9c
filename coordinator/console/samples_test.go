package console

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestQuantile(t *testing.T) {
	h := histo{bounds: []float64{0.01, 0.1, 1}, counts: []float64{10, 30, 40}, count: 40}
	for _, tc := range []struct {
		name string
		h    histo
		q    float64
		want float64
	}{
		{"inside the first bucket", h, 0.125, 0.005},              // rank 5 of 10 in [0, 0.01)
		{"inside the second bucket", h, 0.5, 0.01 + 0.09*10/20.0}, // rank 20: 10 into a 20-count bucket
		{"at a bucket's top", h, 0.75, 0.1},
		{"beyond the last bound", histo{bounds: []float64{1}, counts: []float64{1}, count: 2}, 0.99, 1},
		{"empty", histo{bounds: []float64{1}, counts: []float64{0}}, 0.5, math.NaN()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.h.quantile(tc.q)
			if math.IsNaN(tc.want) != math.IsNaN(got) || !math.IsNaN(got) && math.Abs(got-tc.want) > 1e-12 {
				t.Errorf("quantile(%v) = %v, want %v", tc.q, got, tc.want)
			}
		})
	}
}

// The ring turns a real Prometheus registry's counters, gauges and
// histograms into rates, gauges and windowed quantiles.
func TestRingSamples(t *testing.T) {
	reg := prometheus.NewRegistry()
	tokens := prometheus.NewCounter(prometheus.CounterOpts{Name: mTokens})
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{Name: mRequests}, []string{"endpoint"})
	ttft := prometheus.NewHistogram(prometheus.HistogramOpts{Name: mTTFT, Buckets: []float64{0.1, 0.2, 0.4}})
	queue := prometheus.NewGauge(prometheus.GaugeOpts{Name: mQueue})
	prefill := prometheus.NewCounter(prometheus.CounterOpts{Name: mPrefill})
	hits := prometheus.NewCounter(prometheus.CounterOpts{Name: mPrefixHit})
	reg.MustRegister(tokens, requests, ttft, queue, prefill, hits)

	g := newRing(3*time.Second, time.Second)
	t0 := time.Unix(1000, 0)
	first := g.add(read(reg, t0))
	if !math.IsNaN(float64(first.TokensPerS)) || !math.IsNaN(float64(first.TTFT50)) {
		t.Errorf("the first sample has no interval: %+v", first)
	}
	tokens.Add(50)
	requests.WithLabelValues("/v1/completions").Add(3)
	requests.WithLabelValues("/v1/chat/completions").Add(1)
	for _, v := range []float64{0.15, 0.15, 0.15, 0.3} {
		ttft.Observe(v)
	}
	queue.Set(7)
	prefill.Add(30)
	hits.Add(10)
	s := g.add(read(reg, t0.Add(2*time.Second)))
	for name, c := range map[string]struct{ got, want num }{
		"tokens/s":   {s.TokensPerS, 25},
		"requests/s": {s.RequestsPerS, 2},
		"queue":      {s.Queue, 7},
		"prefix hit": {s.PrefixHit, 0.25},
		"ttft p50":   {s.TTFT50, 0.1 + 0.1*2/3.0}, // rank 2 of the 3 in [0.1, 0.2)
	} {
		if math.Abs(float64(c.got-c.want)) > 1e-9 {
			t.Errorf("%s = %v, want %v", name, c.got, c.want)
		}
	}
	// Absent metrics are null in JSON, which the plots draw as gaps.
	raw, _ := json.Marshal(s)
	if !strings.Contains(string(raw), `"kv_used":null`) || !strings.Contains(string(raw), `"tokens_per_s":25`) {
		t.Errorf("sample JSON %s", raw)
	}
	// Nothing new: rates fall to zero, the window's quantiles hold until
	// the observations age out of it.
	s = g.add(read(reg, t0.Add(3*time.Second)))
	if s.TokensPerS != 0 || math.IsNaN(float64(s.TTFT50)) {
		t.Errorf("a quiet second: tokens/s %v, ttft p50 %v", s.TokensPerS, s.TTFT50)
	}
	s = g.add(read(reg, t0.Add(20*time.Second)))
	if !math.IsNaN(float64(s.TTFT50)) {
		t.Errorf("ttft p50 %v after the window passed, want none", s.TTFT50)
	}
	// The ring keeps window/interval samples; since hands out the new ones.
	all, seq := g.since(0)
	if len(all) != 3 || seq != 4 || all[0].T != t0.Add(2*time.Second).UnixMilli() {
		t.Fatalf("ring holds %d samples (seq %d), first at %d; want the last 3 of 4", len(all), seq, all[0].T)
	}
	if fresh, _ := g.since(3); len(fresh) != 1 || fresh[0].T != t0.Add(20*time.Second).UnixMilli() {
		t.Errorf("since(3) = %+v, want the newest sample", fresh)
	}
}
