package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/tessera-llm/tessera/shard/registry"
	"github.com/tessera-llm/tessera/shard/transport"
	"github.com/tessera-llm/tessera/worker/model/modeltest"
)

// The end-to-end tests run the tessera binary as separate OS processes.
// The test binary holds the same main package, so it re-executes itself
// as tessera when this variable is set: no second link step in CI.
const execAsTessera = "TESSERA_E2E_EXEC"

func TestMain(m *testing.M) {
	if os.Getenv(execAsTessera) == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// infra is a real etcd and a real NATS server, embedded in the test
// process, shared by the tests (each uses its own cluster name).
type infra struct{ etcd, nats string }

var (
	infraOnce sync.Once
	shared    infra
	infraErr  error
)

func startInfra(t *testing.T) infra {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end cluster tests need a few seconds; skipped in -short")
	}
	infraOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tessera-e2e-etcd-")
		if err != nil {
			infraErr = err
			return
		}
		_, etcdURL, _, err := registry.Embedded(dir, registry.EmbedNoFsync())
		if err != nil {
			infraErr = err
			return
		}
		_, natsURL, err := transport.EmbeddedNATS(&server.Options{})
		shared, infraErr = infra{etcd: etcdURL, nats: natsURL}, err
	})
	if infraErr != nil {
		t.Fatal(infraErr)
	}
	return shared
}

// process is a tessera child process with its output kept for failures.
type process struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func spawn(t *testing.T, name string, args ...string) *process {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), execAsTessera+"=1")
	p := &process{name: name, cmd: cmd, out: &syncBuffer{}}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.stop(syscall.SIGTERM)
		if t.Failed() {
			t.Logf("--- %s output:\n%s", p.name, p.out)
		}
	})
	return p
}

