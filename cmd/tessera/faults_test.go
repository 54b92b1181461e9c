package main

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
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
