package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func metric(t *testing.T, api, name string) float64 {
	t.Helper()
	body := metricsPage(t, api)
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				return f
			}
		}
	}
	t.Fatalf("/metrics has no %s", name)
	return 0
}

// TestOverload: ten times the queue's capacity at once gets only 200s
// and 429s (with Retry-After); memory stays bounded and the coordinator's
// goroutines return to their idle count.
func TestOverload(t *testing.T) {
	in := startInfra(t)
	const cluster = "e2e-overload"
	api, _ := startCluster(t, in, cluster, filepath.Join(repoRoot, "models/docbloom-3m"), 2, "--max-queue", "4", "--max-batch", "4")
	// The idle count is taken under the plan over both workers: a re-plan
	// when the second joins mid-test brings its own connections.
	waitServing(t, in, cluster, api, "w0", "w1")
	idle := metric(t, api, "go_goroutines")
	const capacity, load = 8, 80 // queue + batch, and ten times that
	var mu sync.Mutex
	codes := map[int]int{}
	var wg sync.WaitGroup
	for i := range load {
		wg.Go(func() {
			raw, _ := json.Marshal(greedyBody([]int32{444 + int32(i%50), 272}, 24))
			resp, err := http.Post(api+"/v1/completions", "application/json", bytes.NewReader(raw))
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") == "" {
				t.Error("429 without Retry-After")
			}
			mu.Lock()
			codes[resp.StatusCode]++
			mu.Unlock()
		})
	}
	wg.Wait()
	t.Logf("%d requests at a capacity of %d: %v", load, capacity, codes)
	if codes[200]+codes[429] != load || codes[200] < capacity || codes[429] == 0 {
		t.Fatalf("statuses %v: want only 200s (at least %d) and some 429s", codes, capacity)
	}
	const rssBound = 512 << 20
	if rss := metric(t, api, "process_resident_memory_bytes"); rss > rssBound {
		t.Errorf("coordinator RSS %.0f MiB over the %d MiB bound", rss/(1<<20), rssBound>>20)
	}
	deadline := time.Now().Add(10 * time.Second)
	for metric(t, api, "go_goroutines") > idle+2 {
		if time.Now().After(deadline) {
			t.Fatalf("goroutines %v after the load, %v idle before", metric(t, api, "go_goroutines"), idle)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestPrefixCacheOnCluster: on a real cluster, a second request sharing a
// 512-token prefix computes only its new tokens, read from the prefill
// counter in /metrics; both give the tokens they give alone.
func TestPrefixCacheOnCluster(t *testing.T) {
	in := startInfra(t)
	const cluster = "e2e-prefix"
	docbloom := filepath.Join(repoRoot, "models/docbloom-3m")
	api, _ := startCluster(t, in, cluster, docbloom, 2, "--cache-tokens", "4096", "--block-size", "16")
	prefix := make([]int32, 512)
	for i := range prefix {
		prefix[i] = int32(300 + i%700)
	}
	first := append(slices.Clone(prefix), 444, 272, 657)
	second := append(slices.Clone(prefix), 712, 487)
	complete(t, api, greedyBody(first, 4))
	before := metric(t, api, "tessera_prefill_tokens_total")
	got := complete(t, api, greedyBody(second, 4)).Choices[0].TokenIDs
	computed := metric(t, api, "tessera_prefill_tokens_total") - before
	if computed != 2 {
		t.Errorf("the second request computed %v prompt tokens; only its 2 new ones should run", computed)
	}
	if hits := metric(t, api, "tessera_prefix_cache_hit_tokens_total"); hits < 512 {
		t.Errorf("prefix cache served %v tokens, want ≥ 512", hits)
	}
	// The same request on a cluster with a cold cache.
	const cold = "e2e-prefix-cold"
	api2, _ := startCluster(t, in, cold, docbloom, 2, "--cache-tokens", "4096", "--block-size", "16")
	if want := complete(t, api2, greedyBody(second, 4)).Choices[0].TokenIDs; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("from the prefix cache %v, computed whole %v", got, want)
	}
}

// TestClientDisconnect: a client that goes away mid-stream cancels its
// sequence; its KV blocks are freed while the cluster keeps serving.
func TestClientDisconnect(t *testing.T) {
	in := startInfra(t)
	api, _ := startCluster(t, in, "e2e-disconnect", filepath.Join(repoRoot, "models/docbloom-3m"), 2, "--cache-tokens", "4096")
	body := greedyBody([]int32{444, 272, 657, 296}, 2000)
	body["stream"] = true
	raw, _ := json.Marshal(body)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, api+"/v1/completions", bytes.NewReader(raw))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	first := make([]byte, 64)
	if _, err := resp.Body.Read(first); err != nil {
		t.Fatal(err)
	}
	if used := metric(t, api, "tessera_kv_blocks_used"); used == 0 {
		t.Fatal("no KV blocks in use while streaming: the test lost its point")
	}
	cancel()
	resp.Body.Close()
	deadline := time.Now().Add(10 * time.Second)
	for metric(t, api, "tessera_kv_blocks_used") != 0 || metric(t, api, "tessera_running_sequences") != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("after the client left: %v blocks used, %v sequences running",
				metric(t, api, "tessera_kv_blocks_used"), metric(t, api, "tessera_running_sequences"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if c := complete(t, api, greedyBody([]int32{712, 487}, 4)); len(c.Choices[0].TokenIDs) != 4 {
		t.Fatalf("the cluster stopped serving after a disconnect: %+v", c)
	}
}

// Each worker reports its own step time on /metrics, so per-worker step
// time is what Prometheus gets by scraping every worker.
func TestWorkerMetrics(t *testing.T) {
	in := startInfra(t)
	const cluster = "e2e-workermetrics"
	_, api := startCoordinatorProc(t, in, cluster, filepath.Join(repoRoot, "testdata/golden/bloom"), "c1")
	probe := freeAddr(t)
	spawn(t, cluster+"/w0", "worker", "--cluster", cluster, "--etcd", in.etcd, "--nats", in.nats, "--id", "w0",
		"--listen", "127.0.0.1:0", "--http-listen", probe)
	waitStatus(t, api+"/ready", 200, 30*time.Second)
	complete(t, api, greedyBody([]int32{5, 77, 300}, 6))
	w := "http://" + probe
	if steps := metric(t, w, "tessera_worker_steps_total"); steps < 6 {
		t.Errorf("worker counted %v steps for a 3-token prompt and 6 generated tokens", steps)
	}
	if n := metric(t, w, "tessera_worker_step_seconds_count"); n < 6 {
		t.Errorf("worker step-time histogram has %v observations", n)
	}
}
