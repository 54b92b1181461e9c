package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tessera-llm/tessera/shard/registry"
)

// waitOutput waits until a process prints want, failing after within.
func waitOutput(t *testing.T, p *process, want string, within time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(within); !strings.Contains(p.out.String(), want); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not print %q within %v:\n%s", p.name, want, within, p.out)
		}
	}
}

// exitCode waits for a process to exit by itself and returns its status.
func exitCode(t *testing.T, p *process, within time.Duration) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case <-done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(within):
		t.Fatalf("%s still running after %v:\n%s", p.name, within, p.out)
		return 0
	}
}

var workerRow = regexp.MustCompile(`(?m)^(\S+)\s+(127\.0\.0\.1:\d+)\s+cpu\s`)

// The `join:` line that `tessera local` prints, started three times on one
// host, gives three workers (distinct ids and bound ports) and a plan over
// them that serves; a duplicate explicit --id is refused with an error
// naming the worker that holds it.
func TestJoinLineThreeTimes(t *testing.T) {
	startInfra(t) // skips in -short; this test runs its own local cluster
	lc := spawn(t, "local", "local", "--workers", "0", "--listen", "127.0.0.1:0",
		"--model", filepath.Join(repoRoot, "testdata/golden/bloom"), "--cache-tokens", "1024", "--block-size", "8")
	waitOutput(t, lc, "join: ", 20*time.Second)
	out := lc.out.String()
	join := strings.Fields(regexp.MustCompile(`(?m)^join: tessera (.*)$`).FindStringSubmatch(out)[1])
	api := "http://" + regexp.MustCompile(`(?m)^api: http://(\S+)$`).FindStringSubmatch(out)[1]
	etcd := join[slices.Index(join, "--etcd")+1]
	for i := range 3 {
		waitOutput(t, spawn(t, fmt.Sprintf("join-%d", i), join...), "worker up", 20*time.Second)
	}
	var rows [][]string
	for deadline := time.Now().Add(10 * time.Second); len(rows) != 3 && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		_, stdout, _ := runCLI(t, "status", "--etcd", etcd, "--cluster", "local")
		rows = workerRow.FindAllStringSubmatch(stdout, -1)
	}
	if len(rows) != 3 || rows[0][1] == rows[1][1] || rows[1][1] == rows[2][1] || rows[0][2] == rows[1][2] || rows[1][2] == rows[2][2] {
		t.Fatalf("tessera status after three joins: %q", rows)
	}
	waitStatus(t, api+"/ready", 200, 30*time.Second)

	twin := spawn(t, "twin", append(join, "--id", "twin")...)
	waitOutput(t, twin, "worker up", 20*time.Second)
	addr := regexp.MustCompile(`grpc=(\S+)`).FindStringSubmatch(twin.out.String())[1]
	dup := spawn(t, "twin-dup", append(join, "--id", "twin")...)
	if code := exitCode(t, dup, 20*time.Second); code == 0 || !strings.Contains(dup.out.String(), "worker id taken") ||
		!strings.Contains(dup.out.String(), addr) {
		t.Fatalf("a second worker with --id twin: exit %d, output:\n%s\nwant a refusal naming %s", code, dup.out, addr)
	}
}

