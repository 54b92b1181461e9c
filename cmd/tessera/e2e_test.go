package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tessera-llm/tessera/shard/transport/netdelay"
	"github.com/tessera-llm/tessera/worker/model/modeltest"
)

// TestClusterEndToEnd: one coordinator and three worker processes against
// a real etcd and NATS; greedy generation through the HTTP API equals the
// golden ids under pp=3 and tp=3, with tp=3 reducing over the direct mesh
// (the default) and over NATS. It also checks readiness: /ready is 503
// until every shard of the plan has loaded, while /health is 200.
func TestClusterEndToEnd(t *testing.T) {
	in := startInfra(t)
	for _, tc := range []struct{ model, plan, reduce string }{
		{"bloom", "pp=3,tp=1", ""}, {"bloom", "pp=1,tp=3", "direct"}, {"llama", "pp=3,tp=1", ""},
		{"llama", "pp=1,tp=3", "direct"}, {"llama", "pp=1,tp=3", "nats"},
	} {
		name := tc.model + "_" + strings.ReplaceAll(tc.plan, ",", "_")
		var workerArgs []string
		if tc.reduce == "nats" {
			name, workerArgs = name+"_nats", []string{"--tp-reduce", "nats"}
		}
		t.Run(name, func(t *testing.T) {
			cluster := "e2e-" + tc.model + strings.NewReplacer("=", "", ",", "").Replace(tc.plan) + tc.reduce
			dir := filepath.Join(repoRoot, "testdata/golden", tc.model)
			_, api := startCoordinatorProc(t, in, cluster, dir, "c1", "--plan", tc.plan)
			waitStatus(t, api+"/health", 200, 20*time.Second)
			if st := status(api + "/ready"); st != http.StatusServiceUnavailable {
				t.Fatalf("/ready = %d before any worker registered, want 503", st)
			}
			workers := startWorkers(t, in, cluster, 3, 0, workerArgs...)
			waitStatus(t, api+"/ready", 200, 30*time.Second)
			checkReducePath(t, workers, tc.reduce)
			checkGolden(t, api, dir)
			if strings.HasPrefix(tc.plan, "pp=3") {
				checkOverlap(t, api, 3)
			}
		})
	}
}

