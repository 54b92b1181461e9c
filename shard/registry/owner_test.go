package registry

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// ownerTest checks for leaked goroutines and gives a test a client
// (closed at its end), a context and its own cluster name.
func ownerTest(t *testing.T) (*clientv3.Client, context.Context, string) {
	checkGoroutines(t)
	cli := client(t)
	t.Cleanup(func() { cli.Close() })
	return cli, context.Background(), clusterName(t)
}

func holder(t *testing.T, cli *clientv3.Client, key string) (lease clientv3.LeaseID, created int64, addr string) {
	t.Helper()
	resp, err := cli.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		return 0, 0, ""
	}
	w, _ := decodeWorker(resp.Kvs[0].Value)
	return clientv3.LeaseID(resp.Kvs[0].Lease), resp.Kvs[0].CreateRevision, w.GetAddress()
}

// A live worker's id is refused to a second claimant, whose exit (even
// with a revoke of everything it owns) leaves the entry alone.
func TestRegisterRefusesLiveID(t *testing.T) {
	cli, ctx, cluster := ownerTest(t)
	live := worker("w", 1)
	live.Address = "127.0.0.1:7001"
	r, err := Register(ctx, cli, cluster, live, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	other := client(t)
	dup := worker("w", 1)
	dup.Address = "127.0.0.1:7002"
	_, err = Register(ctx, other, cluster, dup, 2*time.Second)
	if !errors.Is(err, ErrIDTaken) || !strings.Contains(err.Error(), "127.0.0.1:7001") {
		t.Fatalf("duplicate claim: %v, want ErrIDTaken naming 127.0.0.1:7001", err)
	}
	other.Close() // the claimant's process exits
	key := WorkerKey(cluster, "w")
	for range 3 {
		if lease, _, addr := holder(t, cli, key); lease != r.Lease() || addr != "127.0.0.1:7001" {
			t.Fatalf("entry now lease %x at %q, want the live worker's lease %x", lease, addr, r.Lease())
		}
		time.Sleep(time.Second)
	}
}

// An id whose worker died (its lease is no longer renewed) is taken over
// once the lease runs out, and the new registration says from whom. The
// newcomer's own lease stays alive while it waits, however much longer
// the dead worker's TTL is than its own.
func TestRegisterTakesOverExpiredID(t *testing.T) {
	for _, tc := range []struct {
		name         string
		deadTTL, ttl time.Duration
	}{
		{"shorter holder TTL", time.Second, 2 * time.Second},
		{"holder TTL three times ours", 6 * time.Second, 2 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cli, ctx, cluster := ownerTest(t)
			dead := client(t)
			old := worker("w", 1)
			old.Address = "127.0.0.1:7001"
			if _, err := Register(ctx, dead, cluster, old, tc.deadTTL); err != nil {
				t.Fatal(err)
			}
			dead.Close() // crashed: the keepalive stops, nothing is revoked
			r, err := Register(ctx, cli, cluster, worker("w", 2), tc.ttl)
			if err != nil {
				t.Fatalf("taking over an expired id: %v", err)
			}
			defer r.Close()
			if r.TookOver() != "127.0.0.1:7001" {
				t.Errorf("TookOver = %q, want the dead worker's address", r.TookOver())
			}
			if lease, _, _ := holder(t, cli, WorkerKey(cluster, "w")); lease != r.Lease() {
				t.Errorf("entry under lease %x, want %x", lease, r.Lease())
			}
		})
	}
}

// When a member's lease is lost and another worker claims the id at the
// same moment, exactly one of them holds it afterwards and the member's
// re-register loop never overwrites the other.
func TestMemberNeverStealsID(t *testing.T) {
	cli, ctx, cluster := ownerTest(t)
	key := WorkerKey(cluster, "w")
	m, err := Join(ctx, cli, cluster, worker("w", 1), 2*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	lease, _, _ := holder(t, cli, key)
	if _, err := cli.Revoke(ctx, lease); err != nil {
		t.Fatal(err)
	}
	rival := worker("w", 2)
	rival.Address = "127.0.0.1:7009"
	r, rerr := Register(ctx, cli, cluster, rival, 2*time.Second)
	if rerr == nil {
		defer r.Close()
	} else if !errors.Is(rerr, ErrIDTaken) {
		t.Fatal(rerr)
	}
	time.Sleep(300 * time.Millisecond)
	_, created, _ := holder(t, cli, key)
	for range 3 {
		time.Sleep(time.Second)
		l, c, addr := holder(t, cli, key)
		if c != created {
			t.Fatalf("the entry was replaced (create revision %d, was %d)", c, created)
		}
		if rerr == nil && (l != r.Lease() || addr != "127.0.0.1:7009" || m.Registered()) {
			t.Fatalf("the rival won the id but the entry is lease %x at %q (member registered: %t)", l, addr, m.Registered())
		}
		if rerr != nil && !m.Registered() {
			t.Fatalf("the member won the id but is not registered")
		}
	}
}

// The member registers again by itself after its lease is revoked.
func TestMemberRegistersAgain(t *testing.T) {
	cli, ctx, cluster := ownerTest(t)
	m, err := Join(ctx, cli, cluster, worker("w", 1), 2*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	key := WorkerKey(cluster, "w")
	lease, _, _ := holder(t, cli, key)
	if _, err := cli.Revoke(ctx, lease); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if l, _, _ := holder(t, cli, key); l != 0 && l != lease && m.Registered() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("not registered again within 5s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	m.Close()
	if l, _, _ := holder(t, cli, key); l != 0 {
		t.Errorf("entry still there after Close (lease %x)", l)
	}
}

// Re-registering under a new lease moves an entry still held under the
// caller's own old lease without deleting it (no leave for the watchers).
func TestRegisterMovesOwnEntry(t *testing.T) {
	cli, ctx, cluster := ownerTest(t)
	old, err := Register(ctx, cli, cluster, worker("w", 1), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	key := WorkerKey(cluster, "w")
	_, created, _ := holder(t, cli, key)
	r, err := register(ctx, cli, cluster, worker("w", 2), 2*time.Second, old.Lease())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if lease, c, _ := holder(t, cli, key); lease != r.Lease() || c != created {
		t.Fatalf("entry under lease %x created at %d, want lease %x and the original create revision %d", lease, c, r.Lease(), created)
	}
	old.Close() // revoking the old lease leaves the moved entry alone
	if lease, _, _ := holder(t, cli, key); lease != r.Lease() {
		t.Fatalf("entry under lease %x after the old lease was revoked, want %x", lease, r.Lease())
	}
}
