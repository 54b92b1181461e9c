package main

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

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
