package main

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tessera-llm/tessera/shard/plan"
	"github.com/tessera-llm/tessera/shard/registry"
)

// currentPlan reads the cluster's published plan from etcd (nil before
// the first).
func currentPlan(t *testing.T, in infra, cluster string) *plan.Plan {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cli, err := registry.Dial(ctx, in.etcd)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	_, raw, err := registry.CurrentPlan(ctx, cli, cluster)
	if err != nil {
		return nil
	}
	p, err := plan.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// waitServing waits until the published plan is over exactly ids and the
// coordinator serves it.
func waitServing(t *testing.T, in infra, cluster, api string, ids ...string) *plan.Plan {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if p := currentPlan(t, in, cluster); p != nil && slices.Equal(p.Workers(), ids) && status(api+"/ready") == 200 {
			return p
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no plan over %v served within 30 s (status:\n%s)", ids, captureStatus(t, in, cluster))
	return nil
}

func metricsPage(t *testing.T, api string) string {
	t.Helper()
	resp, err := http.Get(api + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

// TestTinyWorkerDoesNotStopServing: a worker whose --memory cannot hold
// any share of the model joins a serving cluster. The leader leaves it out
// of planning and says why in `tessera status` and /metrics, the serving
// plan keeps its version, and every request meanwhile succeeds with the
// same greedy output.
func TestTinyWorkerDoesNotStopServing(t *testing.T) {
	in := startInfra(t)
	const cluster = "e2e-tinyworker"
	api, _ := startCluster(t, in, cluster, filepath.Join(repoRoot, "models/docbloom-3m"), 2)
	serving := waitServing(t, in, cluster, api, "w0", "w1")
	body := greedyBody([]int32{444, 272, 657, 296}, 12)
	want := complete(t, api, body).Choices[0].TokenIDs

	startWorkers(t, in, cluster, 1, 9, "--memory", "1KiB")
	deadline := time.Now().Add(30 * time.Second)
	var st string
	for st = captureStatus(t, in, cluster); !strings.Contains(st, "left out: w9: "); st = captureStatus(t, in, cluster) {
		if time.Now().After(deadline) {
			t.Fatalf("status never reported w9 as left out:\n%s", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(st, "1024 bytes of memory cannot hold a share") {
		t.Errorf("status does not say why w9 is left out:\n%s", st)
	}
	page := metricsPage(t, api)
	if !strings.Contains(page, `tessera_workers_left_out{reason="its 1024 bytes`) || !strings.Contains(page, `worker="w9"} 1`) {
		t.Errorf("/metrics does not report w9 as left out:\n%s", grepLines(page, "tessera_workers_left_out"))
	}
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); {
		if got := complete(t, api, body).Choices[0].TokenIDs; !slices.Equal(got, want) {
			t.Fatalf("greedy output with w9 registered: %v, want %v", got, want)
		}
	}
	if p := currentPlan(t, in, cluster); p.Version != serving.Version {
		t.Errorf("plan version went from %d to %d while w9 was registered", serving.Version, p.Version)
	}
}

func grepLines(page, prefix string) string {
	var out []string
	for _, l := range strings.Split(page, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestMembershipChurnLeaksNothing: after 20 cycles of a worker process
// joining (a re-plan over two workers, shards loaded) and leaving (a
// re-plan back to one), the coordinator's goroutine count returns to
// within 10 of what it was before: no load stream or worker connection
// outlives its worker or plan.
func TestMembershipChurnLeaksNothing(t *testing.T) {
	in := startInfra(t)
	const cluster = "e2e-churn"
	api, _ := startCluster(t, in, cluster, filepath.Join(repoRoot, "models/docbloom-3m"), 1)
	waitServing(t, in, cluster, api, "w0")
	body := greedyBody([]int32{444, 272, 657, 296}, 4)
	complete(t, api, body)
	base := metric(t, api, "go_goroutines")
	const cycles = 20
	for i := range cycles {
		w := startWorkers(t, in, cluster, 1, 1)[0]
		waitServing(t, in, cluster, api, "w0", "w1")
		complete(t, api, body)
		w.stop(syscall.SIGTERM)
		waitServing(t, in, cluster, api, "w0")
		if i == 0 {
			complete(t, api, body) // the first cycle warms up what stays
		}
	}
	complete(t, api, body)
	var now float64
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if now = metric(t, api, "go_goroutines"); now <= base+10 {
			t.Logf("goroutines: %v before, %v after %d join/leave cycles", base, now, cycles)
			return
		}
	}
	t.Fatalf("goroutines: %v before, %v after %d join/leave cycles (want at most %v)", base, now, cycles, base+10)
}
