package transport

import (
	"context"
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

// BenchmarkAllReduce8KiB: one all-reduce of 2048 float32s among 2 ranks,
// each rank with its own transport (own NATS connections per direction).
func BenchmarkAllReduce8KiB(b *testing.B) {
	run := func(b *testing.B, newT func() Transport) {
		ctx := context.Background()
		g0, err := NewGroup(ctx, newT(), subj, 0, 0, 2)
		if err != nil {
			b.Fatal(err)
		}
		defer g0.Close()
		g1, err := NewGroup(ctx, newT(), subj, 0, 1, 2)
		if err != nil {
			b.Fatal(err)
		}
		defer g1.Close()
		buf0, buf1 := make([]float32, 2048), make([]float32, 2048)
		done := make(chan error, 1)
		lat := make([]time.Duration, 0, b.N)
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
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e3, "µs/op")
		reportLatency(b, lat)
	}
	b.Run("inprocess", func(b *testing.B) {
		tr := NewInProcess()
		run(b, func() Transport { return tr })
	})
	b.Run("nats", func(b *testing.B) {
		url := startNATS(b, 0)
		run(b, func() Transport { return newNATS(b, url) })
	})
}
