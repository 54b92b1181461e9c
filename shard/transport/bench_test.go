package transport

import (
	"context"
	"crypto/tls"
	"slices"
	"testing"
	"time"

	tesserav1 "github.com/tessera-llm/tessera/proto/tessera/v1"
)

// reportLatency adds p50 and p99 in µs.
func reportLatency(b *testing.B, d []time.Duration) {
	if len(d) == 0 {
		return
	}
	slices.Sort(d)
	b.ReportMetric(float64(d[len(d)/2].Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(d[len(d)*99/100].Nanoseconds())/1e3, "p99-µs")
}

// BenchmarkPublish8KiB: one-way latency of an 8 KiB frame (one bf16
// 4096-vector), publisher and subscriber on separate connections; each op
// publishes and waits until the subscriber's handler has it.
func BenchmarkPublish8KiB(b *testing.B) {
	run := func(b *testing.B, tx, rx Transport) {
		got := make(chan struct{}, 1)
		sub, err := rx.Subscribe(context.Background(), "bench.pub", func(*tesserav1.Frame) { got <- struct{}{} })
		if err != nil {
			b.Fatal(err)
		}
		defer sub.Close()
		f := frame(act, tesserav1.DType_DTYPE_BF16, []int64{4096}, 0, 1, make([]byte, 8192))
		ctx := context.Background()
		lat := make([]time.Duration, 0, b.N)
		b.SetBytes(8192)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			start := time.Now()
			if err := tx.Publish(ctx, "bench.pub", f); err != nil {
				b.Fatal(err)
			}
			<-got
			lat = append(lat, time.Since(start))
		}
		b.StopTimer()
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e3, "µs/op")
		reportLatency(b, lat)
	}
	b.Run("inprocess", func(b *testing.B) {
		tr := NewInProcess()
		run(b, tr, tr)
	})
	b.Run("nats", func(b *testing.B) {
		url := startNATS(b, 0)
		run(b, newNATS(b, url), newNATS(b, url))
	})
}

// benchReduce times one all-reduce of n float32s between two ranks; rank
// 1 runs in its own goroutine.
func benchReduce(b *testing.B, g0, g1 Reducer, n int) {
	ctx := context.Background()
	buf0, buf1 := make([]float32, n), make([]float32, n)
	done := make(chan error, 1)
	lat := make([]time.Duration, 0, b.N)
	b.SetBytes(int64(4 * n))
	b.ResetTimer()
	go func() {
		for i := 0; i < b.N; i++ {
			if err := g1.AllReduce(ctx, uint64(i), 0, buf1); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if err := g0.AllReduce(ctx, uint64(i), 0, buf0); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	reportLatency(b, lat)
}

func benchGroups(b *testing.B, newT func() Transport, n int) {
	g := make([]Reducer, 2)
	for r := range g {
		gr, err := NewGroup(context.Background(), newT(), subj, 0, r, 2)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { gr.Close() })
		g[r] = gr
	}
	benchReduce(b, g[0], g[1], n)
}

// BenchmarkAllReduce8KiB: one all-reduce of 2048 float32s among 2 ranks,
// each rank with its own transport (own NATS connections per direction).
func BenchmarkAllReduce8KiB(b *testing.B) {
	b.Run("inprocess", func(b *testing.B) {
		tr := NewInProcess()
		benchGroups(b, func() Transport { return tr }, 2048)
	})
	b.Run("nats", func(b *testing.B) {
		url := startNATS(b, 0)
		benchGroups(b, func() Transport { return newNATS(b, url) }, 2048)
	})
}

// BenchmarkAllReduceHidden1024: one all-reduce of a decode step's hidden
// state (1024 float32s) between 2 ranks on loopback: through the NATS
// server, and over the direct mesh (plain TCP and mutual TLS).
func BenchmarkAllReduceHidden1024(b *testing.B) {
	const n = 1024
	b.Run("nats", func(b *testing.B) {
		url := startNATS(b, 0)
		benchGroups(b, func() Transport { return newNATS(b, url) }, n)
	})
	for _, c := range []struct {
		name string
		tls  *tls.Config
	}{{"direct", nil}, {"direct-tls", testTLS(b)}} {
		b.Run(c.name, func(b *testing.B) {
			ms := meshOf(b, newHub(b, c.tls), newHub(b, c.tls))
			benchReduce(b, ms[0], ms[1], n)
		})
	}
}