// The #22 duplicate-id acceptance: workers that join, leave, are killed,
// or claim ids already taken never remove or replace the serving workers'
// registrations; afterwards the cluster is ready and greedy output is the
// same as before.
func TestDuplicateIDsNeverRemoveLiveWorkers(t *testing.T) {
	in := startInfra(t)
	const cluster = "e2e-dupid"
	dir := filepath.Join(repoRoot, "testdata/golden/bloom")
	_, api := startCoordinatorProc(t, in, cluster, dir, "c1", "--plan", "pp=2,tp=1")
	// With a fixed shape the first two workers by id serve: a0 and a1.
	// Their 5 s leases show renewals within 2 s, which is how a claimant
	// learns they are alive.
	originals := map[string]string{}
	for _, id := range []string{"a0", "a1"} {
		p := spawn(t, cluster+"/"+id, "worker", "--cluster", cluster, "--etcd", in.etcd, "--nats", in.nats,
			"--id", id, "--memory", "1GiB", "--lease-ttl", "5s")
		waitOutput(t, p, "worker up", 20*time.Second)
		originals[id] = regexp.MustCompile(`grpc=(\S+)`).FindStringSubmatch(p.out.String())[1]
	}
	waitStatus(t, api+"/ready", 200, 30*time.Second)
	prompt := []int32{5, 77, 300, 12}
	want := complete(t, api, greedyBody(prompt, 12)).Choices[0].TokenIDs

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cli, err := registry.Dial(ctx, in.etcd)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	created := func(id string) (int64, string) {
		resp, err := cli.Get(ctx, registry.WorkerKey(cluster, id))
		if err != nil || len(resp.Kvs) == 0 {
			return 0, ""
		}
		return resp.Kvs[0].CreateRevision, string(resp.Kvs[0].Value)
	}
	revs := map[string]int64{}
	for id := range originals {
		revs[id], _ = created(id)
	}
	checkOriginals := func(when string) {
		t.Helper()
		for id, addr := range originals {
			rev, val := created(id)
			if rev != revs[id] || !strings.Contains(val, addr) {
				t.Fatalf("%s: %s's registration was replaced or removed (create revision %d, was %d; value %s)", when, id, rev, revs[id], val)
			}
		}
	}

	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 22))
	type extra struct {
		p    *process
		addr string
	}
	live := map[string]*extra{}
	var used []string
	startExtra := func(id string) *process {
		return spawn(t, cluster+"/"+id, "worker", "--cluster", cluster, "--etcd", in.etcd, "--nats", in.nats,
			"--id", id, "--memory", "1GiB", "--lease-ttl", "3s")
	}
	refused := func(p *process, holder string) {
		t.Helper()
		if code := exitCode(t, p, 15*time.Second); code == 0 || !strings.Contains(p.out.String(), "worker id taken") || !strings.Contains(p.out.String(), holder) {
			t.Fatalf("%s: exit %d, want a refusal naming %s:\n%s", p.name, code, holder, p.out)
		}
	}
	for cycle := range 20 {
		action := rng.IntN(5)
		if action == 4 && len(live) == 0 {
			action = 0
		}
		switch action {
		case 0, 1: // a new worker joins, under a fresh id or one used before
			id := fmt.Sprintf("x%d", cycle)
			if action == 1 && len(used) > 0 {
				id = used[rng.IntN(len(used))]
			}
			p := startExtra(id)
			if holder, ok := live[id]; ok {
				refused(p, holder.addr)
				break
			}
			waitOutput(t, p, "worker up", 15*time.Second)
			live[id] = &extra{p, regexp.MustCompile(`grpc=(\S+)`).FindStringSubmatch(p.out.String())[1]}
			used = append(used, id)
		case 2: // a worker claims a serving worker's id
			id := []string{"a0", "a1"}[rng.IntN(2)]
			refused(startExtra(id), originals[id])
		case 3: // the same, killed while it waits to learn the holder is alive
			p := startExtra([]string{"a0", "a1"}[rng.IntN(2)])
			time.Sleep(300 * time.Millisecond)
			p.stop(syscall.SIGKILL)
		case 4: // an extra worker leaves or is killed
			for id, e := range live {
				e.p.stop([]syscall.Signal{syscall.SIGTERM, syscall.SIGKILL}[rng.IntN(2)])
				delete(live, id)
				break
			}
		}
		checkOriginals(fmt.Sprintf("cycle %d (action %d)", cycle, action))
	}
	waitStatus(t, api+"/ready", 200, 30*time.Second)
	checkOriginals("after the cycles")
	if got := complete(t, api, greedyBody(prompt, 12)).Choices[0].TokenIDs; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("greedy output changed: %v, was %v", got, want)
	}
}
