package registry

import (
	"context"
	"testing"
	"time"
)

// WorkerLeases reports each registered worker's granted TTL and the time
// left, and forgets a worker once its registration is revoked.
func TestWorkerLeases(t *testing.T) {
	cli := client(t)
	defer cli.Close()
	ctx := context.Background()
	cluster := clusterName(t)
	a, err := Register(ctx, cli, cluster, worker("a", 1), 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Register(ctx, cli, cluster, worker("b", 1), 7*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	leases, err := WorkerLeases(ctx, cli, cluster)
	if err != nil {
		t.Fatal(err)
	}
	for id, ttl := range map[string]time.Duration{"a": 3 * time.Second, "b": 7 * time.Second} {
		l, ok := leases[id]
		if !ok || l.TTL != ttl || l.Remaining <= 0 || l.Remaining > ttl {
			t.Errorf("lease of %s = %+v (found %v), want TTL %v and 0 < remaining ≤ TTL", id, l, ok, ttl)
		}
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if leases, err = WorkerLeases(ctx, cli, cluster); err != nil || len(leases) != 1 {
		t.Fatalf("after revoking a: %v, %v; want only b", leases, err)
	}
	if _, err := WorkerLeases(ctx, cli, "bad/name"); err == nil {
		t.Error("an invalid cluster name was accepted")
	}
}
