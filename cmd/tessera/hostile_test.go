package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tessera-llm/tessera/coordinator/probe"
)

// procKB reads a field of /proc/<pid>/status (VmRSS, VmHWM) in KiB.
func procKB(t *testing.T, pid int, field string) int {
	t.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// A coordinator process with real workers takes every hostile input the
// probe sends with the answer a healthy server gives, and eight
// concurrent 3.9 MB prompts (and eight that pass the byte bound but not
// the token one) are refused without its peak RSS rising 400 MB above
// idle.
func TestHostileInputs(t *testing.T) {
	in := startInfra(t)
	const cluster = "e2e-hostile"
	coord, api := startCoordinatorProc(t, in, cluster, filepath.Join(repoRoot, "models/docbloom-3m"), "c1",
		"--http-body-idle-timeout", "1s")
	// Long leases: a worker losing its lease to a loaded machine would
	// answer the probe's checks with 503 while it re-plans.
	startWorkers(t, in, cluster, 2, 0, "--lease-ttl", "15s")
	waitServing(t, in, cluster, api, "w0", "w1")

	pid := coord.cmd.Process.Pid
	idle := procKB(t, pid, "VmRSS")
	huge := append(append([]byte(`{"prompt": "`), bytes.Repeat([]byte("a "), 1_950_000)...), `"}`...)
	long := append(append([]byte(`{"prompt": "`), bytes.Repeat([]byte("a "), 30_000)...), `"}`...)
	var wg sync.WaitGroup
	for i := range 16 {
		body := huge
		if i%2 == 1 {
			body = long // under 64 bytes a token, over the context in tokens
		}
		wg.Go(func() {
			resp, err := http.Post(api+"/v1/completions", "application/json", bytes.NewReader(body))
			if err != nil {
				t.Error(err)
				return
			}
			msg, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 400 || !bytes.Contains(msg, []byte("maximum context length")) {
				t.Errorf("a prompt of %d bytes: %d %s", len(body), resp.StatusCode, msg)
			}
		})
	}
	wg.Wait()
	peak := procKB(t, pid, "VmHWM")
	t.Logf("coordinator RSS idle %d MiB, peak %d MiB", idle>>10, peak>>10)
	if peak-idle > 400<<10 {
		t.Errorf("peak RSS %d MiB is %d MiB above the idle %d MiB; the bound is 400", peak>>10, (peak-idle)>>10, idle>>10)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	results, err := probe.Run(ctx, probe.Config{URL: api, SlowWait: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		if !r.Pass {
			t.Errorf("probe %q: %s", r.Name, r.Detail)
		}
	}
	if len(results) < 30 {
		t.Errorf("the probe ran %d checks", len(results))
	}
}
