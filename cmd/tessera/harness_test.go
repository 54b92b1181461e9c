package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/tessera-llm/tessera/shard/registry"
	"github.com/tessera-llm/tessera/shard/transport"
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