// TestMeshThroughRelays: ranks that reach each other only through a
// forwarded port (--tp-advertise names a relay in front of --tp-listen,
// as bench-cluster --delays does) reduce through it, with golden output.
func TestMeshThroughRelays(t *testing.T) {
	in := startInfra(t)
	const cluster = "e2e-relayed-mesh"
	dir := filepath.Join(repoRoot, "testdata/golden", "llama")
	_, api := startCoordinatorProc(t, in, cluster, dir, "c1", "--plan", "pp=1,tp=2")
	var relays []*netdelay.Relay
	for i := range 2 {
		mesh := freeAddr(t)
		r, err := netdelay.Start("127.0.0.1:0", mesh, time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		relays = append(relays, r)
		startWorkers(t, in, cluster, 1, i, "--tp-listen", mesh, "--tp-advertise", r.Addr())
	}
	waitStatus(t, api+"/ready", 200, 30*time.Second)
	checkGolden(t, api, dir)
	relayed := 0
	for _, r := range relays {
		relayed += len(r.Samples())
	}
	if relayed == 0 {
		t.Error("no all-reduce traffic crossed the advertised relays")
	}
}

// checkGolden generates every golden case of the model in dir greedily
// through api and compares the ids: all cases at once, twice over, so that
// under pp=3 the steps overlap (one in flight per stage).
func checkGolden(t *testing.T, api, dir string) {
	t.Helper()
	var wg sync.WaitGroup
	for i, c := range append(modeltest.LoadGolden(t, dir).Cases, modeltest.LoadGolden(t, dir).Cases...) {
		wg.Go(func() {
			got := complete(t, api, greedyBody(c.PromptIDs, len(c.GreedyIDs)))
			if fmt.Sprint(got.Choices[0].TokenIDs) != fmt.Sprint(c.GreedyIDs) {
				t.Errorf("case %d: %v, golden %v", i, got.Choices[0].TokenIDs, c.GreedyIDs)
			}
		})
	}
	wg.Wait()
}

// checkReducePath checks that every worker loaded its shard reducing over
// want (when set), as it logs.
func checkReducePath(t *testing.T, workers []*process, want string) {
	t.Helper()
	if want == "" {
		return
	}
	for _, w := range workers {
		if out := w.out.String(); !strings.Contains(out, "reduce="+want) {
			t.Errorf("%s did not load its shard with reduce=%s:\n%s", w.name, want, out)
		}
	}
}

// checkOverlap asserts that steps overlapped on the cluster behind api and
// that its /metrics shows each of the stages' busy time and bubble.
func checkOverlap(t *testing.T, api string, stages int) {
	t.Helper()
	if n := metric(t, api, "tessera_overlapped_steps_total"); n == 0 {
		t.Error("no step was sent while another was in flight")
	}
	for s := range stages {
		busy := metric(t, api, fmt.Sprintf(`tessera_stage_busy_seconds_total{stage="%d"}`, s))
		bubble := metric(t, api, fmt.Sprintf(`tessera_stage_bubble_seconds_total{stage="%d"}`, s))
		t.Logf("stage %d: busy %.3fs, bubble %.3fs", s, busy, bubble)
		if busy <= 0 || bubble < 0 {
			t.Errorf("stage %d: busy %v s, bubble %v s", s, busy, bubble)
		}
	}
}

// TestWorkerJoinDuringGeneration: a fourth worker joins while requests
// stream; they complete with the same tokens as an undisturbed run, and
// the new plan (over four workers) serves later requests.
func TestWorkerJoinDuringGeneration(t *testing.T) {
	in := startInfra(t)
	const cluster = "e2e-join"
	dir := filepath.Join(repoRoot, "models/docbloom-3m")
	_, api := startCoordinatorProc(t, in, cluster, dir, "c1", "--cache-tokens", "4096")
	startWorkers(t, in, cluster, 3, 0)
	waitStatus(t, api+"/ready", 200, 30*time.Second)
	prompts := [][]int32{{444, 272, 657, 296}, {712, 487}, {694, 202, 675, 202}}
	const n = 500
	want := make([][]int32, len(prompts))
	for i, p := range prompts {
		want[i] = complete(t, api, greedyBody(p, n)).Choices[0].TokenIDs
	}
	var wg sync.WaitGroup
	started := make(chan struct{}, len(prompts))
	got := make([][]int32, len(prompts))
	var mu sync.Mutex
	var lastEnd time.Time
	for i, p := range prompts {
		wg.Go(func() {
			got[i] = streamIDs(t, api, p, n, started)
			mu.Lock()
			if now := time.Now(); now.After(lastEnd) {
				lastEnd = now
			}
			mu.Unlock()
		})
	}
	for range prompts {
		<-started
	}
	startWorkers(t, in, cluster, 1, 3)
	// The test means something only if the new plan serves while the
	// requests still run.
	var joined time.Time
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline) && joined.IsZero(); time.Sleep(20 * time.Millisecond) {
		if strings.Contains(captureStatus(t, in, cluster), "pp=4") && status(api+"/ready") == 200 {
			joined = time.Now()
		}
	}
	wg.Wait()
	if joined.IsZero() || !joined.Before(lastEnd) {
		t.Fatalf("the four-worker plan was not serving before the requests ended (joined %v, last ended %v)", joined, lastEnd)
	}
	for i := range prompts {
		if fmt.Sprint(got[i]) != fmt.Sprint(want[i]) {
			t.Errorf("request %d changed when a worker joined:\n got %v\nwant %v", i, got[i], want[i])
		}
	}
	out := captureStatus(t, in, cluster)
	if !strings.Contains(out, "pp=4") {
		t.Errorf("after the join the plan is not over four workers:\n%s", out)
	}
	if c := complete(t, api, greedyBody(prompts[0], 16)); fmt.Sprint(c.Choices[0].TokenIDs) != fmt.Sprint(want[0][:16]) {
		t.Errorf("a request on the new plan: %v, want %v", c.Choices[0].TokenIDs, want[0][:16])
	}
}

// streamIDs runs a streaming greedy completion, signalling started at the
// first token, and returns every token id.
func streamIDs(t *testing.T, api string, prompt []int32, n int, started chan<- struct{}) []int32 {
	body := greedyBody(prompt, n)
	body["stream"] = true
	raw, _ := json.Marshal(body)
	resp, err := http.Post(api+"/v1/completions", "application/json", bytes.NewReader(raw))
	if err != nil {
		t.Error(err)
		started <- struct{}{}
		return nil
	}
	defer resp.Body.Close()
	var ids []int32
	first := true
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := strings.TrimPrefix(sc.Text(), "data: ")
		if line == "" || line == "[DONE]" || line == sc.Text() {
			continue
		}
		var c completion
		if err := json.Unmarshal([]byte(line), &c); err != nil || len(c.Choices) == 0 {
			t.Errorf("stream chunk %q", line)
			continue
		}
		ids = append(ids, c.Choices[0].TokenIDs...)
		if first {
			first = false
			started <- struct{}{}
		}
	}
	if first {
		started <- struct{}{}
	}
	return ids
}

func captureStatus(t *testing.T, in infra, cluster string) string {
	var out, errb bytes.Buffer
	if code := run([]string{"status", "--etcd", in.etcd, "--cluster", cluster}, &out, &errb); code != 0 {
		t.Fatalf("status: %d %s", code, errb.String())
	}
	return out.String()
}

// TestCoordinatorFailover: two coordinators; the follower takes over when
// the leader stops or crashes (kill -9: its election lease must expire
// first), and serving resumes.
func TestCoordinatorFailover(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) { failover(t, sig) })
	}
}

