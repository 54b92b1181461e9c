package console

import (
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// The coordinator's metrics the plots read (coordinator/api's names).
const (
	mTokens    = "tessera_generated_tokens_total"
	mRequests  = "tessera_requests_total"
	mTTFT      = "tessera_time_to_first_token_seconds"
	mITL       = "tessera_inter_token_latency_seconds"
	mStep      = "tessera_step_duration_seconds"
	mQueue     = "tessera_queue_depth"
	mRunning   = "tessera_running_sequences"
	mKVUsed    = "tessera_kv_blocks_used"
	mKVFree    = "tessera_kv_blocks_free"
	mPrefill   = "tessera_prefill_tokens_total"
	mPrefixHit = "tessera_prefix_cache_hit_tokens_total"
)

// num is a plot value; NaN (nothing to show, e.g. no token in the
// window) is JSON null, which the plots draw as a gap.
type num float64

func (n num) MarshalJSON() ([]byte, error) {
	if math.IsNaN(float64(n)) || math.IsInf(float64(n), 0) {
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, float64(n), 'g', 6, 64), nil
}

// Sample is one point of the live plots. Rates are over the last sample
// interval; latency quantiles and the prefix-cache hit rate over the last
// quantileWindow (a 1 s interval holds too few requests for a p99).
type Sample struct {
	T            int64 `json:"t"` // unix milliseconds
	TokensPerS   num   `json:"tokens_per_s"`
	RequestsPerS num   `json:"requests_per_s"`
	TTFT50       num   `json:"ttft_p50"` // seconds
	TTFT99       num   `json:"ttft_p99"`
	ITL50        num   `json:"itl_p50"`
	ITL99        num   `json:"itl_p99"`
	Queue        num   `json:"queue"`
	Running      num   `json:"running"`
	KVUsed       num   `json:"kv_used"`
	KVFree       num   `json:"kv_free"`
	PrefixHit    num   `json:"prefix_hit"` // fraction of prompt tokens
	Step50       num   `json:"step_p50"`   // seconds, one step across all stages
	Step99       num   `json:"step_p99"`
	// StepBusy is the fraction of the interval the coordinator had a
	// step in flight: the pipeline's utilisation as the coordinator sees
	// it.
	StepBusy num `json:"step_busy"`
	// StageBusy is each pipeline stage's busy fraction (its busiest
	// rank's compute time over the workers' last poll interval), from
	// their Stats.
	StageBusy []num `json:"stage_busy"`
}

const quantileWindow = 10 * time.Second

// reading is the cumulative state of the metrics at one instant.
type reading struct {
	t      time.Time
	values map[string]float64 // counters and gauges, summed over labels
	hists  map[string]histo
	busy   []float64 // per stage: busy fraction (see StageBusy)
}

// histo is a cumulative Prometheus histogram.
type histo struct {
	bounds []float64 // upper bounds, +Inf excluded
	counts []float64 // cumulative counts per bound
	count  float64
	sum    float64
}

// read gathers the metrics the plots need.
func read(g prometheus.Gatherer, now time.Time) reading {
	r := reading{t: now, values: map[string]float64{}, hists: map[string]histo{}}
	fams, _ := g.Gather() // a partial gather still has what it could read
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				r.values[f.GetName()] += m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				r.values[f.GetName()] += m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				r.hists[f.GetName()] = toHisto(m.GetHistogram())
			}
		}
	}
	return r
}

func toHisto(h *dto.Histogram) histo {
	out := histo{count: float64(h.GetSampleCount()), sum: h.GetSampleSum()}
	for _, b := range h.GetBucket() {
		if math.IsInf(b.GetUpperBound(), 1) {
			continue
		}
		out.bounds = append(out.bounds, b.GetUpperBound())
		out.counts = append(out.counts, float64(b.GetCumulativeCount()))
	}
	return out
}

