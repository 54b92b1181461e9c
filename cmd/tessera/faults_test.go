package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.etcd.io/etcd/server/v3/embed"

	"github.com/tessera-llm/tessera/shard/transport"
)

// generateDuring runs streaming greedy requests on api, calls disturb once
// every stream has produced a token, and checks each output against the
// same request run before the disturbance.
func generateDuring(t *testing.T, api string, requests, n int, disturb func()) {
	t.Helper()
	prompts := make([][]int32, requests)
	want := make([][]int32, requests)
	for i := range prompts {
		prompts[i] = []int32{444 + int32(i), 272, 657, 296}
		want[i] = complete(t, api, greedyBody(prompts[i], n)).Choices[0].TokenIDs
	}
	var wg sync.WaitGroup
	started := make(chan struct{}, requests)
	got := make([][]int32, requests)
	for i := range prompts {
		wg.Go(func() { got[i] = streamIDs(t, api, prompts[i], n, started) })
	}
	for range requests {
		<-started
	}
	start := time.Now()
	disturb()
	wg.Wait()
	t.Logf("%d requests done %v after the disturbance", requests, time.Since(start).Round(time.Millisecond))
	for i := range prompts {
		if fmt.Sprint(got[i]) != fmt.Sprint(want[i]) {
			t.Errorf("request %d:\n got %v\nwant %v", i, got[i], want[i])
		}
	}
}

// TestNATSRestart: the NATS server restarts during generation; clients
// reconnect, steps in flight are retried, and every request completes.
func TestNATSRestart(t *testing.T) {
	in := startInfra(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	opts := &server.Options{Host: "127.0.0.1", Port: port}
	ns, url, err := transport.EmbeddedNATS(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { ns.Shutdown() }()
	const cluster = "e2e-natsrestart"
	dir := filepath.Join(repoRoot, "models/docbloom-3m")
	local := infra{etcd: in.etcd, nats: url}
	api, _ := startCluster(t, local, cluster, dir, 2, "--plan", "pp=2,tp=1", "--cache-tokens", "4096", "--step-timeout", "2s")
	generateDuring(t, api, 6, 200, func() {
		ns.Shutdown()
		ns.WaitForShutdown()
		time.Sleep(300 * time.Millisecond)
		if ns, _, err = transport.EmbeddedNATS(opts); err != nil {
			t.Fatalf("restarting NATS on port %s: %v", strconv.Itoa(port), err)
		}
	})
}

// etcdCluster starts a three-member etcd cluster in this process.
func etcdCluster(t *testing.T) (members []*embed.Etcd, endpoints string) {
	t.Helper()
	ports := make([]int, 6)
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = ln.Addr().(*net.TCPAddr).Port
		ln.Close()
	}
	var initial []string
	for i := range 3 {
		initial = append(initial, fmt.Sprintf("m%d=http://127.0.0.1:%d", i, ports[3+i]))
	}
	var wg sync.WaitGroup
	members = make([]*embed.Etcd, 3)
	errs := make([]error, 3)
	for i := range 3 {
		cu := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", ports[i])}
		pu := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", ports[3+i])}
		cfg := embed.NewConfig()
		cfg.Name, cfg.Dir = fmt.Sprintf("m%d", i), t.TempDir()
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{cu}, []url.URL{cu}
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{pu}, []url.URL{pu}
		cfg.InitialCluster = strings.Join(initial, ",")
		cfg.LogLevel = "error"
		cfg.UnsafeNoFsync = true
		wg.Go(func() {
			e, err := embed.StartEtcd(cfg)
			if err != nil {
				errs[i] = err
				return
			}
			members[i] = e
			select {
			case <-e.Server.ReadyNotify():
			case <-time.After(30 * time.Second):
				errs[i] = fmt.Errorf("member %d not ready", i)
			}
		})
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, m := range members {
			if m != nil {
				m.Close()
			}
		}
	})
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	var eps []string
	for i := range 3 {
		eps = append(eps, fmt.Sprintf("127.0.0.1:%d", ports[i]))
	}
	return members, strings.Join(eps, ",")
}

// TestEtcdLeaderLoss: the etcd leader of a three-member cluster stops
// during generation; registrations, the election and the plan survive and
// every request completes.
func TestEtcdLeaderLoss(t *testing.T) {
	in := startInfra(t)
	members, endpoints := etcdCluster(t)
	const cluster = "e2e-etcdleader"
	local := infra{etcd: endpoints, nats: in.nats}
	api, _ := startCluster(t, local, cluster, filepath.Join(repoRoot, "models/docbloom-3m"), 2, "--plan", "pp=2,tp=1", "--cache-tokens", "4096")
	generateDuring(t, api, 6, 200, func() {
		for i, m := range members {
			if m.Server.Leader() == m.Server.MemberID() {
				m.Close()
				members[i] = nil // closed: the cleanup must not close it again
				return
			}
		}
		t.Fatal("no etcd member leads")
	})
	if st := status(api + "/ready"); st != 200 {
		t.Errorf("/ready = %d after the etcd leader was lost", st)
	}
}

// metric reads one unlabelled sample from a Prometheus text page.
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