func failover(t *testing.T, sig syscall.Signal) {
	in := startInfra(t)
	cluster := "e2e-failover-" + strconv.Itoa(int(sig))
	dir := filepath.Join(repoRoot, "testdata/golden/bloom")
	c1, api1 := startCoordinatorProc(t, in, cluster, dir, "c1", "--leader-ttl", "2s")
	waitStatus(t, api1+"/health", 200, 20*time.Second)
	_, api2 := startCoordinatorProc(t, in, cluster, dir, "c2", "--leader-ttl", "2s")
	waitStatus(t, api2+"/health", 200, 20*time.Second)
	startWorkers(t, in, cluster, 2, 0)
	// Ready comes first with a plan over whichever worker registered
	// first; wait for the plan over both, or a re-plan answers 503.
	waitServing(t, in, cluster, api1, "w0", "w1")
	if st := status(api2 + "/ready"); st != http.StatusServiceUnavailable {
		t.Fatalf("standby /ready = %d, want 503", st)
	}
	g := modeltest.LoadGolden(t, dir).Cases[0]
	if c := complete(t, api1, greedyBody(g.PromptIDs, len(g.GreedyIDs))); fmt.Sprint(c.Choices[0].TokenIDs) != fmt.Sprint(g.GreedyIDs) {
		t.Fatalf("leader: %v", c.Choices[0].TokenIDs)
	}
	start := time.Now()
	c1.stop(sig)
	waitStatus(t, api2+"/ready", 200, 30*time.Second)
	t.Logf("standby serving %v after the leader got %v", time.Since(start).Round(time.Millisecond), sig)
	if c := complete(t, api2, greedyBody(g.PromptIDs, len(g.GreedyIDs))); fmt.Sprint(c.Choices[0].TokenIDs) != fmt.Sprint(g.GreedyIDs) {
		t.Fatalf("after failover: %v, golden %v", c.Choices[0].TokenIDs, g.GreedyIDs)
	}
}

// Cluster commands fail fast, naming what they could not reach.
func TestUnreachableInfrastructure(t *testing.T) {
	in := startInfra(t)
	dead := "127.0.0.1:1"
	cases := []struct {
		name    string
		args    []string
		mention string
	}{
		{"worker without etcd", []string{"worker", "--etcd", dead, "--nats", in.nats}, "etcd at " + dead},
		{"worker without nats", []string{"worker", "--etcd", in.etcd, "--nats", "nats://" + dead}, "nats at nats://" + dead},
		{"coordinator without etcd", []string{"coordinator", "--etcd", dead, "--nats", in.nats,
			"--model", filepath.Join(repoRoot, "testdata/golden/bloom")}, "etcd at " + dead},
		{"status without etcd", []string{"status", "--etcd", dead}, "etcd at " + dead},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			code, _, stderr := runCLI(t, tc.args...)
			if code == 0 || !strings.Contains(stderr, tc.mention) {
				t.Fatalf("exit %d, stderr %q should mention %q", code, stderr, tc.mention)
			}
			if el := time.Since(start); el > 15*time.Second {
				t.Errorf("took %v to give up", el)
			}
		})
	}
}

// TestWorkerKilledDuringGeneration: kill -9 of a serving worker while 16
// streaming requests run (32 under pp=3, where steps overlap). The coordinator notices (a failed step or the
// lease), re-plans onto the standby, replays the sequences' tokens, and
// every request completes with the tokens of an undisturbed run.
func TestWorkerKilledDuringGeneration(t *testing.T) {
	in := startInfra(t)
	dir := filepath.Join(repoRoot, "models/docbloom-3m")
	for _, shape := range []string{"pp=3,tp=1", "pp=1,tp=3"} {
		t.Run(strings.ReplaceAll(shape, ",", "_"), func(t *testing.T) {
			cluster := "e2e-kill-" + strings.NewReplacer("=", "", ",", "").Replace(shape)
			// w0..w2 serve, w3 stands by.
			api, workers := startCluster(t, in, cluster, dir, 4, "--plan", shape, "--cache-tokens", "8192", "--step-timeout", "2s")
			if shape == "pp=1,tp=3" {
				checkReducePath(t, workers[:3], "direct")
			}
			streams := 16
			if strings.HasPrefix(shape, "pp=3") {
				streams = 32 // in micro-batches, three in flight: the kill hits overlapped steps
			}
			generateDuring(t, api, streams, 150, func() { workers[1].stop(syscall.SIGKILL) })
			if strings.HasPrefix(shape, "pp=3") {
				checkOverlap(t, api, 3)
			}
			if out := captureStatus(t, in, cluster); !strings.Contains(out, "w3") || strings.Contains(out, "w1 ") {
				t.Errorf("the plan should now use the standby w3 and not w1:\n%s", out)
			}
		})
	}
}