// since is h minus an earlier reading of the same histogram: what was
// observed in between.
func (h histo) since(old histo) histo {
	d := histo{bounds: h.bounds, counts: make([]float64, len(h.counts)), count: h.count - old.count, sum: h.sum - old.sum}
	for i := range h.counts {
		d.counts[i] = h.counts[i]
		if i < len(old.counts) {
			d.counts[i] -= old.counts[i]
		}
	}
	return d
}

// quantile estimates the q-quantile by linear interpolation inside the
// bucket that holds it, as Prometheus' histogram_quantile does; NaN
// without observations. Beyond the last finite bound it answers that
// bound.
func (h histo) quantile(q float64) float64 {
	if h.count <= 0 {
		return math.NaN()
	}
	rank := q * h.count
	lower, below := 0.0, 0.0
	for i, c := range h.counts {
		if c >= rank {
			if c == below {
				return h.bounds[i]
			}
			return lower + (h.bounds[i]-lower)*(rank-below)/(c-below)
		}
		lower, below = h.bounds[i], c
	}
	return lower
}

// derive computes the sample at cur from the previous reading (rates) and
// the reading quantileWindow ago (quantiles).
func derive(prev, win, cur reading) Sample {
	dt := cur.t.Sub(prev.t).Seconds()
	rate := func(name string) num {
		if dt <= 0 {
			return num(math.NaN())
		}
		return num(max(cur.values[name]-prev.values[name], 0) / dt)
	}
	q := func(name string, p float64) num { return num(cur.hists[name].since(win.hists[name]).quantile(p)) }
	gauge := func(name string) num {
		if v, ok := cur.values[name]; ok {
			return num(v)
		}
		return num(math.NaN())
	}
	s := Sample{T: cur.t.UnixMilli(), TokensPerS: rate(mTokens), RequestsPerS: rate(mRequests),
		TTFT50: q(mTTFT, .5), TTFT99: q(mTTFT, .99), ITL50: q(mITL, .5), ITL99: q(mITL, .99),
		Step50: q(mStep, .5), Step99: q(mStep, .99),
		Queue: gauge(mQueue), Running: gauge(mRunning), KVUsed: gauge(mKVUsed), KVFree: gauge(mKVFree),
		PrefixHit: num(math.NaN()), StepBusy: num(math.NaN())}
	hits := cur.values[mPrefixHit] - win.values[mPrefixHit]
	if all := hits + cur.values[mPrefill] - win.values[mPrefill]; all > 0 {
		s.PrefixHit = num(hits / all)
	}
	for _, b := range cur.busy {
		s.StageBusy = append(s.StageBusy, num(b))
	}
	if dt > 0 {
		s.StepBusy = num(min(max(cur.hists[mStep].sum-prev.hists[mStep].sum, 0)/dt, 1))
	}
	return s
}

// ring keeps the last samples (and the readings behind them) in memory.
type ring struct {
	mu       sync.Mutex
	readings []reading // oldest first, at most quantileWindow/interval+1
	samples  []Sample  // oldest first, at most size
	size     int
	seq      uint64 // samples ever added
}

func newRing(window, interval time.Duration) *ring {
	return &ring{size: max(int(window/interval), 1)}
}

// add derives a sample from r and keeps both.
func (g *ring) add(r reading) Sample {
	g.mu.Lock()
	defer g.mu.Unlock()
	for len(g.readings) > 0 && r.t.Sub(g.readings[0].t) > quantileWindow {
		g.readings = g.readings[1:]
	}
	prev, win := r, r
	if n := len(g.readings); n > 0 {
		prev, win = g.readings[n-1], g.readings[0]
	}
	s := derive(prev, win, r)
	g.readings = append(g.readings, r)
	g.samples = append(g.samples, s)
	if len(g.samples) > g.size {
		g.samples = append(g.samples[:0], g.samples[len(g.samples)-g.size:]...)
	}
	g.seq++
	return s
}

// since returns the samples added after the first seq ones (all that the
// ring still holds when seq is older), and the new count.
func (g *ring) since(seq uint64) ([]Sample, uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := min(g.seq-seq, uint64(len(g.samples)))
	return append([]Sample(nil), g.samples[len(g.samples)-int(n):]...), g.seq
}
