package cluster

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	tesserav1 "github.com/tessera-llm/tessera/proto/tessera/v1"
	"github.com/tessera-llm/tessera/shard/registry"
	"github.com/tessera-llm/tessera/shard/spec"
)

// bloom176B is BLOOM-176B's shape: 70 layers, 112 heads.
var bloom176B = &spec.Spec{Arch: "bloom", Hidden: 14336, Layers: 70, Heads: 112, KVHeads: 112, HeadDim: 128,
	Intermediate: 57344, Vocab: 250880, Norm: spec.LayerNorm, NormEps: 1e-5, Positions: spec.ALiBi, TiedEmbeddings: true}

// thousandWorkers registers n simulated workers (capacity only, no model)
// in a real etcd and measures how long the leader takes from the last
// registration to noticing them all, planning BLOOM-176B over them and
// publishing the plan.
func thousandWorkers(tb testing.TB, n int) (notice, planned time.Duration, workers int) {
	dir := tb.TempDir()
	_, endpoint, stop, err := registry.Embedded(dir, registry.EmbedNoFsync())
	if err != nil {
		tb.Fatal(err)
	}
	defer stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cli, err := registry.Dial(ctx, endpoint)
	if err != nil {
		tb.Fatal(err)
	}
	defer cli.Close()
	const cluster = "scale"
	m := New(Config{Cluster: cluster, ID: "leader", Spec: bloom176B, DTypeBytes: 2}, cli, nil)
	lead, err := registry.Campaign(ctx, cli, cluster, "leader")
	if err != nil {
		tb.Fatal(err)
	}
	watch, err := registry.Watch(ctx, cli, cluster)
	if err != nil {
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	work := make(chan int)
	for range 32 {
		wg.Go(func() {
			for i := range work {
				w := &tesserav1.WorkerInfo{Id: fmt.Sprintf("gpu-%04d", i), Address: fmt.Sprintf("10.0.%d.%d:7070", i/250, i%250),
					Backend: "cuda", Device: "H200", MemoryBytes: 141 << 30}
				if _, err := registry.Register(ctx, cli, cluster, w, 30*time.Second); err != nil {
					tb.Error(err)
				}
			}
		})
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	registered := time.Now()
	for ws := range watch {
		if len(ws) < n {
			continue
		}
		notice = time.Since(registered)
		p, _, err := m.publish(ctx, lead, ws)
		if err != nil {
			tb.Fatal(err)
		}
		planned = time.Since(registered)
		for _, st := range p.Stages {
			workers += len(st.Ranks)
		}
		return notice, planned, workers
	}
	tb.Fatal("watch ended")
	return
}

func TestThousandWorkersPlan(t *testing.T) {
	if testing.Short() {
		t.Skip("registers 1,000 workers in etcd")
	}
	notice, planned, workers := thousandWorkers(t, 1000)
	if workers != 1000 {
		t.Fatalf("the plan places %d workers, want 1000", workers)
	}
	t.Logf("1,000 workers: noticed %v after the last registration, BLOOM-176B plan published at %v", notice, planned)
}

// BenchmarkThousandWorkersPlan reports the notice-to-published time of a
// 1,000-worker cluster (docs/benchmarks.md); the target is ≤ 1 s.
func BenchmarkThousandWorkersPlan(b *testing.B) {
	for range b.N {
		_, planned, _ := thousandWorkers(b, 1000)
		b.ReportMetric(float64(planned.Milliseconds()), "ms-to-published-plan")
	}
}