// stop signals the process and waits for it (killing it after 10 s).
func (p *process) stop(sig syscall.Signal) {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(sig)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func startWorkers(t *testing.T, in infra, cluster string, n, first int, extra ...string) []*process {
	var ps []*process
	for i := range n {
		id := fmt.Sprintf("w%d", first+i)
		args := append([]string{"worker", "--cluster", cluster, "--etcd", in.etcd, "--nats", in.nats,
			"--id", id, "--listen", "127.0.0.1:0", "--memory", "1GiB", "--lease-ttl", "2s"}, extra...)
		ps = append(ps, spawn(t, cluster+"/"+id, args...))
	}
	return ps
}

func startCoordinatorProc(t *testing.T, in infra, cluster, model, id string, extra ...string) (*process, string) {
	addr := freeAddr(t)
	args := append([]string{"coordinator", "--cluster", cluster, "--etcd", in.etcd, "--nats", in.nats, "--model", model,
		"--listen", addr, "--grpc-listen", "", "--id", id, "--cache-tokens", "1024", "--block-size", "8"}, extra...)
	return spawn(t, cluster+"/"+id, args...), "http://" + addr
}

// startCluster runs a coordinator and n workers on in and waits until it
// serves; it returns the API URL and the workers.
func startCluster(t *testing.T, in infra, cluster, model string, n int, coordinatorArgs ...string) (string, []*process) {
	t.Helper()
	_, api := startCoordinatorProc(t, in, cluster, model, "c1", coordinatorArgs...)
	workers := startWorkers(t, in, cluster, n, 0)
	waitStatus(t, api+"/ready", 200, 30*time.Second)
	return api, workers
}

func status(url string) int {
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func waitStatus(t *testing.T, url string, want int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if status(url) == want {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s did not answer %d within %v (last %d)", url, want, within, status(url))
}

type completion struct {
	Choices []struct {
		Text         string  `json:"text"`
		TokenIDs     []int32 `json:"token_ids"`
		FinishReason string  `json:"finish_reason"`
		Logprobs     *struct {
			TokenLogprobs []float64 `json:"token_logprobs"`
		} `json:"logprobs"`
	} `json:"choices"`
}

func complete(t *testing.T, api string, body map[string]any) completion {
	t.Helper()
	raw, _ := json.Marshal(body)
	resp, err := http.Post(api+"/v1/completions", "application/json", bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("completion: %d %s", resp.StatusCode, data)
	}
	var c completion
	if err := json.Unmarshal(data, &c); err != nil || len(c.Choices) != 1 {
		t.Fatalf("completion body %s: %v", data, err)
	}
	return c
}

func greedyBody(prompt []int32, n int) map[string]any {
	return map[string]any{"prompt": prompt, "max_tokens": n, "temperature": 0, "ignore_eos": true, "return_token_ids": true}
}

// TestClusterEndToEnd: one coordinator and three worker processes against
// a real etcd and NATS; greedy generation through the HTTP API equals the
// golden ids under pp=3 and tp=3. It also checks readiness: /ready is 503
// until every shard of the plan has loaded, while /health is 200.
func TestClusterEndToEnd(t *testing.T) {
	in := startInfra(t)
	for _, tc := range []struct{ model, plan string }{
		{"bloom", "pp=3,tp=1"}, {"bloom", "pp=1,tp=3"}, {"llama", "pp=3,tp=1"}, {"llama", "pp=1,tp=3"},
	} {
		t.Run(tc.model+"_"+strings.ReplaceAll(tc.plan, ",", "_"), func(t *testing.T) {
			cluster := "e2e-" + tc.model + strings.NewReplacer("=", "", ",", "").Replace(tc.plan)
			dir := filepath.Join(repoRoot, "testdata/golden", tc.model)
			_, api := startCoordinatorProc(t, in, cluster, dir, "c1", "--plan", tc.plan)
			waitStatus(t, api+"/health", 200, 20*time.Second)
			if st := status(api + "/ready"); st != http.StatusServiceUnavailable {
				t.Fatalf("/ready = %d before any worker registered, want 503", st)
			}
			startWorkers(t, in, cluster, 3, 0)
			waitStatus(t, api+"/ready", 200, 30*time.Second)
			for i, c := range modeltest.LoadGolden(t, dir).Cases {
				got := complete(t, api, greedyBody(c.PromptIDs, len(c.GreedyIDs)))
				if fmt.Sprint(got.Choices[0].TokenIDs) != fmt.Sprint(c.GreedyIDs) {
					t.Errorf("case %d: %v, golden %v", i, got.Choices[0].TokenIDs, c.GreedyIDs)
				}
			}
		})
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
	waitStatus(t, api1+"/ready", 200, 30*time.Second)
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
// streaming requests run. The coordinator notices (a failed step or the
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
			generateDuring(t, api, 16, 150, func() { workers[1].stop(syscall.SIGKILL) })
			if out := captureStatus(t, in, cluster); !strings.Contains(out, "w3") || strings.Contains(out, "w1 ") {
				t.Errorf("the plan should now use the standby w3 and not w1:\n%s", out)
			}
		})
	}
}

// TestLocal: `tessera local --workers 0` prints where its etcd, NATS and
// API are; a `tessera worker` joining with those serves the bundled model.
func TestLocal(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	addr := freeAddr(t)
	p := spawn(t, "local", "local", "--model", filepath.Join(repoRoot, "models/docbloom-3m"), "--workers", "0", "--listen", addr)
	lines := map[string]string{}
	deadline := time.Now().Add(30 * time.Second)
	for len(lines) < 3 && time.Now().Before(deadline) {
		for _, l := range strings.Split(p.out.String(), "\n") {
			if k, v, ok := strings.Cut(l, ": "); ok && (k == "etcd" || k == "nats" || k == "api") {
				lines[k] = v
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if lines["api"] != "http://"+addr || lines["etcd"] == "" || lines["nats"] == "" {
		t.Fatalf("local printed %v", lines)
	}
	if st := status(lines["api"] + "/ready"); st != http.StatusServiceUnavailable {
		t.Fatalf("/ready with no workers = %d, want 503", st)
	}
	spawn(t, "joiner", "worker", "--cluster", "local", "--etcd", lines["etcd"], "--nats", lines["nats"], "--id", "joiner", "--listen", "127.0.0.1:0")
	waitStatus(t, lines["api"]+"/ready", 200, 30*time.Second)
	c := complete(t, lines["api"], map[string]any{"prompt": "Parameters\n----------\n", "max_tokens": 12, "temperature": 0})
	if !strings.Contains(c.Choices[0].Text, "array") {
		t.Errorf("docbloom wrote %q; its golden continuation starts with an argument list", c.Choices[0].Text)
	}
	resp, err := http.Get(lines["api"] + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var models struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if json.NewDecoder(resp.Body).Decode(&models) != nil || len(models.Data) != 1 || models.Data[0].ID != "docbloom-3m" {
		t.Errorf("/v1/models: %+v, want the folder's base name docbloom-3m", models)
	}
}

// A worker's probes: /health while the process runs, /ready once it is
// registered in etcd (it need not hold a shard yet).
func TestWorkerProbes(t *testing.T) {
	in := startInfra(t)
	addr := freeAddr(t)
	spawn(t, "probed", "worker", "--cluster", "e2e-probes", "--etcd", in.etcd, "--nats", in.nats, "--id", "probed",
		"--listen", "127.0.0.1:0", "--http-listen", addr)
	waitStatus(t, "http://"+addr+"/ready", 200, 20*time.Second)
	resp, err := http.Get("http://" + addr + "/health")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var h struct {
		Status      string `json:"status"`
		ShardLoaded bool   `json:"shard_loaded"`
	}
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&h) != nil || h.Status != "ok" || h.ShardLoaded {
		t.Fatalf("/health: %d %+v, want ok without a shard", resp.StatusCode, h)
	}
}
